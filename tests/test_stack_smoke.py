"""Stack smoke tests: the pinned OpenMMLab stack trains and evaluates on the tiny synthetic set.

Each test drives mmengine's ``Runner`` with an inline tiny config (a ViT with 32-d embeddings,
64 px images): a few training iterations, then one validation, and checks the metric keys.
They prove the wiring (datasets, pipelines, ``mmpretrain.BEiTViT`` inside mmseg/mmdet, metrics),
not accuracy.
"""
import pytest
from mmengine.config import Config

from beitv2_mm.datasets.synthetic import SYNTHETIC_CLASSES

pytestmark = pytest.mark.slow

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
TINY_ARCH = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)


def _runner_cfg(tmp_path, scope: str, model: dict, train_loader: dict, val_loader: dict,
                val_evaluator: dict, iters: int = 2) -> Config:
    """Common runner settings: iteration-based, no checkpoints, quiet logging."""
    return Config(dict(
        default_scope=scope,
        custom_imports=dict(imports=['beitv2_mm'], allow_failed_imports=False),
        work_dir=str(tmp_path / 'work'),
        model=model,
        train_dataloader=train_loader,
        val_dataloader=val_loader,
        val_evaluator=val_evaluator,
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=1000),
        val_cfg=dict(type='ValLoop'),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05)),
        default_hooks=dict(checkpoint=None,
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='SkippedImagesHook')],
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo')),
        log_level='WARNING',
        randomness=dict(seed=0),
    ))


def _train_and_val(cfg: Config) -> dict:
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner.val()


def test_mmpretrain_vit_classifier_on_imagenet_layout(tiny_data, tmp_path):
    pipeline = [dict(type='SafeLoadImageFromFile'), dict(type='PackInputs')]

    def loader(split, shuffle):
        return dict(batch_size=8, num_workers=0,
                    sampler=dict(type='DefaultSampler', shuffle=shuffle),
                    dataset=dict(type='CheckedImageNet', data_root=str(tiny_data['imagenet']),
                                 split=split, metainfo=dict(classes=SYNTHETIC_CLASSES),
                                 pipeline=pipeline))

    model = dict(
        type='ImageClassifier',
        data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=10, mean=MEAN, std=STD,
                               to_rgb=True),
        backbone=dict(type='VisionTransformer', arch=TINY_ARCH, img_size=64, patch_size=16),
        head=dict(type='VisionTransformerClsHead', num_classes=10, in_channels=32,
                  loss=dict(type='CrossEntropyLoss')))
    cfg = _runner_cfg(tmp_path, 'mmpretrain', model, loader('train', True), loader('val', False),
                      dict(type='Accuracy', topk=(1,)))
    metrics = _train_and_val(cfg)
    assert 0.0 <= metrics['accuracy/top1'] <= 100.0


def test_mmseg_upernet_on_beitvit_on_ade20k_layout(tiny_data, tmp_path):
    def loader(split, pipeline, shuffle):
        return dict(batch_size=2, num_workers=0,
                    sampler=dict(type='DefaultSampler', shuffle=shuffle),
                    dataset=dict(type='SyntheticADE20KDataset', data_root=str(tiny_data['ade20k']),
                                 data_prefix=dict(img_path=f'images/{split}',
                                                  seg_map_path=f'annotations/{split}'),
                                 pipeline=pipeline))

    train_pipeline = [
        dict(type='SafeLoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='RandomCrop', crop_size=(64, 64), cat_max_ratio=0.75),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackSegInputs')]
    val_pipeline = [
        dict(type='SafeLoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='PackSegInputs')]
    norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN needs a process group
    model = dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=MEAN, std=STD, bgr_to_rgb=True,
                               pad_val=0, seg_pad_val=255, size=(64, 64)),
        backbone=dict(type='mmpretrain.BEiTViT', arch=TINY_ARCH, img_size=64, patch_size=16,
                      out_type='featmap', out_indices=(0, 1, 2, 3), final_norm=False,
                      use_abs_pos_emb=False, use_rel_pos_bias=True),
        neck=dict(type='Feature2Pyramid', embed_dim=32, rescales=[4, 2, 1, 0.5],
                  norm_cfg=norm_cfg),
        decode_head=dict(type='UPerHead', in_channels=[32] * 4, in_index=[0, 1, 2, 3],
                         pool_scales=(1, 2, 3, 6), channels=32, dropout_ratio=0.1,
                         num_classes=10, norm_cfg=norm_cfg, align_corners=False,
                         loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))
    cfg = _runner_cfg(tmp_path, 'mmseg', model, loader('training', train_pipeline, True),
                      loader('validation', val_pipeline, False),
                      dict(type='IoUMetric', iou_metrics=['mIoU']))
    metrics = _train_and_val(cfg)
    assert 0.0 <= metrics['mIoU'] <= 100.0


