"""Every downstream config builds; the ViT-B ones run one training step (CPU, tiny batch).

UperNet (512 px) and Mask R-CNN (1024 px) are stepped at a reduced resolution (128 px,
set through the same keys a user would override) because full resolution is too slow on CPU;
AMP optim wrappers are swapped for the plain one on CPU.
"""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]

CONFIGS = {
    'configs/finetune_in1k.py': ('mmpretrain', 'finetune'),
    'configs/finetune_in1k_1600e.py': ('mmpretrain', 'finetune'),
    'configs/finetune_in1k_vitl.py': ('mmpretrain', 'finetune'),
    'configs/finetune_in1k_beitv1.py': ('mmpretrain', 'finetune'),
    'configs/linear_probe_in1k.py': ('mmpretrain', 'linear_probe'),
    'configs/upernet_ade20k.py': ('mmseg', 'semantic_segmentation'),
    'configs/upernet_ade20k_vitl.py': ('mmseg', 'semantic_segmentation'),
    'configs/upernet_ade20k_beitv1.py': ('mmseg', 'semantic_segmentation'),
    'configs/mask_rcnn_coco.py': ('mmdet', 'instance_segmentation'),
    'configs/mask_rcnn_coco_1x.py': ('mmdet', 'instance_segmentation'),
    'configs/demo/finetune_vit-tiny_synthetic.py': ('mmpretrain', 'finetune'),
    'configs/demo/linear_probe_vit-tiny_synthetic.py': ('mmpretrain', 'linear_probe'),
    'configs/demo/upernet_vit-tiny_synthetic.py': ('mmseg', 'semantic_segmentation'),
    'configs/demo/mask_rcnn_vit-tiny_synthetic.py': ('mmdet', 'instance_segmentation'),
}


def _load(rel):
    import beitv2_mm  # noqa: F401
    from mmengine.config import Config
    return Config.fromfile(str(REPO_ROOT / rel))


def _registry(scope):
    from mmengine.registry import init_default_scope
    init_default_scope(scope)
    if scope == 'mmpretrain':
        from mmpretrain.registry import MODELS
    elif scope == 'mmseg':
        from mmseg.registry import MODELS
    else:
        from mmdet.registry import MODELS
    return MODELS


