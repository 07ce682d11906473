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
:class:`DrawColorJitter` + :class:`ApplyColorJitter` compute the same arithmetic with the same
draws on the resized views instead of the full image (cheaper, slightly different pixels; for
hosts whose CPUs cannot feed the GPUs, ``configs/beitv2_vitb_mim_jitter_after_crop.py``);
:mod:`beitv2_mm.datasets.device_views` computes the same jitter on the training device instead.

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
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
from mmcv.image.geometric import pillow_interp_codes
from mmcv.transforms import BaseTransform
from PIL import Image

from mmpretrain.datasets.transforms import (ColorJitter,
                                            RandomResizedCropAndInterpolationWithTwoPic)
from mmpretrain.registry import TRANSFORMS

# PIL's RGB -> "L" conversion (libImaging/Convert.c: ITU-R 601-2 luma in 16-bit fixed point)
LUMA_RGB = (19595, 38470, 7471)
_LUMA_BGR = np.array([LUMA_RGB[::-1]], np.float32)  # as weights of the B, G, R channels
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

    def draw(self) -> dict:
        """One draw of the random numbers, as :meth:`transform` draws them (hue aside): the
        arguments of :func:`pil_color_jitter`, ``order`` (0 brightness, 1 contrast,
        2 saturation, in the order they run) and the factors (None: not jittered)."""
        order, *factors, _ = self._rand_params()
        return dict(order=[int(i) for i in order if i in (0, 1, 2)],
                    **{key: None if f is None else float(f)
                       for key, f in zip(('brightness', 'contrast', 'saturation'), factors)})

    def transform(self, results: dict) -> dict:
        if self.hue is not None:
            return super().transform(results)
        img = _check_bgr(results['img'], type(self).__name__)
        results['img'] = pil_color_jitter(img, **self.draw())
        return results


def _check_bgr(img, who: str) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 \
            or img.shape[2] != 3:
        raise TypeError(f'{who}: needs a uint8 BGR image (H, W, 3), got '
                        f'{getattr(img, "dtype", type(img))} {getattr(img, "shape", "")}')
    return img


def _level_table(degenerate: float, factor: float, img: np.ndarray) -> np.ndarray:
    """Blend of every pixel with a constant level, through the 256-entry table."""
    return cv2.LUT(img, pil_blend(np.float32(degenerate), _LEVELS, factor))


def pil_contrast_mean(img: np.ndarray) -> int:
    """``ImageEnhance.Contrast``'s level: the mean of the "L" image, rounded half up."""
    return int(float(pil_luma(img).sum(dtype=np.float64)) / img[..., 0].size + 0.5)


def pil_color_jitter(img: np.ndarray, order, brightness: Optional[float],
                     contrast: Optional[float], saturation: Optional[float],
                     contrast_mean: Optional[int] = None) -> np.ndarray:
    """torchvision's PIL ``ColorJitter`` (hue aside) on a uint8 BGR image, in ``order``.

    ``order`` holds mmpretrain's operation indices (0 brightness, 1 contrast, 2 saturation;
    others are skipped); a None factor skips its operation. ``contrast_mean`` replaces the
    contrast level PIL would compute from ``img`` (see :class:`DrawColorJitter`).
    """
    img = np.ascontiguousarray(img)  # OpenCV reads no negative strides (a flipped view)
    for index in order:
        if index == 0 and brightness is not None:
            img = _level_table(0, brightness, img)
        elif index == 1 and contrast is not None:
            mean = pil_contrast_mean(img) if contrast_mean is None else contrast_mean
            img = _level_table(mean, contrast, img)
        elif index == 2 and saturation is not None:
            pixels = img.astype(np.float32)
            # the luma repeated per channel: numpy's broadcast over a size-3 axis is ~20x slower
            luma = cv2.cvtColor(pil_luma(pixels), cv2.COLOR_GRAY2BGR)
            img = pil_blend(luma, pixels, saturation)
    return img


