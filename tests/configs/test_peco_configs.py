"""Every PeCo config builds; the PeCo demo chain trains (pixel / PeCo VQ-VAE -> MIM).

The full-size configs are built with random weights (no teacher/tokenizer file); the demo
runs train a few iterations on the tiny synthetic set with checkpoints written by the test.
"""
import copy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import beitv2_mm  # noqa: F401  (registers everything)
from mmpretrain.registry import MODELS

REPO = Path(__file__).resolve().parents[2]
OWNED = ['configs/peco/peco_vqvae_in1k.py', 'configs/peco/peco_vitb_mim.py',
         'configs/demo/peco_vqvae-tiny_synthetic.py', 'configs/demo/peco_vit-tiny_synthetic.py',
         'configs/demo/pixel_vqvae-tiny_synthetic.py']


def load(rel: str) -> Config:
    cfg = Config.fromfile(str(REPO / rel))
    assert cfg.custom_imports == dict(imports=['beitv2_mm'], allow_failed_imports=False)
    assert cfg.default_scope == 'mmpretrain'
    return cfg


def model_cfg(cfg: Config) -> dict:
    """cfg.model as the runner builds it (top-level data_preprocessor merged), weights random."""
    model = copy.deepcopy(cfg.model.to_dict())
    model.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    teacher = model.get('teacher')
    if teacher:
        teacher.update(checkpoint=None, allow_random_weights=True)
        if teacher.get('config'):
            teacher['config'] = str(REPO / teacher['config'])
    if 'target_generator' in model:
        model['target_generator']['checkpoint'] = None
    return model


def demo_teacher_checkpoint(tmp_path: Path) -> str:
    """A random-weight checkpoint of the demo teacher, in mmengine's layout."""
    teacher_cfg = Config.fromfile(str(REPO / 'configs/demo/teacher_vit-tiny_synthetic.py'))
    model = MODELS.build(teacher_cfg.model)
    path = tmp_path / 'teacher.pth'
    torch.save(dict(state_dict=model.state_dict()), path)
    return str(path)


@pytest.mark.parametrize('rel', OWNED)
def test_config_builds(rel):
    cfg = load(rel)
    model = MODELS.build(model_cfg(cfg))
    if cfg.model.type == 'PeCoVQVAETrainer':
        assert model.tokenizer.patch_size == 2 ** (len(cfg.model.tokenizer.ch_mult) - 1)
        assert (model.teacher is None) == (cfg.model.perceptual_weight == 0)
        # hand-off key of tokenizer-training configs
        if model.teacher is not None:
            assert 'checkpoint' in cfg.model.teacher
    else:
        # MIM: token grid == student patch grid, head size == codebook size
        tok, backbone = cfg.model.target_generator, cfg.model.backbone
        assert tok.patch_size == backbone.patch_size
        assert cfg.model.head.num_embed == tok.num_embed
        assert 'checkpoint' in tok
        mask = [t for t in cfg.train_dataloader.dataset.pipeline
                if t['type'] == 'BlockwiseMaskGenerator'][0]
        assert mask['num_masking_patches'] == cfg.model.num_masked_patches
        assert cfg.data_preprocessor.second_mean == [127.5] * 3  # tokenizer space [-1, 1]


def test_full_size_grids():
    vqvae = load('configs/peco/peco_vqvae_in1k.py').model
    mim = load('configs/peco/peco_vitb_mim.py').model
    assert vqvae.tokenizer.num_embed == 8192 and vqvae.perceptual_layers == (3, 6, 9, 12)
    assert vqvae.perceptual_weight == 1.0
    tok = mim.target_generator
    for key in ('base_channels', 'ch_mult', 'num_res_blocks', 'z_channels', 'num_embed',
                'embed_dims'):
        assert tok[key] == vqvae.tokenizer[key], key
    # the grid depends on ch_mult only: a narrow copy keeps the test fast
    narrow = {k: v for k, v in tok.items() if k not in ('type', 'checkpoint')}
    narrow.update(base_channels=8, z_channels=8, norm_groups=4, num_embed=16, embed_dims=4)
    model = MODELS.build(dict(type='PeCoVQVAE', **narrow))
    model.eval()
    assert model.encode(torch.zeros(1, 3, 224, 224)).shape == (1, 14, 14)


