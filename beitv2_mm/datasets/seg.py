"""mmseg datasets: the synthetic ADE20K-style set, and layout/label checks for ADE20K.

``SyntheticADE20KDataset`` is mmseg's ``ADE20KDataset`` (``.jpg`` images, ``.png`` label maps,
``reduce_zero_label=True``) with the 10 synthetic classes and their palette.
``CheckedADE20KDataset`` keeps ADE20K's 150 classes. Both check the layout before loading (a missing ``images/`` or
``annotations/`` folder, or images without label maps, fail with the path and the expected
layout) and, with ``check_labels=True``, read every label map once and fail on out-of-range values
naming the file. A ``data_root`` that points at the parent of ``ADEChallengeData2016`` is accepted
and resolved to it.
"""
import os.path as osp
from pathlib import Path
from typing import List

from mmseg.datasets import ADE20KDataset
from mmseg.registry import DATASETS, TRANSFORMS

from .layout import check_ade20k_layout, check_seg_labels
from .synthetic import SYNTHETIC_CLASSES, SYNTHETIC_PALETTE
from .transforms import SafeLoadImageFromFile

# The loading transform is needed in mmseg-scoped configs too (the skip report hook is in
# mmengine's root registry, which every scope searches).
TRANSFORMS.register_module(module=SafeLoadImageFromFile)


class _ADE20KChecks:
    """Mixin: resolve/check ``data_root`` and optionally the label values.

    Args:
        check_labels (bool): Read every label map once while loading and raise on values
            outside ``0..K`` (``reduce_zero_label``) / ``0..K-1``, ``ignore_index`` allowed.
            Defaults to False (it costs a read of each label map).
        check_layout (bool): Check the folders before loading. Defaults to True.
    """

    def __init__(self, *args, check_labels: bool = False, check_layout: bool = True,
                 **kwargs) -> None:
        self.check_labels = check_labels
        self.check_layout = check_layout
        root = kwargs.get('data_root')
        if root and not (Path(root) / 'images').is_dir() and \
                (Path(root) / 'ADEChallengeData2016' / 'images').is_dir():
            kwargs['data_root'] = str(Path(root) / 'ADEChallengeData2016')
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        if self.check_layout:
            # already joined with data_root by mmengine: absolute, so it is not joined twice
            img_dir = osp.abspath(self.data_prefix.get('img_path', ''))
            ann_dir = osp.abspath(self.data_prefix.get('seg_map_path', ''))
            # With an explicit image list only the folders are checked, not the pairing.
            check_ade20k_layout(self.data_root, img_dirs=[img_dir], ann_dirs=[ann_dir],
                                img_suffix=self.img_suffix, seg_map_suffix=self.seg_map_suffix,
                                check_pairs=not self.ann_file)
        data_list = super().load_data_list()
        if self.check_labels:
            check_seg_labels([d['seg_map_path'] for d in data_list if 'seg_map_path' in d],
                             num_classes=len(self.metainfo['classes']),
                             reduce_zero_label=self.reduce_zero_label,
                             ignore_index=self.ignore_index)
        return data_list


@DATASETS.register_module()
class SyntheticADE20KDataset(_ADE20KChecks, ADE20KDataset):
    """ADE20K-style synthetic data set with the 10 synthetic classes.

    Args:
        check_labels (bool): See :class:`_ADE20KChecks`. Defaults to False.
        check_layout (bool): See :class:`_ADE20KChecks`. Defaults to True.
        **kwargs: Arguments of mmseg's ``ADE20KDataset``.
    """
    METAINFO = dict(classes=SYNTHETIC_CLASSES, palette=[list(c) for c in SYNTHETIC_PALETTE])


@DATASETS.register_module()
class CheckedADE20KDataset(_ADE20KChecks, ADE20KDataset):
    """mmseg's ``ADE20KDataset`` (150 classes) with the layout and label checks."""
