"""BEiT v1 / v2 MIM (BEiTMIM): frozen tokenizer under a runner, shared head, loss decreases."""
import copy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

import beitv2_mm  # noqa: F401
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

REPO = Path(__file__).resolve().parents[2]
DEMO_V2 = REPO / 'configs/demo/beitv2_vit-tiny_synthetic.py'
DEMO_V1 = REPO / 'configs/demo/beitv1_vit-tiny_synthetic.py'


class LossRecorder(Hook):
    """Keeps every training loss and checks the tokenizer mode on each step."""

    def __init__(self):
        self.losses, self.tokenizer_training = [], []
        self.tokenizer_before = None

    def before_train(self, runner):
        # after the runner's init_weights / checkpoint loading, before the first step
        self.tokenizer_before = _tokenizer_snapshot(runner.model)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses.append(float(outputs['loss']))
        model = runner.model
        self.tokenizer_training.append(model.target_generator.training)
        assert model.backbone.training


def _cfg(path, data_root, work_dir, max_iters, **overrides):
    cfg = Config.fromfile(str(path))
    cfg.work_dir = str(work_dir)
    cfg.train_dataloader.dataset.data_root = str(data_root)
    cfg.train_cfg.max_iters = max_iters
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                                end=3)]
    cfg.default_hooks.logger.interval = 1000
    cfg.default_hooks.checkpoint.interval = max_iters
    cfg.model.target_generator.checkpoint = None  # random tokenizer weights
    cfg.merge_from_dict(overrides)
    return cfg


def _tokenizer_snapshot(model):
    gen = model.target_generator
    return {k: v.detach().clone() for k, v in gen.state_dict(keep_vars=True).items()}


MMPRETRAIN_VQKD = dict(
    type='VQKD',
    encoder_config=dict(
        arch=dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=128),
        img_size=64, patch_size=8, out_indices=-1, final_norm=True, out_type='featmap',
        use_abs_pos_emb=True, use_rel_pos_bias=False, use_shared_rel_pos_bias=False,
        layer_scale_init_value=0.),
    num_embed=512, embed_dims=32, quantize_kmeans_init=False)
TINY_DALLE = dict(type='DALLETokenizer', group_count=4, n_hid=8, n_blk_per_group=1,
                  vocab_size=512)


@pytest.mark.parametrize('config,tokenizer,iters', [(DEMO_V2, None, 20),
                                                    (DEMO_V2, MMPRETRAIN_VQKD, 4),
                                                    (DEMO_V1, None, 20),
                                                    (DEMO_V1, TINY_DALLE, 4)],
                         ids=['beitv2', 'beitv2-mmpretrain-vqkd', 'beitv1', 'beitv1-dalle'])
def test_tokenizer_frozen_under_runner_and_loss_decreases(config, tokenizer, iters, tiny_data,
                                                          tmp_path):
    cfg = _cfg(config, tiny_data['imagenet'], tmp_path, max_iters=iters,
               **{'optim_wrapper.optimizer.lr': 2e-3, 'train_dataloader.batch_size': 8})
    if tokenizer is not None:
        cfg.model.target_generator = copy.deepcopy(tokenizer)
    if cfg.model.target_generator.type == 'PeCoVQVAE':
        # random weights: an uninitialised codebook with kmeans_init would be k-means
        # initialised on the first batch (a trained checkpoint is marked initialised)
        cfg.model.target_generator.quantizer = dict(decay=0.99, l2_normalize=False,
                                                    kmeans_init=False, beta=1.0)
    runner = Runner.from_cfg(cfg)
    model = runner.model
    assert not any(p.requires_grad for p in model.target_generator.parameters())
    recorder = LossRecorder()
    runner.register_hook(recorder, priority='LOWEST')
    runner.train()
    before = recorder.tokenizer_before
    assert before, 'tokenizer has no state'

    # frozen: eval mode on every step although the runner called model.train()
    assert recorder.tokenizer_training == [False] * iters
    after = _tokenizer_snapshot(model)
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), f'tokenizer {key} changed during MIM'
    # ... while the student learned
    losses = recorder.losses
    assert len(losses) == iters
    if iters >= 20:
        early, late = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
        assert late < early - 0.1, f'MIM loss did not decrease: {early:.3f} -> {late:.3f}'

    # the checkpoint keeps the MIM layout and its backbone loads into the student alone
    ckpt = torch.load(tmp_path / f'iter_{iters}.pth', map_location='cpu', weights_only=False)
    keys = ckpt['state_dict'].keys()
    assert {k.split('.')[0] for k in keys} >= {'backbone', 'head', 'target_generator'}
    backbone_state = {k[len('backbone.'):]: v for k, v in ckpt['state_dict'].items()
                      if k.startswith('backbone.')}
    assert not any('patch_aggregation' in k or 'cls_head' in k for k in backbone_state)
    student = MODELS.build(copy.deepcopy(cfg.model.backbone))
    student.load_state_dict(backbone_state, strict=True)


