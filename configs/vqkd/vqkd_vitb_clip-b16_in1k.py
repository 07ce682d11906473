# BEiT v2 VQ-KD tokenizer, ViT-B/16 encoder + 3-layer decoder, CLIP ViT-B/16 teacher,
# ImageNet-1K, 100 epochs at total batch 512 (8 GPUs x 64), official recipe
# (unilm beit2 vqkd_encoder_base_decoder_3x768x12_clip).
# Teacher weights: OpenAI CLIP ViT-B/16 saved locally; set model.teacher.checkpoint.
_base_ = [
    '../_base_/vqkd_vitb_model.py',
    '../_base_/vqkd_in1k_data.py',
    '../_base_/vqkd_runtime.py',
]
