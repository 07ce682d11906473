"""Bad input: wrong layouts, broken annotations and unreadable images fail naming the culprit."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from beitv2_mm.datasets.layout import (AnnotationError, DatasetLayoutError, check_ade20k_layout,
                                       check_coco_json, check_coco_layout, check_imagenet_layout,
                                       check_seg_labels)


def _build(scope: str, cfg: dict):
    """Build a dataset in ``scope`` (registries resolve types through the default scope, which
    other tests in the session may have set to another package)."""
    from mmengine.registry import init_default_scope
    init_default_scope(scope)
    if scope == 'mmpretrain':
        from mmpretrain.registry import DATASETS
    elif scope == 'mmseg':
        from mmseg.registry import DATASETS
    else:
        from mmdet.registry import DATASETS
    return DATASETS.build(cfg)


@pytest.fixture
def data_copy(tiny_data, tmp_path):
    """A private, writable copy of the tiny set (tests here break files on purpose)."""
    out = {}
    for key, src in tiny_data.items():
        # ade20k: keep the real nesting <copy>/ade20k/ADEChallengeData2016
        dst = tmp_path / key / src.name if key == 'ade20k' else tmp_path / key
        shutil.copytree(src, dst)
        out[key] = dst
    return out


def test_good_layouts_pass(tiny_data):
    check_imagenet_layout(tiny_data['imagenet'])
    check_imagenet_layout(tiny_data['imagenet'], data_prefix='train', ann_file='meta/train.txt')
    check_ade20k_layout(tiny_data['ade20k'])
    check_coco_layout(tiny_data['coco'])


def test_missing_root_named(tmp_path):
    missing = tmp_path / 'nope'
    for check in (check_imagenet_layout, check_ade20k_layout, check_coco_layout):
        with pytest.raises(DatasetLayoutError, match=str(missing)):
            check(missing)
    with pytest.raises(DatasetLayoutError, match='data_root` is empty'):
        check_coco_layout('')


def test_imagenet_missing_split_and_bad_list(data_copy):
    root = data_copy['imagenet']
    shutil.rmtree(root / 'val')
    with pytest.raises(DatasetLayoutError, match=f'missing folder {root / "val"}') as e:
        check_imagenet_layout(root)
    assert 'expected ImageNet layout' in str(e.value)
    (root / 'meta' / 'train.txt').write_text('')
    with pytest.raises(AnnotationError, match=str(root / 'meta' / 'train.txt')):
        check_imagenet_layout(root, data_prefix='train', ann_file='meta/train.txt')
    (root / 'meta' / 'train.txt').write_text('n90000000/missing.JPEG 0\n')
    with pytest.raises(DatasetLayoutError, match='missing.JPEG'):
        check_imagenet_layout(root, data_prefix='train', ann_file='meta/train.txt')


def _flatten_val(root: Path) -> list:
    """The official val download: every image in val/ itself; returns '<file> <label>' lines."""
    lines = []
    for line in (root / 'meta' / 'val.txt').read_text().splitlines():
        rel, label = line.rsplit(' ', 1)
        (root / 'val' / rel).rename(root / 'val' / Path(rel).name)
        lines.append(f'{Path(rel).name} {label}')
    for folder in [p for p in (root / 'val').iterdir() if p.is_dir()]:
        folder.rmdir()
    return lines


def test_flat_imagenet_val_needs_its_list(data_copy):
    """A flat val/ (the official download) without an annotation list fails naming the list
    to write and how; with the list but a dataset not told to use it, naming the option."""
    root = data_copy['imagenet']
    lines = _flatten_val(root)
    (root / 'meta' / 'val.txt').unlink()
    val = dict(type='CheckedImageNet', data_root=str(root), data_prefix='val')
    with pytest.raises(DatasetLayoutError, match='no class folders') as e:
        _build('mmpretrain', val)
    assert f"write {root / 'meta' / 'val.txt'}" in str(e.value)
    assert 'LOC_val_solution.csv' in str(e.value)
    with pytest.raises(DatasetLayoutError, match='no class folders'):
        check_imagenet_layout(root)  # the generic check of both splits
    (root / 'meta' / 'val.txt').write_text('\n'.join(lines) + '\n')
    check_imagenet_layout(root)  # the list the layout documents is there
    with pytest.raises(DatasetLayoutError, match="ann_file='meta/val.txt'"):
        _build('mmpretrain', val)
    dataset = _build('mmpretrain', dict(val, ann_file='meta/val.txt'))
    assert len(dataset) == len(lines)


def test_every_listed_image_is_checked_at_start(data_copy):
    """An image the list names but the disk lacks fails when the dataset is built, naming it
    (not when an epoch reaches it), whatever its place in the list."""
    root = data_copy['imagenet']
    lines = (root / 'meta' / 'val.txt').read_text().splitlines()
    gone = [root / 'val' / lines[-1].rsplit(' ', 1)[0], root / 'val' / lines[1].rsplit(' ', 1)[0]]
    for path in gone:
        path.unlink()
    with pytest.raises(DatasetLayoutError,
                       match=f'2 of the {len(lines)} images listed in .*val.txt do not exist'
                       ) as e:
        _build('mmpretrain', dict(type='CheckedImageNet', data_root=str(root), split='val',
                                  ann_file='meta/val.txt'))
    assert all(str(path) in str(e.value) for path in gone)


def test_ade20k_without_annotations_named(data_copy):
    root = data_copy['ade20k']
    shutil.rmtree(root / 'annotations')
    with pytest.raises(DatasetLayoutError,
                       match=f'missing folder {root / "annotations" / "training"}') as e:
        check_ade20k_layout(root)
    assert 'annotations/training/*.png' in str(e.value)  # what the layout should be


def test_ade20k_parent_folder_hint(tiny_data):
    parent = tiny_data['ade20k'].parent
    with pytest.raises(DatasetLayoutError,
                       match=f'set `data_root` to {tiny_data["ade20k"]}'):
        check_ade20k_layout(parent)


def test_ade20k_image_without_label_map_named(data_copy):
    root = data_copy['ade20k']
    victim = sorted((root / 'annotations' / 'validation').glob('*.png'))[3]
    victim.unlink()
    with pytest.raises(DatasetLayoutError, match=str(victim)):
        check_ade20k_layout(root)


def test_coco_missing_empty_and_malformed_json_named(data_copy):
    root = data_copy['coco']
    ann = root / 'annotations' / 'instances_val2017.json'
    ann.write_text('')
    with pytest.raises(AnnotationError, match=f'{ann} is empty'):
        check_coco_layout(root)
    ann.write_text('{"images": [')
    with pytest.raises(AnnotationError, match=f'{ann} is not valid json'):
        check_coco_json(ann)
    ann.write_text(json.dumps(dict(images=[], annotations=[], categories=[])))
    with pytest.raises(AnnotationError, match=f"{ann} has an empty 'images' list"):
        check_coco_json(ann)
    ann.write_text(json.dumps(dict(images=[dict(id=1)], categories=[dict(id=1)])))
    with pytest.raises(AnnotationError, match=f"{ann} has no 'annotations' list"):
        check_coco_json(ann)
    ann.unlink()
    with pytest.raises(DatasetLayoutError, match=f'missing annotation file {ann}'):
        check_coco_layout(root)
    shutil.rmtree(root / 'train2017')
    with pytest.raises(DatasetLayoutError, match=str(root / 'train2017')):
        check_coco_layout(root, ann_files=['annotations/instances_train2017.json'],
                          img_dirs=['train2017'])


def test_seg_labels_out_of_range_named(data_copy):
    ann_dir = data_copy['ade20k'] / 'annotations' / 'training'
    files = sorted(ann_dir.glob('*.png'))
    check_seg_labels(files, num_classes=10)  # the generated labels are in range
    label = np.asarray(Image.open(files[2])).copy()
    label[0, :3] = [11, 40, 255]  # 11 and 40 bad; 255 = ignore is allowed
    Image.fromarray(label).save(files[2])
    with pytest.raises(AnnotationError, match=r'in .*' + files[2].name + r': values \[11, 40\]'):
        check_seg_labels(files, num_classes=10)
    # Without reduce_zero_label, K=10 allows 0..9 only: the value 10 is bad too.
    with pytest.raises(AnnotationError, match='allowed 0..9'):
        check_seg_labels(files, num_classes=10, reduce_zero_label=False)


def test_datasets_fail_early_with_the_layout_message(data_copy, tmp_path):
    missing = tmp_path / 'missing_root'
    with pytest.raises(DatasetLayoutError, match=str(missing)):
        _build('mmpretrain', dict(type='CheckedImageNet', data_root=str(missing), split='train'))

    ade = data_copy['ade20k']
    shutil.rmtree(ade / 'annotations' / 'validation')
    with pytest.raises(DatasetLayoutError, match=str(ade / 'annotations' / 'validation')):
        _build('mmseg', dict(
            type='SyntheticADE20KDataset', data_root=str(ade),
            data_prefix=dict(img_path='images/validation',
                             seg_map_path='annotations/validation')))
    # The parent of ADEChallengeData2016 is accepted as data_root.
    ds = _build('mmseg', dict(
        type='SyntheticADE20KDataset', data_root=str(ade.parent),
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')))
    assert len(ds) == 40

    ann = data_copy['coco'] / 'annotations' / 'instances_val2017.json'
    ann.write_text('not json')
    with pytest.raises(AnnotationError, match=str(ann)):
        _build('mmdet', dict(
            type='CheckedCocoDataset', data_root=str(data_copy['coco']),
            ann_file='annotations/instances_val2017.json', data_prefix=dict(img='val2017/')))


def test_seg_dataset_label_check_flag(data_copy):
    ade = data_copy['ade20k']
    cfg = dict(type='SyntheticADE20KDataset', data_root=str(ade), check_labels=True,
               data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'))
    assert len(_build('mmseg', cfg)) == 40
    victim = sorted((ade / 'annotations' / 'training').glob('*.png'))[7]
    label = np.asarray(Image.open(victim)).copy()
    label[5, 5] = 42
    Image.fromarray(label).save(victim)
    with pytest.raises(AnnotationError, match=victim.name + r': values \[42\]'):
        _build('mmseg', cfg)
    assert len(_build('mmseg', {**cfg, 'check_labels': False})) == 40  # off by default: no read


def test_seg_dataset_label_check_follows_its_reduce_zero_label(tiny_data):
    """The check reads the dataset's own convention: without reduce_zero_label, K=10 classes
    are the values 0..9, so the synthetic maps' class id 10 ('bar' + 1) is out of range."""
    cfg = dict(type='SyntheticADE20KDataset', data_root=str(tiny_data['ade20k']),
               check_labels=True, reduce_zero_label=False,
               data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'))
    with pytest.raises(AnnotationError, match=r'values \[10\] found, allowed 0\.\.9 '
                                              r'\(num_classes=10, reduce_zero_label=False\)'):
        _build('mmseg', cfg)


def _corrupt_one_image(root: Path) -> Path:
    victim = sorted((root / 'train').glob('*/*.JPEG'))[0]
    victim.write_bytes(b'\xff\xd8 this is not a jpeg')
    return victim


def test_corrupt_image_raise_names_path(data_copy):
    from beitv2_mm.datasets.transforms import ImageLoadError
    victim = _corrupt_one_image(data_copy['imagenet'])
    ds = _build('mmpretrain', dict(
        type='CheckedImageNet', data_root=str(data_copy['imagenet']), split='train',
        pipeline=[dict(type='SafeLoadImageFromFile', on_error='raise'), dict(type='PackInputs')]))
    index = [ds.get_data_info(i)['img_path'] for i in range(len(ds))].index(str(victim))
    with pytest.raises(ImageLoadError, match=str(victim)) as e:
        ds[index]
    assert "on_error='skip'" in str(e.value)  # says how to skip instead
    with pytest.raises(ValueError, match="on_error='ignore'"):
        _build('mmpretrain', dict(type='CheckedImageNet', split='train',
                                  data_root=str(data_copy['imagenet']),
                                  pipeline=[dict(type='SafeLoadImageFromFile',
                                                 on_error='ignore')]))[0]


def test_corrupt_image_skip_counts_and_reports(data_copy, tmp_path):
    from mmengine.logging import MessageHub

    from beitv2_mm.datasets.transforms import (SkippedImagesHook, reset_skipped_images,
                                               skipped_images)
    reset_skipped_images()
    victim = _corrupt_one_image(data_copy['imagenet'])
    ds = _build('mmpretrain', dict(
        type='CheckedImageNet', data_root=str(data_copy['imagenet']), split='train',
        pipeline=[dict(type='SafeLoadImageFromFile', on_error='skip'), dict(type='PackInputs')]))
    index = [ds.get_data_info(i)['img_path'] for i in range(len(ds))].index(str(victim))
    item = ds[index]  # mmengine refetches another index when the pipeline returns None
    assert tuple(item['inputs'].shape) == (3, 64, 64)
    assert item['data_samples'].img_path != str(victim)
    # mmengine refetches a random index, which can be the corrupt image again: count >= 1
    assert set(skipped_images()) == {str(victim)}
    n_skipped = len(skipped_images())

    class _Runner:  # the hook only needs a logger, a message hub and a work_dir
        logger = type('L', (), {'warning': lambda self, m: logs.append(m),
                                'info': lambda self, m: logs.append(m)})()
        message_hub = MessageHub.get_instance('test_skipped_images')
        work_dir = str(tmp_path)
    logs = []
    SkippedImagesHook().after_run(_Runner)
    assert f'{n_skipped} unreadable image reads were skipped' in logs[0]
    assert str(victim) in logs[0]
    assert _Runner.message_hub.get_info('data/skipped_images') == n_skipped
    # the full list stays in the work_dir; the temporary record is gone
    listed = (tmp_path / 'skipped_images.txt').read_text().splitlines()
    assert listed == [f'{victim}\t{n_skipped}']
    assert str(tmp_path / 'skipped_images.txt') in logs[-1]
    assert skipped_images() == []


def _skipping_rank(rank, init_file, work_dir, skips):
    import torch.distributed as dist
    from mmengine.logging import MessageHub

    from beitv2_mm.datasets import transforms
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    try:
        transforms.reset_skipped_images()
        with open(transforms._skip_log_path(), 'w') as f:
            f.write(''.join(f'{p}\n' for p in skips[rank]))
        logs = []
        runner = type('R', (), {
            'logger': type('L', (), {'warning': lambda self, m: logs.append(m),
                                     'info': lambda self, m: logs.append(m)})(),
            'message_hub': MessageHub.get_instance(f'test_skipped_rank{rank}'),
            'work_dir': work_dir})
        transforms.SkippedImagesHook().after_run(runner)
        with open(os.path.join(work_dir, f'log{rank}.txt'), 'w') as f:
            f.write(logs[0])
        assert transforms.skipped_images() == []
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
def test_skipped_images_of_every_rank_are_reported(tmp_path):
    """Each rank skips on its own; the report (mmengine logs on rank 0 only) and the list are
    of every rank's skips: rank 1's were missing from both."""
    import torch.multiprocessing as mp
    skips = [['a.JPEG', 'b.JPEG', 'a.JPEG'], ['c.JPEG']]
    mp.spawn(_skipping_rank, args=(str(tmp_path / 'init'), str(tmp_path), skips), nprocs=2)
    assert (tmp_path / 'skipped_images.txt').read_text() == 'a.JPEG\t2\nb.JPEG\t1\nc.JPEG\t1\n'
    assert not list(tmp_path.glob('skipped_images_rank*'))
    log = (tmp_path / 'log0.txt').read_text()
    assert '4 unreadable image reads were skipped (3 distinct files)' in log and 'c.JPEG' in log


def test_relative_data_roots_load(tiny_data, monkeypatch):
    """Configs give data roots relative to the working directory (``data/synthetic/...``):
    mmengine joins them onto the prefixes before the layout check runs, which must not join
    them a second time (it did: ``data/x/data/x/train`` was reported missing)."""
    base = tiny_data['imagenet'].parent
    monkeypatch.chdir(base)
    cls = _build('mmpretrain', dict(type='CheckedImageNet', data_root='imagenet', split='train'))
    assert len(cls) > 0
    cls_list = _build('mmpretrain', dict(type='CheckedImageNet', data_root='imagenet',
                                         split='val', ann_file='meta/val.txt'))
    assert len(cls_list) > 0
    ade = tiny_data['ade20k']
    seg = _build('mmseg', dict(
        type='SyntheticADE20KDataset', data_root=str(ade.relative_to(base)),
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')))
    assert len(seg) > 0
    det = _build('mmdet', dict(
        type='CheckedCocoDataset', data_root='coco', ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/')))
    assert len(det) > 0
    # a wrong relative root still names the path it looked for
    with pytest.raises(DatasetLayoutError, match='nowhere'):
        _build('mmpretrain', dict(type='CheckedImageNet', data_root='nowhere', split='train'))
