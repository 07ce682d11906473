"""BEiT v2 ViT-B/16 MIM pretraining on ImageNet-1K, official 300-epoch recipe.

Tokenizer: VQ-KD (CLIP-B/16 teacher), frozen, from ``model.target_generator.checkpoint``.
Student: ``FastBEiTPretrainViT`` (SDPA attention; ``attn_impl='explicit'`` or
``type='BEiTPretrainViT'`` gives mmpretrain's stock path). 75 of 196 patches masked
block-wise; loss = CE(final layer) + CE(patch aggregation: [CLS] of layer 12 + patch tokens of
layer 9 through 2 layers), one shared lm head. Batch 2048 (8 x 256), AdamW lr 1.5e-3,
betas (0.9, 0.98), wd 0.05, 10 warmup epochs, cosine to 1e-5, grad clip 3.0, drop path 0,
layer scale 0.1, shared relative position bias, AMP.

    tools/dist_train.sh configs/beitv2_vitb_mim.py 8 \
        --cfg-options model.target_generator.checkpoint=work_dirs/vqkd/epoch_100.pth
"""
_base_ = [
    '_base_/mim_runtime.py',
    '_base_/mim_data_in1k.py',
    '_base_/mim_schedule_300e.py',
    '_base_/mim_model_beitv2_vitb.py',
]
