# ImageNet-1K data for BEiT v2 MIM (official recipe): two 224 px views of one crop
# and a block-wise mask of exactly 75 / 196 patches.
dataset_type = 'CheckedImageNet'  # mmpretrain's ImageNet + a readable layout error
data_root = 'data/imagenet/'
# The data preprocessor (student view: ImageNet mean/std; tokenizer view: what the tokenizer
# expects) lives in the model pieces: the second view's normalisation belongs to the tokenizer.

num_masked_patches = 75
# The official loaders (PIL's Image.open().convert('RGB')) ignore the EXIF orientation tag;
# OpenCV's default decode would rotate the few tagged ImageNet JPEGs. OpenCV and PIL decode
# RGB and greyscale JPEGs to the same pixels (libjpeg-turbo both); the few CMYK JPEGs of
# ImageNet differ by at most 1 level (in most values: the CMYK -> RGB conversions round
# differently; a one-off check on a synthetic CMYK JPEG, 2026-11-24), which is left as it is.
exif_free = 'color_ignore_orientation'
# named so that variants can reuse them (configs/beitv2_vitb_mim_jitter_after_crop.py,
# configs/beitv2_vitb_mim_device_views.py)
load_image = dict(type='SafeLoadImageFromFile', on_error='raise', color_type=exif_free)
color_jitter = dict(type='PILColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.)
flip = dict(type='RandomFlip', prob=0.5, direction='horizontal')
two_view_crop = dict(
    type='TwoViewRandomResizedCrop',
    size=224,
    second_size=224,
    interpolation='bicubic',
    second_interpolation='bicubic',
    scale=(0.2, 1.0))
block_mask = dict(
    type='BlockwiseMaskGenerator',
    input_size=(14, 14),
    num_masking_patches=num_masked_patches,
    max_num_patches=None,
    min_num_patches=16)
train_pipeline = [load_image, color_jitter, flip, two_view_crop, block_mask, dict(type='PackInputs')]

# 8 GPUs x 256 = 2048 images per step, as the official recipe
train_dataloader = dict(
    batch_size=256,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,  # as the official loaders: no short last batch in an epoch
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline))