def _tiny_v2_model(**model_overrides):
    cfg = Config.fromfile(str(DEMO_V2))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.target_generator.checkpoint = None
    for key, value in model_overrides.items():  # replace (ConfigDict.update would merge)
        model_cfg[key] = value
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def _fake_batch(model, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    imgs = [torch.randn(batch, 3, 64, 64, generator=gen), torch.randn(batch, 3, 64, 64,
                                                                      generator=gen)]
    from beitv2_mm.algorithms.masking import BlockwiseMaskGenerator
    mask_gen = BlockwiseMaskGenerator(input_size=8, num_masking_patches=24, min_num_patches=4)
    samples = [DataSample().set_mask(torch.from_numpy(mask_gen.generate())) for _ in range(batch)]
    return imgs, samples


def test_aggregation_head_shares_the_mim_head():
    torch.manual_seed(0)
    model = _tiny_v2_model()
    num_tokens = model.head.cls_head.out_features
    vocab_linears = [n for n, m in model.named_modules()
                     if isinstance(m, torch.nn.Linear) and m.out_features == num_tokens
                     and not n.startswith('target_generator')]
    assert vocab_linears == ['head.cls_head'], 'one lm head for both branches'
    imgs, samples = _fake_batch(model)
    losses = model.loss(imgs, samples)
    assert set(losses) == {'loss_mim', 'loss_agg'}
    # the aggregation loss alone reaches the shared head and the neck
    model.zero_grad()
    losses['loss_agg'].backward()
    assert model.head.cls_head.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.neck.parameters() if p.requires_grad)
    # the exported backbone has no aggregation or head parameters
    assert not any('patch_aggregation' in k or 'cls_head' in k
                   for k in model.backbone.state_dict())


