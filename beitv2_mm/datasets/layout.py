"""Early, readable checks of the on-disk ImageNet / ADE20K / COCO layouts.

Each ``check_*`` function raises an error naming the exact culprit (missing path, bad json file,
out-of-range label values) and what the layout should look like, so a wrong ``data_root`` fails
before the runner builds anything instead of deep inside a dataloader worker. The checked dataset
classes (:mod:`beitv2_mm.datasets.seg`, :mod:`beitv2_mm.datasets.det`,
:mod:`beitv2_mm.datasets.cls`) call them from ``__init__``; they only use the standard library,
numpy and PIL, so they can also be called on their own.
"""
import json
import os
import os.path as osp
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np
from PIL import Image

PathLike = Union[str, Path]

IMAGENET_LAYOUT = """\
expected ImageNet layout:
  <data_root>/train/<class>/*.JPEG    (one folder per class)
  <data_root>/val/<class>/*.JPEG      (or flat files listed in meta/val.txt)
  <data_root>/meta/train.txt          optional: '<relative path> <label>' per line
  <data_root>/meta/val.txt
Set `dataset.data_root` of each dataloader the config has to the folder that holds train/ and val/ (e.g. data/imagenet):
`--cfg-options train_dataloader.dataset.data_root=DIR` (and val_dataloader /
test_dataloader where present; overriding a top-level `data_root=` changes nothing: the config
copied it when it was read),
or `tools/run_suite.py --imagenet-root DIR`, or generate a synthetic set with
`python tools/make_synthetic_data.py --out data/synthetic`."""

ADE20K_LAYOUT = """\
expected ADE20K layout:
  <data_root>/images/training/*.jpg
  <data_root>/images/validation/*.jpg
  <data_root>/annotations/training/*.png      (uint8; 0 = ignore/background, 1..K classes)
  <data_root>/annotations/validation/*.png
Set `dataset.data_root` of each dataloader the config has to the ADEChallengeData2016 folder (e.g. data/ade/ADEChallengeData2016):
`--cfg-options train_dataloader.dataset.data_root=DIR` (and val_dataloader /
test_dataloader where present; overriding a top-level `data_root=` changes nothing: the config
copied it when it was read),
or `tools/run_suite.py --ade20k-root DIR`, or generate a synthetic set with
`python tools/make_synthetic_data.py --out data/synthetic`."""

COCO_LAYOUT = """\
expected COCO layout:
  <data_root>/annotations/instances_train2017.json
  <data_root>/annotations/instances_val2017.json
  <data_root>/train2017/*.jpg
  <data_root>/val2017/*.jpg
Set `dataset.data_root` of each dataloader the config has to the folder that holds annotations/ (e.g. data/coco):
`--cfg-options train_dataloader.dataset.data_root=DIR` (and val_dataloader /
test_dataloader where present; overriding a top-level `data_root=` changes nothing: the config
copied it when it was read),
or `tools/run_suite.py --coco-root DIR`, or generate a synthetic set with
`python tools/make_synthetic_data.py --out data/synthetic`."""


class DatasetLayoutError(FileNotFoundError):
    """A data root does not have the expected layout (a missing or empty path)."""


class AnnotationError(ValueError):
    """An annotation file is malformed, empty or holds out-of-range values."""


def _join(root: PathLike, path: PathLike) -> Path:
    """``root / path`` unless ``path`` is absolute (mmengine's ``data_prefix`` semantics)."""
    path = str(path)
    return Path(path) if osp.isabs(path) or not root else Path(root) / path


def _require_dir(path: Path, what: str, layout: str, non_empty: bool = True) -> None:
    if not path.is_dir():
        hint = ' (it is a file, not a folder)' if path.exists() else ''
        raise DatasetLayoutError(f'{what}: missing folder {path}{hint}.\n{layout}')
    if non_empty and not any(path.iterdir()):
        raise DatasetLayoutError(f'{what}: folder {path} is empty.\n{layout}')


