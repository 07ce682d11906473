"""The MIM views made on the device (configs/beitv2_vitb_mim_device_views.py): same draws and
the same pixels as the official pipeline (decode on the CPU)."""
import copy
import os.path as osp
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, default_collate, pseudo_collate
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from PIL import Image

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from photo_like import photo_like  # noqa: E402

import beitv2_mm  # noqa: F401,E402
from beitv2_mm.datasets import device_views
from beitv2_mm.datasets.device_views import (pil_color_jitter_batch, pil_color_jitter_tensor,
                                             pil_resize_coefficients, pil_resize_tensor,
                                             pil_vertical_first)
from beitv2_mm.datasets.mim_transforms import pil_color_jitter
from beitv2_mm.datasets.transforms import ImageLoadError
from mmpretrain.registry import MODELS, TRANSFORMS

REPO = Path(__file__).resolve().parents[2]
OFFICIAL = REPO / 'configs/beitv2_vitb_mim.py'
DEVICE = REPO / 'configs/beitv2_vitb_mim_device_views.py'
DEMO_V2 = REPO / 'configs/demo/beitv2_vit-tiny_synthetic.py'


def _write_jpegs(folder, count, seed=0):
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        h, w = int(rng.integers(180, 330)), int(rng.integers(180, 330))
        path = folder / f'img_{i}.JPEG'
        Image.fromarray(photo_like(rng, h, w)).save(path, quality=90)
        paths.append(str(path))
    return paths


def test_tensor_jitter_is_pil_color_jitter_bit_for_bit():
    rng = np.random.default_rng(0)
    img = photo_like(rng, 37, 53)
    img[-3:] = rng.integers(0, 256, (3, 53, 3))
    bgr = np.ascontiguousarray(img[..., ::-1])
    chw = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    checked = 0
    for strength in (0.4, 0.9):  # 0.9: factors near 0 and extrapolating ones that clip
        jitter = TRANSFORMS.build(dict(type='PILColorJitter', brightness=strength,
                                       contrast=strength, saturation=strength))
        for seed in range(30):
            np.random.seed(seed)
            order, b, c, s, _ = jitter._rand_params()
            order = [int(i) for i in order if i in (0, 1, 2)]
            expected = pil_color_jitter(bgr, order, b, c, s)[..., ::-1]
            got = pil_color_jitter_tensor(chw, order, b, c, s)
            assert got.dtype == torch.uint8 and got.shape == chw.shape
            np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), expected,
                                          err_msg=f'strength {strength} seed {seed}')
            checked += 1
    assert checked == 60 and not np.array_equal(expected, img)
    # each operation alone, and nothing
    for kwargs in (dict(brightness=1.3), dict(contrast=0.6), dict(saturation=1.4), {}):
        full = {**dict(brightness=None, contrast=None, saturation=None), **kwargs}
        np.testing.assert_array_equal(
            pil_color_jitter_tensor(chw, [0, 1, 2], **full).permute(1, 2, 0).numpy(),
            pil_color_jitter(bgr, [0, 1, 2], **full)[..., ::-1])


def test_batched_jitter_is_each_images_own():
    """Images of different sizes jittered at once: each the same as alone (orders, missing
    factors and an image without jitter mixed in one batch)."""
    rng = np.random.default_rng(5)
    jitter = TRANSFORMS.build(dict(type='PILColorJitter', brightness=0.8, contrast=0.8,
                                   saturation=0.8))
    images, draws = [], []
    for i in range(7):
        images.append(photo_like(rng, int(rng.integers(20, 60)), int(rng.integers(20, 60))))
        np.random.seed(i)
        draws.append(jitter.draw())
    draws[2]['contrast'] = None
    draws[3] = dict(order=[2, 0, 1], brightness=None, contrast=None, saturation=None)
    draws[4].update(order=[1], brightness=None, saturation=None)
    pixels = torch.cat([torch.from_numpy(im).permute(2, 0, 1).reshape(3, -1) for im in images],
                       1)
    out = pil_color_jitter_batch(pixels, [im.shape[0] * im.shape[1] for im in images], draws)
    assert out.dtype == torch.float32 and out.shape == pixels.shape  # levels, for the resize
    assert torch.equal(out, out.round()) and out.min() >= 0 and out.max() <= 255
    out = out.to(torch.uint8)
    start = 0
    for im, draw in zip(images, draws):
        h, w = im.shape[:2]
        got = out[:, start:start + h * w].view(3, h, w).permute(1, 2, 0).numpy()
        start += h * w
        np.testing.assert_array_equal(got, pil_color_jitter(im[..., ::-1], **draw)[..., ::-1])
    assert not torch.equal(out, pixels)


