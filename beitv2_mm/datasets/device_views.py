"""The MIM train views made on the training device: the data workers only read the JPEG and
draw the random numbers; decode, colour jitter, flip, crop and resize run in the data
preprocessor, on the GPU in a GPU run.

For hosts whose CPUs cannot feed the GPU. On the H100 host the official pipeline gave ~730
images/s with the config's 10 workers against the compiled step's 1542 (BENCHMARKS.md, "Does
the data pipeline keep up with the H100?"); JPEG decode, jitter and the crop's resize are 85%
of a worker's time there. Here a worker does what needs no pixels:

* :class:`LoadEncodedImage` reads the file's bytes and its size from the header. Files the GPU
  decoder cannot take (CMYK JPEGs, PNGs named ``.JPEG``: ImageNet has a few dozen) are decoded
  in the worker as the official loader would (OpenCV, EXIF orientation ignored) and travel as
  pixels.
* :class:`DrawMIMViews` draws the colour jitter, flip and crop by calling the official
  transforms' own draw methods (``PILColorJitter``, ``RandomFlip``,
  ``TwoViewRandomResizedCrop``) in the pipeline's order, so with the same seed it draws the same
  numbers as ``configs/beitv2_vitb_mim.py`` (and so does the mask generator after it).

:class:`DeviceMIMDataPreprocessor` then decodes the batch (``torchvision.io.decode_jpeg``:
nvJPEG on a GPU, libjpeg-turbo on the CPU; a JPEG nvJPEG refuses is decoded on the host, with a
warning that names it), and per image computes PIL's jitter arithmetic on
the full image in the official order (:func:`pil_color_jitter_tensor`: the same pixels as
``PILColorJitter``, contrast level included), flips and crops it, resizes the crop
(:func:`pil_resize_tensor`) and normalises the two views as ``TwoNormDataPreprocessor``.

Pixels against the official pipeline with the same seed: decode (on the CPU), jitter, flip
and crop are exact; the resize is PIL's two separable passes (horizontal, then vertical,
rounded to uint8 between them) in float32 instead of PIL's fixed point, so a few percent of the
values differ, almost all by one level (run c4 in BENCHMARKS.md, "The MIM views on the device":
1.8% on photographs, 3.7% on synthetic JPEGs); on a GPU, nvJPEG's decode may differ from
libjpeg-turbo's by a level too (not measured: no GPU was available).
"""
from __future__ import annotations

import io
import logging
from typing import List, Optional, Sequence

import cv2
import mmcv
import numpy as np
import torch
import torch.nn.functional as F
from mmcv.transforms import BaseTransform, RandomFlip
from mmengine import fileio
from mmengine.logging import print_log
from PIL import Image

from mmpretrain.models.utils.data_preprocessor import TwoNormDataPreprocessor
from mmpretrain.registry import MODELS, TRANSFORMS
from .mim_transforms import LUMA_RGB, PILColorJitter, TwoViewRandomResizedCrop
from .transforms import ImageLoadError

# the metainfo key the draws travel in, and PackInputs' meta keys that carry it
MIM_VIEWS_KEY = 'mim_views'
PACK_META_KEYS = ('sample_idx', 'img_path', 'ori_shape', 'img_shape', MIM_VIEWS_KEY)
_RESIZE_MODES = ('bilinear', 'bicubic')  # PIL filters torch resizes with antialiasing


def _is_device_decodable(fmt: Optional[str], mode: str) -> bool:
    # baseline / progressive JPEG in YCbCr or greyscale; nvJPEG takes no CMYK / YCCK
    return fmt == 'JPEG' and mode in ('RGB', 'L')


