"""ImageNet-1K data for MIM on PeCo tokens: two 224 px views + 75 of 196 patches masked.

The student view is normalised with ImageNet mean/std; the tokenizer view (same crop, same
size: the PeCo VQ-VAE downsamples by 16, giving the student's 14 x 14 grid) is mapped to
[-1, 1], the VQ-VAE's input space. Augmentations follow BEiT (colour jitter 0.4, flip,
RandomResizedCrop scale 0.08-1 bicubic) and the block-wise masking of BEiT (75 patches, blocks
of at least 16, aspect 0.3..1/0.3).
Not a config on its own: inherited by configs/peco/peco_vitb_mim.py.
"""
data_root = 'data/imagenet/'
num_masking_patches = 75
data_preprocessor = dict(
    type='TwoNormDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    second_mean=[127.5, 127.5, 127.5],
    second_std=[127.5, 127.5, 127.5],
    to_rgb=True)
# The official loaders (PIL's Image.open().convert('RGB')) ignore the EXIF orientation tag;
# OpenCV's default decode would rotate the few tagged ImageNet JPEGs.
exif_free = 'color_ignore_orientation'
train_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='raise', color_type=exif_free),
    dict(type='PILColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='TwoViewRandomResizedCrop', size=224, second_size=224,
         interpolation='bicubic', second_interpolation='bicubic', scale=(0.08, 1.0)),
    dict(type='BlockwiseMaskGenerator', input_size=14, num_masking_patches=num_masking_patches,
         min_num_patches=16, min_aspect=0.3),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=256,  # x 8 GPUs = 2048
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,  # as the official loaders: no short last batch in an epoch
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CheckedImageNet', data_root=data_root, split='train', pipeline=train_pipeline))
