"""Each stack fix in beitv2_mm.engine.compat, tested against the upstream code path it repairs."""
import numpy as np
import pytest
import torch

import beitv2_mm  # noqa: F401  (applies the fixes)
from beitv2_mm.engine import compat


def test_all_fixes_applied():
    assert all(compat.apply_all().values())
    assert set(compat.apply_all()) == set(compat.FIXES)


# ----------------------------------------------------------------- torch.load weights_only
def _mmengine_style_checkpoint(path):
    """What mmengine's Runner.save_checkpoint writes: tensors plus pickled Python objects."""
    from mmengine.logging import HistoryBuffer, MessageHub

    hub = MessageHub.get_instance('compat-test')
    hub.update_scalar('train/loss', 1.5)
    torch.save({'meta': {'epoch': 1, 'iter': 3, 'seed': np.int64(7)},
                'state_dict': {'w': torch.ones(2)},
                'message_hub': hub.state_dict()}, path)
    assert isinstance(hub.state_dict()['log_scalars']['train/loss'], HistoryBuffer)


def test_plain_torch_load_rejects_mmengine_checkpoints(tmp_path):
    """The breakage itself: torch >= 2.6 refuses mmengine's resume checkpoints."""
    path = tmp_path / 'iter_3.pth'
    _mmengine_style_checkpoint(path)
    with pytest.raises(Exception, match='[Ww]eights only load failed|weights_only'):
        torch.load(path)


def test_mmengine_resume_checkpoint_loads(tmp_path):
    from mmengine.runner.checkpoint import _load_checkpoint

    path = tmp_path / 'iter_3.pth'
    _mmengine_style_checkpoint(path)
    ckpt = _load_checkpoint(str(path), map_location='cpu')
    assert ckpt['meta']['iter'] == 3
    assert ckpt['message_hub']['log_scalars']['train/loss'].current() == 1.5


def test_only_mmengine_checkpoint_module_is_touched():
    import mmengine.runner.checkpoint as ckpt_module

    assert isinstance(ckpt_module.torch, compat._TorchWithTrustedLoad)
    assert ckpt_module.torch.nn is torch.nn
    assert torch.load is not compat.trusted_torch_load


def test_runner_resume_round_trip(tmp_path):
    """A real mmengine Runner writes a checkpoint and a second Runner resumes from it."""
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Tiny(BaseModel):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 1)

        def forward(self, x, mode='loss'):
            return {'loss': self.lin(x).pow(2).mean()}

    def runner(resume):
        return Runner(
            model=Tiny(), work_dir=str(tmp_path),
            train_dataloader=dict(dataset=[dict(x=torch.randn(2)) for _ in range(8)],
                                  sampler=dict(type='DefaultSampler', shuffle=False),
                                  collate_fn=dict(type='default_collate'), batch_size=2),
            optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
            train_cfg=dict(by_epoch=False, max_iters=4 if resume else 2),
            default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                               logger=dict(type='LoggerHook', interval=1)),
            resume=resume, experiment_name=f'resume-{resume}')

    runner(False).train()
    resumed = runner(True)
    resumed.train()
    assert resumed.iter == 4


# ----------------------------------------------------------------- interp2d removed
def test_interp2d_is_replaced_when_scipy_removed_it():
    import scipy
    from scipy import interpolate

    major, minor = (int(v) for v in scipy.__version__.split('.')[:2])
    if (major, minor) >= (1, 14):
        assert interpolate.interp2d is compat.GridCubicInterp2d


def test_grid_cubic_interp_reproduces_cubic_polynomials():
    """An interpolating bicubic spline is exact on cubic polynomials, at and between knots."""
    x = np.array([-7.5, -4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0, 7.5])
    y = x.copy()
    poly = lambda xx, yy: 0.3 * xx**3 - yy**2 * xx + 2 * yy - 1.0  # noqa: E731
    z = poly(x[None, :], y[:, None])  # (len(y), len(x)) as interp2d takes it
    f = compat.GridCubicInterp2d(x, y, z, kind='cubic')
    xn = np.linspace(-7.5, 7.5, 13)
    yn = np.linspace(-7.0, 7.0, 5)
    out = f(xn, yn)
    assert out.shape == (yn.size, xn.size)
    np.testing.assert_allclose(out, poly(xn[None, :], yn[:, None]), atol=1e-8)


def test_grid_cubic_interp_rejects_unknown_kind():
    with pytest.raises(NotImplementedError, match='quintic'):
        compat.GridCubicInterp2d([0, 1, 2, 3], [0, 1, 2, 3], np.zeros((4, 4)), kind='quintic')


