"""The MIM train pipeline's photometric and crop steps, as the official BEiT code computes them.

The official pipeline (unilm ``beit2/datasets.py``, ``DataAugmentationForBEiT``) runs
torchvision's ``ColorJitter(0.4, 0.4, 0.4)``, a horizontal flip and
``RandomResizedCropAndInterpolationWithTwoPic`` (``beit2/transforms.py``) on PIL images.

**Colour jitter.** mmpretrain's ``ColorJitter(backend='pillow')`` computes the same PIL
``ImageEnhance`` operations in the same random order, but converts the image from numpy (BGR) to
PIL (RGB) and back around each of them. :class:`PILColorJitter` computes PIL's arithmetic itself
on the BGR array (brightness and contrast as 256-entry lookup tables, saturation in float32 as
PIL does): the same pixels (tested bit for bit against PIL over every input value), 1.3x faster
than PIL's own ``ImageEnhance`` calls on ImageNet-sized images (BENCHMARKS.md, run c1).

**Two-view crop.** One random crop of the image is resized twice: to the student's input and to
the tokenizer's. mmpretrain 1.2.0's ``RandomResizedCropAndInterpolationWithTwoPic`` differs from
the official transform (which BEiT v1 and PeCo share) in three ways:

1. It resizes with OpenCV (``mmcv.imresize``'s default backend), which does not low-pass filter
   when it shrinks; the official code resizes PIL images (``torchvision`` ``F.resized_crop``),
   whose bicubic / lanczos filters widen with the scale factor (antialiasing). Crops of 20-100 %
   of a ~500 px ImageNet image shrink by up to ~2x to 224 px, so the two differ visibly: the
   student and, more important, the tokenizer see other pixels than the official tokenizer was
   trained on.
2. It draws the crop corner with ``np.random.randint(0, img_h - h)`` (upper bound excluded):
   a crop never touches the bottom or right edge; official: ``random.randint`` (inclusive).
3. It accepts a crop only if ``w < img_w and h < img_h``, so a full-width or full-height crop
   is never drawn; official: ``<=``.

:class:`TwoViewRandomResizedCrop` keeps mmpretrain's interface and keys (``img`` becomes the
list ``[student_view, tokenizer_view]``) and fixes all three. It converts the crop to PIL once,
and when both views have the same size and filter (BEiT v2: 224 px bicubic twice) it resizes
once and copies. Sizes are ``(h, w)`` as in the official code and torchvision (mmpretrain passes
them to ``mmcv.imresize`` as ``(w, h)``; equal for the square sizes every recipe uses).
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import cv2
import numpy as np
from mmcv.image.geometric import pillow_interp_codes
from PIL import Image

from mmpretrain.datasets.transforms import (ColorJitter,
                                            RandomResizedCropAndInterpolationWithTwoPic)
from mmpretrain.registry import TRANSFORMS

# PIL's RGB -> "L" conversion (libImaging/Convert.c: ITU-R 601-2 luma in 16-bit fixed point),
# as weights of the B, G, R channels
_LUMA_BGR = np.array([[7471, 38470, 19595]], np.float32)
_LEVELS = np.arange(256, dtype=np.float32)


def pil_luma(img: np.ndarray) -> np.ndarray:
    """PIL's ``convert('L')`` of a BGR image, as integral float32 values (H, W).

    ``(19595 R + 38470 G + 7471 B + 2**15) >> 16``, computed in float32: every partial sum is an
    integer below 2**24, so it is exact (tested on all 2**24 colours).
    """
    total = cv2.transform(img.astype(np.float32, copy=False), _LUMA_BGR)
    return np.floor((total + 32768) * np.float32(1 / 65536))


def pil_blend(degenerate: np.ndarray, image: np.ndarray, factor: float) -> np.ndarray:
    """PIL's ``Image.blend(degenerate, image, factor)`` of uint8 images, on float32 values.

    libImaging/Blend.c: ``degenerate + factor * (image - degenerate)`` in float32 (``factor`` is
    a C float), clipped to [0, 255] when ``factor`` extrapolates, truncated by the uint8 cast.
    Returns the uint8 result.
    """
    out = np.subtract(image, degenerate, dtype=np.float32)
    out *= np.float32(factor)
    out += degenerate
    if not 0.0 <= factor <= 1.0:
        np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


@TRANSFORMS.register_module()
class PILColorJitter(ColorJitter):
    """mmpretrain's ``ColorJitter(backend='pillow')``, computed without PIL images.

    Same arguments, random draws, order and output (bit for bit) as the parent, whose every
    operation converts BGR numpy -> RGB PIL -> numpy and builds a full-size "degenerate" image
    to blend with. Here, on the BGR array: brightness is a blend with black and contrast a blend
    with the constant mean luma, so both are lookup tables of the 256 levels; saturation blends
    with the per-pixel luma (:func:`pil_luma`, :func:`pil_blend`). Hue, which BEiT's recipes do
    not use, goes through the parent unchanged.
    """

    def __init__(self, *args, backend: str = 'pillow', **kwargs):
        if backend != 'pillow':
            raise ValueError(f'PILColorJitter: backend must be "pillow", got {backend!r}; use '
                             'mmpretrain\'s ColorJitter for the cv2 backend')
        super().__init__(*args, backend=backend, **kwargs)

    @staticmethod
    def _level_table(degenerate: int, factor: float, img: np.ndarray) -> np.ndarray:
        """Blend of every pixel with a constant level, through the 256-entry table."""
        return cv2.LUT(img, pil_blend(np.float32(degenerate), _LEVELS, factor))

    def transform(self, results: dict) -> dict:
        if self.hue is not None:
            return super().transform(results)
        img = results['img']
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise TypeError(f'PILColorJitter: needs a uint8 BGR image (H, W, 3), got '
                            f'{img.dtype} {img.shape}')
        img = np.ascontiguousarray(img)  # OpenCV reads no negative strides (a flipped view)
        order, brightness, contrast, saturation, _ = self._rand_params()
        for index in order:  # mmpretrain's indices: 0 brightness, 1 contrast, 2 saturation
            if index == 0 and brightness is not None:
                img = self._level_table(0, brightness, img)
            elif index == 1 and contrast is not None:
                # ImageEnhance.Contrast: the mean of the "L" image, rounded half up
                mean = int(float(pil_luma(img).sum(dtype=np.float64)) / img[..., 0].size + 0.5)
                img = self._level_table(mean, contrast, img)
            elif index == 2 and saturation is not None:
                pixels = img.astype(np.float32)
                # the luma repeated per channel: numpy's broadcast over a size-3 axis is ~20x slower
                luma = cv2.cvtColor(pil_luma(pixels), cv2.COLOR_GRAY2BGR)
                img = pil_blend(luma, pixels, saturation)
        results['img'] = img
        return results


@TRANSFORMS.register_module()
class TwoViewRandomResizedCrop(RandomResizedCropAndInterpolationWithTwoPic):
    """Random resized crop resized to two sizes with PIL, as unilm ``beit2/transforms.py``.

    Args:
        size (int | tuple[int, int]): Student view size ``(h, w)``.
        second_size (int | tuple[int, int], optional): Tokenizer view size; None: one view.
        scale (tuple[float, float]): Crop area range, as a fraction of the image.
            Defaults to (0.08, 1.0).
        ratio (tuple[float, float]): Crop aspect-ratio range. Defaults to (3/4, 4/3).
        interpolation (str): Student view filter (``'bilinear'``, ``'bicubic'``,
            ``'lanczos'``, ... or ``'random'``: bilinear or bicubic). Defaults to
            ``'bilinear'``.
        second_interpolation (str): Tokenizer view filter. Defaults to ``'lanczos'``.
    """

    @staticmethod
    def get_params(img: np.ndarray, scale: tuple, ratio: tuple) -> Sequence[int]:
        """``(top, left, h, w)`` of a random crop, drawn as the official code draws it."""
        img_h, img_w = img.shape[:2]
        area = img_h * img_w
        log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        for _ in range(10):
            target_area = np.random.uniform(*scale) * area
            aspect_ratio = math.exp(np.random.uniform(*log_ratio))
            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))
            if w <= img_w and h <= img_h:
                # inclusive upper bounds, as Python's random.randint in the official code
                return (np.random.randint(0, img_h - h + 1), np.random.randint(0, img_w - w + 1),
                        h, w)
        # fallback: central crop at the nearest allowed aspect ratio
        in_ratio = img_w / img_h
        if in_ratio < min(ratio):
            w, h = img_w, int(round(img_w / min(ratio)))
        elif in_ratio > max(ratio):
            w, h = int(round(img_h * max(ratio))), img_h
        else:
            w, h = img_w, img_h
        return (img_h - h) // 2, (img_w - w) // 2, h, w

    @staticmethod
    def _resize(crop: Image.Image, size: Tuple[int, int], interpolation: str) -> np.ndarray:
        # PIL's filters (what torchvision's resized_crop runs on PIL images); (h, w) -> (w, h)
        return np.array(crop.resize((size[1], size[0]), pillow_interp_codes[interpolation]))

    def transform(self, results: dict) -> dict:
        img = results['img']
        if img.dtype != np.uint8:
            raise TypeError(f'TwoViewRandomResizedCrop: needs a uint8 image, got {img.dtype}')
        top, left, h, w = self.get_params(img, self.scale, self.ratio)
        interpolation = self.interpolation
        if isinstance(interpolation, (tuple, list)):
            interpolation = np.random.choice(interpolation)
        crop = Image.fromarray(np.ascontiguousarray(img[top:top + h, left:left + w]))
        student = self._resize(crop, self.size, interpolation)
        if self.second_size is None:
            results['img'] = student
        elif (tuple(self.second_size), self.second_interpolation) == (tuple(self.size),
                                                                      interpolation):
            results['img'] = [student, student.copy()]  # the same resize: computed once
        else:
            results['img'] = [student,
                              self._resize(crop, self.second_size, self.second_interpolation)]
        return results