def _require_root(root: PathLike, what: str, layout: str) -> Path:
    if not root:
        raise DatasetLayoutError(f'{what}: `data_root` is empty; set it to the data folder.\n'
                                 f'{layout}')
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f'{what}: data root {root} does not exist (or is not a '
                                 f'folder).\n{layout}')
    return root


def check_imagenet_layout(root: PathLike, splits: Sequence[str] = ('train', 'val'),
                          data_prefix: Optional[str] = None,
                          ann_file: Optional[str] = None) -> None:
    """Check an ImageNet-style root (class folders and/or ``meta/<split>.txt``).

    Args:
        root (str | Path): The dataset's ``data_root``.
        splits (Sequence[str]): Split folders to check when ``data_prefix`` is not given.
        data_prefix (str, optional): The image folder actually used (relative to ``root`` or
            absolute); replaces ``splits``.
        ann_file (str, optional): The annotation list actually used; it must exist, be
            non-empty and its first entry must exist under the image folder.

    Raises:
        DatasetLayoutError: naming the missing/empty path and the expected layout.
    """
    if isinstance(splits, str):
        splits = (splits, )
    folders = [data_prefix] if data_prefix is not None else list(splits)
    # An absolute data_prefix needs no data_root (mmengine joins only relative prefixes).
    if root or not (data_prefix and osp.isabs(data_prefix)):
        root = _require_root(root, 'ImageNet', IMAGENET_LAYOUT)
    for folder in folders:
        _require_dir(_join(root, folder), 'ImageNet', IMAGENET_LAYOUT)
        if not ann_file:
            _require_class_folders(root, _join(root, folder),
                                   listed_by_dataset=data_prefix is not None)
    if ann_file:
        ann_path = _join(root, ann_file)
        if not ann_path.is_file():
            raise DatasetLayoutError(f'ImageNet: missing annotation list {ann_path}.\n'
                                     f'{IMAGENET_LAYOUT}')
        with open(ann_path) as f:
            first = f.readline().strip()
        if not first:
            raise AnnotationError(f'ImageNet: annotation list {ann_path} is empty; it should '
                                  f"hold '<relative path> <label>' lines.")
        img_dir = _join(root, folders[0])
        first_img = img_dir / first.rsplit(' ', 1)[0]
        if not first_img.is_file():
            raise DatasetLayoutError(
                f'ImageNet: {ann_path} lists {first.rsplit(" ", 1)[0]!r} but {first_img} does '
                f'not exist; paths in the list are relative to {img_dir}.\n{IMAGENET_LAYOUT}')


def _require_class_folders(root: Optional[Path], folder: Path, listed_by_dataset: bool) -> None:
    """Without an annotation list the labels come from class folders: a flat image folder (the
    official ImageNet val download) needs ``meta/<split>.txt``. ``listed_by_dataset``: the
    folder is what a dataset without ``ann_file`` reads, so an existing list does not help."""
    with os.scandir(folder) as entries:
        if any(entry.is_dir() for entry in entries):
            return
    ann = (root or folder.parent) / 'meta' / f'{folder.name}.txt'
    if ann.is_file() and not listed_by_dataset:
        return
    how = (f"{ann} exists: set the dataset's ann_file='meta/{folder.name}.txt' (e.g. "
           f"--cfg-options val_dataloader.dataset.ann_file=meta/{folder.name}.txt)"
           if ann.is_file() else
           f"write {ann} with one '<file name> <label>' line per image (label 0-999 in the "
           f"sorted order of the train/ class folders, e.g. from the devkit's "
           f"ILSVRC2012_validation_ground_truth.txt or Kaggle's LOC_val_solution.csv) and set "
           f"the dataset's ann_file='meta/{folder.name}.txt', or sort the images into class "
           f"folders")
    raise DatasetLayoutError(
        f'ImageNet: {folder} holds images but no class folders, and no annotation list gives '
        f'their labels; {how}.\n{IMAGENET_LAYOUT}')


