"""mmpretrain datasets that check their ImageNet-style layout before loading.

``CheckedImageNet`` / ``CheckedCustomDataset`` are mmpretrain's ``ImageNet`` / ``CustomDataset``
plus :func:`~beitv2_mm.datasets.layout.check_imagenet_layout` on the resolved ``data_root``,
image folder and annotation list, run at the start of ``load_data_list`` (i.e. in ``__init__``
unless ``lazy_init=True``), and every image an annotation list names checked to exist. A bad
``data_root`` then fails with the missing path and the expected layout instead of "Found no
images" or a bare assertion, and a missing image at start-up instead of mid-epoch. The stock
classes remain usable as is.
"""
import os.path as osp
from typing import List

from mmpretrain.datasets import CustomDataset, ImageNet
from mmpretrain.registry import DATASETS

from .layout import check_imagenet_layout, check_listed_images


class _ImageNetLayoutCheck:
    """Mixin: check the layout right before the file list is read."""

    def load_data_list(self) -> List[dict]:
        # mmengine has already joined data_root onto relative prefixes (they are relative to
        # the working directory now): absolute paths keep the check from joining it twice.
        check_imagenet_layout(self.data_root, data_prefix=osp.abspath(self.data_prefix['img_path']),
                              ann_file=osp.abspath(self.ann_file) if self.ann_file else None)
        data_list = super().load_data_list()
        if self.ann_file:
            check_listed_images([info['img_path'] for info in data_list], self.ann_file)
        return data_list


@DATASETS.register_module()
class CheckedImageNet(_ImageNetLayoutCheck, ImageNet):
    """mmpretrain ``ImageNet`` that checks the on-disk layout first (same arguments)."""


@DATASETS.register_module()
class CheckedCustomDataset(_ImageNetLayoutCheck, CustomDataset):
    """mmpretrain ``CustomDataset`` that checks the on-disk layout first (same arguments)."""