@pytest.mark.parametrize('interpolation', ['bicubic', 'bilinear'])
def test_tensor_resize_is_pils_resize_exactly(interpolation):
    """PIL's integer weights and sums in float64 GEMMs: the same uint8 pixels as PIL's resize,
    shrinking, enlarging, by large factors, one side unchanged, 1-pixel sides, mirrored, and
    in the installed Pillow's pass order (vertical first in some cases from Pillow 12.2 on:
    pil_vertical_first)."""
    rng = np.random.default_rng(1)
    filt = Image.BICUBIC if interpolation == 'bicubic' else Image.BILINEAR
    sizes = [((300, 260), (56, 56)), ((150, 100), (56, 56)), ((40, 200), (56, 56)),
             ((300, 100), (56, 56)), ((56, 90), (56, 56)), ((90, 56), (56, 56)),
             ((1, 7), (5, 3)), ((9, 1), (2, 4)), ((700, 60), (30, 50)), ((23, 610), (17, 11)),
             ((336, 2), (264, 82)), ((700, 3), (50, 40))]  # over 100:1 (Pillow 12.2-12.3)
    sizes += [((int(rng.integers(1, 400)), int(rng.integers(1, 400))),
               (int(rng.integers(1, 120)), int(rng.integers(1, 120)))) for _ in range(40)]
    orders = set()
    for k, ((h, w), size) in enumerate(sizes):
        img = photo_like(rng, h, w) if k % 2 else rng.integers(0, 256, (h, w, 3), np.uint8)
        flip = bool(k % 3 == 1)
        expected = np.asarray(Image.fromarray(np.ascontiguousarray(img[:, ::-1] if flip else img))
                              .resize((size[1], size[0]), filt))
        got = pil_resize_tensor(torch.from_numpy(img).permute(2, 0, 1), size, interpolation,
                                flip=flip)
        assert got.dtype == torch.uint8 and got.shape == (3, *size)
        np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), expected,
                                      err_msg=f'{(h, w)} -> {size}, flip {flip}')
        if h != size[0] and w != size[1]:
            orders.add(pil_vertical_first(h, w, *size))
    assert orders == ({False, True} if device_views._PIL_VERSION >= (12, 2) else {False})
    # PIL's fixed-point weights: each output's weights sum to about 2**22
    first, weights = pil_resize_coefficients(500, 224, interpolation)
    assert first.shape == (224,) and weights.shape[0] == 224
    assert np.all(np.abs(weights.sum(1) - 2**22) <= weights.shape[1])
    with pytest.raises(ValueError, match='lanczos'):
        pil_resize_tensor(torch.zeros(3, 8, 8, dtype=torch.uint8), (4, 4), 'lanczos')


def _pipelines():
    init_default_scope('mmpretrain')
    official, device = Config.fromfile(str(OFFICIAL)), Config.fromfile(str(DEVICE))
    return (Compose(official.train_dataloader.dataset.pipeline),
            Compose(device.train_dataloader.dataset.pipeline),
            MODELS.build(official.model.data_preprocessor),
            MODELS.build(device.model.data_preprocessor))


def _run(pipeline, paths, seed=0):
    out = []
    for i, path in enumerate(paths):
        np.random.seed(seed + i)
        out.append(pipeline(dict(img_path=path, sample_idx=i)))
    return out, np.random.random()  # the random state after the last sample