def test_sync_free_gather_equals_boolean_indexing():
    torch.manual_seed(0)
    model = _tiny_v2_model()
    bool_model = copy.deepcopy(model)
    bool_model.num_masked_patches = None
    imgs, samples = _fake_batch(model)
    a, b = model.loss(imgs, samples), bool_model.loss(imgs, samples)
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def _randomise_student(model, seed=0):
    """Non-trivial values in the student, neck and head: the shared relative position table,
    mask token and q/v biases start at zero, which would hide a bias or token read from the
    wrong place. The (frozen) tokenizer keeps its own weights."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith('target_generator.'):
                continue
            base = 1.0 if ('ln' in name or 'norm' in name) and name.endswith('weight') else 0.0
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2 + base)


@pytest.mark.parametrize('algorithm,gather', [('BEiTMIM', True), ('BEiTMIM', False),
                                              ('SelectiveBEiTMIM', True)],
                         ids=['gather', 'boolean', 'selective'])
def test_beitv2_losses_are_mmpretrains_beit_loss_on_the_same_modules(algorithm, gather):
    """mmpretrain's ``BEiT.loss`` (mask to the student, the neck with the student's shared
    relative position bias, the BEiTV2Head's CE at the masked positions) is the reference:
    ours must give both of its terms on the same modules. The tests above compare our paths
    with one another only, so a wiring error common to them (the unmasked view, no shared
    bias in the neck, the wrong token rows) would pass them."""
    from mmpretrain.models.selfsup.beit import BEiT

    torch.manual_seed(0)
    model = _tiny_v2_model(type=algorithm)
    if not gather:
        model.num_masked_patches = None
    _randomise_student(model)
    model.eval()  # no drop path: the two computations see the same network
    imgs, samples = _fake_batch(model)
    ours = model.loss(imgs, samples)
    stock = BEiT.loss(model, imgs, samples)  # the parent's loss, run on our modules
    torch.testing.assert_close(ours['loss_mim'], stock['loss_1'], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours['loss_agg'], stock['loss_2'], rtol=1e-5, atol=1e-5)
    assert abs(float(ours['loss_mim'].detach() - ours['loss_agg'].detach())) > 1e-3  # two terms


@pytest.mark.parametrize('gather', [True, False], ids=['gather', 'boolean'])
def test_beitv1_loss_is_mmpretrains_beit_loss_on_the_same_modules(gather):
    """BEiT v1 (no neck): the CE of the last layer's patch tokens ([CLS] dropped) at the masked
    positions against the DALL-E ids, as mmpretrain's ``BEiT.loss`` with ``BEiTV1Head``."""
    from mmpretrain.models.selfsup.beit import BEiT

    cfg = Config.fromfile(str(DEMO_V1))
    cfg.model.target_generator = copy.deepcopy(TINY_DALLE)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    if not gather:
        model.num_masked_patches = None
    _randomise_student(model)
    model.eval()
    imgs, samples = _fake_batch(model)
    torch.testing.assert_close(model.loss(imgs, samples)['loss_mim'],
                               BEiT.loss(model, imgs, samples)['loss'], rtol=1e-5, atol=1e-5)


def test_a_tokenizer_grid_other_than_the_student_grid_is_an_error():
    """DALL-E (8x downsampling) fed the 64 px student view gives 8x8 = 64 tokens, but with a
    larger view 16x16 = 256 for 64 patches: the sync-free gather would silently take the first
    64 tokens (the top rows), where the official boolean indexing raises."""
    cfg = Config.fromfile(str(DEMO_V1))
    cfg.model.target_generator = copy.deepcopy(TINY_DALLE)
    model = MODELS.build(cfg.model)
    model.init_weights()
    imgs, samples = _fake_batch(model)
    assert model.num_masked_patches  # the gather path
    model.loss(imgs, samples)
    too_big = [imgs[0], torch.randn(2, 3, 128, 128)]
    with pytest.raises(ValueError, match=r'256 tokens per image .*covers 64 student patches'):
        model.loss(too_big, samples)


@pytest.mark.parametrize('algorithm', ['BEiTMIM', 'SelectiveBEiTMIM'])
def test_beitv2_tokenizer_grid_other_than_the_student_grid_is_an_error(algorithm):
    """The same check on the BEiT v2 path, including the selective-rows step that every
    BEiT v2 config runs: a 128 px tokenizer view gives 16x16 tokens for 8x8 patches."""
    torch.manual_seed(0)
    model = _tiny_v2_model(type=algorithm)
    imgs, samples = _fake_batch(model)
    model.loss(imgs, samples)
    too_big = [imgs[0], torch.randn(2, 3, 128, 128)]
    with pytest.raises(ValueError, match=r'256 tokens per image .*covers 64 student patches'):
        model.loss(too_big, samples)


def _masks_with_counts(counts, grid=8):
    gen = torch.Generator().manual_seed(0)
    masks = []
    for count in counts:
        mask = torch.zeros(grid * grid, dtype=torch.bool)
        mask[torch.randperm(grid * grid, generator=gen)[:count]] = True
        masks.append(DataSample().set_mask(mask.view(grid, grid)))
    return masks