def test_mmpretrain_rel_pos_bias_resize_224_to_512():
    from mmpretrain.models.utils.embed import resize_relative_position_bias_table

    heads, src, dst = 3, 2 * 14 - 1, 2 * 32 - 1
    table = torch.randn(src * src, heads)
    out = resize_relative_position_bias_table(src, dst, table, heads)
    assert out.shape == (dst * dst, heads)
    assert torch.isfinite(out).all()
    # the centre (zero offset) is a knot: its value is kept exactly
    centre_src = table.view(src, src, heads)[src // 2, src // 2]
    centre_dst = out.view(dst, dst, heads)[dst // 2, dst // 2]
    torch.testing.assert_close(centre_dst, centre_src, atol=1e-5, rtol=1e-5)


def test_mmpretrain_beitvit_loads_224_checkpoint_at_512():
    """The full mmpretrain path: a BEiTViT at 32x32 patches loads a 14x14 checkpoint."""
    from mmpretrain.models import BEiTViT

    arch = dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64)
    small = BEiTViT(arch=arch, img_size=224, patch_size=16, use_rel_pos_bias=True,
                    use_shared_rel_pos_bias=False, use_abs_pos_emb=False)
    big = BEiTViT(arch=arch, img_size=512, patch_size=16, use_rel_pos_bias=True,
                  use_shared_rel_pos_bias=False, use_abs_pos_emb=False)
    big.load_state_dict(small.state_dict(), strict=False)
    table = big.layers[0].attn.relative_position_bias_table
    assert table.shape[0] == (2 * 32 - 1) ** 2 + 3


def test_mmseg_beit_geometric_interpolation_224_to_512():
    pytest.importorskip('mmcv._ext', reason='mmseg needs mmcv built with ops')
    from mmseg.models.backbones.beit import BEiT

    heads, src, dst = 2, 2 * 14 - 1, 2 * 32 - 1
    table = torch.randn(src * src, heads)
    out = BEiT._geometric_sequence_interpolation(None, src, dst, table, heads)
    assert out.shape == (dst * dst, heads)
    assert torch.isfinite(out).all()


# ----------------------------------------------------------------- BEiT FFN drop path
@pytest.mark.parametrize('p', [0.5, 0.2])
def test_beit_layer_drops_the_ffn_branch_once(p):
    """Stock mmpretrain drops the FFN branch with probability 1 - (1 - p)^2 and scales kept
    samples by 1 / (1 - p)^2; the official Block (and the fixed layer): p and 1 / (1 - p)."""
    from mmpretrain.models.backbones.beit import BEiTTransformerEncoderLayer

    torch.manual_seed(0)
    layer = BEiTTransformerEncoderLayer(
        embed_dims=8, num_heads=2, feedforward_channels=16, layer_scale_init_value=0.1,
        window_size=None, use_rel_pos_bias=False, drop_path_rate=p)
    layer.gamma_1.data.zero_()  # no attention branch: output = x + drop_path(FFN branch)
    x = torch.randn(4000, 3, 8)
    with torch.no_grad():
        full = layer.eval()(x, rel_pos_bias=None) - x
        dropped = layer.train()(x, rel_pos_bias=None) - x
    ratio = dropped.flatten(1).norm(dim=1) / full.flatten(1).norm(dim=1)
    kept = ratio > 1e-6
    assert abs(kept.float().mean().item() - (1 - p)) < 0.03
    torch.testing.assert_close(ratio[kept], torch.full_like(ratio[kept], 1 / (1 - p)))


def test_beit_ffn_drop_path_set_by_the_config_is_kept():
    from mmpretrain.models.backbones.beit import BEiTTransformerEncoderLayer

    layer = BEiTTransformerEncoderLayer(
        embed_dims=8, num_heads=2, feedforward_channels=16, layer_scale_init_value=0.1,
        window_size=None, use_rel_pos_bias=False, drop_path_rate=0.1,
        ffn_cfg=dict(add_identity=False, dropout_layer=dict(type='Dropout', drop_prob=0.3)))
    assert isinstance(layer.ffn.dropout_layer, torch.nn.Dropout)


# ----------------------------------------------------------------- attention dropout names
def test_beit_layer_dropout_rates_reach_its_attention():
    """Stock mmpretrain hands ``attn_drop_rate`` / ``drop_rate`` to ``BEiTAttention`` as
    ``attn_drop`` / ``proj_drop``, which it swallowed: both dropouts stayed at 0."""
    from mmpretrain.models.backbones.beit import BEiTTransformerEncoderLayer

    layer = BEiTTransformerEncoderLayer(
        embed_dims=8, num_heads=2, feedforward_channels=16, layer_scale_init_value=0.1,
        window_size=None, use_rel_pos_bias=False, attn_drop_rate=0.3, drop_rate=0.2)
    assert layer.attn.attn_drop.p == 0.3
    assert layer.attn.proj_drop.p == 0.2
    # the attention weights are dropped in training: two passes differ, eval passes repeat
    layer.gamma_2.data.zero_()  # no FFN branch (its own dropout is drop_rate too)
    layer.attn.proj_drop.p = 0.0
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        assert torch.equal(layer.eval()(x, rel_pos_bias=None), layer(x, rel_pos_bias=None))
        layer.train()
        assert not torch.allclose(layer(x, rel_pos_bias=None), layer(x, rel_pos_bias=None))


def test_beit_attention_rate_given_by_its_own_name_wins():
    from mmpretrain.models.backbones.beit import BEiTTransformerEncoderLayer
    from mmpretrain.models.utils.attention import BEiTAttention

    layer = BEiTTransformerEncoderLayer(
        embed_dims=8, num_heads=2, feedforward_channels=16, layer_scale_init_value=0.1,
        window_size=None, use_rel_pos_bias=False, attn_drop_rate=0.3,
        attn_cfg=dict(attn_drop_rate=0.5))
    assert layer.attn.attn_drop.p == 0.5
    attn = BEiTAttention(8, 2, None, False, 'qv_bias', None, 0.1, proj_drop=0.4)  # positional
    assert (attn.attn_drop.p, attn.proj_drop.p) == (0.1, 0.4)


# ----------------------------------------------------------------- grad-norm sync
class _NoHostRead(torch.Tensor):
    """A norm that fails when something reads it on the host (a sync on a GPU)."""

    def __float__(self):
        raise AssertionError('the grad norm was read on the host inside the step')

    def item(self):
        raise AssertionError('the grad norm was read on the host inside the step')


def _clipping_wrapper(hub_name):
    from mmengine.logging import MessageHub
    from mmengine.optim import OptimWrapper

    hub = MessageHub.get_instance(hub_name)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1),
                           clip_grad=dict(max_norm=0.5))
    wrapper.message_hub = hub
    return model, wrapper, hub


