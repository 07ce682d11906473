"""UperNet on ADE20K 512x512 with BEiT v1's recipe for self-supervised checkpoints (45.6 mIoU
published for the 800-epoch BEiT v1 ViT-B/16, BEiT paper).

``upernet_ade20k.py`` (BEiT v2's recipe: lr 5e-5, layer decay 0.75, drop path 0.15) is the one
protocol the suite and its leaderboard apply to every method, so that methods differ only in
their pretraining. BEiT v1's own recipe (unilm beit/semantic_segmentation/configs/beit/upernet/
upernet_beit_base_12_512_slide_160k_ade20k_pt.py, "for BEiT models which are self-supervised
pretrained on imagenet") trains its checkpoints with a 14x higher lr: AdamW lr 7e-4, layer decay
0.65, drop path 0.1; everything else (160k iterations, batch 16, 1500 warmup iterations then
poly, weight decay 0.05, sliding-window test) is the same. Use this config to reproduce the
published BEiT v1 number.

    tools/dist_train.sh configs/upernet_ade20k_beitv1.py 8 \
        --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/beitv1_vitb_mim/epoch_800.pth
"""
_base_ = ['./upernet_ade20k.py']
model = dict(backbone=dict(drop_path_rate=0.1))
optim_wrapper = dict(optimizer=dict(lr=7e-4), paramwise_cfg=dict(layer_decay_rate=0.65))
