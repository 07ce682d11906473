"""ViTDet window attention in the BEiT ViT (the Mask R-CNN backbone) against a per-window
reference written out here: explicit loops over windows and token pairs, no code of the module."""
import pytest
import torch
import torch.nn.functional as F

import beitv2_mm  # noqa: F401  (registers the modules)
from beitv2_mm.backbones.windowed_beit import (WindowedBEiTViT, vitdet_window_block_indexes,
                                               window_partition, window_unpartition)
from mmpretrain.registry import MODELS

from backbone_helpers import randomise

ARCH = dict(embed_dims=32, num_layers=4, num_heads=4, feedforward_channels=64)


def _build(**kwargs):
    cfg = dict(type='WindowedBEiTViT', arch=ARCH, img_size=40, patch_size=8, window_size=2,
               window_block_indexes=[0, 2], out_type='featmap', use_rel_pos_bias=True,
               layer_scale_init_value=0.1)
    cfg.update(kwargs)
    model = MODELS.build(cfg)
    randomise(model, seed=0)
    model.eval()  # mmpretrain's train() returns None
    return model


def _reference_attention(attn, x, grid, window):
    """BEiT attention of ``x`` (B, H*W, C) inside ``window`` windows of the zero-padded grid,
    one window and one token pair at a time; the bias of a pair is the table row of its offset."""
    B, N, C = x.shape
    H, W = grid
    wh, ww = window
    heads, d = attn.num_heads, C // attn.num_heads
    Hp, Wp = -(-H // wh) * wh, -(-W // ww) * ww
    padded = torch.zeros(B, Hp, Wp, C, dtype=x.dtype)
    padded[:, :H, :W] = x.view(B, H, W, C)
    out = torch.zeros(B, Hp, Wp, C, dtype=x.dtype)
    table = attn.relative_position_bias_table
    w = attn.qkv.weight
    for top in range(0, Hp, wh):
        for left in range(0, Wp, ww):
            cells = [(top + i, left + j) for i in range(wh) for j in range(ww)]
            tokens = torch.stack([padded[:, r, c] for r, c in cells], dim=1)  # (B, n, C)
            q = F.linear(tokens, w[:C], attn.q_bias).view(B, -1, heads, d).transpose(1, 2)
            k = F.linear(tokens, w[C:2 * C]).view(B, -1, heads, d).transpose(1, 2)
            v = F.linear(tokens, w[2 * C:], attn.v_bias).view(B, -1, heads, d).transpose(1, 2)
            bias = torch.empty(heads, len(cells), len(cells))
            for a, (ra, ca) in enumerate(cells):
                for b, (rb, cb) in enumerate(cells):
                    row = (ra - rb + wh - 1) * (2 * ww - 1) + (ca - cb + ww - 1)
                    bias[:, a, b] = table[row]
            scores = (q @ k.transpose(-2, -1)) * attn.scale + bias
            o = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, -1, C)
            o = attn.proj(o)
            for n, (r, c) in enumerate(cells):
                out[:, r, c] = o[:, n]
    return out[:, :H, :W].reshape(B, N, C)


def _reference_backbone(model, images):
    """Patch embedding, then per block: x + g1 * attn(ln1(x)), x + g2 * ffn(ln2(x))."""
    x, grid = model.patch_embed(images)
    for layer in model.layers:
        window = layer.attn.attn_window
        x = x + layer.gamma_1 * _reference_attention(layer.attn, layer.ln1(x), grid, window)
        x = x + layer.gamma_2 * layer.ffn(layer.ln2(x))
    return x.transpose(1, 2).reshape(x.shape[0], -1, *grid)


def test_layout_tables_and_state_dict():
    model = _build()
    assert model.window_block_indexes == [0, 2]
    windows = [layer.attn.attn_window for layer in model.layers]
    assert windows == [(2, 2), (5, 5), (2, 2), (5, 5)]  # 40 px / 8 px = a 5x5 grid
    rows = [layer.attn.relative_position_bias_table.shape[0] for layer in model.layers]
    assert rows == [3 * 3 + 3, 9 * 9 + 3, 3 * 3 + 3, 9 * 9 + 3]  # (2w-1)^2 + 3 [CLS] rows
    keys = list(model.state_dict())
    assert 'cls_token' not in keys and not any('relative_position_index' in k for k in keys)
    # the patch-to-patch index of a window, shared between the blocks of that window
    assert model.layers[0].attn.relative_position_index.shape == (4, 4)
    index = model.layers[0].attn.relative_position_index
    assert index is model.layers[2].attn.relative_position_index
    assert model.layers[1].attn.relative_position_index.shape == (25, 25)


