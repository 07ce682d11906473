"""Downstream evaluation: what mmpretrain, mmseg and mmdet need to host the pretrained BEiT ViT.

- :mod:`.checkpoint`: the checkpoint flow, ``init_cfg=dict(type='BEiTPretrained', checkpoint=PATH)``
  at ``model.backbone.init_cfg`` in every downstream config;
- :mod:`.layer_decay`: ``BEiTLayerDecayOptimWrapperConstructor`` (classifier, segmentor, detector);
- :mod:`.linear_probe`: ``FrozenBEiTViT`` (mmpretrain; used with ``ClsBatchNormNeck`` +
  ``LinearClsHead``);
- :mod:`.necks`: ``SimpleFeaturePyramid`` (ViTDet) and ``LN2d`` for mmdet;
- :mod:`.coco`: ``CocoMetricFromDatasetHook`` (CocoMetric follows the dataloader's data_root);
- :mod:`.results_hook`: ``DownstreamResultsHook`` writing ``results.json`` for the leaderboard.

mmseg/mmdet pieces need ``mmcv._ext``; they are imported only when mmdet/mmseg import cleanly, so
``import beitv2_mm`` keeps working on an mmpretrain-only install.
"""
from . import checkpoint  # noqa: F401
from . import layer_decay  # noqa: F401
from . import linear_probe  # noqa: F401
from . import results_hook  # noqa: F401

try:  # mmdet needs mmcv's compiled ops
    import mmdet.models  # noqa: F401
except ImportError:  # pragma: no cover - mmpretrain-only installs
    necks = coco = None
else:
    from . import coco  # noqa: F401
    from . import necks  # noqa: F401
