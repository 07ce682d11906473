"""Make mmdet's ``CocoMetric`` read the ground truth of the dataset it evaluates.

mmdet configs give ``CocoMetric`` its own ``ann_file`` path, separate from the dataloader's
``data_root``: overriding ``val_dataloader.dataset.data_root`` (what ``tools/run_suite.py`` does)
then scores against the old annotation file, or crashes when it does not exist. Our COCO configs
set ``val_evaluator.ann_file=None`` and add :class:`CocoMetricFromDatasetHook`, which, before each
validation/test epoch, points every ``CocoMetric`` without an annotation file at the
``ann_file`` of the dataset being evaluated (already joined with its ``data_root``), restricted
to the images that dataset yields (``indices=N`` subsets are scored on their own images).
"""
from __future__ import annotations

from mmdet.evaluation import CocoMetric
from mmdet.registry import HOOKS
from mmengine.hooks import Hook


def _base_dataset(dataloader):
    dataset = dataloader.dataset
    while not hasattr(dataset, 'ann_file') and hasattr(dataset, 'dataset'):
        dataset = dataset.dataset  # dataset wrappers
    return dataset


def _dataset_ann_file(dataloader) -> str:
    dataset = _base_dataset(dataloader)
    ann_file = getattr(dataset, 'ann_file', None)
    if not ann_file:
        raise ValueError(f'CocoMetricFromDatasetHook: dataset {type(dataset).__name__} has no '
                         f'ann_file; set val_evaluator.ann_file explicitly')
    return ann_file


def _attach(loop) -> None:
    from mmdet.datasets.api_wrappers import COCO
    from mmengine.fileio import get_local_path

    metrics = [m for m in loop.evaluator.metrics if isinstance(m, CocoMetric)]
    pending = [m for m in metrics if m._coco_api is None]
    if not pending:
        return
    ann_file = _dataset_ann_file(loop.dataloader)
    with get_local_path(ann_file) as local_path:
        coco_api = COCO(local_path)
    # Score exactly the images the dataset yields (a subset with ``indices=N`` included), not
    # every image of the annotation file.
    dataset = _base_dataset(loop.dataloader)
    img_ids = [dataset.get_data_info(i)['img_id'] for i in range(len(dataset))]
    for metric in pending:
        metric._coco_api = coco_api
        metric.cat_ids = None  # recomputed from the class names in compute_metrics
        metric.img_ids = img_ids


@HOOKS.register_module()
class CocoMetricFromDatasetHook(Hook):
    """Give every ``CocoMetric`` with ``ann_file=None`` the evaluated dataset's annotation file."""

    priority = 'VERY_HIGH'

    def before_val_epoch(self, runner) -> None:
        _attach(runner.val_loop)

    def before_test_epoch(self, runner) -> None:
        _attach(runner.test_loop)
