"""SDPA attention path of the BEiT ViTs equals mmpretrain's explicit attention."""
import copy

import pytest
import torch

import beitv2_mm  # noqa: F401  (registers the modules)
from beitv2_mm.backbones.beit_vit import (FastBEiTAttention, FastBEiTPretrainViT, FastBEiTViT,
                                         attention_bias, relative_position_index,
                                         shared_relative_position_index, use_fast_attention)
from mmpretrain.models.backbones import BEiTViT
from mmpretrain.models.selfsup.beit import BEiTPretrainViT
from mmpretrain.registry import MODELS

from backbone_helpers import randomise

ARCH = dict(embed_dims=32, num_layers=2, num_heads=4, feedforward_channels=64)


def _forward_and_grads(model, x, mask=None):
    x = x.clone().requires_grad_(True)
    outs = model(x, mask) if mask is not None or isinstance(model, BEiTPretrainViT) else model(x)
    loss = sum((o.float() * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return [o.detach() for o in outs], grads, x.grad


def _assert_paths_agree(fast, mask=None, atol=1e-5):
    explicit = copy.deepcopy(fast)
    assert use_fast_attention(explicit, 'explicit') == ARCH['num_layers']
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    out_s, grads_s, xg_s = _forward_and_grads(fast, x, mask)
    out_e, grads_e, xg_e = _forward_and_grads(explicit, x, mask)
    for a, b in zip(out_s, out_e):
        torch.testing.assert_close(a, b, atol=atol, rtol=1e-4)
    assert grads_s.keys() == grads_e.keys() and len(grads_s) > 10
    for name in grads_s:
        torch.testing.assert_close(grads_s[name], grads_e[name], atol=atol, rtol=1e-3,
                                   msg=lambda m: f'{name}: {m}')
    torch.testing.assert_close(xg_s, xg_e, atol=atol, rtol=1e-3)


def _mask(batch=2, grid=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, grid, grid, generator=gen) < 0.4


@pytest.mark.parametrize('with_mask', [False, True])
def test_shared_rel_pos_bias_sdpa_equals_explicit(with_mask):
    model = FastBEiTPretrainViT(arch=ARCH, img_size=32, patch_size=8, out_indices=[0, 1],
                                use_shared_rel_pos_bias=True, final_norm=True)
    randomise(model)
    assert isinstance(model.layers[0].attn, FastBEiTAttention)
    _assert_paths_agree(model, _mask() if with_mask else None)


def test_per_layer_rel_pos_bias_sdpa_equals_explicit():
    model = FastBEiTViT(arch=ARCH, img_size=32, patch_size=8, out_indices=[0, 1],
                        use_rel_pos_bias=True, out_type='raw')
    randomise(model)
    _assert_paths_agree(model)


def test_per_layer_plus_shared_bias_in_one_attention():
    attn = FastBEiTViT(arch=ARCH, img_size=32, patch_size=8, use_rel_pos_bias=True).layers[0].attn
    randomise(attn)
    explicit = copy.deepcopy(attn)
    use_fast_attention(explicit, 'explicit')
    x = torch.randn(3, 17, 32)
    shared = torch.randn(4, 17, 17)
    torch.testing.assert_close(attn(x, rel_pos_bias=shared), explicit(x, rel_pos_bias=shared),
                               atol=1e-5, rtol=1e-4)
    # without any bias, and with a qkv bias instead of q/v bias
    plain = FastBEiTViT(arch=ARCH, img_size=32, patch_size=8, use_rel_pos_bias=False,
                        bias=True).layers[0].attn
    randomise(plain)
    plain_explicit = copy.deepcopy(plain)
    use_fast_attention(plain_explicit, 'explicit')
    torch.testing.assert_close(plain(x), plain_explicit(x), atol=1e-5, rtol=1e-4)


def test_same_keys_and_outputs_as_stock_mmpretrain_classes():
    fast = MODELS.build(dict(type='FastBEiTPretrainViT', arch=ARCH, img_size=32, patch_size=8,
                             use_shared_rel_pos_bias=True, out_indices=[0, 1]))
    stock = BEiTPretrainViT(arch=ARCH, img_size=32, patch_size=8, use_shared_rel_pos_bias=True,
                            out_indices=[0, 1])
    randomise(fast)
    stock.load_state_dict(fast.state_dict(), strict=True)
    x, mask = torch.randn(2, 3, 32, 32), _mask()
    for a, b in zip(fast(x, mask), stock(x, mask)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)

    fast_ft = MODELS.build(dict(type='FastBEiTViT', arch=ARCH, img_size=32, patch_size=8,
                                use_rel_pos_bias=True, out_type='avg_featmap'))
    stock_ft = BEiTViT(arch=ARCH, img_size=32, patch_size=8, use_rel_pos_bias=True,
                       out_type='avg_featmap')
    randomise(fast_ft, seed=3)
    # per-layer relative_position_index buffers are not stored by the fast class; the stock
    # model keeps the ones it built, and nothing else is missing
    result = stock_ft.load_state_dict(fast_ft.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys == [f'layers.{i}.attn.relative_position_index'
                                   for i in range(ARCH['num_layers'])]
    torch.testing.assert_close(fast_ft(x)[0], stock_ft(x)[0], atol=1e-5, rtol=1e-4)
    # the other way round: the stock index buffers are dropped on load, strict or not
    randomise(stock_ft, seed=4)
    fast_ft.load_state_dict(stock_ft.state_dict(), strict=True)
    torch.testing.assert_close(fast_ft(x)[0], stock_ft(x)[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize('img_size', [32, (24, 40)])
def test_per_layer_index_is_shared_unsaved_and_equals_mmpretrains(img_size):
    stock = BEiTViT(arch=ARCH, img_size=img_size, patch_size=8, use_rel_pos_bias=True)
    fast = FastBEiTViT(arch=ARCH, img_size=img_size, patch_size=8, use_rel_pos_bias=True)
    assert not any(k.endswith('relative_position_index') for k in fast.state_dict())
    assert not any(k.endswith('relative_position_index') for k, _ in fast.named_buffers())
    first = fast.layers[0].attn.relative_position_index
    assert all(layer.attn.relative_position_index is first for layer in fast.layers)
    torch.testing.assert_close(first, stock.layers[0].attn.relative_position_index, rtol=0, atol=0)
    assert relative_position_index(stock.layers[0].attn.window_size).equal(first)
    # a dtype cast keeps the integer index; a device move takes the index along, still shared
    fast.to(torch.float64)
    assert fast.layers[1].attn.relative_position_index is first
    fast.to('meta')
    moved = fast.layers[0].attn.relative_position_index
    assert moved.device.type == 'meta' and moved.shape == first.shape
    assert fast.layers[1].attn.relative_position_index is moved


def test_shared_index_is_usable_by_autograd_when_first_built_in_inference_mode():
    with torch.inference_mode():
        index = shared_relative_position_index((5, 3), 'cpu')
    assert not index.is_inference()
    table = torch.randn(9 * 5 + 3, 2, requires_grad=True)
    table[index.view(-1)].sum().backward()  # index saved for the backward of the gather
    assert table.grad.sum() == index.numel() * 2


@pytest.mark.parametrize('model_type', ['BEiTViT', 'FastBEiTViT', 'WindowedBEiTViT'])
def test_attention_bias_is_mmpretrains_gather_in_a_contiguous_heads_first_layout(model_type):
    """Same values and table gradient as mmpretrain's ``table[index]`` + permute, bit for bit,
    but (heads, N, N) contiguous, so SDPA need not copy it (run c9)."""
    cfg = dict(type=model_type, arch=ARCH, img_size=(24, 40), patch_size=8, use_rel_pos_bias=True)
    if model_type == 'WindowedBEiTViT':  # a 2x3 window: a patch-to-patch index without [CLS]
        cfg.update(window_size=(2, 3), window_block_indexes=[0], with_cls_token=False)
    attn = MODELS.build(cfg).layers[0].attn
    randomise(attn)
    table, index = attn.relative_position_bias_table, attn.relative_position_index
    n = index.shape[0]
    assert n == (6 if model_type == 'WindowedBEiTViT' else 3 * 5 + 1)
    stock = table[index.view(-1)].view(n, n, -1).permute(2, 0, 1)
    bias = attention_bias(attn, None)
    assert bias.shape == (ARCH['num_heads'], n, n) and bias.is_contiguous()
    assert torch.equal(bias, stock)
    upstream = torch.randn(ARCH['num_heads'], n, n)
    grad_stock, = torch.autograd.grad(stock, table, upstream)
    grad, = torch.autograd.grad(attention_bias(attn, None), table, upstream)
    assert torch.equal(grad, grad_stock) and grad.abs().sum() > 0
    shared = torch.randn(ARCH['num_heads'], n, n)
    assert torch.equal(attention_bias(attn, shared), stock + shared)


def test_compiled_layers_with_per_layer_bias_match_eager():
    torch.manual_seed(0)
    plain = FastBEiTViT(arch=ARCH, img_size=32, patch_size=8, use_rel_pos_bias=True,
                        out_type='raw')
    randomise(plain)
    compiled = copy.deepcopy(plain)
    from beitv2_mm.backbones.beit_vit import compile_layers
    compile_layers(compiled.layers, dict(backend='eager', fullgraph=True))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(compiled(x)[-1], plain(x)[-1])


def test_attention_dropout_only_in_training():
    """With an attention dropout rate SDPA drops attention weights in training only, as the
    explicit path's ``nn.Dropout`` does: in eval the two agree and repeat. (Every other test
    runs at rate 0, where dropping in eval goes unseen.)"""
    model = FastBEiTViT(arch=ARCH, img_size=32, patch_size=8, use_rel_pos_bias=True,
                        out_type='raw', layer_cfgs=dict(attn_drop_rate=0.5))
    randomise(model)
    assert model.layers[0].attn.attn_drop.p == 0.5
    explicit = copy.deepcopy(model)
    use_fast_attention(explicit, 'explicit')
    model.eval()
    explicit.eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x)[-1]
        torch.testing.assert_close(model(x)[-1], out)
        torch.testing.assert_close(explicit(x)[-1], out, atol=1e-5, rtol=1e-4)
        model.train()
        assert not torch.allclose(model(x)[-1], out, atol=1e-3)


def test_bad_attn_impl_is_rejected():
    with pytest.raises(ValueError, match='attn_impl'):
        FastBEiTViT(arch=ARCH, img_size=32, patch_size=8, attn_impl='flash')


def test_bf16_autocast_runs_close_to_fp32():
    model = FastBEiTPretrainViT(arch=ARCH, img_size=32, patch_size=8, out_indices=[1],
                                use_shared_rel_pos_bias=True)
    randomise(model)
    x, mask = torch.randn(2, 3, 32, 32), _mask()
    ref = model(x, mask)[0]
    dtypes = []
    model.layers[0].attn.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = model(x, mask)[0]
    assert dtypes == [torch.bfloat16]  # attention ran in bf16 (the mask cast to match)
    assert (out.float() - ref).abs().mean() < 0.05 * ref.abs().mean()


def test_official_init_rescales_residual_branches():
    model = FastBEiTPretrainViT(arch=dict(ARCH, num_layers=4), img_size=32, patch_size=8,
                                init_cfg=[dict(type='TruncNormal', std=0.02, layer='Linear')])
    model.init_weights()
    # official pretraining init: normal(0, 0.02) truncated at +-0.02 (std 0.54 * 0.02), not
    # Xavier for the FFN, not mmengine's +-2 bounds; output layers / sqrt(2 * layer_id)
    std = 0.02 * 0.5396  # std of a unit normal truncated at +-1
    fc1_std = torch.stack([layer.ffn.layers[0][0].weight.std() for layer in model.layers])
    fc2_std = torch.stack([layer.ffn.layers[1].weight.std() for layer in model.layers])
    torch.testing.assert_close(fc1_std, torch.full((4, ), std), atol=1.5e-3, rtol=0)
    expected = std / torch.sqrt(2.0 * torch.arange(1, 5))
    torch.testing.assert_close(fc2_std, expected, atol=1e-3, rtol=0)
    for name, param in model.named_parameters():
        if name.endswith('.weight') and param.dim() > 1 or name in ('cls_token', 'mask_token'):
            assert param.abs().max() <= 0.02, name
            assert param.std() > 0.4 * 0.02 / (2 * 4) ** 0.5, name
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and module.bias is not None:
            assert not module.bias.any(), name


def test_compile_option_keeps_state_dict_keys():
    plain = FastBEiTViT(arch=ARCH, img_size=32, patch_size=8)
    compiled = FastBEiTViT(arch=ARCH, img_size=32, patch_size=8, compile=True)
    assert list(plain.state_dict()) == list(compiled.state_dict())


def test_compiled_layers_run_under_inference_mode():
    """The frozen tokenizer runs its (compiled) encoder under ``inference_mode``; dynamo's
    guard on mmpretrain's numpy drop-path rates failed there on the first call."""
    torch.manual_seed(0)
    plain = FastBEiTViT(arch=ARCH, img_size=32, patch_size=8, drop_path_rate=0.1)
    plain.eval()  # (mmpretrain's ``train`` returns None)
    compiled = copy.deepcopy(plain)
    from beitv2_mm.backbones.beit_vit import compile_layers
    compile_layers(compiled.layers, dict(backend='eager'))  # dynamo's guards, no codegen
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        expected = plain(x)
        for _ in range(2):  # the second call goes through the guards
            got = compiled(x)
    torch.testing.assert_close(got[-1], expected[-1])


def test_aggregation_neck_compile_option_keeps_keys():
    from beitv2_mm.algorithms.beit import BEiTV2AggregationNeck

    arch = dict(ARCH, num_layers=4)
    plain = BEiTV2AggregationNeck(backbone_arch=arch, early_layers=1, num_layers=2)
    compiled = BEiTV2AggregationNeck(backbone_arch=arch, early_layers=1, num_layers=2,
                                     compile=dict(backend='eager'))
    assert list(plain.state_dict()) == list(compiled.state_dict())
    assert all(getattr(layer, '_compiled_call_impl', None) is not None
               for layer in compiled.patch_aggregation)


@pytest.mark.parametrize('size', [(32, 32), (35, 45)])
def test_patch_conv_as_matmul_equals_conv(size):
    from beitv2_mm.backbones.beit_vit import PatchConv2d, use_matmul_patch_embed

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 16, kernel_size=8, stride=8)
    fast = copy.deepcopy(conv)
    assert use_matmul_patch_embed(fast) == 1 and isinstance(fast, PatchConv2d)
    x = torch.randn(2, 3, *size)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_conv, out_fast = conv(xa), fast(xb)
    torch.testing.assert_close(out_fast, out_conv, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out_conv)
    out_conv.backward(grad)
    out_fast.backward(grad)
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.weight.grad, conv.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.bias.grad, conv.bias.grad, rtol=1e-4, atol=1e-4)
    # PatchEmbed's flatten(2).transpose(1, 2) of the result is contiguous: no copy
    assert out_fast.flatten(2).transpose(1, 2).is_contiguous()


def test_only_patchifying_convs_are_switched():
    from beitv2_mm.backbones.beit_vit import use_matmul_patch_embed

    convs = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1),
                                torch.nn.Conv2d(4, 4, 2, stride=1),
                                torch.nn.Conv2d(4, 4, 2, stride=2, groups=2))
    assert use_matmul_patch_embed(convs) == 0
    assert all(type(c) is torch.nn.Conv2d for c in convs)
    model = FastBEiTViT(arch=ARCH, img_size=32, patch_size=8)
    assert type(model.patch_embed.projection).__name__ == 'PatchConv2d'
    assert list(model.state_dict()) == [  # the same keys (bar the unsaved index buffers)
        k for k in BEiTViT(arch=ARCH, img_size=32, patch_size=8).state_dict()
        if not k.endswith('relative_position_index')]


