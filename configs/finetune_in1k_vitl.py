"""BEiT v2 ViT-L/16 ImageNet-1K fine-tuning (87.3 top-1 published for the 1600-epoch pretrain).

Differences from the ViT-B recipe (unilm beit2/get_started_for_image_classification.md, ViT-L
command and its notes): 50 epochs with 5 warmup, layer decay 0.8, drop path 0.2, lr 2e-4 at
batch 1024 (8 GPUs x 128; "2e-4 for 1600 epochs pretrained model and 5e-4 for 300 epochs": for
a 300-epoch ViT-L pretrain (86.6 published) add ``--cfg-options optim_wrapper.optimizer.lr=5e-4
param_scheduler.1.eta_min_ratio=2e-3``, which keeps the official 1e-6 floor);
same augmentation.
"""
_base_ = [
    '_base_/downstream_beit_finetune_model.py',
    '_base_/downstream_in1k_finetune_data.py',
    '_base_/downstream_in1k_finetune_schedule.py',
    '_base_/downstream_cls_runtime.py',
]
custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)
default_scope = 'mmpretrain'
model = dict(
    backbone=dict(arch=dict(embed_dims=1024, num_layers=24, num_heads=16,
                           feedforward_channels=4096),
                  drop_path_rate=0.2),
    head=dict(in_channels=1024),
)
optim_wrapper = dict(optimizer=dict(lr=2e-4), paramwise_cfg=dict(layer_decay_rate=0.8))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    # floor 1e-6 x each layer's decay factor, as the official schedule (see the ViT-B base)
    dict(type='CosineAnnealingLR', by_epoch=True, begin=5, end=50, eta_min_ratio=1e-6 / 2e-4,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=50, val_interval=1)
custom_hooks = [dict(type='DownstreamResultsHook', task='finetune', dataset_name='ImageNet-1K')]