@pytest.mark.parametrize('algorithm', ['BEiTMIM', 'SelectiveBEiTMIM'])
def test_a_mask_count_other_than_num_masked_patches_is_an_error(algorithm):
    """The gather takes exactly num_masked_patches (24) positions: a mask of 20 would put 4
    visible patches into the loss, one of 30 would drop 6 masked ones, silently."""
    torch.manual_seed(0)
    model = _tiny_v2_model(type=algorithm)
    assert model.num_masked_patches == 24
    imgs, _ = _fake_batch(model)
    model.loss(imgs, _masks_with_counts([24, 24]))
    for counts in ([24, 20], [30, 30]):
        with pytest.raises(ValueError, match=r'num_masked_patches=24 but the batch\'s masks '
                                             r'cover \[.*\] patches.*num_masking_patches'):
            model.loss(imgs, _masks_with_counts(counts))
    # a generator whose count varies: boolean indexing follows each mask
    model.num_masked_patches = None
    losses = model.loss(imgs, _masks_with_counts([24, 20]))
    assert set(losses) == {'loss_mim', 'loss_agg'}


def test_beitv1_with_dalle_tokenizer_and_no_neck():
    cfg = Config.fromfile(str(DEMO_V1))
    cfg.model.target_generator = copy.deepcopy(TINY_DALLE)
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert model.neck is None
    imgs, samples = _fake_batch(model)
    ids = model.tokenize(imgs[1])
    assert ids.shape == (2, 64) and ids.dtype == torch.long and not ids.is_inference()
    torch.testing.assert_close(ids, model.target_generator(imgs[1]).argmax(1).flatten(1))
    assert set(model.loss(imgs, samples)) == {'loss_mim'}


def test_mmpretrain_dalle_logits_are_argmaxed():
    torch.manual_seed(0)
    model = _tiny_v2_model(
        neck=None, backbone=dict(Config.fromfile(str(DEMO_V1)).model.backbone),
        head=dict(type='BEiTV1Head', embed_dims=64, num_embed=512,
                  loss=dict(type='CrossEntropyLoss')),
        target_generator=dict(type='DALL-E', group_count=4, n_hid=8, n_blk_per_group=1,
                              vocab_size=512))
    x = torch.randn(2, 3, 64, 64)
    expected = model.target_generator(x).argmax(1).flatten(1)
    torch.testing.assert_close(model.tokenize(x), expected)


def test_tokenizer_checkpoint_is_loaded_from_prefixed_checkpoints(tmp_path):
    """mmpretrain's VQKD takes no checkpoint argument: BEiTMIM loads it (VQKDTokenizer and
    PeCoVQVAE get the key passed on and load it themselves)."""
    torch.manual_seed(0)
    source = _tiny_v2_model(target_generator=copy.deepcopy(MMPRETRAIN_VQKD))
    state = {f'tokenizer.{k}': v for k, v in source.target_generator.state_dict().items()}
    state['teacher.proj.weight'] = torch.zeros(1)
    torch.save({'state_dict': state, 'meta': {}}, tmp_path / 'vqkd.pth')
    torch.manual_seed(1)
    cfg = Config.fromfile(str(DEMO_V2)).model
    cfg.target_generator = dict(copy.deepcopy(MMPRETRAIN_VQKD), checkpoint=str(tmp_path / 'vqkd.pth'))
    model = MODELS.build(cfg)
    model.init_weights()  # must not re-draw the loaded tokenizer
    for k, v in source.target_generator.state_dict().items():
        assert torch.equal(model.target_generator.state_dict()[k], v), k

    cfg.target_generator.checkpoint = str(tmp_path / 'missing.pth')
    with pytest.raises(FileNotFoundError, match='model.target_generator.checkpoint'):
        MODELS.build(cfg)
    torch.save({'state_dict': {'tokenizer.encoder.cls_token': torch.zeros(1, 1, 64)}},
               tmp_path / 'partial.pth')
    cfg.target_generator.checkpoint = str(tmp_path / 'partial.pth')
    with pytest.raises(KeyError, match='lacks'):
        MODELS.build(cfg)


def test_mmpretrain_vqkd_tokens_equal_its_quantizer_without_touching_it():
    from beitv2_mm.algorithms.beit import vqkd_codebook_indices
    torch.manual_seed(0)
    vqkd = MODELS.build(copy.deepcopy(MMPRETRAIN_VQKD)).eval()
    x = torch.randn(2, 3, 64, 64)
    before = {k: v.clone() for k, v in vqkd.state_dict().items()}
    ours = vqkd_codebook_indices(vqkd, x)
    assert all(torch.equal(before[k], v) for k, v in vqkd.state_dict().items())
    torch.testing.assert_close(ours, vqkd(x))  # the stock path (which moves cluster_size)
    assert not torch.equal(before['quantize.cluster_size'], vqkd.state_dict()['quantize.cluster_size'])


