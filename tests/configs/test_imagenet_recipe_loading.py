"""The ImageNet recipes load images as the official PIL loaders do and drop the last short batch.

The official loaders (unilm beit2 / beit, MAE: ``Image.open(path).convert('RGB')``) ignore a
JPEG's EXIF orientation tag; OpenCV's default decode applies it. Every official training loader
uses ``drop_last=True``.
"""
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPES = [
    'configs/vqkd/vqkd_vitb_clip-b16_in1k.py',
    'configs/vqkd/vqkd_vitb_dino-b16_in1k.py',
    'configs/beitv2_vitb_mim.py',
    'configs/beitv2_vitb_mim_1600e.py',
    'configs/beitv2_vitb_mim_jitter_after_crop.py',
    'configs/beitv2_vitl_mim.py',
    'configs/beitv1_vitb_mim.py',
    'configs/peco/peco_vqvae_in1k.py',
    'configs/peco/peco_vitb_mim.py',
    'configs/finetune_in1k.py',
    'configs/finetune_in1k_vitl.py',
    'configs/linear_probe_in1k.py',
]


@pytest.fixture(scope='module')
def rotated_jpeg(tmp_path_factory):
    """A 40x64 (h x w) JPEG whose EXIF says "rotate 90 degrees" (orientation 6)."""
    path = tmp_path_factory.mktemp('exif') / 'tagged.JPEG'
    pixels = np.random.default_rng(0).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(path, quality=95, exif=exif)
    with Image.open(path) as im:
        assert im.getexif()[0x0112] == 6
        official = np.asarray(im.convert('RGB'))
    return path, official


@pytest.mark.parametrize('rel', RECIPES)
def test_recipe_loads_like_the_official_pil_loader(rel, rotated_jpeg):
    import beitv2_mm  # noqa: F401
    from mmpretrain.registry import TRANSFORMS
    path, official = rotated_jpeg
    cfg = Config.fromfile(str(REPO_ROOT / rel))
    assert cfg.train_dataloader.drop_last is True
    loaders = [cfg[key].dataset.pipeline[0] for key in ('train_dataloader', 'val_dataloader')
               if cfg.get(key)]
    for load_cfg in loaders:
        load = TRANSFORMS.build(load_cfg)
        img = load(dict(img_path=str(path)))['img']
        assert img.shape == official.shape  # not rotated
        # same pixels up to the JPEG decoders (OpenCV and PIL may bundle other libjpeg builds)
        assert np.abs(img[..., ::-1].astype(int) - official).mean() < 1.0