def test_same_draws_and_pixels_as_the_official_pipeline(tmp_path):
    paths = _write_jpegs(tmp_path, 8)
    p_official, p_device, pre_official, pre_device = _pipelines()
    a, state_a = _run(p_official, paths)
    b, state_b = _run(p_device, paths)
    assert state_a == state_b  # the same number of draws: later transforms draw the same
    assert all(s['inputs'].ndim == 1 for s in b)  # the workers shipped the encoded JPEGs
    official = pre_official(default_collate(a), training=True)
    device = pre_device(pseudo_collate(b), training=True)
    for o, d in zip(official['inputs'], device['inputs']):
        assert d.shape == o.shape == (8, 3, 224, 224) and d.dtype == torch.float32
    for so, sd in zip(official['data_samples'], device['data_samples']):
        assert torch.equal(so.mask, sd.mask)
    draws = [s.metainfo['mim_views'] for s in device['data_samples']]
    assert {d['flip'] for d in draws} == {False, True}  # both branches ran
    # decode, jitter (contrast level included), flip, crop and resize: the official pixels
    for o, d in zip(official['inputs'], device['inputs']):
        torch.testing.assert_close(d, o, atol=1e-5, rtol=0)
    # mmengine's deterministic mode (randomness.deterministic): no op without a deterministic
    # implementation on this device
    torch.use_deterministic_algorithms(True)
    try:
        again = pre_device(pseudo_collate(b), training=True)
    finally:
        torch.use_deterministic_algorithms(False)
    for d, g in zip(device['inputs'], again['inputs']):
        assert torch.equal(d, g)


def test_files_the_device_cannot_decode_travel_as_pixels(tmp_path):
    rng = np.random.default_rng(3)
    rgb = photo_like(rng, 90, 120)
    cmyk, png, grey = tmp_path / 'cmyk.JPEG', tmp_path / 'png.JPEG', tmp_path / 'grey.JPEG'
    Image.fromarray(rgb).convert('CMYK').save(cmyk, quality=95)
    Image.fromarray(rgb).save(png, format='PNG')  # a PNG named .JPEG, as one ImageNet file
    Image.fromarray(rgb).convert('L').save(grey, quality=95)
    load = TRANSFORMS.build(dict(type='LoadEncodedImage'))
    official = TRANSFORMS.build(dict(type='LoadImageFromFile',
                                     color_type='color_ignore_orientation'))
    for path, encoded in ((cmyk, False), (png, False), (grey, True)):
        out = load(dict(img_path=str(path)))
        assert out['img_shape'] == out['ori_shape'] == (90, 120)
        assert (out['img'].ndim == 1) == encoded, path.name
        pixels = out['img']
        if encoded:
            from torchvision.io import ImageReadMode, decode_jpeg
            pixels = decode_jpeg(pixels, mode=ImageReadMode.RGB)
        expected = official(dict(img_path=str(path)))['img'][..., ::-1]  # BGR -> RGB
        np.testing.assert_array_equal(pixels.permute(1, 2, 0).numpy(), expected)


def test_exif_orientation_is_ignored_as_the_official_loader_does(tmp_path):
    """A JPEG tagged "rotate 90 degrees": its header size and the decoded pixels are the stored
    ones, as PIL's ``Image.open().convert('RGB')`` in the official loaders gives them."""
    path = tmp_path / 'tagged.JPEG'
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(photo_like(np.random.default_rng(4), 40, 64)).save(path, quality=95,
                                                                         exif=exif)
    out = TRANSFORMS.build(dict(type='LoadEncodedImage'))(dict(img_path=str(path)))
    assert out['img_shape'] == (40, 64) and out['img'].ndim == 1
    pre = MODELS.build(dict(type='DeviceMIMDataPreprocessor', mean=[0.] * 3, std=[1.] * 3,
                            second_mean=[0.] * 3, second_std=[1.] * 3))
    decoded = pre._decode([out['img']], [None])[0]
    with Image.open(path) as im:
        official = np.asarray(im.convert('RGB'))
    assert decoded.shape == (3, 40, 64)
    assert np.abs(decoded.permute(1, 2, 0).numpy().astype(int) - official).mean() < 1.0


