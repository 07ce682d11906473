"""BEiT v2 ViT-B/16 ImageNet-1K fine-tuning (official recipe, 300-epoch pretrain).

lr 5e-4 (batch 1024 = 8 GPUs x 128), AdamW wd 0.05, layer decay 0.65, 100 epochs with 20 warmup,
drop path 0.1, RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25, mixup 0.8 / cutmix 1.0,
label smoothing 0.1; mean pooling + fc_norm. Published: 85.0 (300 ep) / 85.5 (1600 ep, with
layer decay 0.6: configs/finetune_in1k_1600e.py).

    tools/dist_train.sh configs/finetune_in1k.py 8 \
        --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/beitv2_vitb_mim/epoch_300.pth
"""
_base_ = [
    '_base_/downstream_beit_finetune_model.py',
    '_base_/downstream_in1k_finetune_data.py',
    '_base_/downstream_in1k_finetune_schedule.py',
    '_base_/downstream_cls_runtime.py',
]
custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)
default_scope = 'mmpretrain'
custom_hooks = [dict(type='DownstreamResultsHook', task='finetune', dataset_name='ImageNet-1K')]