def test_vqvae_recipe_follows_the_vqkd_tokenizer_recipe():
    """The BEiT v2 tokenizer recipe the PeCo VQ-VAE borrows scales the lr with the total batch
    (run_vqkd_training.py: 5e-5 per 128 images), and its DINO teacher is the same local file
    as the DINO VQ-KD's (one download serves both)."""
    peco = load('configs/peco/peco_vqvae_in1k.py')
    vqkd = load('configs/vqkd/vqkd_vitb_clip-b16_in1k.py')
    per_image = vqkd.optim_wrapper.optimizer.lr / vqkd.auto_scale_lr.base_batch_size
    assert per_image == pytest.approx(5e-5 / 128)
    assert peco.optim_wrapper.optimizer.lr == pytest.approx(
        per_image * peco.auto_scale_lr.base_batch_size)
    assert peco.auto_scale_lr.enable and vqkd.auto_scale_lr.enable  # other totals: scaled
    assert peco.model.teacher.checkpoint == \
        load('configs/vqkd/vqkd_vitb_dino-b16_in1k.py').model.teacher.checkpoint


def _run(cfg: Config, work_dir: Path):
    from mmengine.runner import Runner
    cfg.work_dir = str(work_dir)
    cfg.default_hooks.logger.interval = 1
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


@pytest.mark.slow
def test_demo_chain_trains(tiny_data, tmp_path):
    """PeCo VQ-VAE demo (lambda=1, demo teacher) -> PeCo MIM demo on its checkpoint."""
    vq_cfg = load('configs/demo/peco_vqvae-tiny_synthetic.py')
    vq_cfg.train_dataloader.dataset.data_root = str(tiny_data['imagenet'])
    vq_cfg.model.teacher.config = str(REPO / vq_cfg.model.teacher.config)
    vq_cfg.model.teacher.checkpoint = demo_teacher_checkpoint(tmp_path)
    vq_cfg.train_cfg.max_iters = 6
    vq_cfg.param_scheduler = []
    vq_cfg.default_hooks.checkpoint.interval = 6
    runner = _run(vq_cfg, tmp_path / 'vqvae')
    ckpt = tmp_path / 'vqvae' / 'iter_6.pth'
    assert ckpt.is_file()
    tokenizer_state = runner.model.tokenizer.state_dict()

    mim_cfg = load('configs/demo/peco_vit-tiny_synthetic.py')
    mim_cfg.train_dataloader.dataset.data_root = str(tiny_data['imagenet'])
    mim_cfg.model.target_generator.checkpoint = str(ckpt)
    mim_cfg.train_cfg.max_iters = 4
    mim_cfg.param_scheduler = []
    mim_cfg.default_hooks.checkpoint.interval = 4
    mim = _run(mim_cfg, tmp_path / 'mim')
    generator = mim.model.target_generator
    assert not generator.training
    for key, value in generator.state_dict().items():  # loaded, then untouched by MIM
        assert torch.equal(value, tokenizer_state[key]), key
    saved = torch.load(tmp_path / 'mim' / 'iter_4.pth', map_location='cpu', weights_only=False)
    assert any(k.startswith('backbone.') for k in saved['state_dict'])


@pytest.mark.slow
def test_pixel_demo_trains(tiny_data, tmp_path):
    cfg = load('configs/demo/pixel_vqvae-tiny_synthetic.py')
    cfg.train_dataloader.dataset.data_root = str(tiny_data['imagenet'])
    cfg.train_cfg.max_iters = 4
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint.interval = 4
    runner = _run(cfg, tmp_path / 'pixel')
    assert runner.model.teacher is None
    saved = torch.load(tmp_path / 'pixel' / 'iter_4.pth', map_location='cpu', weights_only=False)
    assert saved['state_dict'] and all(k.startswith('tokenizer.') for k in saved['state_dict'])
