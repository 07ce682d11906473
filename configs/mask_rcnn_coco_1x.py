"""BEiT v2 ViT-B/16 + Mask R-CNN on COCO, a cheaper "1x" schedule for quick comparisons.

configs/mask_rcnn_coco.py (same model, LSJ 1024 pipeline, optimizer with layer decay 0.7, AdamW
wd 0.1, AMP, 250 warmup iterations) at the standard 1x length: 12 epochs ~ 90k iterations at
batch 16 (8 GPUs x 2), lr x0.1 at 60k and 80k, lr scaled linearly to the smaller batch (2.5e-5 ->
``auto_scale_lr`` base 16 keeps the per-image lr of the 100-epoch recipe).
Numbers from it are for ranking pretrains against each other, not for the ViTDet table.
"""
_base_ = ['mask_rcnn_coco.py']

train_dataloader = dict(batch_size=2)
optim_wrapper = dict(optimizer=dict(lr=2.5e-5))
max_iters = 90000
param_scheduler = [
    {{_base_.warmup}},
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[60000, 80000],
         gamma=0.1),
]
train_cfg = dict(max_iters=max_iters, val_interval=10000)
auto_scale_lr = dict(base_batch_size=16)
