"""ImageNet-1K fine-tuning with BEiT v1's recipe for self-supervised checkpoints (83.2 top-1
published for the 800-epoch BEiT v1 ViT-B/16, BEiT paper).

``finetune_in1k.py`` (BEiT v2's recipe: lr 5e-4) is the one protocol the suite and its
leaderboard apply to every method, so that methods differ only in their pretraining. BEiT v1's
own command for a BEiT-base that is only self-supervised pretrained (unilm
beit/get_started_for_image_classification.md: ``--batch_size 128`` on 8 GPUs ``--lr 4e-3
--warmup_epochs 20 --epochs 100 --layer_decay 0.65 --drop_path 0.1 --weight_decay 0.05 --mixup
0.8 --cutmix 1.0``; the paper's table searches the peak lr in {2e-3, 3e-3, 4e-3, 5e-3}) differs
only in the lr, 8x higher; the rest (RandAugment, random erasing, label smoothing, mean pooling,
head init, min lr 1e-6 scaled by each layer's decay factor) are BEiT v2's defaults too. Use this
config to reproduce the published BEiT v1 number.

    tools/dist_train.sh configs/finetune_in1k_beitv1.py 8 \
        --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/beitv1_vitb_mim/epoch_800.pth
"""
_base_ = ['./finetune_in1k.py']
optim_wrapper = dict(optimizer=dict(lr=4e-3))
# the floor is a ratio of each group's lr (see _base_/downstream_in1k_finetune_schedule.py)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=20, end=100, eta_min_ratio=1e-6 / 4e-3,
         convert_to_iter_based=True),
]