def check_listed_images(paths: Sequence[str], ann_file: str, what: str = 'ImageNet') -> None:
    """Fail at start-up, not hours into an epoch, when an annotation list names missing files.

    Lists each folder once (a directory read, not one ``stat`` per image: about a thousand
    reads for ImageNet's train list). Paths with a URI scheme are left to the file backend.

    Raises:
        DatasetLayoutError: with the count and the first missing paths.
    """
    from collections import defaultdict

    by_dir = defaultdict(list)
    for path in paths:
        if '://' in path:
            return
        folder, name = osp.split(path)
        by_dir[folder].append(name)
    missing = []
    for folder, names in by_dir.items():
        try:
            present = set(os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            present = set()
        missing += [osp.join(folder, n) for n in names if n not in present]
    if missing:
        shown = '\n  '.join(missing[:5]) + ('\n  ...' if len(missing) > 5 else '')
        raise DatasetLayoutError(
            f'{what}: {len(missing)} of the {len(paths)} images listed in {ann_file} do not '
            f'exist:\n  {shown}\nRestore them, or remove their lines from the list.')


def check_ade20k_layout(root: PathLike, img_dirs: Sequence[str] = ('images/training',
                                                                   'images/validation'),
                        ann_dirs: Sequence[str] = ('annotations/training',
                                                   'annotations/validation'),
                        img_suffix: str = '.jpg', seg_map_suffix: str = '.png',
                        check_pairs: bool = True) -> None:
    """Check an ADE20K-style root: image folders with a label map for every image.

    Args:
        root (str | Path): The ``ADEChallengeData2016`` folder (the dataset's ``data_root``).
        img_dirs (Sequence[str]): Image folders relative to ``root`` (or absolute).
        ann_dirs (Sequence[str]): Matching label-map folders.
        img_suffix (str): Image file suffix.
        seg_map_suffix (str): Label map suffix.
        check_pairs (bool): Also require a label map for every image. Defaults to True.

    Raises:
        DatasetLayoutError: naming the missing/empty folder, or the first images without a
            label map.
    """
    root = _require_root(root, 'ADE20K', ADE20K_LAYOUT)
    nested = root / 'ADEChallengeData2016'
    if nested.is_dir() and not (root / 'images').is_dir():
        raise DatasetLayoutError(f'ADE20K: {root} has no images/ folder but holds {nested}; set '
                                 f'`data_root` to {nested}.\n{ADE20K_LAYOUT}')
    for img_dir, ann_dir in zip(img_dirs, ann_dirs):
        img_path, ann_path = _join(root, img_dir), _join(root, ann_dir)
        _require_dir(img_path, 'ADE20K', ADE20K_LAYOUT)
        _require_dir(ann_path, 'ADE20K', ADE20K_LAYOUT)
        if not check_pairs:
            continue
        img_stems = {p.name[:-len(img_suffix)] for p in img_path.iterdir()
                     if p.name.endswith(img_suffix)}
        if not img_stems:
            raise DatasetLayoutError(f'ADE20K: no *{img_suffix} images in {img_path}.\n'
                                     f'{ADE20K_LAYOUT}')
        missing = sorted(s for s in img_stems
                         if not (ann_path / f'{s}{seg_map_suffix}').is_file())
        if missing:
            examples = ', '.join(str(ann_path / f'{s}{seg_map_suffix}') for s in missing[:3])
            raise DatasetLayoutError(
                f'ADE20K: {len(missing)} of {len(img_stems)} images in {img_path} have no label '
                f'map; missing e.g. {examples}.\n{ADE20K_LAYOUT}')


def check_coco_json(ann_file: PathLike) -> dict:
    """Load a COCO instances json and check its top-level structure.

    Args:
        ann_file (str | Path): Path to ``instances_*.json``.

    Returns:
        dict: The parsed json.

    Raises:
        DatasetLayoutError: if the file does not exist.
        AnnotationError: if it is empty, not valid json, lacks ``images``/``annotations``/
            ``categories`` lists, or has no images or categories.
    """
    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise DatasetLayoutError(f'COCO: missing annotation file {ann_file}.\n{COCO_LAYOUT}')
    text = ann_file.read_text()
    if not text.strip():
        raise AnnotationError(f'COCO: annotation file {ann_file} is empty; it should be a COCO '
                              f'instances json with images, annotations and categories.')
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AnnotationError(f'COCO: annotation file {ann_file} is not valid json ({e}); '
                              f'regenerate or re-download it.') from None
    if not isinstance(data, dict):
        raise AnnotationError(f'COCO: annotation file {ann_file} holds a {type(data).__name__}, '
                              f'expected a json object with images, annotations, categories.')
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(data.get(key), list):
            raise AnnotationError(f'COCO: annotation file {ann_file} has no {key!r} list '
                                  f'(keys found: {sorted(data)}).')
    for key in ('images', 'categories'):
        if not data[key]:
            raise AnnotationError(f'COCO: annotation file {ann_file} has an empty {key!r} list.')
    return data


def check_coco_layout(root: PathLike,
                      ann_files: Sequence[str] = ('annotations/instances_train2017.json',
                                                  'annotations/instances_val2017.json'),
                      img_dirs: Sequence[str] = ('train2017', 'val2017'),
                      check_json: bool = True) -> None:
    """Check a COCO-style root: annotation jsons and image folders.

    Args:
        root (str | Path): The dataset's ``data_root``.
        ann_files (Sequence[str]): Annotation files relative to ``root`` (or absolute).
        img_dirs (Sequence[str]): Matching image folders.
        check_json (bool): Also parse each json with :func:`check_coco_json`.

    Raises:
        DatasetLayoutError: naming the missing file/folder and the expected layout.
        AnnotationError: for an empty or malformed json, naming the file.
    """
    root = _require_root(root, 'COCO', COCO_LAYOUT)
    for ann_file, img_dir in zip(ann_files, img_dirs):
        ann_path = _join(root, ann_file)
        if not ann_path.is_file():
            raise DatasetLayoutError(f'COCO: missing annotation file {ann_path}.\n{COCO_LAYOUT}')
        _require_dir(_join(root, img_dir), 'COCO', COCO_LAYOUT)
        if check_json:
            check_coco_json(ann_path)


def check_seg_labels(label_files: Iterable[PathLike], num_classes: int,
                     reduce_zero_label: bool = True, ignore_index: int = 255) -> None:
    """Check that every label map holds only valid class ids (reads each file once).

    Valid values: with ``reduce_zero_label`` (ADE20K), ``0`` (background, ignored) and
    ``1..num_classes``; without it, ``0..num_classes-1``; ``ignore_index`` is always allowed.

    Args:
        label_files (Iterable[str | Path]): Label map files (PNG).
        num_classes (int): Number of classes ``K`` of the dataset.
        reduce_zero_label (bool): ADE20K's convention (see above).
        ignore_index (int): Value that marks ignored pixels.

    Raises:
        AnnotationError: naming the first file with out-of-range values and those values.
    """
    high = num_classes if reduce_zero_label else num_classes - 1
    for path in label_files:
        values = np.unique(np.asarray(Image.open(path)))
        bad = values[((values < 0) | (values > high)) & (values != ignore_index)]
        if bad.size:
            raise AnnotationError(
                f'segmentation labels out of range in {path}: values {bad.tolist()} found, '
                f'allowed 0..{high} (num_classes={num_classes}, reduce_zero_label='
                f'{reduce_zero_label}) and ignore_index={ignore_index}. Fix the label map or '
                f'the dataset classes (num_classes must match the data).')
