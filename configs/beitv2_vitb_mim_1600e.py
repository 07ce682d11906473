"""BEiT v2 ViT-B/16 MIM, 1600 epochs: as ``beitv2_vitb_mim.py`` with AdamW betas (0.9, 0.999)
and drop path 0.1 (student and aggregation layers), the official long-schedule settings."""
_base_ = [
    '_base_/mim_runtime.py',
    '_base_/mim_data_in1k.py',
    '_base_/mim_schedule_300e.py',
    '_base_/mim_model_beitv2_vitb.py',
]

max_epochs = 1600
warmup_epochs = 10
model = dict(backbone=dict(drop_path_rate=0.1), neck=dict(drop_path_rate=0.1))
optim_wrapper = dict(optimizer=dict(betas=(0.9, 0.999)))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
