# ImageNet-1K data for VQ-KD tokenizer training, official recipe: RandomResizedCrop 224
# (scale 0.08-1, bicubic) + horizontal flip, no colour jitter; images reach the model as
# 0..255 RGB (the tokenizer and the teacher normalise themselves). Batch 64 per GPU
# (x 8 GPUs = 512, the official total).
data_root = 'data/imagenet'
# The official loaders (PIL's Image.open().convert('RGB')) ignore the EXIF orientation tag;
# OpenCV's default decode would rotate the few tagged ImageNet JPEGs.
exif_free = 'color_ignore_orientation'
train_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='raise', color_type=exif_free),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.08, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,  # as the official loaders: no short last batch in an epoch
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CheckedImageNet', data_root=data_root, split='train', pipeline=train_pipeline))