def test_clip_grad_keeps_the_norm_on_the_device():
    """Stock mmengine calls float(grad_norm) between backward and optimizer step."""
    from beitv2_mm.engine.compat import publish_pending_grad_norm

    model, wrapper, hub = _clipping_wrapper('compat-grad-norm')
    loss = model(torch.randn(8, 4)).pow(2).sum()
    loss.backward()
    expected = torch.cat([p.grad.flatten() for p in model.parameters()]).norm()
    stock_clip = wrapper.clip_func
    wrapper.clip_func = lambda params, **kw: stock_clip(params, **kw).as_subclass(_NoHostRead)
    wrapper.step()  # raises if the step reads the norm on the host
    assert 'train/grad_norm' not in hub.log_scalars
    clipped = torch.cat([p.grad.flatten() for p in model.parameters()]).norm()
    torch.testing.assert_close(clipped, torch.tensor(0.5), rtol=1e-4, atol=0)  # still clipped
    wrapper.pending_grad_norm = wrapper.pending_grad_norm.as_subclass(torch.Tensor)
    publish_pending_grad_norm(wrapper)
    assert hub.log_scalars['train/grad_norm'].current() == pytest.approx(float(expected))
    publish_pending_grad_norm(wrapper)  # published once
    assert len(hub.log_scalars['train/grad_norm'].data[0]) == 1


def test_runner_logs_every_steps_grad_norm(tmp_path):
    """In a run, RuntimeInfoHook publishes each iteration's norm before the other hooks."""
    import os.path as osp
    import sys

    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
    from toy_train import build_cfg, run

    seen = []

    @HOOKS.register_module(force=True)
    class GradNormProbeHook(Hook):
        priority = 'NORMAL'

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            buffer = runner.message_hub.log_scalars['train/grad_norm']
            seen.append((runner.iter + 1, len(buffer.data[0]), buffer.current()))

    cfg = build_cfg(str(tmp_path / 'norms'), max_iters=5, ckpt_interval=100,
                    extra_hooks=[dict(type='GradNormProbeHook')],
                    optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05),
                                       clip_grad=dict(max_norm=10.0)))
    runner = run(cfg)
    assert [(i, n) for i, n, _ in seen] == [(i, i) for i in range(1, 6)]
    assert all(norm > 0 for _, _, norm in seen)
    assert runner.optim_wrapper.pending_grad_norm is None