@pytest.mark.parametrize('window,grid', [((2, 2), (5, 5)),  # padded to 6x6: 9 windows
                                         ((3, 2), (5, 5)),  # non-square windows, 2x3 of them
                                         ((5, 5), (5, 5))])  # one window: global attention
def test_window_attention_equals_per_window_reference(window, grid):
    model = _build(window_size=window, window_block_indexes=[0])
    attn = model.layers[0].attn
    assert attn.attn_window == window and attn.grid_size == grid
    x = torch.randn(2, grid[0] * grid[1], ARCH['embed_dims'],
                    generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(attn(x), _reference_attention(attn, x, grid, window),
                               atol=1e-5, rtol=1e-4)


def test_backbone_equals_reference_and_trains_every_table():
    model = _build()
    images = torch.randn(2, 3, 40, 40, generator=torch.Generator().manual_seed(2))
    out = model(images)[0]
    assert out.shape == (2, 32, 5, 5)
    torch.testing.assert_close(out, _reference_backbone(model, images), atol=1e-4, rtol=1e-4)
    model.train()
    model(images)[0].square().mean().backward()
    for i, layer in enumerate(model.layers):
        grad = layer.attn.relative_position_bias_table.grad
        # only the patch rows are used; the three [CLS] rows stay for the checkpoint keys
        assert grad[:-3].abs().sum() > 0, i
        assert torch.equal(grad[-3:], torch.zeros_like(grad[-3:])), i


def test_partition_round_trip_and_padding():
    x = torch.randn(2, 5, 7, 3)
    windows, padded = window_partition(x, (2, 3))
    assert padded == (6, 9) and windows.shape == (2 * 3 * 3, 6, 3)
    # window (0, 0) holds rows 0-1, columns 0-2 in row-major order
    torch.testing.assert_close(windows[0], x[0, :2, :3].reshape(6, 3))
    # the last window of the first image holds the zero padding of row 5 and columns 7-8
    assert torch.equal(windows[8].view(2, 3, 3)[1], torch.zeros(3, 3))
    torch.testing.assert_close(window_unpartition(windows, (2, 3), padded, (5, 7)), x)


def test_drop_path_drops_whole_images_not_windows():
    """Stochastic depth acts on the block's residual per image, as in ViTDet, not per window."""
    model = _build(drop_path_rate=0.9)
    model.train()
    layer = model.layers[3]
    layer.drop_path.drop_prob = 0.9
    x = torch.randn(8, 25, 32)
    torch.manual_seed(0)
    out = layer(x, None)
    # an image whose both residual branches were dropped comes out unchanged, all tokens at once
    kept = [(out[b] - x[b]).abs().amax(dim=-1) > 0 for b in range(8)]
    assert all(k.all() or not k.any() for k in kept)
    assert any(not k.any() for k in kept)


def test_vitdet_default_layout():
    assert vitdet_window_block_indexes(12) == [0, 1, 3, 4, 6, 7, 9, 10]
    assert vitdet_window_block_indexes(24) == [i for i in range(24) if i not in (5, 11, 17, 23)]
    model = MODELS.build(dict(type='WindowedBEiTViT', arch=dict(ARCH, num_layers=12),
                              img_size=64, patch_size=8, window_size=4, out_type='featmap'))
    assert model.window_block_indexes == [0, 1, 3, 4, 6, 7, 9, 10]
    with pytest.raises(ValueError, match='window_block_indexes'):
        vitdet_window_block_indexes(6)


@pytest.mark.parametrize('kwargs,match', [
    (dict(with_cls_token=True), 'no \\[CLS\\] token'),
    (dict(out_type='cls_token'), 'no \\[CLS\\] token'),
    (dict(use_rel_pos_bias=False, use_shared_rel_pos_bias=True), 'use_shared_rel_pos_bias=False'),
    (dict(attn_impl='explicit'), "attn_impl='sdpa' only"),
    (dict(window_block_indexes=[0, 4]), 'must lie in 0..3'),
])
def test_bad_settings_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _build(**kwargs)


def test_input_of_another_size_names_the_fix():
    model = _build()
    with pytest.raises(ValueError, match='5x5 patch grid.*BatchFixedSizePad'):
        model(torch.randn(1, 3, 48, 48))