@TRANSFORMS.register_module()
class LoadEncodedImage(BaseTransform):
    """Reads an image file without decoding it: ``results['img']`` becomes the file's bytes
    (a 1-D uint8 tensor) and ``img_shape`` / ``ori_shape`` its ``(h, w)`` from the header.

    Images the device decoder cannot take (anything but a YCbCr or greyscale JPEG) are decoded
    here as the official loader would (OpenCV, EXIF orientation ignored, RGB) and travel as a
    ``(3, h, w)`` uint8 tensor.

    Args:
        backend_args (dict, optional): mmengine file backend arguments, as in
            ``LoadImageFromFile``. Defaults to None (local files).
    """

    def __init__(self, backend_args: Optional[dict] = None):
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        path = results['img_path']
        try:
            data = fileio.get(path, backend_args=self.backend_args)
        except Exception as err:
            raise ImageLoadError(f'LoadEncodedImage: cannot read {path}: {err}') from err
        try:
            with Image.open(io.BytesIO(data)) as image:  # reads the header only
                fmt, mode, (w, h) = image.format, image.mode, image.size
        except Exception as err:
            raise ImageLoadError(f'LoadEncodedImage: {path} is not an image file ({err}); '
                                 'remove it from the dataset or replace it') from err
        if _is_device_decodable(fmt, mode):
            results['img'] = torch.from_numpy(np.frombuffer(data, np.uint8).copy())
        else:
            # BGR (mmcv swaps channels only for flag='color', not with the orientation ignored)
            img = mmcv.imfrombytes(data, flag='color_ignore_orientation')
            if img is None:
                raise ImageLoadError(f'LoadEncodedImage: OpenCV cannot decode {path} '
                                     f'({fmt} {mode}); remove it from the dataset or re-encode it')
            h, w = img.shape[:2]
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            results['img'] = torch.from_numpy(img).permute(2, 0, 1).contiguous()
        results['img_shape'] = results['ori_shape'] = (h, w)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(backend_args={self.backend_args})'


@TRANSFORMS.register_module()
class DrawMIMViews(BaseTransform):
    """Draws the random numbers of the official MIM view transforms without touching pixels.

    ``transforms`` are the official pipeline's configs (``PILColorJitter``, ``RandomFlip``,
    ``TwoViewRandomResizedCrop``), in its order; each draws through its own method, so the
    draws and the random state afterwards are those of the official pipeline. The result,
    ``results['mim_views']``, holds the jitter (``order``, ``brightness``, ``contrast``,
    ``saturation``), ``flip``, the crop ``box`` ``(top, left, h, w)`` in the unflipped image
    and ``views``, ``[(size, interpolation), ...]`` for :class:`DeviceMIMDataPreprocessor`.

    Args:
        transforms (list[dict]): One ``TwoViewRandomResizedCrop``, optionally a
            ``PILColorJitter`` (without hue) before it and a horizontal ``RandomFlip`` before or
            after it.
    """

    def __init__(self, transforms: Sequence[dict]):
        self.transforms = [TRANSFORMS.build(t) if isinstance(t, dict) else t
                           for t in transforms]
        self.kinds = kinds = [self._kind(t) for t in self.transforms]
        jitter_after_crop = ('jitter' in kinds and 'crop' in kinds
                             and kinds.index('jitter') > kinds.index('crop'))
        if kinds.count('crop') != 1 or len(set(kinds)) != len(kinds) or jitter_after_crop:
            raise ValueError('DrawMIMViews: transforms must be one TwoViewRandomResizedCrop, '
                             'optionally a PILColorJitter before it (the device jitters the '
                             'full image) and a RandomFlip before or after it; got '
                             f'{[type(t).__name__ for t in self.transforms]}')
        crop = self.transforms[kinds.index('crop')]
        filters = crop.interpolation if isinstance(crop.interpolation, (tuple, list)) \
            else [crop.interpolation]
        if crop.second_size is not None:
            filters = list(filters) + [crop.second_interpolation]
        unsupported = sorted(set(filters) - set(_RESIZE_MODES))
        if unsupported:
            raise ValueError(f'DrawMIMViews: the device resize has no {unsupported} filter '
                             f'(torch resizes with {list(_RESIZE_MODES)}); use the CPU pipeline '
                             '(TwoViewRandomResizedCrop) for it')

    @staticmethod
    def _kind(transform) -> str:
        if isinstance(transform, TwoViewRandomResizedCrop):
            return 'crop'
        if isinstance(transform, PILColorJitter):
            if transform.hue is not None:
                raise ValueError('DrawMIMViews: hue jitter is not computed on the device; set '
                                 'hue=0')
            return 'jitter'
        if isinstance(transform, RandomFlip):
            if transform.direction != 'horizontal':
                raise ValueError('DrawMIMViews: only a horizontal RandomFlip is supported, got '
                                 f'direction={transform.direction!r}')
            return 'flip'
        raise ValueError(f'DrawMIMViews: cannot draw {type(transform).__name__}; expected '
                         'PILColorJitter, RandomFlip or TwoViewRandomResizedCrop')

    def transform(self, results: dict) -> dict:
        h, w = results['img_shape']
        views = dict(order=[], brightness=None, contrast=None, saturation=None, flip=False)
        for kind, transform in zip(self.kinds, self.transforms):
            if kind == 'jitter':
                views.update(transform.draw())
            elif kind == 'flip':
                views['flip'] = transform._choose_direction() is not None
            else:
                # the draw reads only the image's shape: a zero-byte stand-in
                top, left, ch, cw = transform.get_params(np.empty((h, w, 0), np.uint8),
                                                         transform.scale, transform.ratio)
                interpolation = transform.interpolation
                if isinstance(interpolation, (tuple, list)):  # as its transform() draws it
                    interpolation = np.random.choice(interpolation)
                if views['flip']:  # drawn on the flipped image: the same box, mirrored
                    left = w - left - cw
                sizes = [(tuple(transform.size), str(interpolation))]
                if transform.second_size is not None:
                    sizes.append((tuple(transform.second_size), transform.second_interpolation))
                views.update(box=(int(top), int(left), int(ch), int(cw)), views=sizes)
        results[MIM_VIEWS_KEY] = views
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(transforms={self.transforms})'


