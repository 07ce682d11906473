# BEiT v2 VQ-KD with the DINO ViT-B/16 teacher, as the official
# vqkd_encoder_base_decoder_1x768x12_dino: 1-layer decoder, target = DINO final-norm patch
# tokens (768-d), ImageNet mean/std for the teacher input; otherwise as
# vqkd_vitb_clip-b16_in1k.py.
# Teacher weights: dino_vitbase16_pretrain.pth saved locally; set model.teacher.checkpoint.
_base_ = [
    '../_base_/vqkd_vitb_model.py',
    '../_base_/vqkd_in1k_data.py',
    '../_base_/vqkd_runtime.py',
]
model = dict(
    tokenizer=dict(target_dim=768, decoder=dict(arch=dict(num_layers=1))),
    teacher=dict(
        _delete_=True,
        type='TimmTeacher',
        model_name='vit_base_patch16_224',
        checkpoint='checkpoints/teachers/dino_vitbase16_pretrain.pth',
        input_range=(0, 255)))