def test_aggregation_neck_has_the_official_init():
    """Official cls_pt_layers keep PyTorch's default Linear init (built after the model's
    _init_weights pass); fix_init_cls_pt_weight divides proj/fc2 by sqrt(2 * (early + i + 1))."""
    torch.manual_seed(0)
    model = _tiny_v2_model()
    model.init_weights()
    neck = model.neck
    for i, layer in enumerate(neck.patch_aggregation):
        scale = (2.0 * (neck.early_layers + i + 1)) ** 0.5
        fc1, fc2, proj = layer.ffn.layers[0][0], layer.ffn.layers[1], layer.attn.proj
        for linear, div in ((fc1, 1.0), (fc2, scale), (proj, scale)):
            bound = linear.in_features ** -0.5  # kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in))
            assert linear.weight.abs().max() <= bound / div + 1e-7
            torch.testing.assert_close(linear.weight.std().item(), bound / 3 ** 0.5 / div,
                                       rtol=0.15, atol=0)
            assert linear.bias.any() and linear.bias.abs().max() <= bound  # not zeroed
        assert not layer.attn.q_bias.any() and not layer.attn.v_bias.any()


def test_student_and_lm_head_have_the_official_pretraining_init():
    """unilm beit2/modeling_pretrain.py: trunc-normal(0.02) truncated at +-0.02, zero bias."""
    torch.manual_seed(0)
    model = _tiny_v2_model()
    model.init_weights()
    lm_head = model.head.cls_head
    assert lm_head.weight.abs().max() <= 0.02 and not lm_head.bias.any()
    torch.testing.assert_close(lm_head.weight.std().item(), 0.02 * 0.5396, rtol=0.1, atol=0)
    qkv = model.backbone.layers[0].attn.qkv.weight
    assert qkv.abs().max() <= 0.02
    torch.testing.assert_close(qkv.std().item(), 0.02 * 0.5396, rtol=0.1, atol=0)


def test_runner_trains_with_every_layer_compiled(tiny_data, tmp_path):
    """The compile recipe of configs/_base_/mim_model_beitv2_vitb.py in a real run (dynamo with
    the eager backend: the same graphs and guards, no C++ toolchain): it trains, logs the
    grad norm, and its checkpoint loads into an uncompiled student."""
    eager_backend = dict(backend='eager')
    cfg = _cfg(DEMO_V2, tiny_data['imagenet'], tmp_path, max_iters=3,
               **{'model.backbone.compile': eager_backend, 'model.neck.compile': eager_backend,
                  'model.target_generator.encoder.compile': eager_backend,
                  'optim_wrapper.clip_grad': dict(max_norm=3.0)})
    runner = Runner.from_cfg(cfg)
    model = runner.model
    for layers in (model.backbone.layers, model.neck.patch_aggregation,
                   model.target_generator.encoder.layers):
        assert all(layer._compiled_call_impl is not None for layer in layers)
    runner.train()
    norms = runner.message_hub.log_scalars['train/grad_norm'].data[0]
    assert len(norms) == 3 and all(n > 0 for n in norms)
    ckpt = torch.load(tmp_path / 'iter_3.pth', map_location='cpu', weights_only=False)
    backbone_state = {k[len('backbone.'):]: v for k, v in ckpt['state_dict'].items()
                      if k.startswith('backbone.')}
    student_cfg = copy.deepcopy(cfg.model.backbone)
    student_cfg.pop('compile')
    MODELS.build(student_cfg).load_state_dict(backbone_state, strict=True)


