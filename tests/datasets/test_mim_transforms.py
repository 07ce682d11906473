"""PILColorJitter and TwoViewRandomResizedCrop: the official BEiT MIM pipeline steps, fast;
DrawColorJitter + ApplyColorJitter: the same jitter after the crop."""
import os.path as osp
import sys

import numpy as np
import pytest
import torchvision.transforms.functional as TF
from PIL import Image

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from photo_like import photo_like  # noqa: E402

import beitv2_mm  # noqa: F401,E402
from beitv2_mm.datasets.mim_transforms import (estimate_contrast_mean, pil_blend,
                                               pil_color_jitter, pil_contrast_mean, pil_luma)
from mmpretrain.registry import TRANSFORMS


def _crop(**kwargs):
    cfg = dict(type='TwoViewRandomResizedCrop', size=24, second_size=16,
               interpolation='bicubic', second_interpolation='lanczos', scale=(0.2, 1.0))
    cfg.update(kwargs)
    return TRANSFORMS.build(cfg)


def test_views_equal_torchvision_resized_crop_on_pil_images():
    """The official transform: torchvision F.resized_crop on the PIL image, for both views."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    t = _crop()
    for seed in range(5):
        np.random.seed(seed)
        top, left, h, w = t.get_params(img, t.scale, t.ratio)
        np.random.seed(seed)
        student, tokenizer = t.transform({'img': img})['img']
        pil = Image.fromarray(img)
        ref_student = TF.resized_crop(pil, top, left, h, w, [24, 24],
                                      TF.InterpolationMode.BICUBIC)
        ref_tokenizer = TF.resized_crop(pil, top, left, h, w, [16, 16],
                                        TF.InterpolationMode.LANCZOS)
        np.testing.assert_array_equal(student, np.asarray(ref_student))
        np.testing.assert_array_equal(tokenizer, np.asarray(ref_tokenizer))


def test_downscaling_is_antialiased():
    """A 1-pixel checkerboard shrunk 2.4x is flat grey with PIL's filters; OpenCV (mmpretrain's
    RandomResizedCropAndInterpolationWithTwoPic) samples it without a low-pass filter."""
    board = ((np.indices((96, 96)).sum(0) % 2) * 255).astype(np.uint8)
    img = np.repeat(board[..., None], 3, axis=2)
    ours = _crop(size=40, second_size=None, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    stock = TRANSFORMS.build(dict(type='RandomResizedCropAndInterpolationWithTwoPic', size=40,
                                  interpolation='bicubic', scale=(1.0, 1.0), ratio=(1.0, 1.0)))
    ours_out = ours.transform({'img': img})['img'].astype(float)
    stock_out = stock.transform({'img': img})['img'].astype(float)
    assert ours_out.std() < 3 and abs(ours_out.mean() - 127.5) < 3
    assert stock_out.std() > 30


def test_crops_reach_the_bottom_right_edge_and_the_full_image():
    """Official: random.randint(0, H - h) (inclusive) and w <= W; mmpretrain: exclusive, w < W."""
    img = np.zeros((20, 20, 3), np.uint8)
    t = _crop(scale=(0.25, 0.25), ratio=(1.0, 1.0))
    np.random.seed(0)
    corners = {t.get_params(img, t.scale, t.ratio)[:2] for _ in range(2000)}
    assert (10, 10) in corners and (0, 0) in corners
    assert all(0 <= top <= 10 and 0 <= left <= 10 for top, left in corners)
    # a full-image crop is drawn (not the fallback): random corner draws are skipped
    np.random.seed(1)
    assert t.get_params(img, (1.0, 1.0), (1.0, 1.0)) == (0, 0, 20, 20)


def test_single_view_and_fallback_to_central_crop():
    img = np.zeros((10, 40, 3), np.uint8)  # aspect 4 > 4/3: no draw fits at scale 1
    t = _crop(second_size=None)
    np.random.seed(0)
    assert t.get_params(img, (1.0, 1.0), (3 / 4, 4 / 3)) == (0, 13, 10, 13)
    out = t.transform({'img': img})['img']
    assert isinstance(out, np.ndarray) and out.shape == (24, 24, 3)


@pytest.mark.parametrize('interpolation', ['random', 'bilinear'])
def test_random_interpolation_is_supported(interpolation):
    img = np.random.default_rng(0).integers(0, 256, (30, 30, 3), dtype=np.uint8)
    student, tokenizer = _crop(interpolation=interpolation).transform({'img': img})['img']
    assert student.shape == (24, 24, 3) and tokenizer.shape == (16, 16, 3)


def test_same_size_views_are_resized_once_and_independent():
    """BEiT v2 resizes the crop to 224 px bicubic twice: computed once, two arrays."""
    img = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    same = _crop(second_size=24, second_interpolation='bicubic')
    np.random.seed(4)
    student, tokenizer = same.transform({'img': img})['img']
    np.testing.assert_array_equal(student, tokenizer)
    assert student is not tokenizer and student.flags.writeable and tokenizer.flags.writeable
    np.random.seed(4)
    top, left, h, w = same.get_params(img, same.scale, same.ratio)
    ref = TF.resized_crop(Image.fromarray(img), top, left, h, w, [24, 24],
                          TF.InterpolationMode.BICUBIC)
    np.testing.assert_array_equal(student, np.asarray(ref))


def test_pil_blend_is_pils_blend_for_every_pair_of_levels():
    # every (degenerate, image) pair of uint8 levels, for interpolating and extrapolating factors
    deg, img = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8),
                           indexing='ij')
    factors = [0.0, 1.0, 0.6, 1.4, 0.9999999, 1.0000001] + list(
        np.random.default_rng(0).uniform(0.6, 1.4, 40))
    for factor in factors:
        ref = np.asarray(Image.blend(Image.fromarray(deg), Image.fromarray(img), factor))
        ours = pil_blend(deg.astype(np.float32), img.astype(np.float32), factor)
        np.testing.assert_array_equal(ours, ref, err_msg=f'factor {factor}')


def test_pil_luma_is_pils_l_conversion_for_every_colour():
    code = np.arange(1 << 24, dtype=np.uint32)
    rgb = np.stack([code >> 16, (code >> 8) & 255, code & 255], -1).astype(np.uint8)
    rgb = rgb.reshape(4096, 4096, 3)
    ref = np.asarray(Image.fromarray(rgb).convert('L'))
    np.testing.assert_array_equal(pil_luma(rgb[..., ::-1]), ref)


@pytest.mark.parametrize('shape', [(40, 30, 3), (7, 5, 3)])
def test_color_jitter_equals_mmpretrain_pillow_backend_bit_for_bit(shape):
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    img[:3] = 255  # saturated rows: the extrapolating factors clip
    img[-2:] = 0
    cfg = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.)
    ours = TRANSFORMS.build(dict(type='PILColorJitter', **cfg))
    stock = TRANSFORMS.build(dict(type='ColorJitter', backend='pillow', **cfg))
    for seed in range(40):
        np.random.seed(seed)
        a = ours.transform({'img': img.copy()})['img']
        np.random.seed(seed)
        b = stock.transform({'img': img.copy()})['img']
        np.testing.assert_array_equal(a, b, err_msg=f'seed {seed}')
        assert a.dtype == np.uint8 and a.flags.writeable and a.flags.c_contiguous
    assert not np.array_equal(a, img)  # it did jitter
    np.random.seed(0)  # a negative-stride view (as a flip makes) is read as well
    a = ours.transform({'img': img[:, ::-1]})['img']
    np.random.seed(0)
    np.testing.assert_array_equal(a, stock.transform({'img': img[:, ::-1].copy()})['img'])
    # one operation alone, each factor regime (mmpretrain draws factors in [1 - x, 1 + x])
    for key in ('brightness', 'contrast', 'saturation'):
        for strength in (0.4, 0.9):
            one = {key: strength}
            for seed in range(6):
                np.random.seed(seed)
                a = TRANSFORMS.build(dict(type='PILColorJitter', **one)).transform(
                    {'img': img.copy()})['img']
                np.random.seed(seed)
                b = TRANSFORMS.build(dict(type='ColorJitter', backend='pillow', **one)).transform(
                    {'img': img.copy()})['img']
                np.testing.assert_array_equal(a, b, err_msg=f'{key}={strength} seed {seed}')


def test_color_jitter_rejects_images_that_are_not_uint8_bgr():
    jitter = TRANSFORMS.build(dict(type='PILColorJitter', brightness=0.4))
    with pytest.raises(TypeError, match='uint8 BGR'):
        jitter.transform({'img': np.zeros((8, 8, 3), np.float32)})
    with pytest.raises(TypeError, match=r'\(8, 8\)'):
        jitter.transform({'img': np.zeros((8, 8), np.uint8)})


def test_color_jitter_hue_goes_through_the_parent_and_rejects_cv2():
    img = np.random.default_rng(3).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    with_hue = TRANSFORMS.build(dict(type='PILColorJitter', hue=0.1))
    stock = TRANSFORMS.build(dict(type='ColorJitter', hue=0.1, backend='pillow'))
    np.random.seed(0)
    a = with_hue.transform({'img': img.copy()})['img']
    np.random.seed(0)
    np.testing.assert_array_equal(a, stock.transform({'img': img.copy()})['img'])
    with pytest.raises(ValueError, match='backend'):
        TRANSFORMS.build(dict(type='PILColorJitter', brightness=0.4, backend='cv2'))


JITTER = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.)


def test_draw_color_jitter_draws_what_pil_color_jitter_draws():
    """Same factors and order from the same random state, and the same number of draws, so the
    flip, crop and mask after it draw the same numbers as in the official pipeline."""
    img = photo_like(np.random.default_rng(0))
    draw = TRANSFORMS.build(dict(type='DrawColorJitter', **JITTER))
    official = TRANSFORMS.build(dict(type='PILColorJitter', **JITTER))
    for seed in range(10):
        np.random.seed(seed)
        order, b, c, s, _ = official._rand_params()
        after_official = np.random.random()
        np.random.seed(seed)
        results = draw.transform({'img': img})
        assert np.random.random() == after_official
        assert results['img'] is img  # nothing applied yet
        record = results['color_jitter']
        assert record['order'] == [int(i) for i in order if i != 3]
        assert (record['brightness'], record['contrast'], record['saturation']) == (b, c, s)
    with pytest.raises(ValueError, match='hue'):
        TRANSFORMS.build(dict(type='DrawColorJitter', brightness=0.4, hue=0.1))


def test_contrast_level_estimate_is_pils_level_at_that_point():
    """The level PIL computes after the operations before the contrast: the same when only a
    brightness precedes (or nothing), within 1 after a saturation."""
    rng = np.random.default_rng(1)
    for k in range(12):
        img = photo_like(rng)
        b, s = rng.uniform(0.6, 1.4, 2)
        for before in [(), (0,), (2,)]:
            order = list(before) + [1] + [i for i in (0, 2) if i not in before]
            truth = pil_contrast_mean(pil_color_jitter(img, before, b, None, s))
            estimate = estimate_contrast_mean(img, order, b, s)
            if 2 in before:
                assert abs(estimate - truth) <= 1, (k, before)
            else:
                assert estimate == truth, (k, before)
    # a flipped (negative-stride) image, e.g. with the flip moved before the jitter
    order = [0, 1, 2]
    assert estimate_contrast_mean(img[:, ::-1], order, b, s) == estimate_contrast_mean(
        img, order, b, s)
    # no contrast drawn: DrawColorJitter records no level
    np.random.seed(0)
    no_contrast = TRANSFORMS.build(dict(type='DrawColorJitter', brightness=0.4))
    assert no_contrast.transform({'img': img})['color_jitter']['contrast_mean'] is None


def test_jitter_applied_to_the_uncropped_image_is_the_official_jitter():
    """With no crop in between, Draw + Apply compute the official jitter bit for bit whenever
    the estimated contrast level is PIL's (always, here, when no saturation precedes)."""
    rng = np.random.default_rng(2)
    draw = TRANSFORMS.build(dict(type='DrawColorJitter', **JITTER))
    apply = TRANSFORMS.build(dict(type='ApplyColorJitter'))
    official = TRANSFORMS.build(dict(type='PILColorJitter', **JITTER))
    exact = 0
    for seed in range(30):
        img = photo_like(rng)
        np.random.seed(seed)
        drawn = draw.transform({'img': img})
        record = dict(drawn['color_jitter'])
        ours = apply.transform(drawn)['img']
        np.random.seed(seed)
        ref = official.transform({'img': img.copy()})['img']
        order = record['order']
        before = order[:order.index(1)]
        level = pil_contrast_mean(pil_color_jitter(img, before, record['brightness'], None,
                                                   record['saturation']))
        if record['contrast_mean'] == level:
            np.testing.assert_array_equal(ours, ref, err_msg=f'seed {seed}')
            exact += 1
        else:
            assert 2 in before and np.abs(ours.astype(int) - ref).max() <= 2
    assert exact >= 25


