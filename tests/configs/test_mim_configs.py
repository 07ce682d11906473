"""The MIM configs build; the ViT-B ones run one training step with random tokenizer weights."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

import beitv2_mm  # noqa: F401
from mmpretrain.registry import MODELS, TRANSFORMS
from mmpretrain.structures import DataSample

REPO = Path(__file__).resolve().parents[2]
VITB = ['configs/beitv2_vitb_mim.py', 'configs/beitv2_vitb_mim_1600e.py',
        'configs/beitv1_vitb_mim.py']
VITL = ['configs/beitv2_vitl_mim.py']
DEMOS = ['configs/demo/beitv2_vit-tiny_synthetic.py', 'configs/demo/beitv1_vit-tiny_synthetic.py']
# the same model as beitv2_vitb_mim.py (no step of its own), another pipeline
JITTER_AFTER_CROP = 'configs/beitv2_vitb_mim_jitter_after_crop.py'


def _load(rel):
    cfg = Config.fromfile(str(REPO / rel))
    assert cfg.custom_imports == dict(imports=['beitv2_mm'], allow_failed_imports=False)
    assert cfg.default_scope == 'mmpretrain'
    cfg.model.target_generator.checkpoint = None  # random tokenizer weights
    cfg.model.target_generator.pop('weights', None)
    return cfg


@pytest.mark.parametrize('rel', VITB + VITL + DEMOS + [JITTER_AFTER_CROP])
def test_config_is_consistent(rel):
    cfg = _load(rel)
    # hand-off keys the suite overrides
    assert 'data_root' in cfg.train_dataloader.dataset
    assert 'checkpoint' in cfg.model.target_generator
    mask_cfg = [t for t in cfg.train_dataloader.dataset.pipeline
                if t['type'] == 'BlockwiseMaskGenerator'][0]
    assert cfg.model.num_masked_patches == mask_cfg['num_masking_patches']
    mask = TRANSFORMS.build(mask_cfg).generate()
    assert mask.sum() == cfg.model.num_masked_patches
    if cfg.model.neck is not None:  # BEiT v2: aggregation at the backbone's early output
        arch = cfg.model.backbone.arch
        depth = {'base': 12, 'large': 24}[arch] if isinstance(arch, str) else arch['num_layers']
        assert depth + cfg.model.backbone.out_indices[0] == cfg.model.neck.early_layers - 1


def test_official_recipe_values():
    v2 = _load('configs/beitv2_vitb_mim.py')
    opt = v2.optim_wrapper
    assert opt.type == 'AmpOptimWrapper' and opt.clip_grad.max_norm == 3.0
    assert opt.optimizer.lr == 1.5e-3 and opt.optimizer.betas == (0.9, 0.98)
    assert opt.optimizer.weight_decay == 0.05 and v2.auto_scale_lr.base_batch_size == 2048
    assert v2.train_cfg.max_epochs == 300 and v2.param_scheduler[1].eta_min == 1e-5
    assert v2.model.backbone.layer_scale_init_value == 0.1
    assert v2.model.backbone.drop_path_rate == 0 and v2.model.neck.early_layers == 9
    long = _load('configs/beitv2_vitb_mim_1600e.py')
    assert long.optim_wrapper.optimizer.betas == (0.9, 0.999)
    assert long.model.backbone.drop_path_rate == 0.1 and long.train_cfg.max_epochs == 1600
    large = _load('configs/beitv2_vitl_mim.py')
    assert large.model.neck.early_layers == 21
    assert large.model.backbone.layer_scale_init_value == 1e-5
    v1 = _load('configs/beitv1_vitb_mim.py')
    assert v1.model.neck is None and v1.model.target_generator.type == 'DALLETokenizer'
    crop = [t for t in v1.train_dataloader.dataset.pipeline
            if t['type'] == 'TwoViewRandomResizedCrop'][0]
    assert crop['second_size'] == 112
    # the current unilm beit/run_beit_pretraining.py --opt_betas default (its README command
    # sets no betas); the rest of the v1 schedule is the inherited BEiT v2 300-epoch one
    assert v1.optim_wrapper.optimizer.betas == (0.9, 0.999)
    assert v1.optim_wrapper.optimizer.lr == 1.5e-3 and v1.optim_wrapper.clip_grad.max_norm == 3.0
    # PeCo pre-trains with BEiT's recipe: the same optimiser, weight-decay exemptions,
    # schedule and runtime pieces as BEiT v1 (only the tokenizer and its view differ)
    peco = _load('configs/peco/peco_vitb_mim.py')
    for key in ('optim_wrapper', 'param_scheduler', 'train_cfg', 'auto_scale_lr',
                'default_hooks', 'env_cfg', 'randomness', 'find_unused_parameters'):
        assert peco[key] == v1[key], key
    # the official pipeline's colour jitter and two-view crop (PIL) in every MIM recipe
    for cfg in (v2, v1, peco):
        types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
        assert 'PILColorJitter' in types and 'TwoViewRandomResizedCrop' in types


def _one_step(cfg, img_size, tok_size, batch=1):
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim = build_optim_wrapper(model, dict(type='OptimWrapper',
                                            optimizer=dict(type='AdamW', lr=1e-4)))
    mask_cfg = [t for t in cfg.train_dataloader.dataset.pipeline
                if t['type'] == 'BlockwiseMaskGenerator'][0]
    gen = TRANSFORMS.build(mask_cfg)
    data = dict(
        inputs=[torch.randint(0, 256, (batch, 3, img_size, img_size), dtype=torch.uint8),
                torch.randint(0, 256, (batch, 3, tok_size, tok_size), dtype=torch.uint8)],
        data_samples=[DataSample().set_mask(torch.from_numpy(gen.generate()))
                      for _ in range(batch)])
    log = model.train_step(data, optim)
    assert torch.isfinite(log['loss'])
    return log


@pytest.mark.slow
@pytest.mark.parametrize('rel,tok_size', [('configs/beitv2_vitb_mim.py', 224),
                                          ('configs/beitv1_vitb_mim.py', 112)])
def test_vitb_config_runs_one_step(rel, tok_size):
    cfg = _load(rel)
    cfg.model.backbone.drop_path_rate = 0.
    log = _one_step(cfg, 224, tok_size)
    assert ('loss_agg' in log) == (cfg.model.neck is not None)


@pytest.mark.slow
def test_vitl_config_builds():
    cfg = _load('configs/beitv2_vitl_mim.py')
    model = MODELS.build(cfg.model)
    assert len(model.backbone.layers) == 24 and model.neck.early_layers == 21
    assert model.head.cls_head.in_features == 1024


@pytest.mark.parametrize('rel', DEMOS)
def test_demo_config_runs_one_step(rel):
    _one_step(_load(rel), 64, 64, batch=2)


def test_jitter_after_crop_config_draws_the_official_crop_and_mask(tmp_path):
    """``beitv2_vitb_mim_jitter_after_crop.py`` only moves the jitter behind the crop: from the
    same random state it cuts the same crop and mask as ``beitv2_vitb_mim.py``, and its views
    differ from the official ones by rounding and clipping only (a photo-like JPEG here)."""
    import numpy as np
    from mmengine.registry import init_default_scope
    from PIL import Image
    init_default_scope('mmpretrain')
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:300, 0:400] / 400
    img = np.stack([200 * xx + 30, 160 * yy + 40, 120 * (1 - xx * yy) + 60], -1)
    img = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
    path = tmp_path / 'photo.JPEG'
    Image.fromarray(img).save(path, quality=90)

    def run(rel, seed):
        pipeline = Config.fromfile(str(REPO / rel)).train_dataloader.dataset.pipeline
        assert pipeline[-1]['type'] == 'PackInputs'
        np.random.seed(seed)
        results = dict(img_path=str(path))
        for t in pipeline:
            results = TRANSFORMS.build(t)(results)
        return results

    cfg = Config.fromfile(str(REPO / JITTER_AFTER_CROP))
    types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert types.index('DrawColorJitter') < types.index('TwoViewRandomResizedCrop') \
        < types.index('ApplyColorJitter')
    assert 'PILColorJitter' not in types
    official_steps = Config.fromfile(str(REPO / 'configs/beitv2_vitb_mim.py')) \
        .train_dataloader.dataset.pipeline
    jitter = {k: v for k, v in official_steps[types.index('DrawColorJitter')].items() if k != 'type'}
    assert official_steps[types.index('DrawColorJitter')]['type'] == 'PILColorJitter'
    assert {k: v for k, v in cfg.train_dataloader.dataset.pipeline[types.index('DrawColorJitter')]
            .items() if k != 'type'} == jitter
    others = [t for t in cfg.train_dataloader.dataset.pipeline if 'ColorJitter' not in t['type']]
    assert others == [t for t in official_steps if t['type'] != 'PILColorJitter']
    for seed in range(4):
        official, after = run('configs/beitv2_vitb_mim.py', seed), run(JITTER_AFTER_CROP, seed)
        assert torch.equal(official['data_samples'].mask, after['data_samples'].mask)
        for a, b in zip(official['inputs'], after['inputs']):
            assert a.shape == b.shape == (3, 224, 224) and a.dtype == b.dtype == torch.uint8
            diff = (a.int() - b.int()).abs().float()
            assert diff.mean() < 1.5, (seed, diff.mean())
        torch.testing.assert_close(after['inputs'][0], after['inputs'][1], rtol=0, atol=0)


def test_the_mim_demos_share_one_recipe():
    """The BEiT v2 / BEiT v1 / PeCo demos differ only where the methods do: the same data,
    student, schedule and runtime, and the full configs' optimiser rules; betas per paper."""
    demos = {m: _load(f'configs/demo/{m}_vit-tiny_synthetic.py')
             for m in ('beitv2', 'beitv1', 'peco')}
    full = _load('configs/beitv2_vitb_mim.py').optim_wrapper
    for name, cfg in demos.items():
        assert cfg.optim_wrapper.paramwise_cfg == full.paramwise_cfg, name
        assert cfg.optim_wrapper.clip_grad == full.clip_grad, name
        for key in ('train_dataloader', 'param_scheduler', 'train_cfg', 'default_hooks',
                    'env_cfg', 'randomness'):
            assert cfg[key] == demos['beitv2'][key], (name, key)
        assert cfg.model.backbone.arch == demos['beitv2'].model.backbone.arch, name
        optimizer = dict(cfg.optim_wrapper.optimizer, betas=None)
        assert optimizer == dict(demos['beitv2'].optim_wrapper.optimizer, betas=None), name
    assert demos['beitv2'].optim_wrapper.optimizer.betas == full.optimizer.betas == (0.9, 0.98)
    assert demos['beitv1'].optim_wrapper.optimizer.betas == (0.9, 0.999)
    assert demos['peco'].optim_wrapper.optimizer.betas == (0.9, 0.999)
