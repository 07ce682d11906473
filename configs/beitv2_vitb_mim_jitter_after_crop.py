"""``beitv2_vitb_mim.py`` with the colour jitter computed after the crop: for hosts whose CPUs
cannot feed the GPUs (a data loader slower than the step in ``tools/benchmark.py data`` vs
``mim``), at the price of slightly different pixels.

The official pipeline jitters the full decoded image, then flips and crops. Here
``DrawColorJitter`` draws the same jitter at the same place of the pipeline (so flip, crop and
mask draw the same numbers as in ``beitv2_vitb_mim.py``) and estimates the contrast level from
the full image; ``ApplyColorJitter`` computes PIL's arithmetic on the 224 px view after the
crop (once: the two views are the same resize). The operations are per pixel, so only the
uint8 rounding and clipping before vs after the resize and the estimated contrast level
differ. Speed and pixel deviation measured in BENCHMARKS.md, "Colour jitter after the crop".
"""
_base_ = ['./beitv2_vitb_mim.py']

train_pipeline = [
    {{_base_.load_image}},
    dict(type='DrawColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.),
    {{_base_.flip}},
    {{_base_.two_view_crop}},
    dict(type='ApplyColorJitter'),
    {{_base_.block_mask}},
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