def estimate_contrast_mean(img: np.ndarray, order, brightness: Optional[float],
                           saturation: Optional[float]) -> int:
    """The level PIL's contrast would blend with inside :func:`pil_color_jitter`, from ``img``
    before the jitter, without computing the operations that precede the contrast.

    That level is the rounded mean luma of the image *at that point*. The mean luma is
    ``sum_c w_c mean_c`` (PIL's per-pixel rounding averages out) and a brightness that
    precedes acts on each channel through its 256-entry table, so from the channel means of
    the image (through that table, from the channel histograms) the level is exact unless the
    rounding sits at .5. A preceding saturation keeps the luma except for its truncation to
    uint8 (about -0.5) and its clipping, which is not modelled. Run c2 (BENCHMARKS.md,
    ``benchmarks/cpu-2026-11-23/c2_jitter_after_crop.py``), 1000 draws: the level was PIL's in
    92.7 % of the draws on photographs and 88.5 % on synthetic colour blocks (100 % when nothing
    precedes the contrast), otherwise mostly off by 1 (up to 6 after saturation then brightness).
    """
    order = [int(i) for i in order if i in (0, 1, 2)]
    before = order[:order.index(1)] if 1 in order else order
    brightness_before = 0 in before and brightness is not None
    if brightness_before:  # channel histograms (3 x cv2.calcHist) beat a table pass + mean
        table = pil_blend(np.float32(0), _LEVELS, brightness).astype(np.float64)
        means = [cv2.calcHist([img], [c], None, [256], [0, 256])[:, 0] @ table / img[..., 0].size
                 for c in range(3)]
    else:
        means = cv2.mean(img)[:3]
    mean = float(np.dot(_LUMA_BGR[0].astype(np.float64) / 65536, means))
    if 2 in before and saturation is not None:
        # saturation's truncation, scaled by a brightness that follows it
        mean -= 0.5 * (brightness if brightness_before and before.index(0) > before.index(2)
                       else 1.0)
    return int(mean + 0.5)


@TRANSFORMS.register_module()
class DrawColorJitter(PILColorJitter):
    """The colour jitter of the official recipe, drawn here and applied after the crop by
    :class:`ApplyColorJitter`: a cheaper data pipeline, slightly different pixels.

    The official pipeline jitters the full decoded image (~470 x 400 px for ImageNet), then
    flips and crops; the jitter is the largest single cost of the MIM pipeline on the CPU
    (BENCHMARKS.md, "Colour jitter after the crop"). Its three operations act on each pixel
    alone, so they commute with the flip and the crop exactly; they do not commute exactly with
    the resize of the crop (PIL rounds to uint8 between the operations and clips at 0 / 255)
    and the contrast blends with the mean luma of the *whole* image. Here this transform draws
    the factors and the order exactly as :class:`PILColorJitter` (same random draws, so the
    flip and crop that follow draw the same numbers too), estimates the contrast level from the
    full image (:func:`estimate_contrast_mean`) and leaves them in ``results['color_jitter']``;
    :class:`ApplyColorJitter` computes PIL's arithmetic with them on the resized views.
    Deviation from the official pixels, measured on photographs and on synthetic JPEGs:
    BENCHMARKS.md, "Colour jitter after the crop".

    Args: as :class:`PILColorJitter`; hue must be 0 or None (BEiT's recipes use none).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.hue is not None:
            raise ValueError('DrawColorJitter: hue jitter is not supported after the crop; '
                             'set hue=0 or use PILColorJitter before the crop')

    def transform(self, results: dict) -> dict:
        img = _check_bgr(results['img'], type(self).__name__)
        params = self.draw()
        params['contrast_mean'] = (
            estimate_contrast_mean(img, params['order'], params['brightness'],
                                   params['saturation'])
            if params['contrast'] is not None else None)
        results['color_jitter'] = params
        return results


@TRANSFORMS.register_module()
class ApplyColorJitter(BaseTransform):
    """Applies the jitter :class:`DrawColorJitter` drew to ``results['img']`` (one image or
    the list of views of :class:`TwoViewRandomResizedCrop`; equal views are jittered once)."""

    def transform(self, results: dict) -> dict:
        if 'color_jitter' not in results:
            raise KeyError('ApplyColorJitter: no "color_jitter" in the results; put '
                           'DrawColorJitter before it in the pipeline')
        params = results.pop('color_jitter')
        views = results['img']
        single = not isinstance(views, (list, tuple))
        views = [views] if single else list(views)
        out = []
        for i, view in enumerate(views):
            _check_bgr(view, type(self).__name__)
            same = next((j for j in range(i) if views[j].shape == view.shape
                         and np.array_equal(views[j], view)), None)
            out.append(out[same].copy() if same is not None else pil_color_jitter(view, **params))
        results['img'] = out[0] if single else out
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}()'


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
