"""``beitv2_vitb_mim.py`` with the views made on the training device: for hosts whose CPUs
cannot feed the GPUs (a data loader slower than the step in ``tools/benchmark.py data`` vs
``mim``; the H100 host: ~730 images/s against the compiled step's 1542).

The data workers read each JPEG and draw the jitter, flip, crop and mask with the official
transforms' own draws (the same numbers as ``beitv2_vitb_mim.py`` for the same seed);
``DeviceMIMDataPreprocessor`` decodes (nvJPEG on a GPU), jitters the full image in the
official order, flips, crops and resizes on the device. The jitter, flip and crop give the
official pixels; the resize is PIL's two passes in float32 (1.8-3.7% of the values off, almost
all by one level) and nvJPEG may differ from libjpeg-turbo by a level (not measured). A data
worker's share is 10.4x smaller; the GPU's share is not measured yet (BENCHMARKS.md, "The MIM
views on the device", run c4). ``tools/benchmark.py data --config THIS --preprocess`` times
the workers plus the preprocessor, and the preprocessor alone, on the GPU.
"""
_base_ = ['./beitv2_vitb_mim.py']

train_pipeline = [
    dict(type='LoadEncodedImage'),
    # the official transforms, in their order; only their random draws run here
    dict(type='DrawMIMViews',
         transforms=[{{_base_.color_jitter}}, {{_base_.flip}}, {{_base_.two_view_crop}}]),
    {{_base_.block_mask}},
    dict(type='PackInputs',
         meta_keys=('sample_idx', 'img_path', 'ori_shape', 'img_shape', 'mim_views')),
]
train_dataloader = dict(
    collate_fn=dict(type='pseudo_collate'),  # encoded images differ in length
    dataset=dict(pipeline=train_pipeline))
model = dict(data_preprocessor=dict(type='DeviceMIMDataPreprocessor'))
