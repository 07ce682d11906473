"""ImageNet-1K data for PeCo VQ-VAE tokenizer training (224 px, pixels mapped to [-1, 1]).

Crop as the BEiT v2 tokenizer recipe (RandomResizedCrop 224, scale 0.08-1, bicubic, horizontal
flip). The VQ-VAE works on images in [-1, 1] (mean = std = 127.5 on 0..255), VQGAN's
convention; the teacher renormalises them itself (``input_range=(-1, 1)``).
Not a config on its own: inherited by configs/peco/peco_vqvae_in1k.py.
"""
data_root = 'data/imagenet/'
data_preprocessor = dict(
    type='SelfSupDataPreprocessor', mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5],
    to_rgb=True)
# The official loaders (PIL's Image.open().convert('RGB')) ignore the EXIF orientation tag;
# OpenCV's default decode would rotate the few tagged ImageNet JPEGs.
exif_free = 'color_ignore_orientation'
train_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='raise', color_type=exif_free),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.08, 1.0),
         interpolation='bicubic', backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,  # x 8 GPUs = 256
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,  # as the official loaders: no short last batch in an epoch
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CheckedImageNet', data_root=data_root, split='train', pipeline=train_pipeline))