def _blend(degenerate: torch.Tensor, image: torch.Tensor, factor: float) -> torch.Tensor:
    """:func:`~beitv2_mm.datasets.mim_transforms.pil_blend` on float32 tensors: the same
    float32 operations, one at a time (no fused multiply-add), so the same uint8 result.
    ``factor`` stays a Python number: torch casts it to float32 inside the kernel, where a
    tensor made from it would be a host-to-device copy per call."""
    out = (image - degenerate).mul_(factor).add_(degenerate)
    if not 0.0 <= factor <= 1.0:
        out = out.clamp_(0, 255)
    return out.to(torch.uint8)  # truncates, as the C cast


def _luma(img: torch.Tensor) -> torch.Tensor:
    """PIL's ``convert('L')`` of an RGB ``(3, H, W)`` uint8 tensor, as int32 ``(H, W)``."""
    r, g, b = img.to(torch.int32).unbind(0)
    return (r * LUMA_RGB[0] + g * LUMA_RGB[1] + b * LUMA_RGB[2] + 32768) >> 16


def pil_color_jitter_tensor(img: torch.Tensor, order: Sequence[int],
                            brightness: Optional[float], contrast: Optional[float],
                            saturation: Optional[float]) -> torch.Tensor:
    """:func:`~beitv2_mm.datasets.mim_transforms.pil_color_jitter` on an RGB ``(3, H, W)``
    uint8 tensor on any device: the same pixels (tested bit for bit). Nothing is read back to
    the host (the contrast level stays on the device)."""
    levels = torch.arange(256, dtype=torch.float32, device=img.device)
    for index in order:
        if index == 0 and brightness is not None:
            img = _blend(levels.new_zeros(()), levels, brightness)[img.long()]
        elif index == 1 and contrast is not None:
            # the rounded mean luma, as ImageEnhance.Contrast (int64 sum: exact)
            mean = torch.floor(_luma(img).sum(dtype=torch.int64).double() / img[0].numel()
                               + 0.5).float()
            img = _blend(mean, levels, contrast)[img.long()]
        elif index == 2 and saturation is not None:
            img = _blend(_luma(img).float(), img.float(), saturation)
    return img


def pil_resize_tensor(img: torch.Tensor, size: Sequence[int], interpolation: str) -> torch.Tensor:
    """PIL's antialiased ``resize`` of a ``(3, H, W)`` uint8 tensor to ``size`` ``(h, w)``.

    PIL resamples horizontally, rounds to uint8, then vertically (each pass only where that
    side changes); so does this, with torch's antialiased filters in float32 instead of PIL's
    fixed-point weights. Against PIL a few percent of the values differ, almost all by one
    level (tests/datasets/test_device_views.py; BENCHMARKS.md, run c4).
    """
    if interpolation not in _RESIZE_MODES:
        raise ValueError(f'pil_resize_tensor: interpolation {interpolation!r} not in '
                         f'{list(_RESIZE_MODES)}')
    x = img[None].float()
    (h, w), (in_h, in_w) = size, img.shape[-2:]
    if in_w != w:
        x = F.interpolate(x, size=(in_h, w), mode=interpolation, antialias=True,
                          align_corners=False).round_().clamp_(0, 255)
    if in_h != h:
        x = F.interpolate(x, size=(h, w), mode=interpolation, antialias=True,
                          align_corners=False).round_().clamp_(0, 255)
    return x[0].to(torch.uint8)


HOST = torch.device('cpu')


def decode_jpegs(data: List[torch.Tensor], device: torch.device) -> List[torch.Tensor]:
    """RGB ``(3, H, W)`` uint8 images from JPEG bytes (1-D uint8 CPU tensors), decoded on
    ``device``: ``torchvision.io.decode_jpeg`` (nvJPEG on a CUDA device, batched;
    libjpeg-turbo on the CPU). EXIF orientation is not applied, as in the official loaders."""
    from torchvision.io import ImageReadMode, decode_jpeg
    return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