@pytest.mark.parametrize('backbone', ['FastBEiTViT', 'WindowedBEiTViT'])
def test_random_init_is_the_official_finetuning_init(backbone):
    """Without pretrained weights (the random-init and supervised baselines) the downstream
    backbones start as unilm ``beit2/modeling_finetune.py``'s ``VisionTransformer``: Linear
    trunc-normal(0.02) with zero bias, residual-branch outputs divided by sqrt(2 * layer_id),
    zero relative position tables; ``official_init=False`` keeps mmpretrain's init."""
    def build(**extra):
        cfg = dict(type=backbone, arch=dict(embed_dims=192, num_layers=4, num_heads=3,
                                            feedforward_channels=768),
                   img_size=64, patch_size=8, use_abs_pos_emb=False, use_rel_pos_bias=True,
                   use_shared_rel_pos_bias=False, layer_scale_init_value=0.1,
                   init_cfg=dict(type='BEiTPretrained', checkpoint=None), **extra)
        if backbone == 'WindowedBEiTViT':
            cfg.update(window_size=4, window_block_indexes=[0, 2])
        torch.manual_seed(0)
        vit = MODELS.build(cfg)
        vit.init_weights()
        return vit

    vit = build()
    for i, layer in enumerate(vit.layers):
        depth_scale = (2.0 * (i + 1)) ** 0.5
        for linear, std in ((layer.attn.qkv, 0.02), (layer.ffn.layers[0][0], 0.02),
                            (layer.attn.proj, 0.02 / depth_scale),
                            (layer.ffn.layers[1], 0.02 / depth_scale)):
            assert linear.weight.std().item() == pytest.approx(std, rel=0.05), (i, linear)
            if linear.bias is not None:
                assert not linear.bias.any(), (i, linear)
        assert not layer.attn.relative_position_bias_table.any(), i
    if backbone == 'FastBEiTViT':
        assert vit.cls_token.std().item() == pytest.approx(0.02, rel=0.3)

    stock = build(official_init=False)  # mmpretrain: tables trunc-normal, no depth rescale
    assert stock.layers[0].attn.relative_position_bias_table.any()
    assert stock.layers[3].attn.proj.weight.std() > 2 * vit.layers[3].attn.proj.weight.std()
