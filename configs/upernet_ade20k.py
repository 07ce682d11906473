"""BEiT v2 ViT-B/16 + UperNet on ADE20K at 512x512 (53.1 mIoU published, 1600-epoch pretrain).

160k iterations, batch 16 (8 GPUs x 2), AdamW lr 5e-5 wd 0.05, layer decay 0.75, drop path 0.15,
1500 warmup iterations then poly; relative position bias resized 14x14 -> 32x32; sliding-window
test 512 / stride 341; mIoU. Recipe details in configs/_base_/seg_upernet_beit.py.

    tools/dist_train.sh configs/upernet_ade20k.py 8 \
        --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/beitv2_vitb_mim/epoch_300.pth
"""
_base_ = ['_base_/seg_upernet_beit.py', '_base_/seg_ade20k_512.py']
custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)
default_scope = 'mmseg'
custom_hooks = [dict(type='DownstreamResultsHook', task='semantic_segmentation',
                     dataset_name='ADE20K')]