@MODELS.register_module()
class DeviceMIMDataPreprocessor(TwoNormDataPreprocessor):
    """Makes the MIM views from :class:`LoadEncodedImage` + :class:`DrawMIMViews` batches on
    the preprocessor's device, then normalises them as ``TwoNormDataPreprocessor``.

    Expects ``pseudo_collate`` batches (the encoded images differ in length). The images are
    decoded as RGB, so ``to_rgb`` must be True (what the models expect; the flag is kept for
    config compatibility with ``TwoNormDataPreprocessor``).
    """

    def __init__(self, *args, to_rgb: bool = True, **kwargs):
        if not to_rgb:
            raise ValueError('DeviceMIMDataPreprocessor: the images are decoded as RGB; '
                             'to_rgb=False (BGR model input) is not supported')
        super().__init__(*args, to_rgb=True, **kwargs)
        self._channel_conversion = False  # already RGB

    def _decode(self, inputs: List[torch.Tensor], samples) -> List[torch.Tensor]:
        images = [None if x.ndim == 1 else x.to(self.device, non_blocking=True) for x in inputs]
        encoded = [i for i, x in enumerate(inputs) if x.ndim == 1]
        if encoded:
            try:
                decoded = decode_jpegs([inputs[i] for i in encoded], self.device)
            except RuntimeError:  # one file the device decoder refuses: find it, decode it
                decoded = [self._decode_one(inputs[i], samples[i], i) for i in encoded]
            for i, image in zip(encoded, decoded):
                images[i] = image
        return images

    def _decode_one(self, data: torch.Tensor, sample, index: int) -> torch.Tensor:
        """One image on the device; if the device's decoder refuses it (nvJPEG decodes fewer
        JPEG variants than libjpeg-turbo), on the host, with a warning; else an error with the
        file's path."""
        path = getattr(sample, 'metainfo', {}).get('img_path', f'sample {index} of the batch')
        try:
            return decode_jpegs([data], self.device)[0]
        except RuntimeError as err:
            try:
                image = decode_jpegs([data], HOST)[0]
            except RuntimeError as host_err:
                raise ImageLoadError(
                    f'DeviceMIMDataPreprocessor: cannot decode {path} ({host_err}); re-encode '
                    'the file or remove it from the dataset') from host_err
            print_log(f'DeviceMIMDataPreprocessor: {path} cannot be decoded on {self.device} '
                      f'({err}); decoded on the host instead', logger='current',
                      level=logging.WARNING)
            return image.to(self.device)

    def forward(self, data: dict, training: bool = False) -> dict:
        inputs, samples = data['inputs'], data['data_samples']
        if isinstance(inputs, torch.Tensor):
            raise TypeError('DeviceMIMDataPreprocessor: got a stacked batch; the encoded images '
                            "differ in length, set train_dataloader.collate_fn="
                            "dict(type='pseudo_collate')")
        samples = self.cast_data(samples)
        views: List[List[torch.Tensor]] = []
        for image, sample in zip(self._decode(list(inputs), samples), samples):
            params = sample.metainfo.get(MIM_VIEWS_KEY)
            if params is None:
                raise KeyError(f'DeviceMIMDataPreprocessor: {sample.metainfo.get("img_path")} has '
                               f'no {MIM_VIEWS_KEY!r}: the pipeline needs DrawMIMViews and '
                               f'PackInputs(meta_keys={PACK_META_KEYS})')
            image = pil_color_jitter_tensor(image, params['order'], params['brightness'],
                                            params['contrast'], params['saturation'])
            top, left, h, w = params['box']
            crop = image[:, top:top + h, left:left + w]
            if params['flip']:
                crop = crop.flip(-1)
            made = {}
            for k, view in enumerate(params['views']):
                key = (tuple(view[0]), view[1])
                if key not in made:  # BEiT v2: two equal 224 px bicubic views, resized once
                    made[key] = pil_resize_tensor(crop, *view)
                if len(views) <= k:
                    views.append([])
                views[k].append(made[key])
        batch = [torch.stack(v).float() for v in views]
        if self._enable_normalize:
            batch[0] = (batch[0] - self.mean) / self.std
            if len(batch) > 1:
                batch[1] = (batch[1] - self.second_mean) / self.second_std
        return {'inputs': batch, 'data_samples': samples}
