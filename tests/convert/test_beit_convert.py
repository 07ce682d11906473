"""Official unilm BEiT v2 / timm BEiT weights -> mmpretrain layout."""
import pytest
import torch

import beitv2_mm  # noqa: F401
from beitv2_mm.convert import CONVERTERS, convert
from beitv2_mm.convert.beit import relative_position_index
from mmpretrain.models.backbones import BEiTViT
from mmpretrain.models.backbones.beit import RelativePositionBias
from mmpretrain.registry import MODELS

DIM, HEADS, DEPTH, GRID, PATCH, TOKENS = 32, 4, 4, 4, 8, 64
ARCH = dict(embed_dims=DIM, num_layers=DEPTH, num_heads=HEADS, feedforward_channels=2 * DIM)


def _block(prefix, gen, per_layer_bias=False, timm_k_bias=False):
    """One block in the official (unilm beit2 modeling_pretrain.Block) key layout."""
    num_rel = (2 * GRID - 1)**2 + 3
    shapes = {
        'gamma_1': (DIM, ), 'gamma_2': (DIM, ),
        'norm1.weight': (DIM, ), 'norm1.bias': (DIM, ),
        'attn.q_bias': (DIM, ), 'attn.v_bias': (DIM, ),
        'attn.qkv.weight': (3 * DIM, DIM),
        'attn.proj.weight': (DIM, DIM), 'attn.proj.bias': (DIM, ),
        'norm2.weight': (DIM, ), 'norm2.bias': (DIM, ),
        'mlp.fc1.weight': (2 * DIM, DIM), 'mlp.fc1.bias': (2 * DIM, ),
        'mlp.fc2.weight': (DIM, 2 * DIM), 'mlp.fc2.bias': (DIM, ),
    }
    if per_layer_bias:
        shapes['attn.relative_position_bias_table'] = (num_rel, HEADS)
    out = {f'{prefix}{k}': torch.randn(s, generator=gen) for k, s in shapes.items()}
    if timm_k_bias:
        out[f'{prefix}attn.k_bias'] = torch.zeros(DIM)
    return out


def official_beitv2_pretrain_state(gen):
    """Keys of beitv2_base_patch16_224_pt1k.pth ('model'): shared rel-pos, cls_pt_layers, lm_head."""
    num_rel = (2 * GRID - 1)**2 + 3
    state = {
        'cls_token': torch.randn(1, 1, DIM, generator=gen),
        'mask_token': torch.randn(1, 1, DIM, generator=gen),
        'patch_embed.proj.weight': torch.randn(DIM, 3, PATCH, PATCH, generator=gen),
        'patch_embed.proj.bias': torch.randn(DIM, generator=gen),
        'rel_pos_bias.relative_position_bias_table': torch.randn(num_rel, HEADS, generator=gen),
        'rel_pos_bias.relative_position_index': relative_position_index(GRID),
        'norm.weight': torch.randn(DIM, generator=gen),
        'norm.bias': torch.randn(DIM, generator=gen),
        'lm_head.weight': torch.randn(TOKENS, DIM, generator=gen),
        'lm_head.bias': torch.randn(TOKENS, generator=gen),
    }
    for i in range(DEPTH):
        state.update(_block(f'blocks.{i}.', gen))
    for j in range(2):
        state.update(_block(f'cls_pt_layers.{j}.', gen))
    return state


def test_relative_position_index_matches_mmpretrain():
    expected = RelativePositionBias((GRID, GRID), HEADS).relative_position_index
    assert torch.equal(relative_position_index(GRID), expected)


def test_official_beitv2_pretrain_checkpoint_loads_strictly():
    assert {'beit-official', 'beit-timm'} <= set(CONVERTERS)
    src = official_beitv2_pretrain_state(torch.Generator().manual_seed(0))
    out, report = convert('beit-official', {'model': src, 'args': object()})
    assert not report.unmatched and report.renamed == len(src)

    backbone = MODELS.build(dict(type='FastBEiTPretrainViT', arch=ARCH, img_size=GRID * PATCH,
                                 patch_size=PATCH, out_indices=[-2, -1], final_norm=False,
                                 use_shared_rel_pos_bias=True))
    neck = MODELS.build(dict(type='BEiTV2AggregationNeck', num_layers=2, early_layers=DEPTH - 1,
                             backbone_arch=ARCH))
    head = MODELS.build(dict(type='BEiTV2Head', embed_dims=DIM, num_embed=TOKENS,
                             loss=dict(type='CrossEntropyLoss')))
    for prefix, module in (('backbone.', backbone), ('neck.', neck), ('head.', head)):
        part = {k[len(prefix):]: v for k, v in out.items() if k.startswith(prefix)}
        module.load_state_dict(part, strict=True)
    assert sum(k.startswith(('backbone.', 'neck.', 'head.')) for k in out) == len(out)
    # values land where they belong
    assert torch.equal(backbone.layers[1].ffn.layers[1].weight, src['blocks.1.mlp.fc2.weight'])
    assert torch.equal(backbone.layers[2].ffn.layers[0][0].bias, src['blocks.2.mlp.fc1.bias'])
    assert torch.equal(backbone.layers[0].ln1.weight, src['blocks.0.norm1.weight'])
    assert torch.equal(neck.patch_aggregation[1].attn.qkv.weight,
                       src['cls_pt_layers.1.attn.qkv.weight'])
    assert torch.equal(neck.norm.weight, src['norm.weight'])
    assert torch.equal(head.cls_head.weight, src['lm_head.weight'])


