"""BEiT v2 ViT-B/16 fine-tuning from a 1600-epoch pretrain: configs/finetune_in1k.py with layer
decay 0.6 and drop path 0.2 (official recipe, unilm beit2/get_started_for_image_classification.md:
"--layer_decay 0.6 for 1600 epochs pretrained models", "--drop_path 0.2 for 1600 epochs
pretrained models"; 85.5 top-1 published). Equivalent override of finetune_in1k.py: ``--cfg-options
optim_wrapper.paramwise_cfg.layer_decay_rate=0.6 model.backbone.drop_path_rate=0.2``.
"""
_base_ = [
    '_base_/downstream_beit_finetune_model.py',
    '_base_/downstream_in1k_finetune_data.py',
    '_base_/downstream_in1k_finetune_schedule.py',
    '_base_/downstream_cls_runtime.py',
]
custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)
default_scope = 'mmpretrain'
model = dict(backbone=dict(drop_path_rate=0.2))
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.6))
custom_hooks = [dict(type='DownstreamResultsHook', task='finetune', dataset_name='ImageNet-1K')]