def test_apply_color_jitter_jitters_every_view_with_the_same_draw():
    rng = np.random.default_rng(3)
    big, small = photo_like(rng, 24, 24), photo_like(rng, 12, 12)
    record = dict(order=[2, 0, 1], brightness=1.3, contrast=0.7, saturation=1.4,
                  contrast_mean=100)
    apply = TRANSFORMS.build(dict(type='ApplyColorJitter'))
    views = apply.transform({'img': [big, big.copy()], 'color_jitter': dict(record)})
    assert 'color_jitter' not in views
    a, b = views['img']
    np.testing.assert_array_equal(a, pil_color_jitter(big, **record))
    np.testing.assert_array_equal(a, b)
    assert a is not b  # equal views computed once, still two arrays
    a, b = apply.transform({'img': [big, small], 'color_jitter': dict(record)})['img']
    np.testing.assert_array_equal(a, pil_color_jitter(big, **record))
    np.testing.assert_array_equal(b, pil_color_jitter(small, **record))
    one = apply.transform({'img': big[:, ::-1], 'color_jitter': dict(record)})['img']
    np.testing.assert_array_equal(one, pil_color_jitter(big[:, ::-1].copy(), **record))
    with pytest.raises(KeyError, match='DrawColorJitter'):
        apply.transform({'img': big})
    with pytest.raises(TypeError, match='uint8 BGR'):
        apply.transform({'img': big.astype(np.float32), 'color_jitter': dict(record)})
