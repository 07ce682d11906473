"""VQKDAlgorithm: losses, frozen teacher kept out of optimizer/state dict, end-to-end demo run."""
import copy
import json

import pytest
import torch
from mmengine.config import Config

import beitv2_mm  # noqa: F401
from beitv2_mm.tokenizers import tiny_vqkd_tokenizer_cfg
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

TIMM_KW = dict(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2)


@pytest.fixture
def timm_teacher_ckpt(tmp_path):
    timm = pytest.importorskip('timm')
    torch.manual_seed(0)
    src = timm.create_model('vit_tiny_patch16_224', pretrained=False, num_classes=0, **TIMM_KW)
    path = tmp_path / 'teacher.pth'
    torch.save(src.state_dict(), path)
    return str(path)


def tiny_algorithm(teacher_ckpt):
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='VQKDAlgorithm',
        tokenizer=tiny_vqkd_tokenizer_cfg(target_dim=16),
        teacher=dict(type='TimmTeacher', model_name='vit_tiny_patch16_224',
                     model_kwargs=TIMM_KW, checkpoint=teacher_ckpt)))


def batch(n=4, size=32):
    g = torch.Generator().manual_seed(0)
    # what PackInputs + default_collate give: one uint8 BGR tensor (B, 3, H, W)
    return dict(inputs=torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8,
                                     generator=g),
                data_samples=[DataSample() for _ in range(n)])


def test_losses_and_teacher_frozen_outside_optimizer(timm_teacher_ckpt):
    from mmengine.optim import build_optim_wrapper

    model = tiny_algorithm(timm_teacher_ckpt)
    model.train()
    assert model.tokenizer.training and not model.teacher.training
    assert not any(p.requires_grad for p in model.teacher.parameters())
    optim = build_optim_wrapper(model, dict(optimizer=dict(type='AdamW', lr=1e-3)))
    teacher_before = copy.deepcopy(model.teacher.state_dict())
    tok_before = copy.deepcopy(model.tokenizer.encoder.state_dict())
    log_vars = model.train_step(batch(), optim)
    assert set(log_vars) >= {'loss', 'loss_cos', 'loss_commit'}
    assert 0.0 <= float(log_vars['loss_cos']) <= 2.0
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), f'teacher changed: {k}'
    assert any(not torch.equal(v, tok_before[k])
               for k, v in model.tokenizer.encoder.state_dict().items())
    codes = model(batch()['inputs'][:1].float(), mode='tensor')
    assert codes.shape == (1, 4, 4)


def test_cosine_distillation_loss_is_one_minus_the_cosine():
    """Official ``calculate_rec_loss``: both the decoder output and the teacher target are
    l2-normalised per token, loss = mean(1 - cos). The train step above only checks
    0 <= loss <= 2, which 1 + cos or an unnormalised target also give."""
    from beitv2_mm.algorithms.vqkd import cosine_distillation_loss

    g = torch.Generator().manual_seed(0)
    features, target = torch.randn(2, 5, 16, generator=g), torch.randn(2, 5, 16, generator=g)
    expected = (1 - torch.nn.functional.cosine_similarity(features, target, dim=-1)).mean()
    torch.testing.assert_close(cosine_distillation_loss(features, target), expected)
    # the scale of either side does not count (teacher features are normalised too)
    torch.testing.assert_close(cosine_distillation_loss(0.1 * features, 7.0 * target), expected)
    torch.testing.assert_close(cosine_distillation_loss(target, 3.0 * target), torch.tensor(0.0))
    torch.testing.assert_close(cosine_distillation_loss(-target, target), torch.tensor(2.0))


def test_checkpoint_excludes_teacher_and_loads_back_strictly(timm_teacher_ckpt):
    from mmengine.runner.checkpoint import get_state_dict

    model = tiny_algorithm(timm_teacher_ckpt)
    for sd in (model.state_dict(), get_state_dict(model)):
        assert sd and all(k.startswith('tokenizer.') for k in sd), \
            [k for k in sd if not k.startswith('tokenizer.')]
    other = tiny_algorithm(timm_teacher_ckpt)
    other.load_state_dict(model.state_dict(), strict=True)  # teacher keys not "missing"


