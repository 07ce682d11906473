"""BEiT v2 ViT-B/16 fine-tuning from a 1600-epoch pretrain: configs/finetune_in1k.py with layer
decay 0.6 (official recipe; 85.5 top-1 published). Equivalent override of finetune_in1k.py:
``--cfg-options optim_wrapper.paramwise_cfg.layer_decay_rate=0.6``.
"""
_base_ = [
    '_base_/downstream_beit_finetune_model.py',
    '_base_/downstream_in1k_finetune_data.py',
    '_base_/downstream_in1k_finetune_schedule.py',
    '_base_/downstream_cls_runtime.py',
]
custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)
default_scope = 'mmpretrain'
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.6))
custom_hooks = [dict(type='DownstreamResultsHook', task='finetune', dataset_name='ImageNet-1K')]