def _vit_pyramid_neck(embed_dim: int = 32) -> list:
    """Neck for a plain ViT in Mask R-CNN: mmseg's Feature2Pyramid (strides 4..32), then mmdet's
    FPN; mmengine builds a list of module configs as ``nn.Sequential``."""
    return [dict(type='mmseg.Feature2Pyramid', embed_dim=embed_dim, rescales=[4, 2, 1, 0.5],
                 norm_cfg=dict(type='BN', requires_grad=True)),
            dict(type='FPN', in_channels=[embed_dim] * 4, out_channels=32, num_outs=5)]


def test_mmdet_mask_rcnn_on_vit_on_coco_layout(tiny_data, tmp_path):
    import mmseg.models  # noqa: F401  (registers Feature2Pyramid for the cross-scope name)
    coco = tiny_data['coco']

    def loader(split, pipeline, shuffle, test_mode):
        return dict(batch_size=2, num_workers=0,
                    sampler=dict(type='DefaultSampler', shuffle=shuffle),
                    dataset=dict(type='CheckedCocoDataset', data_root=str(coco),
                                 metainfo=dict(classes=SYNTHETIC_CLASSES),
                                 ann_file=f'annotations/instances_{split}.json',
                                 data_prefix=dict(img=f'{split}/'), test_mode=test_mode,
                                 pipeline=pipeline))

    # Resize is a no-op at 64 px but sets `scale_factor`, which mmdet's heads need.
    load = [dict(type='SafeLoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
            dict(type='Resize', scale=(64, 64), keep_ratio=True)]
    train_pipeline = load + [dict(type='RandomFlip', prob=0.5), dict(type='PackDetInputs')]
    val_pipeline = load + [dict(type='PackDetInputs', meta_keys=(
        'img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
    roi = dict(type='RoIAlign', output_size=7, sampling_ratio=0)
    model = dict(
        type='MaskRCNN',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=MEAN, std=STD, bgr_to_rgb=True,
                               pad_mask=True, pad_size_divisor=32),
        backbone=dict(type='mmpretrain.BEiTViT', arch=TINY_ARCH, img_size=64, patch_size=16,
                      out_type='featmap', out_indices=(0, 1, 2, 3), final_norm=False,
                      use_abs_pos_emb=False, use_rel_pos_bias=True),
        neck=_vit_pyramid_neck(32),
        rpn_head=dict(
            type='RPNHead', in_channels=32, feat_channels=32,
            anchor_generator=dict(type='AnchorGenerator', scales=[2], ratios=[0.5, 1.0, 2.0],
                                  strides=[4, 8, 16, 32, 64]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4,
                            target_stds=[1.0] * 4),
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        roi_head=dict(
            type='StandardRoIHead',
            bbox_roi_extractor=dict(type='SingleRoIExtractor', roi_layer=roi, out_channels=32,
                                    featmap_strides=[4, 8, 16, 32]),
            bbox_head=dict(
                type='Shared2FCBBoxHead', in_channels=32, fc_out_channels=64, roi_feat_size=7,
                num_classes=10,
                bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4,
                                target_stds=[0.1, 0.1, 0.2, 0.2]),
                reg_class_agnostic=False,
                loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
            mask_roi_extractor=dict(type='SingleRoIExtractor',
                                    roi_layer={**roi, 'output_size': 14}, out_channels=32,
                                    featmap_strides=[4, 8, 16, 32]),
            mask_head=dict(type='FCNMaskHead', num_convs=1, in_channels=32, conv_out_channels=32,
                           num_classes=10,
                           loss_mask=dict(type='CrossEntropyLoss', use_mask=True,
                                          loss_weight=1.0))),
        train_cfg=dict(
            rpn=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3,
                                   min_pos_iou=0.3, match_low_quality=True, ignore_iof_thr=-1),
                     sampler=dict(type='RandomSampler', num=64, pos_fraction=0.5,
                                  neg_pos_ub=-1, add_gt_as_proposals=False),
                     allowed_border=-1, pos_weight=-1, debug=False),
            rpn_proposal=dict(nms_pre=200, max_per_img=100,
                              nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
            rcnn=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5,
                                    min_pos_iou=0.5, match_low_quality=True, ignore_iof_thr=-1),
                      sampler=dict(type='RandomSampler', num=64, pos_fraction=0.25,
                                   neg_pos_ub=-1, add_gt_as_proposals=True),
                      mask_size=28, pos_weight=-1, debug=False)),
        test_cfg=dict(
            rpn=dict(nms_pre=200, max_per_img=50, nms=dict(type='nms', iou_threshold=0.7),
                     min_bbox_size=0),
            # score_thr=0: an untrained model still emits detections, so the metric is defined.
            rcnn=dict(score_thr=0.0, nms=dict(type='nms', iou_threshold=0.5), max_per_img=20,
                      mask_thr_binary=0.5)))
    ann_file = str(coco / 'annotations' / 'instances_val2017.json')
    cfg = _runner_cfg(tmp_path, 'mmdet', model,
                      loader('train2017', train_pipeline, True, False),
                      loader('val2017', val_pipeline, False, True),
                      dict(type='CocoMetric', ann_file=ann_file, metric=['bbox', 'segm']))
    metrics = _train_and_val(cfg)
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert 0.0 <= metrics[key] <= 1.0