def test_a_jpeg_the_device_decoder_refuses_is_decoded_on_the_host(tmp_path, monkeypatch):
    """nvJPEG takes fewer JPEG variants than libjpeg-turbo: such a file (simulated here) is
    decoded on the host with a warning naming it; the rest of the batch stays on the device."""
    paths = _write_jpegs(tmp_path, 3)
    _, p_device, _, pre_device = _pipelines()
    batch = pseudo_collate([p_device(dict(img_path=p, sample_idx=i))
                            for i, p in enumerate(paths)])
    expected = pre_device(batch, training=True)['inputs']
    refused, calls, warnings = batch['inputs'][1], [], []
    real = device_views.decode_jpegs

    def device_decoder(data, device):
        calls.append((len(data), device is device_views.HOST))
        if device is not device_views.HOST and any(x is refused for x in data):
            raise RuntimeError('nvjpeg: unsupported JPEG')
        return real(data, device)

    monkeypatch.setattr(device_views, 'decode_jpegs', device_decoder)
    monkeypatch.setattr(device_views, 'print_log', lambda msg, **kw: warnings.append(msg))
    got = pre_device(batch, training=True)['inputs']
    for g, e in zip(got, expected):
        assert torch.equal(g, e)
    # the batch, then one by one on the device, and only the refused one on the host
    assert calls == [(3, False), (1, False), (1, False), (1, True), (1, False)]
    assert len(warnings) == 1 and 'img_1.JPEG' in warnings[0] and 'on the host' in warnings[0]


def test_bad_files_and_settings_are_named(tmp_path):
    load = TRANSFORMS.build(dict(type='LoadEncodedImage'))
    with pytest.raises(ImageLoadError, match='missing.JPEG'):
        load(dict(img_path=str(tmp_path / 'missing.JPEG')))
    text = tmp_path / 'text.JPEG'
    text.write_text('not an image')
    with pytest.raises(ImageLoadError, match='text.JPEG is not an image'):
        load(dict(img_path=str(text)))

    # a valid header and a broken scan: found at decode time, named with its path
    good = _write_jpegs(tmp_path, 2)
    data = Path(good[0]).read_bytes()
    broken = tmp_path / 'broken.JPEG'
    broken.write_bytes(data[:data.find(b'\xff\xda') + 20] + b'\0' * 10)
    _, p_device, _, pre_device = _pipelines()
    batch = pseudo_collate([p_device(dict(img_path=p, sample_idx=i))
                            for i, p in enumerate([good[1], str(broken)])])
    with pytest.raises(ImageLoadError, match='broken.JPEG'):
        pre_device(batch, training=True)
    with pytest.raises(TypeError, match='pseudo_collate'):
        pre_device(dict(inputs=torch.zeros(2, 10, dtype=torch.uint8),
                        data_samples=batch['data_samples']), training=True)
    for sample in batch['data_samples']:
        del sample.mim_views  # PackInputs without the key
    with pytest.raises(KeyError, match="meta_keys"):
        pre_device(dict(inputs=batch['inputs'][:1], data_samples=batch['data_samples'][:1]))

    mean = dict(mean=[0.] * 3, std=[1.] * 3, second_mean=[0.] * 3, second_std=[1.] * 3)
    with pytest.raises(ValueError, match='to_rgb'):
        MODELS.build(dict(type='DeviceMIMDataPreprocessor', to_rgb=False, **mean))

    crop = dict(type='TwoViewRandomResizedCrop', size=224, second_size=112,
                interpolation='bicubic', second_interpolation='lanczos')
    flip = dict(type='RandomFlip', prob=0.5, direction='horizontal')
    jitter = dict(type='PILColorJitter', brightness=0.4)
    for transforms, message in (([crop], 'lanczos'),
                                ([{**crop, 'second_interpolation': 'bicubic'}, jitter],
                                 'before it'),
                                ([flip, flip, {**crop, 'second_interpolation': 'bicubic'}],
                                 'one TwoView'),
                                ([flip], 'one TwoView'),
                                ([{**jitter, 'hue': 0.1}, crop], 'hue'),
                                ([{**flip, 'direction': 'vertical'}, crop], 'horizontal'),
                                ([dict(type='RandomGrayscale', prob=0.2), crop], 'cannot draw')):
        with pytest.raises(ValueError, match=message):
            TRANSFORMS.build(dict(type='DrawMIMViews', transforms=transforms))


