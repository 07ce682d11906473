"""The synthetic generator: determinism, content, and loading through the real stack classes."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from beitv2_mm.datasets.synthetic import (SYNTHETIC_CLASSES, SYNTHETIC_WNIDS, _polygon_area,
                                          draw_scene, make_synthetic_dataset)


def _files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob('*')) if p.is_file()}


def test_same_seed_identical_bytes_other_seed_differs(tiny_data, tmp_path):
    root0 = Path(tiny_data['imagenet']).parent
    again = _files(Path(make_synthetic_dataset(tmp_path / 'a', 'tiny', seed=0)['imagenet']).parent)
    first = _files(root0)
    assert again.keys() == first.keys()
    assert all(again[k] == first[k] for k in first), 'same seed must give identical files'
    other = _files(Path(make_synthetic_dataset(tmp_path / 'b', 'tiny', seed=1)['imagenet']).parent)
    assert other.keys() == first.keys()  # same layout and names...
    differing = [k for k in first if other[k] != first[k]]
    assert len(differing) > 0.9 * len(first)  # ...but (almost) every file's content differs


def test_layout_and_counts(tiny_data):
    imagenet, ade, coco = (Path(tiny_data[k]) for k in ('imagenet', 'ade20k', 'coco'))
    assert ade.name == 'ADEChallengeData2016'
    assert sorted(p.name for p in (imagenet / 'train').iterdir()) == list(SYNTHETIC_WNIDS)
    for split, n in (('train', 40), ('val', 20)):
        lines = (imagenet / 'meta' / f'{split}.txt').read_text().split('\n')[:-1]
        assert len(lines) == n
        for line in lines:
            rel, label = line.split(' ')
            assert (imagenet / split / rel).is_file()
            assert rel.split('/')[0] == SYNTHETIC_WNIDS[int(label)]
    for split, n in (('training', 40), ('validation', 20)):
        imgs = sorted((ade / 'images' / split).glob('*.jpg'))
        anns = sorted((ade / 'annotations' / split).glob('*.png'))
        assert len(imgs) == len(anns) == n
        assert [p.stem for p in imgs] == [p.stem for p in anns]
        label = np.asarray(Image.open(anns[0]))
        assert label.dtype == np.uint8 and label.shape == (64, 64)
    for split in ('train2017', 'val2017'):
        data = json.loads((coco / 'annotations' / f'instances_{split}.json').read_text())
        assert [c['id'] for c in data['categories']] == list(range(1, 11))
        assert tuple(c['name'] for c in data['categories']) == SYNTHETIC_CLASSES
        assert all((coco / split / im['file_name']).is_file() for im in data['images'])


def test_scene_content_dominant_object_and_masks():
    rng = np.random.default_rng(123)
    for label in range(10):
        img, label_map, objects = draw_scene(label, 64, rng)
        assert img.size == (64, 64)
        assert objects[0]['label'] == label
        # The dominant object is larger than every distractor, and visible in the label map.
        areas = [_polygon_area(o['polygon']) for o in objects]
        assert areas[0] > max(areas[1:])
        assert np.sum(label_map == label + 1) >= 0.8 * areas[0]
        assert set(np.unique(label_map)) <= set(range(11)) and 0 in label_map


def test_scenes_have_several_objects(tiny_data):
    from pycocotools.coco import COCO
    coco = COCO(str(Path(tiny_data['coco']) / 'annotations' / 'instances_train2017.json'))
    per_image = [len(coco.getAnnIds(imgIds=i)) for i in coco.getImgIds()]
    assert min(per_image) >= 1 and np.mean(per_image) > 2
    # Every class appears as a distractor too, not only as the dominant object.
    cats = {a['category_id'] for a in coco.loadAnns(coco.getAnnIds()) if a['id'] not in
            {coco.getAnnIds(imgIds=i)[0] for i in coco.getImgIds()}}
    assert len(cats) >= 8


def test_coco_boxes_are_xywh_around_each_mask_and_area_is_the_polygons(tiny_data):
    """COCO boxes are [x, y, width, height], not corners: each box holds its object's mask
    tightly, and the ADE label map of the same scene has that class there; ``area`` is the
    polygon's (COCO's area of a polygon annotation, which sets its small/medium/large range),
    not the box's."""
    from pycocotools.coco import COCO
    coco = COCO(str(Path(tiny_data['coco']) / 'annotations' / 'instances_val2017.json'))
    ade = Path(tiny_data['ade20k']) / 'annotations' / 'validation'
    anns = coco.loadAnns(coco.getAnnIds())
    for ann in anns:
        x, y, w, h = ann['bbox']
        rows, cols = np.nonzero(coco.annToMask(ann))
        # the mask lies in the box, and the box is at most 2 px (thin tips) wider on a side
        for low, high, start, size in ((cols.min(), cols.max() + 1, x, w),
                                       (rows.min(), rows.max() + 1, y, h)):
            assert start - 1 <= low <= start + 2 and start + size - 2 <= high <= start + size + 1, \
                ann['bbox']
        polygon = np.array(ann['segmentation'][0]).reshape(-1, 2)
        assert ann['area'] == pytest.approx(_polygon_area(polygon), rel=0.02)
        label_map = np.asarray(Image.open(ade / f'ADE_val_{ann["image_id"] - 1:08d}.png'))
        inside = label_map[int(y + h / 2), int(x + w / 2)] if ann['category_id'] in (1, 2) \
            else None  # a disc or a square covers its box's centre
        assert inside in (None, ann['category_id'])
    assert sum(a['area'] < 0.9 * a['bbox'][2] * a['bbox'][3] for a in anns) > len(anns) / 2