@pytest.mark.parametrize('rel', list(CONFIGS))
def test_config_builds(rel):
    scope, task = CONFIGS[rel]
    cfg = _load(rel)
    assert cfg.default_scope == scope
    assert cfg.custom_imports == dict(imports=['beitv2_mm'], allow_failed_imports=False)
    # the stage hand-off keys exist
    assert cfg.model.backbone.init_cfg.type == 'BEiTPretrained'
    assert 'checkpoint' in cfg.model.backbone.init_cfg
    # a full config fails without its pretrain checkpoint; the demos run the random-init
    # baseline of the suite with checkpoint=None
    assert cfg.model.backbone.init_cfg.get('required', False) is (not rel.startswith(
        'configs/demo/'))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert 'data_root' in cfg[key].dataset
    hooks = [h for h in cfg.custom_hooks if h.type == 'DownstreamResultsHook']
    assert len(hooks) == 1 and hooks[0].task == task
    # ViT-L (300M parameters) and the 1024 px detector (a 4096 x 4096 relative position index for
    # its global blocks) are built on the meta device: structure only, no memory; the ViT-B
    # detector is built for real (at a reduced resolution) in
    # test_vitb_mask_rcnn_one_step_reduced_resolution.
    if 'vitl' in rel or rel.startswith('configs/mask_rcnn_coco'):
        with torch.device('meta'):
            model = _registry(scope).build(cfg.model)
        if 'vitl' in rel:
            assert model.backbone.num_layers == 24 and model.backbone.embed_dims == 1024
        else:  # ViTDet's layout: 14x14 windows (the pretraining grid), 4 global blocks
            windows = [layer.attn.attn_window for layer in model.backbone.layers]
            assert windows == [(14, 14), (14, 14), (64, 64)] * 4
            tables = [layer.attn.relative_position_bias_table.shape[0]
                      for layer in model.backbone.layers]
            assert tables == [27 ** 2 + 3, 27 ** 2 + 3, 127 ** 2 + 3] * 4
    else:
        model = _registry(scope).build(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0
    # every shipped backbone attends through SDPA (FastBEiTAttention), none through the stock
    from beitv2_mm.backbones.beit_vit import FastBEiTAttention
    assert all(isinstance(layer.attn, FastBEiTAttention) and layer.attn.attn_impl == 'sdpa'
               for layer in model.backbone.layers), rel


def test_recipe_numbers():
    ft = _load('configs/finetune_in1k.py')
    assert ft.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.65
    assert ft.optim_wrapper.optimizer.lr == 5e-4 and ft.train_cfg.max_epochs == 100
    assert ft.model.backbone.drop_path_rate == 0.1
    ft_1600 = _load('configs/finetune_in1k_1600e.py')
    assert ft_1600.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.6
    assert ft_1600.model.backbone.drop_path_rate == 0.2  # "0.2 for 1600 epochs pretrained"
    ft_l = _load('configs/finetune_in1k_vitl.py')  # the 87.3 recipe: 1600-epoch ViT-L pretrain
    assert ft_l.optim_wrapper.optimizer.lr == 2e-4
    assert ft_l.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.8
    # BEiT v1's own recipe for self-supervised checkpoints (unilm beit/
    # get_started_for_image_classification.md): only the lr differs
    ft_v1 = _load('configs/finetune_in1k_beitv1.py')
    assert ft_v1.optim_wrapper.optimizer.lr == 4e-3
    assert ft_v1.optim_wrapper.paramwise_cfg == ft.optim_wrapper.paramwise_cfg
    assert {k: v for k, v in ft_v1.optim_wrapper.optimizer.items() if k != 'lr'} == \
        {k: v for k, v in ft.optim_wrapper.optimizer.items() if k != 'lr'}
    assert ft_v1.model == ft.model and ft_v1.train_cfg == ft.train_cfg
    assert ft_v1.train_dataloader == ft.train_dataloader
    # the official head init: trunc-normal(0.02) x init_scale 0.001
    assert ft.model.head.init_cfg[0].std == pytest.approx(2e-5)
    # mixed precision as the official runs
    assert ft.optim_wrapper.type == 'AmpOptimWrapper'
    seg = _load('configs/upernet_ade20k.py')
    assert seg.optim_wrapper.type == 'AmpOptimWrapper'
    assert seg.model.backbone.out_indices == [3, 5, 7, 11]
    assert seg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.75
    assert seg.optim_wrapper.optimizer.lr == 5e-5 and seg.train_cfg.max_iters == 160000
    assert seg.model.test_cfg == dict(mode='slide', crop_size=(512, 512), stride=(341, 341))
    # BEiT v1's own recipe for self-supervised checkpoints (unilm beit/semantic_segmentation
    # upernet_beit_base_12_512_slide_160k_ade20k_pt.py)
    seg_v1 = _load('configs/upernet_ade20k_beitv1.py')
    assert seg_v1.optim_wrapper.optimizer.lr == 7e-4
    assert seg_v1.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.65
    assert seg_v1.model.backbone.drop_path_rate == 0.1
    assert seg_v1.optim_wrapper.optimizer.weight_decay == 0.05
    assert seg_v1.train_cfg.max_iters == 160000 and seg_v1.model.test_cfg == seg.model.test_cfg
    seg_l = _load('configs/upernet_ade20k_vitl.py')
    assert seg_l.model.backbone.out_indices == [7, 11, 15, 23]
    assert seg_l.optim_wrapper.optimizer.lr == 4e-5
    assert seg_l.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.9
    assert seg_l.model.backbone.drop_path_rate == 0.2
    assert seg_l.model.decode_head.channels == 1024  # official ViT-L UperNet width
    det = _load('configs/mask_rcnn_coco.py')
    assert det.optim_wrapper.type == 'AmpOptimWrapper'
    assert det.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.7
    assert det.optim_wrapper.optimizer.weight_decay == 0.1


@pytest.mark.parametrize('rel,base_lr', [('configs/finetune_in1k.py', 5e-4),
                                          ('configs/finetune_in1k_1600e.py', 5e-4),
                                          ('configs/finetune_in1k_vitl.py', 2e-4),
                                          ('configs/finetune_in1k_beitv1.py', 4e-3)])
def test_finetune_lr_floor_scales_with_layer_decay(rel, base_lr):
    """The official schedule ends every parameter group at min_lr 1e-6 times the group's
    layer-decay factor (engine_for_finetuning.py: ``lr_schedule_values[it] * lr_scale``), not
    at an absolute 1e-6 for every group."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS

    cfg = _load(rel)
    cfg.model.backbone.arch = dict(embed_dims=32, num_layers=4, num_heads=2,
                                   feedforward_channels=64)
    cfg.model.backbone.img_size = 32
    cfg.model.head.in_channels = 32
    model = _registry(cfg.default_scope).build(cfg.model)
    wrapper = build_optim_wrapper(model, dict(cfg.optim_wrapper, type='OptimWrapper'))
    scales = [group['lr'] / base_lr for group in wrapper.param_groups]
    assert min(scales) < 0.5 and max(scales) == pytest.approx(1.0)  # layer decay is applied
    schedulers = []
    for sched_cfg in cfg.param_scheduler:  # as mmengine's runner builds them, 1 iter per epoch
        sched_cfg = dict(sched_cfg)
        sched_cls = PARAM_SCHEDULERS.get(sched_cfg.pop('type'))
        assert sched_cfg.pop('convert_to_iter_based')
        sched_cfg.pop('by_epoch')
        schedulers.append(sched_cls.build_iter_from_epoch(wrapper, epoch_length=1, **sched_cfg))
    for _ in range(cfg.train_cfg.max_epochs):
        wrapper.step()
        for sched in schedulers:
            sched.step()
    # the last step is one short of the end of the cosine (as in the official schedule): every
    # group sits at the same multiple of its own scale, one cosine step above 1e-6
    final = [group['lr'] / scale for group, scale in zip(wrapper.param_groups, scales)]
    assert final == pytest.approx([final[0]] * len(final), rel=1e-9)
    cosine_epochs = cfg.train_cfg.max_epochs - cfg.param_scheduler[1].begin
    one_step_short = 1e-6 + (base_lr - 1e-6) * (1 + math.cos(math.pi * (cosine_epochs - 1)
                                                              / cosine_epochs)) / 2
    assert final[0] == pytest.approx(one_step_short, rel=1e-6)


def _mmcv_poly_with_linear_warmup(t, base, total):
    """The official UperNet lr_config (mmcv 1.x: policy='poly', power 1, min_lr 0, linear
    warmup of 1500 iterations from ratio 1e-6)."""
    lr = base * (1 - t / total)
    return lr * np.where(t < 1500, 1 - (1 - t / 1500) * (1 - 1e-6), 1.0)


def _detectron2_vitdet_multistep(t, base, total, milestones=(163889, 177546)):
    """ViTDet's mask_rcnn_vitdet_b_100ep schedule: WarmupParamScheduler (linear, 250
    iterations from factor 0.001) around MultiStepParamScheduler (x0.1 at each milestone)."""
    lr = base * 0.1 ** np.searchsorted(milestones, t, side='right')
    return lr * np.where(t < 250, 0.001 + (1 - 0.001) * t / 250, 1.0)


@pytest.mark.parametrize('rel,official', [
    ('configs/upernet_ade20k.py', _mmcv_poly_with_linear_warmup),
    ('configs/mask_rcnn_coco.py', _detectron2_vitdet_multistep),
])
def test_downstream_lr_schedule_is_the_official_one(rel, official):
    """The config's schedulers, stepped as mmengine's runner steps them (once after every
    iteration; overlapping schedulers multiply), give the official lr at every iteration."""
    from mmengine.registry import PARAM_SCHEDULERS

    cfg = _load(rel)
    base, total = cfg.optim_wrapper.optimizer.lr, cfg.train_cfg.max_iters
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    schedulers = []
    for sched_cfg in cfg.param_scheduler:
        sched_cfg = dict(sched_cfg)
        schedulers.append(PARAM_SCHEDULERS.get(sched_cfg.pop('type'))(optimizer, **sched_cfg))
    used = np.empty(total)
    for it in range(total):
        used[it] = optimizer.param_groups[0]['lr']  # the lr iteration ``it`` trains with
        optimizer.step()
        for sched in schedulers:
            sched.step()
    np.testing.assert_allclose(used, official(np.arange(total), base, total), rtol=1e-9)


def test_downstream_variants_share_the_schedule():
    seg = _load('configs/upernet_ade20k.py').param_scheduler
    for rel in ('configs/upernet_ade20k_vitl.py', 'configs/upernet_ade20k_beitv1.py'):
        assert _load(rel).param_scheduler == seg
    det, det_1x = _load('configs/mask_rcnn_coco.py'), _load('configs/mask_rcnn_coco_1x.py')
    assert det_1x.param_scheduler[0] == det.param_scheduler[0]  # the same warmup
    assert det_1x.param_scheduler[1].milestones == [60000, 80000]
    assert det_1x.optim_wrapper.optimizer.lr == 2.5e-5 and det_1x.train_cfg.max_iters == 90000
    # everything else is the 100-epoch recipe's
    assert det_1x.optim_wrapper.paramwise_cfg == det.optim_wrapper.paramwise_cfg
    assert det_1x.model == det.model and det_1x.custom_hooks == det.custom_hooks


def test_demo_classes_match_synthetic_data():
    from beitv2_mm.datasets.synthetic import SYNTHETIC_CLASSES
    for rel in ('configs/demo/finetune_vit-tiny_synthetic.py',
                'configs/demo/linear_probe_vit-tiny_synthetic.py',
                'configs/demo/mask_rcnn_vit-tiny_synthetic.py'):
        assert tuple(_load(rel).synthetic_classes) == SYNTHETIC_CLASSES


def _one_step(cfg, data_root):
    from mmengine.optim import build_optim_wrapper
    from mmengine.runner import Runner
    model_cfg = dict(cfg.model)
    # ViT-B from random weights (the full configs require a pretrain checkpoint otherwise)
    model_cfg['backbone'] = dict(model_cfg['backbone'],
                                 init_cfg=dict(model_cfg['backbone']['init_cfg'], required=False))
    if cfg.get('data_preprocessor') is not None:  # what Runner does with a top-level one
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = _registry(cfg.default_scope).build(model_cfg)
    model.init_weights()
    model.train()
    optim_cfg = dict(cfg.optim_wrapper)
    optim_cfg['type'] = 'OptimWrapper'  # AMP needs a GPU
    wrapper = build_optim_wrapper(model, optim_cfg)
    dl_cfg = dict(cfg.train_dataloader)
    dl_cfg.update(batch_size=2, num_workers=0, persistent_workers=False)
    dl_cfg['dataset'] = dict(dl_cfg['dataset'], data_root=str(data_root))
    dl_cfg['sampler'] = dict(type='DefaultSampler', shuffle=False)
    loader = Runner.build_dataloader(dl_cfg)
    losses = model.train_step(next(iter(loader)), wrapper)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert math.isfinite(float(total))


@pytest.mark.slow
def test_vitb_finetune_one_step(tiny_data):
    _one_step(_load('configs/finetune_in1k.py'), tiny_data['imagenet'])


@pytest.mark.slow
def test_vitb_linear_probe_one_step(tiny_data):
    _one_step(_load('configs/linear_probe_in1k.py'), tiny_data['imagenet'])


def test_mask_rcnn_layer_norms_use_vitdet_eps():
    """ViTDet's LayerNorms (backbone, simple pyramid, box and mask heads) have eps 1e-6; mmcv's
    ``build_norm_layer`` defaults an unset eps to 1e-5."""
    cfg = _load('configs/mask_rcnn_coco.py')
    cfg.model.backbone.img_size = 128  # same modules, small buffers
    model = _registry('mmdet').build(cfg.model)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert {type(m).__name__ for m in norms} >= {'LayerNorm', 'LayerNorm2d'}
    assert {m.eps for m in norms} == {1e-6}


@pytest.mark.slow
def test_vitb_upernet_one_step_reduced_resolution(tiny_data):
    cfg = _load('configs/upernet_ade20k.py')
    size = 128
    cfg.merge_from_dict({
        'model.backbone.img_size': size,
        'model.data_preprocessor.size': (size, size),
        'model.test_cfg.crop_size': (size, size),
        'model.decode_head.norm_cfg': dict(type='BN', requires_grad=True),
        'model.auxiliary_head.norm_cfg': dict(type='BN', requires_grad=True),
        'model.neck.norm_cfg': dict(type='BN', requires_grad=True),
    })
    pipeline = cfg.train_dataloader.dataset.pipeline
    pipeline[2]['scale'] = (4 * size, size)
    pipeline[3]['crop_size'] = (size, size)
    _one_step(cfg, tiny_data['ade20k'])


@pytest.mark.parametrize('padded', [True, False])
def test_upernet_slide_test_takes_an_image_thinner_than_the_crop(padded):
    """The test Resize leaves an image of aspect ratio > 4 below the crop on its short side;
    the data preprocessor pads it up to the crop (test_cfg.size) and the prediction is cut
    back to the image. Without that padding the slide window does not fit the relative
    position bias (RuntimeError): the real ADE20K layout test of 2026-11-24 hit it."""
    from mmseg.structures import SegDataSample
    cfg = _load('configs/demo/upernet_vit-tiny_synthetic.py')
    crop = cfg.model.test_cfg.crop_size
    assert cfg.model.data_preprocessor.test_cfg == dict(size=crop)
    assert _load('configs/upernet_ade20k.py').model.data_preprocessor.test_cfg == \
        dict(size=(512, 512))
    if not padded:
        cfg.model.data_preprocessor.test_cfg = None
    cfg.model.backbone.init_cfg = None
    model = _registry('mmseg').build(cfg.model).eval()
    h, w = crop[0] // 2, crop[1] * 4  # what Resize((256, 64), keep_ratio) makes of 16 x 128
    img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
    sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
    data = dict(inputs=[img], data_samples=[sample])
    if not padded:
        with pytest.raises(RuntimeError):
            model.test_step(data)
        return
    pred = model.test_step(data)[0]
    assert tuple(pred.pred_sem_seg.data.shape) == (1, h, w)
    assert tuple(pred.seg_logits.data.shape) == (cfg.model.decode_head.num_classes, h, w)


@pytest.mark.parametrize('training', [True, False])
def test_mask_rcnn_pads_to_1024_with_the_mean_pixel_after_normalisation(training):
    """detectron2's ViTDet pads the normalised image to 1024 x 1024 with 0 (the mean pixel),
    train and test; the pipelines no longer pad raw pixels (mmdet's port: 114)."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    cfg = _load('configs/mask_rcnn_coco.py')
    for pipeline in (cfg.train_dataloader.dataset.pipeline, cfg.test_dataloader.dataset.pipeline):
        assert 'Pad' not in [t['type'] for t in pipeline]
    pre = _registry('mmdet').build(cfg.model.data_preprocessor)
    img = torch.randint(0, 256, (3, 600, 800), dtype=torch.uint8)
    sample = DetDataSample(metainfo=dict(img_shape=(600, 800)))
    if training:
        from mmdet.structures.mask import BitmapMasks
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[10., 10., 50., 50.]]), labels=torch.tensor([1]),
            masks=BitmapMasks(torch.ones(1, 600, 800, dtype=torch.uint8).numpy(), 600, 800))
    out = pre(dict(inputs=[img], data_samples=[sample]), training=training)
    x = out['inputs']
    assert x.shape == (1, 3, 1024, 1024)
    assert torch.equal(x[..., 600:, :], torch.zeros_like(x[..., 600:, :]))
    assert torch.equal(x[..., 800:], torch.zeros_like(x[..., 800:]))
    mean = torch.tensor(cfg.model.data_preprocessor.mean).view(3, 1, 1)
    std = torch.tensor(cfg.model.data_preprocessor.std).view(3, 1, 1)
    torch.testing.assert_close(x[0, :, :600, :800], (img.flip(0).float() - mean) / std)
    if training:
        assert out['data_samples'][0].gt_instances.masks.masks.shape == (1, 1024, 1024)


