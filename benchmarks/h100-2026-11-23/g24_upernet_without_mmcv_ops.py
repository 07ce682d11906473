"""One-off (run g24, H100): ``tools/benchmark.py upernet`` where only mmcv-lite is installed.

mmseg imports ``mmcv.ops`` at import time, which loads mmcv's compiled extension ``mmcv._ext``;
mmcv-lite has none, and building full mmcv on the GPU machine does not fit a lease. The UperNet
training step (BEiT ViT, Feature2Pyramid, UPerHead, FCNHead, BN, cross-entropy) calls no
compiled op, so a stand-in ``mmcv._ext`` whose every function raises lets mmseg import and the
step run; any compiled op the step did call would fail loudly, not silently.

    PYTHONPATH=/tmp/site:$PWD python3 benchmarks/h100-2026-11-23/g24_upernet_without_mmcv_ops.py \\
        upernet --arch base --batch 4 --img-size 512 --precision bf16 --compare mmpretrain
"""
import sys
import types
from pathlib import Path


def _missing_op(name):
    if name.startswith('__'):
        raise AttributeError(name)  # __file__, __path__, ...: a plain module has none

    def op(*args, **kwargs):
        raise RuntimeError(f'mmcv._ext.{name}: compiled mmcv op called, but only mmcv-lite is '
                           'installed')
    return op


stub = types.ModuleType('mmcv._ext')
stub.__getattr__ = _missing_op  # module-level __getattr__: hasattr() is True for every op
sys.modules['mmcv._ext'] = stub

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tools'))
sys.path.insert(0, str(ROOT))
import benchmark  # noqa: E402  (tools/benchmark.py)

if __name__ == '__main__':
    benchmark.main(sys.argv[1:])
