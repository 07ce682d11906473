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
warning that names it), computes PIL's jitter arithmetic on the full images in the official
order, all images at once (:func:`pil_color_jitter_batch`: the same pixels as
``PILColorJitter``, contrast level included), and per image flips, crops and resizes with PIL's
own integer weights (:func:`pil_resize_batch`: two float64 GEMMs per view), then normalises
the two views as ``TwoNormDataPreprocessor``.

Pixels against the official pipeline with the same seed: equal, when the decode runs on the
CPU (tested; the resize follows the installed Pillow's pass order). On a GPU, nvJPEG's decode
may differ from libjpeg-turbo's by a level (not measured: no GPU was available).
"""
from __future__ import annotations

import functools
import io
import logging
import math
from typing import List, Optional, Sequence, Tuple

import cv2
import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform, RandomFlip
from mmengine import fileio
from mmengine.logging import print_log
import PIL
from PIL import Image

from mmpretrain.models.utils.data_preprocessor import TwoNormDataPreprocessor
from mmpretrain.registry import MODELS, TRANSFORMS
from .mim_transforms import LUMA_RGB, PILColorJitter, TwoViewRandomResizedCrop
from .transforms import ImageLoadError

# the metainfo key the draws travel in, and PackInputs' meta keys that carry it
MIM_VIEWS_KEY = 'mim_views'
PACK_META_KEYS = ('sample_idx', 'img_path', 'ori_shape', 'img_shape', MIM_VIEWS_KEY)


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
        unsupported = sorted(set(filters) - set(PIL_FILTERS))
        if unsupported:
            raise ValueError(f'DrawMIMViews: the device resize has no {unsupported} filter '
                             f'(it has PIL\'s {list(PIL_FILTERS)}); use the CPU pipeline '
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


def _luma(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``convert('L')`` of RGB ``(3, ...)`` levels held in float32: ``(19595 R + 38470 G
    + 7471 B + 2**15) >> 16``, exact (every partial sum is an integer below 2**24; as
    :func:`~beitv2_mm.datasets.mim_transforms.pil_luma`)."""
    r, g, b = x.unbind(0)
    total = (r * LUMA_RGB[0]).add_(g, alpha=LUMA_RGB[1]).add_(b, alpha=LUMA_RGB[2])
    return total.add_(32768).mul_(1 / 65536).floor_()  # in place: one temporary


def host_to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array on ``device`` without waiting for it: to a GPU through pinned memory and an
    asynchronous copy (a copy from pageable memory would wait for the queued GPU work, the
    previous training step's, before the host could go on)."""
    tensor = torch.from_numpy(array)
    if device.type != 'cuda':
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def _jitter_steps(jitters: Sequence[dict]) -> List[List[tuple]]:
    """Per image the jitter operations that run, ``[(op, factor), ...]`` in their order
    (op 0 brightness, 1 contrast, 2 saturation; a None factor does not run)."""
    names = ('brightness', 'contrast', 'saturation')
    return [[(op, j[names[op]]) for op in j['order'] if j[names[op]] is not None]
            for j in jitters]


def pil_color_jitter_batch(pixels: torch.Tensor, counts: Sequence[int],
                           jitters: Sequence[dict]) -> torch.Tensor:
    """:func:`~beitv2_mm.datasets.mim_transforms.pil_color_jitter` of a whole batch at once.

    ``pixels`` are the images' RGB pixels side by side, ``(3, sum(counts))`` uint8 (image ``i``
    has ``counts[i]`` pixels); ``jitters`` their draws (``order``, ``brightness``, ``contrast``,
    ``saturation``; :meth:`PILColorJitter.draw`). Returns the jittered levels in float32.

    Every operation is PIL's blend with a degenerate image, ``d + f (x - d)`` in float32
    truncated to uint8 (clipped: a no-op for ``f`` in [0, 1]): black for brightness, the rounded
    mean luma for contrast, the pixel's luma for saturation. So the ``k``-th operation of every
    image runs as one blend with per-pixel ``d`` and ``f`` (an image without a ``k``-th
    operation blends with ``f = 1``: unchanged): at most three rounds of about ten kernels for
    the batch, where one image at a time launched ~40 per image. The same pixels as PIL (tested
    bit for bit); nothing is read back to the host.
    """
    x = pixels.to(torch.float32, copy=True)  # the rounds work in place: never on the input
    steps = _jitter_steps(jitters)
    rounds = max((len(s) for s in steps), default=0)
    if rounds == 0:
        return x
    n = len(counts)
    # one host table, one copy: per round and image the factor (1: no operation) and whether
    # the image blends with its mean luma (contrast) or each pixel's luma (saturation); then the
    # pixel counts
    table = np.zeros((rounds, 3, n), np.float64)
    table[:, 0] = 1.0
    for i, image_steps in enumerate(steps):
        for k, (op, factor) in enumerate(image_steps):
            table[k, :, i] = (factor, op == 1, op == 2)
    table = host_to_device(np.concatenate([table.ravel(), counts]), pixels.device)
    per_round, counts_t = table[:-n].view(rounds, 3, n).float(), table[-n:]
    image_of_pixel = torch.repeat_interleave(
        torch.arange(n, device=pixels.device), counts_t.long(), output_size=x.shape[1])
    for k in range(rounds):
        kinds = {image_steps[k][0] for image_steps in steps if len(image_steps) > k}
        factor, is_contrast, is_saturation = per_round[k]
        luma = _luma(x) if kinds & {1, 2} else None
        degenerate = 0.0
        if 1 in kinds:
            # ImageEnhance.Contrast's level: the image's mean luma, rounded half up (integer
            # sums in float64: exact in any order)
            sums = torch.zeros(n, dtype=torch.float64, device=x.device)
            sums.index_add_(0, image_of_pixel, luma.double())
            level = torch.floor(sums / counts_t + 0.5).float() * is_contrast
            degenerate = level.index_select(0, image_of_pixel)
        if 2 in kinds:
            degenerate = torch.where(is_saturation.bool().index_select(0, image_of_pixel), luma,
                                     degenerate)
        # one kernel per operation, no fused multiply-add: PIL's float32 roundings; trunc: the
        # C cast to uint8
        x.sub_(degenerate).mul_(factor.index_select(0, image_of_pixel)).add_(degenerate) \
            .clamp_(0, 255).trunc_()
    return x


def pil_color_jitter_tensor(img: torch.Tensor, order: Sequence[int],
                            brightness: Optional[float], contrast: Optional[float],
                            saturation: Optional[float]) -> torch.Tensor:
    """:func:`~beitv2_mm.datasets.mim_transforms.pil_color_jitter` on one RGB ``(3, H, W)``
    uint8 tensor on any device (:func:`pil_color_jitter_batch` of one image)."""
    draw = dict(order=order, brightness=brightness, contrast=contrast, saturation=saturation)
    out = pil_color_jitter_batch(img.reshape(3, -1), [img[0].numel()], [draw])
    return out.to(torch.uint8).view_as(img)


# PIL's resampling filters (libImaging/Resample.c) with their support, for the 8-bit resize:
# the same double arithmetic, operation for operation
def _bilinear(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def _bicubic(x: np.ndarray) -> np.ndarray:  # Keys' cubic, a = -0.5
    x = np.abs(x)
    near = ((1.5 * x - 2.5) * x) * x + 1.0
    far = ((((x - 5.0) * x) + 8.0) * x - 4.0) * -0.5
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


PIL_FILTERS = {'bilinear': (_bilinear, 1.0), 'bicubic': (_bicubic, 2.0)}
_PRECISION_BITS = 22  # PIL's fixed point for 8-bit images: 32 - 8 - 2


def pil_resize_coefficients(in_size: int, out_size: int,
                            interpolation: str) -> Tuple[np.ndarray, np.ndarray]:
    """PIL's resampling weights along one side, as its 8-bit resize uses them: ``first``
    ``(out_size,)``, the first input index of each output, and ``weights`` ``(out_size, K)``,
    integers in 2**22 fixed point (zero past each output's support).

    libImaging/Resample.c ``precompute_coeffs`` + ``normalize_coeffs_8bpc``, the same double
    operations in the same order (the weights' sum sequentially, as its loop), so the same
    integers.
    """
    if interpolation not in PIL_FILTERS:
        raise ValueError(f'pil_resize_coefficients: interpolation {interpolation!r} not in '
                         f'{list(PIL_FILTERS)}')
    filt, support = PIL_FILTERS[interpolation]
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = support * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    center = (np.arange(out_size) + 0.5) * scale
    first = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    count = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size) - first
    taps = np.arange(ksize)
    weights = filt(((taps + first[:, None]) - center[:, None] + 0.5) * (1.0 / filterscale))
    weights[taps >= count[:, None]] = 0.0
    total = np.zeros(out_size)
    for tap in range(ksize):
        total += weights[:, tap]
    weights = np.divide(weights, total[:, None], out=weights, where=total[:, None] != 0.0)
    one = float(1 << _PRECISION_BITS)
    weights = np.trunc(np.where(weights < 0, -0.5 + weights * one, 0.5 + weights * one))
    return first, weights


def _round_to_levels(sums: torch.Tensor) -> torch.Tensor:
    """PIL's ``clip8`` of the 2**22 fixed-point sums, here already divided by 2**22:
    ``(sum + 2**21) >> 22`` clipped to [0, 255]. Exact in float64: the sums are integers below
    2**31 times a power of two."""
    return sums.add_(0.5).floor_().clamp_(0, 255)


def pil_resize_batch(crops: Sequence[torch.Tensor],
                     jobs: Sequence[Tuple[Sequence[int], str, bool]]) -> List[torch.Tensor]:
    """PIL's antialiased ``resize`` of each ``(3, H, W)`` crop of uint8 levels (as uint8 or
    float) to ``size`` ``(h, w)``, mirrored first if ``flip``; ``jobs`` are ``(size,
    interpolation, flip)``. Returns float64 ``(3, h, w)`` tensors of uint8 levels, on the crops'
    device.

    Exactly PIL's pixels: PIL resamples one side, rounds to uint8, then the other (each pass only
    where that side changes; the order: :func:`pil_vertical_first`), with integer weights in
    2**22 fixed point and integer sums. Here each pass is a float64 matrix product with those
    weights (:func:`pil_resize_coefficients`): every product and partial sum is an integer below
    2**31 (times 2**-22), so exact in any summation order (tested equal to PIL). The matrices
    are dense (most weights zero; float32 would not hold the sums exactly): far more arithmetic
    than PIL's loops, but per view two GEMMs and six elementwise kernels plus the crop's cast;
    the batch's matrices are made by two kernels from one host-to-device copy.
    """
    plans = []
    for crop, (size, interpolation, flip) in zip(crops, jobs):
        (out_h, out_w), (in_h, in_w) = size, crop.shape[-2:]
        if in_w != out_w:
            plans.append((in_w, out_w, interpolation, flip))
        if in_h != out_h:
            plans.append((in_h, out_h, interpolation, False))
    matrices = iter(_resize_matrices(plans, crops[0].device if crops else HOST))
    views = []
    for crop, (size, interpolation, flip) in zip(crops, jobs):
        (out_h, out_w), (in_h, in_w) = size, crop.shape[-2:]
        x = crop.to(torch.float64)
        horizontal = next(matrices) if in_w != out_w else None
        vertical = next(matrices) if in_h != out_h else None
        if vertical is not None and pil_vertical_first(in_h, in_w, out_h, out_w):
            x = _round_to_levels(vertical @ x)
            vertical = None
        if horizontal is not None:
            x = _round_to_levels(x @ horizontal.T)
        elif flip:
            x = x.flip(-1)
        if vertical is not None:
            x = _round_to_levels(vertical @ x)
        views.append(x)
    return views


_PIL_VERSION = tuple(int(part) for part in PIL.__version__.split('.')[:2])


def pil_vertical_first(in_h: int, in_w: int, out_h: int, out_w: int) -> bool:
    """Whether the installed Pillow resamples vertically first (read in Pillow's sources; the
    rounding to uint8 between the passes makes the order visible in the pixels):

    * Pillow 13: when the height shrinks by more than twice as many pixels as the width
      (libImaging/Resample.c ``ImagingResampleInner``);
    * Pillow 12.2-12.3: when the image is over 100 times taller than wide and the height
      shrinks (``Image.resize``, two calls);
    * before: never, as in the official BEiT v2 runs. setup.cfg pins Pillow below 13, where
      the views of the MIM crops (aspect 3/4-4/3) never go vertically first.
    """
    if _PIL_VERSION >= (13, 0):
        return 0 < in_h - out_h and (in_w - out_w) * 2 < in_h - out_h
    if _PIL_VERSION >= (12, 2):
        return in_h > in_w * 100 and out_h < in_h
    return False


@functools.lru_cache(maxsize=8192)
def _matrix_entries(in_size: int, out_size: int, interpolation: str,
                    flip: bool) -> Tuple[np.ndarray, np.ndarray]:
    """The nonzero entries of the ``(out_size, in_size)`` resampling matrix (flip mirrors the
    input side): flat positions and PIL's weights divided by 2**22 (exact: a power of two).
    Cached: crops repeat their sizes, and the host builds every batch's entries between steps."""
    first, weights = pil_resize_coefficients(in_size, out_size, interpolation)
    rows, taps = np.nonzero(weights)
    columns = first[rows] + taps
    if flip:
        columns = in_size - 1 - columns
    positions, values = rows * in_size + columns, weights[rows, taps] / (1 << _PRECISION_BITS)
    positions.setflags(write=False)
    values.setflags(write=False)
    return positions, values


def _resize_matrices(plans, device: torch.device) -> List[torch.Tensor]:
    """The dense resampling matrices ``(out, in)`` of ``plans`` (``(in, out, interpolation,
    flip)``) on ``device``: views of one buffer, filled by one scatter of their nonzero entries
    (distinct positions: deterministic), which reach the device in one copy."""
    if not plans:
        return []
    index, values, shapes, size = [], [], [], 0
    for in_size, out_size, interpolation, flip in plans:
        positions, weights = _matrix_entries(in_size, out_size, interpolation, flip)
        index.append(positions + size)
        values.append(weights)
        shapes.append((size, out_size, in_size))
        size += out_size * in_size
    buffer = torch.zeros(size, dtype=torch.float64, device=device)
    buffer.scatter_(0, host_to_device(np.concatenate(index), device),
                    host_to_device(np.concatenate(values), device))
    return [buffer[start:start + rows * cols].view(rows, cols) for start, rows, cols in shapes]


def pil_resize_tensor(img: torch.Tensor, size: Sequence[int], interpolation: str,
                      flip: bool = False) -> torch.Tensor:
    """PIL's antialiased ``resize`` of one ``(3, H, W)`` uint8 tensor to ``size`` ``(h, w)``
    (mirrored first if ``flip``): :func:`pil_resize_batch` of one image, as uint8."""
    if interpolation not in PIL_FILTERS:
        raise ValueError(f'pil_resize_tensor: interpolation {interpolation!r} not in '
                         f'{list(PIL_FILTERS)}')
    return pil_resize_batch([img], [(size, interpolation, flip)])[0].to(torch.uint8)


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
        draws = []
        for sample in samples:
            draw = sample.metainfo.get(MIM_VIEWS_KEY)
            if draw is None:
                raise KeyError(f'DeviceMIMDataPreprocessor: {sample.metainfo.get("img_path")} has '
                               f'no {MIM_VIEWS_KEY!r}: the pipeline needs DrawMIMViews and '
                               f'PackInputs(meta_keys={PACK_META_KEYS})')
            draws.append(draw)
        images = self._decode(list(inputs), samples)
        # the batch's pixels side by side: the jitter runs on all images at once
        counts = [image[0].numel() for image in images]
        pixels = pil_color_jitter_batch(torch.cat([image.reshape(3, -1) for image in images], 1),
                                        counts, draws)
        crops, jobs, picks, start = [], [], [], 0
        for image, count, draw in zip(images, counts, draws):
            top, left, h, w = draw['box']
            crop = pixels[:, start:start + count].view(image.shape)[:, top:top + h,
                                                                    left:left + w]
            start += count
            # BEiT v2's two views are the same 224 px bicubic resize: made once
            sizes = [(tuple(size), interpolation) for size, interpolation in draw['views']]
            distinct = list(dict.fromkeys(sizes))
            picks.append([len(jobs) + distinct.index(key) for key in sizes])
            crops += [crop] * len(distinct)
            jobs += [(size, interpolation, draw['flip']) for size, interpolation in distinct]
        made = pil_resize_batch(crops, jobs)
        views = [[made[pick[k]] for pick in picks] for k in range(len(picks[0]))]
        batch = [torch.stack(v).float() for v in views]
        if self._enable_normalize:
            batch[0] = (batch[0] - self.mean) / self.std
            if len(batch) > 1:
                batch[1] = (batch[1] - self.second_mean) / self.second_std
        return {'inputs': batch, 'data_samples': samples}
