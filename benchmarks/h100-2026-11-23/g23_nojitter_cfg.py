# one-off (g23): the MIM pipeline without the colour jitter, to bound what moving it off the CPU gains
_base_ = ['../../configs/beitv2_vitb_mim.py']
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='TwoViewRandomResizedCrop', size=224, second_size=224, interpolation='bicubic',
         second_interpolation='bicubic', scale=(0.2, 1.0)),
    dict(type='BlockwiseMaskGenerator', input_size=(14, 14), num_masking_patches=75,
         max_num_patches=None, min_num_patches=16),
    dict(type='PackInputs'),
]))
