"""BEiT v2 ViT-L/16 + UperNet on ADE20K at 512x512 (56.7 mIoU published, 1600-epoch pretrain).

As configs/upernet_ade20k.py with ViT-L (unilm beit2/semantic_segmentation/configs/beit/upernet/
upernet_beit_large_24_512_slide_160k_ade20k.py): features of layers 7/11/15/23 (1024 channels
in), UperNet head 1024 channels wide, lr 4e-5, layer decay 0.9, drop path 0.2.
"""
_base_ = ['_base_/seg_upernet_beit.py', '_base_/seg_ade20k_512.py']
custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)
default_scope = 'mmseg'
model = dict(
    backbone=dict(arch=dict(embed_dims=1024, num_layers=24, num_heads=16,
                           feedforward_channels=4096),
                  out_indices=[7, 11, 15, 23], drop_path_rate=0.2),
    neck=dict(embed_dim=1024),
    decode_head=dict(in_channels=[1024, 1024, 1024, 1024], channels=1024),
    auxiliary_head=dict(in_channels=1024),
)
optim_wrapper = dict(optimizer=dict(lr=4e-5), paramwise_cfg=dict(layer_decay_rate=0.9))
custom_hooks = [dict(type='DownstreamResultsHook', task='semantic_segmentation',
                     dataset_name='ADE20K')]