def test_mismatched_teacher_dim_is_a_clear_error(timm_teacher_ckpt):
    with pytest.raises(ValueError, match='model.tokenizer.target_dim=16'):
        MODELS.build(dict(
            type='VQKDAlgorithm', tokenizer=tiny_vqkd_tokenizer_cfg(target_dim=8),
            teacher=dict(type='TimmTeacher', model_name='vit_tiny_patch16_224',
                         model_kwargs=TIMM_KW, checkpoint=timm_teacher_ckpt)))


@pytest.fixture(scope='module')
def synthetic_imagenet(request, tmp_path_factory):
    try:
        return request.getfixturevalue('tiny_data')['imagenet']
    except pytest.FixtureLookupError:
        from beitv2_mm.datasets.synthetic import make_synthetic_dataset
        return make_synthetic_dataset(tmp_path_factory.mktemp('synthetic'), 'tiny')['imagenet']


@pytest.mark.slow
def test_demo_config_trains_logs_usage_and_writes_tokenizer_checkpoint(
        tmp_path, repo_root, synthetic_imagenet):
    from mmengine.runner import Runner

    cfg = Config.fromfile(repo_root / 'configs/demo/vqkd_vit-tiny_synthetic.py')
    # the demo teacher with random weights (training it is the teacher config's job)
    teacher_cfg = Config.fromfile(cfg.model.teacher.config)
    torch.manual_seed(0)
    teacher_model = MODELS.build(teacher_cfg.model)
    teacher_ckpt = tmp_path / 'teacher.pth'
    torch.save(dict(state_dict=teacher_model.state_dict()), teacher_ckpt)
    cfg.model.teacher.config = str(repo_root / cfg.model.teacher.config)
    cfg.model.teacher.checkpoint = str(teacher_ckpt)
    iters = 40
    cfg.work_dir = str(tmp_path / 'work')
    cfg.train_dataloader.dataset.data_root = str(synthetic_imagenet)
    cfg.train_dataloader.batch_size = 8
    cfg.train_dataloader.num_workers = 0
    cfg.train_cfg.max_iters = iters
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
    cfg.default_hooks.checkpoint.interval = iters
    cfg.default_hooks.logger.interval = 10
    cfg.custom_hooks = [dict(type='CodebookUsageHook', interval=10, warn_threshold=1.1)]
    runner = Runner.from_cfg(cfg)
    runner.train()

    hub = runner.message_hub
    losses = hub.get_scalar('train/loss_cos').data[0]
    assert len(losses) == iters
    first, last = losses[:8].mean(), losses[-8:].mean()
    assert last < first * 0.9, f'cosine loss did not decrease: {first:.4f} -> {last:.4f}'
    usage = hub.get_scalar('train/codebook/tokenizer.quantizer/usage').current()
    assert 0.0 < usage <= 1.0
    # threshold 1.1 > any usage: the collapse warning must have been recorded
    warnings = hub.get_info('codebook_collapse_warnings')
    assert warnings and warnings[-1]['quantizer'] == 'tokenizer.quantizer'
    # ... and lands in the run's results file
    results = json.loads((tmp_path / 'work' / 'codebook_results.json').read_text())
    assert results['collapsed'] and results['warnings'][-1]['iter'] == warnings[-1]['iter']
    assert 0.0 < results['latest']['tokenizer.quantizer']['usage'] <= 1.0

    ckpt = tmp_path / 'work' / f'iter_{iters}.pth'
    assert ckpt.is_file()
    saved = torch.load(ckpt, map_location='cpu', weights_only=False)['state_dict']
    assert not any(k.startswith('teacher.') for k in saved)
    tok_cfg = copy.deepcopy(cfg.model.tokenizer)
    tok_cfg['checkpoint'] = str(ckpt)
    tokenizer = MODELS.build(tok_cfg).eval()
    x = torch.rand(2, 3, 64, 64) * 255
    runner.model.eval()
    assert torch.equal(tokenizer.encode(x), runner.model.tokenizer.encode(x))


