"""check_num_classes: a model num_classes that does not match the data fails naming the key."""
import pytest
from mmengine.config import Config

from beitv2_mm.datasets.consistency import check_num_classes, dataset_num_classes


def _cfg(num_classes, scope='mmseg', dataset=None):
    return Config(dict(
        default_scope=scope,
        model=dict(type='EncoderDecoder',
                   decode_head=dict(type='UPerHead', num_classes=num_classes),
                   auxiliary_head=[dict(type='FCNHead', num_classes=10)]),
        train_dataloader=dict(dataset=dataset or dict(type='SyntheticADE20KDataset'))))


def test_matching_config_passes():
    check_num_classes(_cfg(10))


def test_mismatch_names_key_and_fix():
    with pytest.raises(ValueError, match=r'model\.decode_head\.num_classes=150 does not match '
                                         r'the data: 10 classes') as e:
        check_num_classes(_cfg(150))
    assert "'SyntheticADE20KDataset'" in str(e.value) and 'num_classes=10' in str(e.value)


def test_metainfo_classes_take_precedence_and_lists_are_searched():
    ds = dict(type='CheckedCocoDataset', metainfo=dict(classes=('a', 'b', 'c')))
    cfg = Config(dict(default_scope='mmdet',
                      model=dict(roi_head=dict(bbox_head=dict(num_classes=3),
                                               mask_head=dict(num_classes=80))),
                      train_dataloader=dict(dataset=ds)))
    with pytest.raises(ValueError, match=r'model\.roi_head\.mask_head\.num_classes=80 .* 3 '
                                         r'classes in train_dataloader\.dataset\.metainfo'):
        check_num_classes(cfg)
    with pytest.raises(ValueError, match=r'model\.auxiliary_head\[0\]\.num_classes=10'):
        check_num_classes(_cfg(150, dataset=dict(type='CheckedADE20KDataset')))


def test_dataset_num_classes_from_type():
    assert dataset_num_classes(dict(type='CheckedImageNet'), 'mmpretrain') == 1000
    assert dataset_num_classes(dict(type='CheckedCocoDataset'), 'mmdet') == 80
    assert dataset_num_classes(dict(type='UnknownThing'), 'mmdet') is None
