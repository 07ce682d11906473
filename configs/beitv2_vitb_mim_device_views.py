"""``beitv2_vitb_mim.py`` with the views made on the training device: for hosts whose CPUs
cannot feed the GPUs (a data loader slower than the step in ``tools/benchmark.py data`` vs
``mim``; the H100 host: ~730 images/s against the compiled step's 1542).

The data workers read each JPEG and draw the jitter, flip, crop and mask with the official
transforms' own draws (the same numbers as ``beitv2_vitb_mim.py`` for the same seed);
``DeviceMIMDataPreprocessor`` decodes (nvJPEG on a GPU), jitters the full images in the
official order, flips, crops and resizes (PIL's integer weights in float64 GEMMs) on the
device: with the decode on the CPU, the official pixels (run c5); nvJPEG may differ from
libjpeg-turbo by a level (not measured). A data worker's share is 10.4x smaller (run c4); the
GPU's share is not measured yet, and GPUs with slow float64 (most consumer cards) pay more for
the resize (BENCHMARKS.md, "The MIM views on the device", runs c4, c5). ``tools/benchmark.py
data --config THIS --preprocess`` times the workers plus the preprocessor, and the
preprocessor alone, on the GPU.
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