def test_timm_teacher_trains_through_the_launcher(tmp_path, repo_root, synthetic_imagenet):
    """tools/train.py's path (guard hooks added) with a timm teacher, as the DINO config has:
    the teacher's timm model, built with num_classes=0 and frozen, is not a head to check
    against the data set's classes (NumClassesGuardHook stopped every such run)."""
    from beitv2_mm.engine import launch

    timm = pytest.importorskip('timm')
    kw = dict(img_size=64, patch_size=8, embed_dim=16, depth=1, num_heads=2)
    torch.manual_seed(0)
    teacher = timm.create_model('vit_tiny_patch16_224', pretrained=False, num_classes=0, **kw)
    torch.save(teacher.state_dict(), tmp_path / 'teacher.pth')
    options = {'train_dataloader.dataset.data_root': str(synthetic_imagenet),
               'train_dataloader.batch_size': 4, 'train_dataloader.num_workers': 0,
               'train_cfg.max_iters': 2, 'model.tokenizer.target_dim': 16}
    cfg = launch.prepare_train_config(str(repo_root / 'configs/demo/vqkd_vit-tiny_synthetic.py'),
                                      options, work_dir=str(tmp_path / 'work'))
    assert {'NaNGuardHook', 'NumClassesGuardHook'} <= {h['type'] for h in cfg.custom_hooks}
    cfg.model.teacher = dict(type='TimmTeacher', model_name='vit_tiny_patch16_224',
                             model_kwargs=kw, checkpoint=str(tmp_path / 'teacher.pth'))
    runner = launch.build_runner(cfg)
    runner.train()
    assert runner.iter == 2 and (tmp_path / 'work' / 'iter_2.pth').is_file()


def vitb_one_step(cfg, img_size):
    from mmengine.optim import build_optim_wrapper

    cfg.model.teacher.checkpoint = None
    cfg.model.teacher.allow_random_weights = True
    model = MODELS.build(cfg.model)
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    optim_cfg.type = 'OptimWrapper'  # AMP needs a GPU; the recipe keeps AmpOptimWrapper
    optim_cfg.pop('loss_scale')
    optim = build_optim_wrapper(model, optim_cfg)
    model.train()
    log_vars = model.train_step(batch(n=1, size=img_size), optim)
    assert torch.isfinite(log_vars['loss'])
    assert model.tokenizer.quantizer.initted.item() == 1
    return model


@pytest.mark.slow
def test_vitb_clip_config_builds_and_runs_one_step_at_224(repo_root):
    cfg = Config.fromfile(repo_root / 'configs/vqkd/vqkd_vitb_clip-b16_in1k.py')
    tok = cfg.model.tokenizer
    assert (tok.num_codes, tok.code_dim, tok.decay, tok.target_dim) == (8192, 32, 0.99, 512)
    assert tok.decoder.arch.num_layers == 3
    assert cfg.optim_wrapper.optimizer.betas == (0.9, 0.99)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.train_dataloader.batch_size * 8 == 512
    model = vitb_one_step(cfg, 224)
    assert model.teacher.out_dim == 512
    from beitv2_mm.backbones.beit_vit import FastBEiTAttention  # encoder and decoder on SDPA
    vits = (model.tokenizer.encoder, model.tokenizer.decoder)
    assert all(isinstance(layer.attn, FastBEiTAttention) and layer.attn.attn_impl == 'sdpa'
               for vit in vits for layer in vit.layers)


@pytest.mark.slow
def test_vitb_dino_config_builds_and_runs_one_step(repo_root):
    cfg = Config.fromfile(repo_root / 'configs/vqkd/vqkd_vitb_dino-b16_in1k.py')
    assert cfg.model.teacher.type == 'TimmTeacher' and cfg.model.tokenizer.target_dim == 768
    assert cfg.model.tokenizer.decoder.arch.num_layers == 1
    # ViT-B at 112 px instead of 224 to keep CI time down (same modules, 7x7 grid)
    cfg.model.tokenizer.encoder.img_size = 112
    cfg.model.tokenizer.decoder.img_size = 7
    cfg.model.teacher.model_kwargs = dict(img_size=112)
    vitb_one_step(cfg, 112)


@pytest.mark.slow
def test_vitb_dec1_config_builds_a_one_layer_decoder(repo_root):
    cfg = Config.fromfile(repo_root / 'configs/vqkd/vqkd_vitb-dec1_clip-b16_in1k.py')
    tokenizer = MODELS.build(cfg.model.tokenizer)  # the CLIP teacher is tested above
    assert len(tokenizer.decoder.layers) == 1 and len(tokenizer.encoder.layers) == 12
    out = tokenizer.train().reconstruct(torch.rand(1, 3, 224, 224) * 255)
    assert out.features.shape == (1, 196, 512) and out.indices.shape == (1, 14, 14)
