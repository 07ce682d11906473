"""ImageNet-1K data for BEiT fine-tuning (mmpretrain), as the official BEiT v2 recipe.

Train: RandomResizedCrop 224 (bicubic) + flip + RandAugment ``rand-m9-mstd0.5-inc1`` (timm
increasing policies, 2 ops, magnitude 9, std 0.5) + RandomErasing 0.25 (per-pixel random);
mixup 0.8 / cutmix 1.0 live in the model's ``train_cfg.augments`` (experiment config).
Val: resize short edge 256 (bicubic) + center crop 224 (crop ratio 0.875). Batch 128 per GPU,
8 GPUs = 1024. Real data: set ``train_dataloader.dataset.data_root`` (layout
``train/<wnid>/*.JPEG``, ``val/...``, ``meta/{train,val}.txt``).
"""
dataset_type = 'CheckedImageNet'  # ImageNet + early layout check
data_root = 'data/imagenet'
data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
)
bgr_mean = data_preprocessor['mean'][::-1]
bgr_std = data_preprocessor['std'][::-1]

# The official loaders (PIL's Image.open().convert('RGB')) ignore the EXIF orientation tag;
# OpenCV's default decode would rotate the few tagged ImageNet JPEGs.
exif_free = 'color_ignore_orientation'
train_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='raise', color_type=exif_free),
    dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10,
         magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    # timm's erasing (--reprob 0.25 --remode pixel) on pixels before normalisation: mmpretrain
    # fills with mean + N(0, 1) * std clipped to 0..255 (3-4% of the filled values per channel,
    # those below -1.8..-2.1 std or above 2.3..2.6 std; timm's draws on the normalised tensor are
    # not clipped), and a box that does not fit is clamped to the image where timm tries again
    # and may skip. Not changed: a small shift of a rare augmentation.
    dict(type='RandomErasing', erase_prob=0.25, mode='rand', min_area_ratio=0.02,
         max_area_ratio=1 / 3, fill_color=bgr_mean, fill_std=bgr_std),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='raise', color_type=exif_free),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    drop_last=True,  # as the official loaders: no short last batch in an epoch
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split='val', pipeline=test_pipeline),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
