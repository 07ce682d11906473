"""Config-level check that the model's ``num_classes`` matches the data set's classes.

A head with the wrong ``num_classes`` trains without complaint (extra logits never get a
target, or labels index past the logits with an opaque CUDA/CE error). :func:`check_num_classes`
compares every ``num_classes`` under ``cfg.model`` with the class count of the training data set
(``metainfo.classes`` from the config, else the dataset class's ``METAINFO``) without reading any
data, and names the key, both numbers and the fix. Launchers call it before building the runner.
"""
from typing import Iterator, Optional, Tuple

from mmengine.config import Config, ConfigDict
from mmengine.registry import Registry


def _num_classes_entries(node, path: str) -> Iterator[Tuple[str, int]]:
    """Yield ``(dotted key, value)`` for every ``num_classes`` in a nested config."""
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f'{path}.{key}' if path else key
            if key == 'num_classes' and isinstance(value, int):
                yield sub, value
            else:
                yield from _num_classes_entries(value, sub)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _num_classes_entries(value, f'{path}[{i}]')


def _dataset_registry(scope: str) -> Optional[Registry]:
    if scope == 'mmpretrain':
        from mmpretrain.registry import DATASETS
    elif scope == 'mmseg':
        from mmseg.registry import DATASETS
    elif scope == 'mmdet':
        from mmdet.registry import DATASETS
    else:
        return None
    return DATASETS


def dataset_num_classes(dataset_cfg: dict, scope: str) -> Optional[int]:
    """Number of classes a dataset config will have, or ``None`` if it cannot be told.

    Args:
        dataset_cfg (dict): A ``*_dataloader.dataset`` config.
        scope (str): The config's ``default_scope``.

    Returns:
        int | None: ``len(classes)`` from ``metainfo`` or the dataset type's ``METAINFO``.
    """
    metainfo = dataset_cfg.get('metainfo') or {}
    if metainfo.get('classes') is not None:
        return len(metainfo['classes'])
    registry = _dataset_registry(scope)
    dataset_type = dataset_cfg.get('type')
    if registry is None or not isinstance(dataset_type, str):
        return None
    cls = registry.get(dataset_type)
    classes = getattr(cls, 'METAINFO', {}).get('classes') if cls is not None else None
    return len(classes) if classes else None


def check_num_classes(cfg: Config) -> None:
    """Raise if a ``num_classes`` under ``cfg.model`` differs from the training data's classes.

    Wrapper datasets (``RepeatDataset``, ``ConcatDataset``...) and configs without a training
    dataloader are skipped.

    Args:
        cfg (Config): A full experiment config.

    Raises:
        ValueError: naming the ``model.*.num_classes`` key, its value, the dataset's count and
            where that count comes from.
    """
    loader = cfg.get('train_dataloader')
    model = cfg.get('model')
    if not loader or not model or not isinstance(loader.get('dataset'), (dict, ConfigDict)):
        return
    dataset_cfg = loader['dataset']
    n_data = dataset_num_classes(dataset_cfg, cfg.get('default_scope', ''))
    if n_data is None:
        return
    for key, value in _num_classes_entries(model, 'model'):
        if value != n_data:
            source = ('train_dataloader.dataset.metainfo.classes'
                      if (dataset_cfg.get('metainfo') or {}).get('classes') is not None else
                      f"the METAINFO of dataset type {dataset_cfg.get('type')!r}")
            raise ValueError(
                f'config key {key}={value} does not match the data: {n_data} classes in '
                f'{source}. Set {key}={n_data} (e.g. --cfg-options {key}={n_data}) or give the '
                f'dataset the intended classes via metainfo=dict(classes=...).')
