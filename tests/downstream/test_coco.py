"""CocoMetricFromDatasetHook: CocoMetric scores against the evaluated dataset's own images."""
import pytest
import torch


def _coco_subset(coco_root, n):
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope

    from beitv2_mm.datasets.synthetic import SYNTHETIC_CLASSES
    init_default_scope('mmdet')
    return DATASETS.build(dict(
        type='CheckedCocoDataset', data_root=str(coco_root), test_mode=True, indices=n,
        ann_file='annotations/instances_val2017.json', data_prefix=dict(img='val2017/'),
        metainfo=dict(classes=SYNTHETIC_CLASSES), pipeline=[]))


def _perfect_predictions(coco, img_ids):
    samples = []
    for img_id in img_ids:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        info = coco.loadImgs(img_id)[0]
        boxes = torch.tensor([[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2],
                               a['bbox'][1] + a['bbox'][3]] for a in anns])
        samples.append(dict(img_id=img_id, ori_shape=(info['height'], info['width']),
                            pred_instances=dict(
                                bboxes=boxes, scores=torch.ones(len(anns)),
                                labels=torch.tensor([a['category_id'] - 1 for a in anns]))))
    return samples


def test_metric_scores_the_images_of_the_evaluated_subset(tiny_data):
    """``ann_file=None`` metrics get the dataset's annotation file, restricted to the images
    the dataset yields (``indices=N``): perfect boxes on those 5 images score AP 1.0, which
    the 15 other images' unmatched ground truth would pull down. A metric given its own
    ``ann_file`` is left alone."""
    pytest.importorskip('mmcv._ext')
    from types import SimpleNamespace

    from mmdet.evaluation import CocoMetric

    from beitv2_mm.datasets.synthetic import SYNTHETIC_CLASSES
    from beitv2_mm.downstream.coco import CocoMetricFromDatasetHook

    dataset = _coco_subset(tiny_data['coco'], 5)
    subset = [dataset.get_data_info(i)['img_id'] for i in range(len(dataset))]
    assert len(subset) == 5
    pending = CocoMetric(ann_file=None, metric='bbox')
    explicit_file = tiny_data['coco'] / 'annotations' / 'instances_train2017.json'
    explicit = CocoMetric(ann_file=str(explicit_file), metric='bbox')
    own_api = explicit._coco_api
    loop = SimpleNamespace(evaluator=SimpleNamespace(metrics=[pending, explicit]),
                           dataloader=SimpleNamespace(dataset=dataset))
    CocoMetricFromDatasetHook().before_val_epoch(SimpleNamespace(val_loop=loop))
    assert explicit._coco_api is own_api and explicit.img_ids is None
    assert len(pending._coco_api.getImgIds()) == 20  # the whole val file, ...
    assert pending.img_ids == subset  # ... scored on the subset's images only

    pending.dataset_meta = dict(classes=SYNTHETIC_CLASSES)
    pending.process({}, _perfect_predictions(pending._coco_api, subset))
    assert pending.evaluate(len(subset))['coco/bbox_mAP'] == pytest.approx(1.0)
