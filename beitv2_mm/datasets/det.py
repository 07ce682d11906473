"""mmdet ``CheckedCocoDataset``: mmdet's ``CocoDataset`` with early COCO layout/json checks.

Before loading, the annotation file must exist and be a non-empty, well-formed COCO instances
json (else the error names the file), and the image folder must exist. Use it exactly like
``CocoDataset`` (``metainfo=dict(classes=SYNTHETIC_CLASSES)`` for the synthetic set).
"""
from pathlib import Path
from typing import List

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS, TRANSFORMS

from .layout import COCO_LAYOUT, DatasetLayoutError, _require_dir, _require_root, check_coco_json
from .transforms import SafeLoadImageFromFile

TRANSFORMS.register_module(module=SafeLoadImageFromFile)


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """mmdet ``CocoDataset`` that checks data root, annotation json and image folder first."""

    def load_data_list(self) -> List[dict]:
        if self.data_root:
            _require_root(self.data_root, 'COCO', COCO_LAYOUT)
        if not self.ann_file:
            raise DatasetLayoutError(f'COCO: `ann_file` is not set.\n{COCO_LAYOUT}')
        check_coco_json(self.ann_file)
        img_dir = self.data_prefix.get('img', '')
        if img_dir:
            _require_dir(Path(img_dir), 'COCO', COCO_LAYOUT)
        return super().load_data_list()