def test_beit_v1_pretrain_norm_goes_to_backbone_final_norm():
    gen = torch.Generator().manual_seed(1)
    src = {k: v for k, v in official_beitv2_pretrain_state(gen).items()
           if not k.startswith('cls_pt_layers.')}
    out, report = convert('beit-official', src)
    assert 'backbone.ln1.weight' in out and not any(k.startswith('neck.') for k in out)


def test_unknown_keys_are_reported_not_dropped_silently():
    src = official_beitv2_pretrain_state(torch.Generator().manual_seed(2))
    src['some_future_module.weight'] = torch.zeros(1)
    out, report = convert('beit-official', src)
    assert report.unmatched == ['some_future_module.weight']
    assert 'UNMATCHED' in report.format()


def test_timm_finetuned_beitv2_matches_timm_features():
    timm_beit = pytest.importorskip('timm.models.beit')
    torch.manual_seed(0)
    model = timm_beit.Beit(img_size=GRID * PATCH, patch_size=PATCH, embed_dim=DIM, depth=DEPTH,
                           num_heads=HEADS, mlp_ratio=2, use_abs_pos_emb=False,
                           use_rel_pos_bias=True, init_values=0.1, num_classes=7).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'relative_position_bias_table' in name:
                p.normal_(std=0.5)
    src = model.state_dict()
    # some timm exports carry no relative_position_index buffers: they are rebuilt
    src = {k: v for k, v in src.items() if not k.endswith('relative_position_index')}
    out, report = convert('beit-timm', src)
    assert not report.unmatched
    rebuilt = [n for n in report.notes if 'relative_position_index' in n]
    assert len(rebuilt) == 1 and f'{DEPTH} keys' in rebuilt[0], report.notes  # one per grid

    backbone = BEiTViT(arch=ARCH, img_size=GRID * PATCH, patch_size=PATCH, use_rel_pos_bias=True,
                       out_type='avg_featmap', layer_scale_init_value=0.1)
    backbone.eval()  # (mmpretrain's BaseBackbone.train returns None: no chaining)
    part = {k[len('backbone.'):]: v for k, v in out.items() if k.startswith('backbone.')}
    backbone.load_state_dict(part, strict=True)
    assert {k for k in out if k.startswith('head.')} == {'head.fc.weight', 'head.fc.bias'}

    x = torch.randn(2, 3, GRID * PATCH, GRID * PATCH)
    with torch.no_grad():
        ref = model.forward_head(model.forward_features(x), pre_logits=True)
        ours = backbone(x)[0]
        logits = torch.nn.functional.linear(ours, out['head.fc.weight'], out['head.fc.bias'])
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(logits, model(x), atol=1e-5, rtol=1e-4)


def test_convert_tool_names_the_pretraining_method(tmp_path, capsys):
    """tools/convert_ckpt.py on a backbone release: without --method downstream runs from it
    are labelled with the format (and the tool says so); --method names the method."""
    from beitv2_mm.downstream.checkpoint import read_pretrain_info
    from tool_module import load_tool

    tool = load_tool('convert_ckpt')
    src = tmp_path / 'beitv2_pt.pth'
    torch.save({'model': official_beitv2_pretrain_state(torch.Generator().manual_seed(3))}, src)
    plain, named = tmp_path / 'plain.pth', tmp_path / 'named.pth'
    assert tool.main(['beit-official', str(src), str(plain)]) == 0
    assert "labelled 'beit-official' (a format, not a method)" in capsys.readouterr().out
    assert read_pretrain_info(str(plain))['method'] == 'beit-official'
    assert tool.main(['beit-official', str(src), str(named), '--method', 'beitv2']) == 0
    assert 'labelled' not in capsys.readouterr().out
    assert torch.load(named, weights_only=False)['meta'] == dict(
        converted_from='beit-official', source=str(src), pretrain_method='beitv2')
    assert read_pretrain_info(str(named))['method'] == 'beitv2'


def test_convert_tool_refuses_what_needs_no_or_no_such_conversion(tmp_path, capsys):
    """An already-converted file, a checkpoint of this project's layout and a pickled model
    (not a dict of tensors) are refused, saying which, nothing written, no traceback."""
    from tool_module import load_tool

    tool = load_tool('convert_ckpt')
    src = tmp_path / 'beitv2_pt.pth'
    torch.save({'model': official_beitv2_pretrain_state(torch.Generator().manual_seed(3))}, src)
    converted = tmp_path / 'converted.pth'
    assert tool.main(['beit-official', str(src), str(converted)]) == 0
    capsys.readouterr()
    again = tmp_path / 'again.pth'
    assert tool.main(['beit-official', str(converted), str(again)]) == 1
    assert "was converted already (meta.converted_from = 'beit-official')" in \
        capsys.readouterr().err and not again.exists()
    ours = tmp_path / 'ours.pth'
    state = torch.load(converted, weights_only=False)['state_dict']
    torch.save(dict(state_dict=state, meta=dict(cfg='...')), ours)  # as a training run saves
    assert tool.main(['beit-official', str(ours), str(again)]) == 1
    assert "is in this project's layout already" in capsys.readouterr().err
    model = tmp_path / 'model.pth'
    torch.save(torch.nn.Linear(2, 2), model)
    with pytest.raises(SystemExit) as err:
        tool.main(['beit-official', str(model), str(again)])
    assert err.value.code == 2
    assert 'got a Linear (a pickled model: save its state_dict() instead)' in \
        capsys.readouterr().err and not again.exists()
