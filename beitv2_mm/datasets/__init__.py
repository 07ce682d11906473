"""Synthetic data in the ImageNet / ADE20K / COCO layouts, layout checks and safe loading.

Registered here:
    mmpretrain: ``CheckedImageNet``, ``CheckedCustomDataset`` (datasets),
        ``SafeLoadImageFromFile``, ``PILColorJitter``, ``DrawColorJitter``, ``ApplyColorJitter``,
        ``TwoViewRandomResizedCrop``, ``LoadEncodedImage``, ``DrawMIMViews`` (transforms),
        ``DeviceMIMDataPreprocessor`` (model: the MIM views made on the training device),
        ``SkippedImagesHook`` (hook);
    mmseg: ``SyntheticADE20KDataset``, ``CheckedADE20KDataset``, and the transform and hook;
    mmdet: ``CheckedCocoDataset``, and the transform and hook.
"""
import importlib.util

from .consistency import check_num_classes  # noqa: F401
from .mim_transforms import (ApplyColorJitter, DrawColorJitter, PILColorJitter,  # noqa: F401
                             TwoViewRandomResizedCrop)
from .device_views import (DeviceMIMDataPreprocessor, DrawMIMViews,  # noqa: F401
                           LoadEncodedImage)
from .layout import (AnnotationError, DatasetLayoutError, check_ade20k_layout,  # noqa: F401
                     check_coco_json, check_coco_layout, check_imagenet_layout, check_seg_labels)
from .synthetic import (SYNTHETIC_CLASSES, SYNTHETIC_PALETTE, SYNTHETIC_WNIDS,  # noqa: F401
                        make_synthetic_dataset)
from .transforms import (ImageLoadError, SafeLoadImageFromFile,  # noqa: F401
                         SkippedImagesHook, skipped_images)
from . import cls  # noqa: F401,E402

# mmseg / mmdet pieces only where those packages are installed, so that ``import beitv2_mm``
# works on an mmpretrain-only install (tokenizer training and MIM need neither). An installed
# but broken mmseg/mmdet still raises here.
if importlib.util.find_spec('mmseg') is not None:
    from . import seg  # noqa: F401,E402
if importlib.util.find_spec('mmdet') is not None:
    from . import det  # noqa: F401,E402

__all__ = [
    'SYNTHETIC_CLASSES', 'SYNTHETIC_PALETTE', 'SYNTHETIC_WNIDS', 'make_synthetic_dataset',
    'check_imagenet_layout', 'check_ade20k_layout', 'check_coco_layout', 'check_coco_json',
    'check_seg_labels', 'DatasetLayoutError', 'AnnotationError', 'ImageLoadError',
    'SafeLoadImageFromFile', 'SkippedImagesHook', 'skipped_images', 'check_num_classes'
]