def test_unknown_size_is_rejected(tmp_path):
    with pytest.raises(ValueError, match='huge'):
        make_synthetic_dataset(tmp_path, size='huge')


def test_imagenet_layout_loads_through_mmpretrain(tiny_data):
    from mmengine.registry import init_default_scope
    from mmpretrain.datasets import CustomDataset, ImageNet
    from mmpretrain.registry import DATASETS
    init_default_scope('mmpretrain')
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
    ds = ImageNet(data_root=str(tiny_data['imagenet']), split='train',
                  metainfo=dict(classes=SYNTHETIC_CLASSES), pipeline=pipeline)
    assert len(ds) == 40 and ds.CLASSES == SYNTHETIC_CLASSES
    item = ds[5]
    assert tuple(item['inputs'].shape) == (3, 64, 64)
    assert int(item['data_samples'].gt_label) == 5  # scene index 5 -> class 5
    # Folder scan without the meta list: classes come from the wnid folders.
    custom = CustomDataset(data_root=str(tiny_data['imagenet']), data_prefix='val',
                           pipeline=pipeline)
    assert len(custom) == 20 and custom.CLASSES == SYNTHETIC_WNIDS
    checked = DATASETS.build(dict(type='CheckedImageNet', data_root=str(tiny_data['imagenet']),
                                  split='val', metainfo=dict(classes=SYNTHETIC_CLASSES),
                                  pipeline=pipeline))
    assert len(checked) == 20
    assert sorted(checked.get_gt_labels().tolist()) == sorted(list(range(10)) * 2)


def test_ade20k_layout_loads_through_mmseg_pipeline(tiny_data):
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    init_default_scope('mmseg')
    ds = DATASETS.build(dict(
        type='SyntheticADE20KDataset', data_root=str(tiny_data['ade20k']),
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', reduce_zero_label=True),
                  dict(type='PackSegInputs')]))
    assert len(ds) == 40
    assert ds.metainfo['classes'] == SYNTHETIC_CLASSES and len(ds.metainfo['palette']) == 10
    item = ds[0]
    assert tuple(item['inputs'].shape) == (3, 64, 64)
    seg = item['data_samples'].gt_sem_seg.data.numpy()[0]
    raw = np.asarray(Image.open(ds.get_data_info(0)['seg_map_path'])).astype(int)
    # reduce_zero_label: background 0 -> 255 (ignored), class id c+1 -> c.
    expected = np.where(raw == 0, 255, raw - 1)
    np.testing.assert_array_equal(seg, expected)
    assert set(np.unique(seg)) <= set(range(10)) | {255}


def test_coco_layout_loads_through_mmdet_pipeline(tiny_data):
    from mmdet.datasets import CocoDataset
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    ds = CocoDataset(
        data_root=str(tiny_data['coco']), ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'), metainfo=dict(classes=SYNTHETIC_CLASSES),
        test_mode=True,
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                  dict(type='PackDetInputs')])
    assert len(ds) == 20
    item = ds[3]
    assert tuple(item['inputs'].shape) == (3, 64, 64)
    gt = item['data_samples'].gt_instances
    assert gt.bboxes.shape[1] == 4 and len(gt) >= 2
    assert int(gt.labels[0]) == 3  # the dominant object of scene 3 is class 3
    assert gt.masks.masks.shape[1:] == (64, 64)


def test_coco_json_valid_and_ground_truth_scores_ap_1(tiny_data):
    import torch
    from mmdet.evaluation import CocoMetric
    from pycocotools.coco import COCO
    ann_file = Path(tiny_data['coco']) / 'annotations' / 'instances_val2017.json'
    coco = COCO(str(ann_file))
    assert len(coco.getImgIds()) == 20 and len(coco.getCatIds()) == 10
    metric = CocoMetric(ann_file=str(ann_file), metric=['bbox', 'segm'])
    metric.dataset_meta = dict(classes=SYNTHETIC_CLASSES)
    samples = []
    for img_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        info = coco.loadImgs(img_id)[0]
        boxes = torch.tensor([[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2],
                               a['bbox'][1] + a['bbox'][3]] for a in anns])
        masks = torch.from_numpy(np.stack([coco.annToMask(a) for a in anns]).astype(bool))
        assert all(coco.annToMask(a).sum() > 0 for a in anns)
        samples.append(dict(
            img_id=img_id, ori_shape=(info['height'], info['width']),
            pred_instances=dict(bboxes=boxes, scores=torch.ones(len(anns)),
                                labels=torch.tensor([a['category_id'] - 1 for a in anns]),
                                masks=masks)))
    metric.process({}, samples)
    results = metric.evaluate(len(samples))
    assert results['coco/bbox_mAP'] == pytest.approx(1.0)
    assert results['coco/segm_mAP'] == pytest.approx(1.0)
