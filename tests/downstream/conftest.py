"""Fixtures for the downstream tests: tiny pretrain checkpoints in each supported layout.

The tiny architecture is the MIM demo's student (configs/demo/beitv2_vit-tiny_synthetic.py):
width 64, 4 layers, 4 heads, FFN 128, 8 px patches at 64 px, shared relative position bias.
"""
import os

import pytest
import torch

from downstream_helpers import BEITV2_CFG_TEXT, build_tiny_mim_algorithm  # noqa: F401


@pytest.fixture(scope='session')
def tiny_mim_checkpoint(tmp_path_factory):
    """(path, state_dict): an mmengine-style checkpoint of the tiny BEiT v2 MIM algorithm.

    Layout of this project's MIM runs: ``backbone.*`` (BEiTPretrainViT with a shared relative
    position bias), ``neck.*``, ``head.*``, ``target_generator.*``; meta with the config text.
    """
    model = build_tiny_mim_algorithm()
    state_dict = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp('pretrain') / 'beitv2_tiny_mim.pth'
    torch.save({'state_dict': state_dict, 'meta': {'cfg': BEITV2_CFG_TEXT, 'iter': 40}}, path)
    assert os.path.getsize(path) > 0
    return str(path), state_dict


@pytest.fixture(autouse=True)
def mmpretrain_default_scope():
    """Registries build in the *default* scope: start each test in mmpretrain's (tests of mmseg /
    mmdet configs switch to theirs), so test order cannot change what gets built."""
    import beitv2_mm  # noqa: F401
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