@pytest.mark.slow
def test_vitb_mask_rcnn_one_step_reduced_resolution(tiny_data):
    from beitv2_mm.datasets.synthetic import SYNTHETIC_CLASSES
    cfg = _load('configs/mask_rcnn_coco.py')
    size = 128
    cfg.merge_from_dict({
        'model.backbone.img_size': size,
        # an 8x8 grid: 4x4 windows keep the windowed blocks windowed (14 would pad to one window)
        'model.backbone.window_size': 4,
        'model.data_preprocessor.pad_size_divisor': size,
        'model.data_preprocessor.batch_augments': [
            dict(type='BatchFixedSizePad', size=(size, size), pad_mask=True)],
        'train_dataloader.dataset.metainfo': dict(classes=SYNTHETIC_CLASSES),
        'train_dataloader.dataset.filter_cfg.min_size': 8,
        # 64 sampled RoIs instead of 512: the 4-conv box head dominates a CPU step otherwise
        'model.train_cfg.rcnn.sampler.num': 64,
        'model.train_cfg.rpn_proposal.max_per_img': 100,
    })
    for t in cfg.train_dataloader.dataset.pipeline:
        if t['type'] in ('RandomResize', 'RandomCrop'):
            t['scale' if t['type'] == 'RandomResize' else 'crop_size'] = (size, size)
    _one_step(cfg, tiny_data['coco'])
