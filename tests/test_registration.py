"""`import beitv2_mm` registers modules into each OpenMMLab scope; configs reach them by name."""
import pytest

import beitv2_mm  # noqa: F401


def test_mmpretrain_scope_builds_project_tokenizer():
    from mmpretrain.registry import MODELS

    from beitv2_mm.tokenizers.vqkd import tiny_vqkd_tokenizer_cfg

    tokenizer = MODELS.build(tiny_vqkd_tokenizer_cfg())
    assert type(tokenizer).__name__ == 'VQKDTokenizer'
    assert type(tokenizer).__module__.startswith('beitv2_mm.')


def test_mmseg_scope_builds_project_dataset(tiny_data):
    pytest.importorskip('mmcv._ext')
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    init_default_scope('mmseg')
    ds = DATASETS.build(dict(type='SyntheticADE20KDataset',
                             data_root=str(tiny_data['ade20k']),
                             data_prefix=dict(img_path='images/validation',
                                              seg_map_path='annotations/validation'),
                             pipeline=[]))
    assert len(ds) > 0
    assert len(ds.metainfo['classes']) == 10


def test_mmdet_scope_builds_project_neck():
    pytest.importorskip('mmcv._ext')
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope('mmdet'):
        neck = MODELS.build(dict(type='SimpleFeaturePyramid', backbone_channel=32,
                                 in_channels=[8, 16, 32, 32], out_channels=16, num_outs=5))
    assert type(neck).__module__.startswith('beitv2_mm.')
    import torch
    outs = neck((torch.randn(1, 32, 4, 4), ))
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2, 1]


def test_custom_imports_reach_the_project_from_a_config(tmp_path):
    from mmengine.config import Config

    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text("custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)\n"
                        "default_scope = 'mmpretrain'\n")
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.custom_imports['imports'] == ['beitv2_mm']


def test_import_works_on_an_mmpretrain_only_install():
    """Tokenizer training and MIM need neither mmseg nor mmdet (e.g. a GPU box with mmcv-lite):
    with both absent, ``import beitv2_mm`` still registers the mmpretrain modules."""
    import subprocess
    import sys

    code = '''
import sys
sys.modules['mmseg'] = sys.modules['mmdet'] = None  # as if not installed
import beitv2_mm
from mmpretrain.registry import MODELS
assert MODELS.get('VQKDTokenizer') is not None and MODELS.get('BEiTMIM') is not None
print('ok')
'''
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith('ok')