# ----------------------------------------------------------------- mmseg acc_seg and logit resize
def test_acc_seg_equals_mmseg_accuracy_without_topk():
    import importlib

    import mmseg.models.decode_heads.decode_head as decode_head
    mmseg_accuracy = importlib.import_module('mmseg.models.losses.accuracy').accuracy

    torch.manual_seed(0)
    pred = torch.randn(2, 150, 16, 16)
    target = torch.randint(0, 150, (2, 16, 16))
    target[0, :4] = 255
    target[:, :, 0] = pred.argmax(1)[:, :, 0]  # some correct pixels
    in_range = int(target[1, 0, 0])  # an ignore_index that is a class the model predicts:
    # its pixels are left out even where the prediction matches them
    assert decode_head.accuracy is not mmseg_accuracy  # patched where the heads look it up
    for ignore in (255, None, in_range):
        ours = decode_head.accuracy(pred, target, ignore_index=ignore)
        theirs = mmseg_accuracy(pred, target, ignore_index=ignore)
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    # other arguments still go to mmseg's function
    top5 = decode_head.accuracy(pred, target, topk=(1, 5), ignore_index=255)
    torch.testing.assert_close(top5[1], mmseg_accuracy(pred, target, topk=5, ignore_index=255))
    empty = decode_head.accuracy(pred[:0], target[:0], ignore_index=255)
    assert float(empty) == 0.0


@pytest.mark.parametrize('shape,size', [((2, 3, 32, 32), (128, 128)), ((1, 2, 7, 9), (30, 17)),
                                        ((1, 2, 32, 32), (16, 16))])
def test_bilinear_resize_as_matmuls_equals_interpolate(shape, size):
    import torch.nn.functional as F

    from beitv2_mm.engine.compat import bilinear_resize

    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    expected = F.interpolate(x, size, mode='bilinear', align_corners=False)
    got = bilinear_resize(x, size)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(expected)
    g_expected, = torch.autograd.grad(expected, x, grad)
    g_got, = torch.autograd.grad(got, x, grad)
    torch.testing.assert_close(g_got, g_expected, rtol=1e-12, atol=1e-12)
    with torch.autocast('cpu', dtype=torch.bfloat16):  # computed in the input's dtype
        assert bilinear_resize(x.detach().float(), size).dtype == torch.float32


def test_decode_head_resize_uses_matmuls_only_for_cuda_bilinear(monkeypatch):
    import mmseg.models.decode_heads.decode_head as decode_head

    from beitv2_mm.engine import compat

    calls = []
    monkeypatch.setattr(compat, 'bilinear_resize', lambda x, size: calls.append(size) or x)
    x = torch.randn(1, 2, 4, 4)
    out = decode_head.resize(x, size=(8, 8), mode='bilinear', align_corners=False)
    assert out.shape == (1, 2, 8, 8) and not calls  # CPU: mmseg's resize

    class FakeCuda(torch.Tensor):
        @property
        def device(self):
            return torch.device('cuda')

    decode_head.resize(x.as_subclass(FakeCuda), size=(8, 8), mode='bilinear',
                       align_corners=False)
    decode_head.resize(x.as_subclass(FakeCuda), size=(8, 8), mode='bilinear',
                       align_corners=True)
    assert calls == [(8, 8)]


# ----------------------------------------------------------------- frozen-parameter log lines
def test_frozen_parameters_are_said_in_one_line(request):
    """mmengine's constructor warns once per frozen parameter; here one line with the counts,
    the optimizer unchanged, other messages untouched."""
    from mmengine.logging import MMLogger
    from mmengine.optim import DefaultOptimWrapperConstructor
    from torch import nn

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.student = nn.Linear(4, 4)
            self.teacher = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
            self.teacher.requires_grad_(False)

    import logging

    logger = MMLogger.get_current_instance()
    said = []

    class Keep(logging.Handler):  # after the logger's filters, as the real handlers
        def emit(self, record):
            said.append(record.getMessage())

    keep = Keep(level=logging.WARNING)
    logger.addHandler(keep)
    request.addfinalizer(lambda: logger.removeHandler(keep))
    cfg = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))
    paramwise = dict(bias_decay_mult=0.)  # per-parameter groups: where mmengine warns
    wrapper = DefaultOptimWrapperConstructor(cfg, paramwise)(Model())
    assert sum(len(g['params']) for g in wrapper.optimizer.param_groups) == 2
    assert said == ['4 parameters with requires_grad=False not in the optimizer (frozen): '
                    'teacher.* (4)'], said

    said.clear()  # the stock constructor: a line per parameter
    compat.ORIGINALS['DefaultOptimWrapperConstructor.__call__'](
        DefaultOptimWrapperConstructor(cfg, paramwise), Model())
    assert len(said) == 4 and all('is skipped since its requires_grad=False' in s for s in said)
    logger.warning('another warning')  # no filter left behind
    assert said[-1] == 'another warning'