def test_a_tokenizer_without_weights_is_announced(tmp_path, monkeypatch):
    """No tokenizer checkpoint trains against random targets: fine for a demo, but the log must
    say so; with weights it says nothing."""
    from mmengine.logging import MMLogger

    said = []
    monkeypatch.setattr(MMLogger.get_current_instance(), 'warning', said.append)
    cfg = Config.fromfile(str(DEMO_V2)).model
    cfg.target_generator.checkpoint = None
    MODELS.build(cfg)
    assert len(said) == 1 and 'randomly initialised tokenizer' in said[0], said
    assert 'model.target_generator.checkpoint' in said[0]

    source = MODELS.build(cfg)
    torch.save({'state_dict': {f'tokenizer.{k}': v for k, v in
                               source.target_generator.state_dict().items()}},
               tmp_path / 'tok.pth')
    cfg.target_generator.checkpoint = str(tmp_path / 'tok.pth')
    said.clear()
    MODELS.build(cfg)
    assert said == []


@pytest.mark.parametrize('config,tokenizer', [(DEMO_V2, None), (DEMO_V2, MMPRETRAIN_VQKD),
                                              (DEMO_V1, None), (DEMO_V1, TINY_DALLE)],
                         ids=['vqkd', 'mmpretrain-vqkd', 'pixel-vqvae', 'dalle'])
def test_a_head_of_another_size_than_the_vocabulary_is_an_error(config, tokenizer):
    """A tokenizer with another codebook size than the MIM head (a tokenizer swapped in)
    failed at the first step with 'Target 461 is out of bounds' (a smaller head) or trained
    logits no target names (a larger one): now a start-up error naming both sizes."""
    from beitv2_mm.algorithms.beit import tokenizer_vocab_size

    cfg = Config.fromfile(str(config))
    if tokenizer is not None:
        cfg.model.target_generator = copy.deepcopy(tokenizer)
    cfg.model.target_generator.pop('checkpoint', None)
    model = MODELS.build(cfg.model)  # the shipped sizes agree
    vocab = cfg.model.head.num_embed
    assert tokenizer_vocab_size(model.target_generator) == vocab
    cfg.model.head.num_embed = vocab // 2
    with pytest.raises(ValueError, match=rf'model\.head\.num_embed = {vocab // 2}, but the '
                                         rf'tokenizer .* has {vocab} token ids.*'
                                         rf'model\.head\.num_embed={vocab}'):
        MODELS.build(cfg.model)


@pytest.mark.parametrize('config', ['configs/demo/beitv2_vit-tiny_synthetic.py',
                                    'configs/beitv2_vitb_mim.py', 'configs/beitv2_vitl_mim.py'])
def test_the_neck_and_the_backbone_name_one_early_layer(config):
    """The neck aggregates the backbone's first output; ``early_layers`` only set its init
    rescale, so a changed ``early_layers`` (or ``out_indices``) trained another layer than the
    one it named. Now both must agree; the shipped configs do (checked without building)."""
    from beitv2_mm.algorithms.beit import check_neck_reads_its_early_layer

    cfg = Config.fromfile(str(REPO / config))
    layers = cfg.model.backbone.arch['num_layers'] if isinstance(cfg.model.backbone.arch, dict) \
        else {'base': 12, 'large': 24}[cfg.model.backbone.arch]
    first = cfg.model.backbone.out_indices[0] % layers
    assert first + 1 == cfg.model.neck.early_layers

    class _Part(torch.nn.Module):
        def __init__(self, **attrs):
            super().__init__()
            self.__dict__.update(attrs)

    check_neck_reads_its_early_layer(_Part(out_indices=[first, layers - 1]),
                                     _Part(early_layers=first + 1))
    with pytest.raises(ValueError, match=rf'model\.neck\.early_layers = {first}, but the '
                                         rf'backbone hands the neck layer {first + 1}'):
        check_neck_reads_its_early_layer(_Part(out_indices=[first, layers - 1]),
                                         _Part(early_layers=first))


def test_a_neck_reading_another_layer_than_its_early_layers_fails_at_build():
    model_cfg = copy.deepcopy(Config.fromfile(str(DEMO_V2)).model)
    model_cfg.target_generator.checkpoint = None
    model_cfg.neck.early_layers = 2  # the backbone still hands layer 3 (out_indices [-2, -1])
    with pytest.raises(ValueError, match=r'model\.backbone\.out_indices=\[1, -1\] or '
                                         r'model\.neck\.early_layers=3'):
        MODELS.build(model_cfg)
