"""configs/_base_/datasets/*: load, build on the tiny set, and fail early on a wrong data_root."""
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from beitv2_mm.datasets.layout import DatasetLayoutError
from beitv2_mm.datasets.synthetic import SYNTHETIC_CLASSES

SYNTHETIC = {
    'synthetic_imagenet.py': ('imagenet', 'mmpretrain', (3, 64, 64)),
    'synthetic_ade20k.py': ('ade20k', 'mmseg', (3, 64, 64)),
    'synthetic_coco.py': ('coco', 'mmdet', (3, 64, 64)),
}
REAL = {'imagenet.py': 'mmpretrain', 'ade20k.py': 'mmseg', 'coco_instance.py': 'mmdet'}


def _registry(scope):
    if scope == 'mmpretrain':
        from mmpretrain.registry import DATASETS
    elif scope == 'mmseg':
        from mmseg.registry import DATASETS
    else:
        from mmdet.registry import DATASETS
    return DATASETS


@pytest.mark.parametrize('name', sorted(SYNTHETIC))
def test_synthetic_base_config_builds_and_loads(name, repo_root, tiny_data):
    key, scope, shape = SYNTHETIC[name]
    cfg = Config.fromfile(repo_root / 'configs' / '_base_' / 'datasets' / name)
    assert cfg.default_scope == scope and cfg.custom_imports.imports == ['beitv2_mm']
    if 'synthetic_classes' in cfg:
        assert tuple(cfg.synthetic_classes) == SYNTHETIC_CLASSES
    init_default_scope(scope)
    for loader in ('train_dataloader', 'val_dataloader'):
        ds_cfg = cfg[loader].dataset
        ds_cfg.data_root = str(tiny_data[key])
        ds = _registry(scope).build(ds_cfg)
        assert len(ds) == (40 if loader == 'train_dataloader' else 20)
        assert tuple(ds.metainfo['classes']) == SYNTHETIC_CLASSES
        item = ds[0]
        assert tuple(item['inputs'].shape) == shape


@pytest.mark.parametrize('name', sorted(SYNTHETIC) + sorted(REAL))
def test_wrong_data_root_fails_with_the_path(name, repo_root, tmp_path):
    scope = SYNTHETIC[name][1] if name in SYNTHETIC else REAL[name]
    cfg = Config.fromfile(repo_root / 'configs' / '_base_' / 'datasets' / name)
    init_default_scope(scope)
    ds_cfg = cfg.val_dataloader.dataset
    ds_cfg.data_root = str(tmp_path / 'no_such_root')
    with pytest.raises(DatasetLayoutError, match=str(tmp_path / 'no_such_root')):
        _registry(scope).build(ds_cfg)