def test_flip_after_the_crop_is_drawn_in_its_place():
    """A flip listed after the crop mirrors the view, not the box: the box is then drawn on the
    unflipped image; before the crop, it is drawn on the flipped one and mirrored back."""
    crop = dict(type='TwoViewRandomResizedCrop', size=32, scale=(0.2, 0.5))
    flip = dict(type='RandomFlip', prob=1.0, direction='horizontal')
    results = dict(img_shape=(100, 200))
    before = TRANSFORMS.build(dict(type='DrawMIMViews', transforms=[flip, crop]))
    after = TRANSFORMS.build(dict(type='DrawMIMViews', transforms=[crop, flip]))
    shape = np.empty((100, 200, 0))

    def official_draws(flip_first):
        crop_t, flip_t = TRANSFORMS.build(crop), TRANSFORMS.build(flip)
        np.random.seed(0)
        if flip_first:
            assert flip_t._choose_direction() == 'horizontal'
        box = crop_t.get_params(shape, crop_t.scale, crop_t.ratio)
        if not flip_first:
            assert flip_t._choose_direction() == 'horizontal'
        return tuple(box), np.random.random()

    (top, left, h, w), state = official_draws(flip_first=True)
    np.random.seed(0)
    views = before(dict(results))['mim_views']
    assert views['box'] == (top, 200 - left - w, h, w) and views['flip']  # mirrored back
    assert np.random.random() == state
    box, state = official_draws(flip_first=False)
    np.random.seed(0)
    views = after(dict(results))['mim_views']
    assert views['box'] == box and views['flip']
    assert np.random.random() == state
    assert views['views'] == [((32, 32), 'bilinear')]  # no second view


class InputRecorder(Hook):

    def __init__(self):
        self.shapes, self.losses = [], []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.shapes.append([tuple(x.shape) for x in
                            runner.model.data_preprocessor(data_batch, True)['inputs']])
        self.losses.append(float(outputs['loss'].detach()))


def test_runner_trains_on_device_views_with_worker_processes(tiny_data, tmp_path):
    """The demo BEiT v2 MIM with its pipeline made on the device, through real workers."""
    cfg = Config.fromfile(str(DEMO_V2))
    official = cfg.train_pipeline
    cfg.work_dir = str(tmp_path)
    cfg.train_cfg.max_iters = 3
    cfg.default_hooks.checkpoint.interval = 3
    cfg.model.target_generator.checkpoint = None
    cfg.model.data_preprocessor.type = 'DeviceMIMDataPreprocessor'
    cfg.train_dataloader.update(
        num_workers=2, persistent_workers=False, batch_size=4,
        collate_fn=dict(type='pseudo_collate'),
        dataset=dict(data_root=str(tiny_data['imagenet']), pipeline=[
            dict(type='LoadEncodedImage'),
            dict(type='DrawMIMViews', transforms=copy.deepcopy(official[1:3])),
            official[3],
            dict(type='PackInputs', meta_keys=device_views.PACK_META_KEYS)]))
    runner = Runner.from_cfg(cfg)
    recorder = InputRecorder()
    runner.register_hook(recorder, priority='LOWEST')
    runner.train()
    assert recorder.shapes == [[(4, 3, 64, 64), (4, 3, 64, 64)]] * 3
    assert all(np.isfinite(recorder.losses))
    assert (tmp_path / 'iter_3.pth').exists()


def test_the_config_reuses_the_official_transforms():
    official, device = Config.fromfile(str(OFFICIAL)), Config.fromfile(str(DEVICE))
    pipeline = device.train_dataloader.dataset.pipeline
    assert pipeline[1].transforms == [official.color_jitter, official.flip,
                                      official.two_view_crop]
    assert pipeline[2] == official.block_mask
    assert tuple(pipeline[-1].meta_keys) == device_views.PACK_META_KEYS
    pre = {k: v for k, v in device.model.data_preprocessor.items() if k != 'type'}
    assert pre == {k: v for k, v in official.model.data_preprocessor.items() if k != 'type'}
    for key in ('backbone', 'neck', 'head', 'target_generator'):  # the recipe is the same
        assert device.model[key] == official.model[key]
    assert device.optim_wrapper == official.optim_wrapper
