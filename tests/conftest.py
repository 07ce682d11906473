"""Shared fixtures: the repository root, a tiny synthetic data set built once per session."""
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Tests run on CPU with few threads: keep BLAS from oversubscribing the 2 CI cores.
os.environ.setdefault('OMP_NUM_THREADS', '2')


@pytest.fixture(scope='session')
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope='session')
def tiny_data(tmp_path_factory) -> dict:
    """The ``tiny`` synthetic set (64 px, 40 train / 20 val scenes), built once per session.

    Returns:
        dict: ``dict(imagenet=Path, ade20k=Path, coco=Path)`` from
        :func:`beitv2_mm.datasets.synthetic.make_synthetic_dataset`; ``ade20k`` is the
        ``ADEChallengeData2016`` folder (use it as ``data_root``).
    """
    from beitv2_mm.datasets.synthetic import make_synthetic_dataset
    return make_synthetic_dataset(tmp_path_factory.mktemp('synthetic'), size='tiny', seed=0)


@pytest.fixture(autouse=True)
def fresh_default_scope():
    """Start every test as a fresh process would: with no mmengine default scope.

    Registry builds follow mmengine's *current* ``DefaultScope``, a process-wide global that every
    Runner (and ``init_default_scope``) sets; without this, a test building from mmpretrain's
    registry fails after a test that ran an mmdet Runner. Tests that need a scope set it.
    """
    from mmengine.registry import DefaultScope

    saved = dict(DefaultScope._instance_dict)  # private, but the only way to reset the global
    DefaultScope._instance_dict.clear()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)
