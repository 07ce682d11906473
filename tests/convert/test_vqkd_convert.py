"""VQ-KD converters: official unilm beit2 layout and mmpretrain's VQKD -> VQKDTokenizer."""
import re

import pytest
import torch

import beitv2_mm  # noqa: F401
from beitv2_mm.convert import CONVERTERS, convert
from beitv2_mm.tokenizers import tiny_vqkd_tokenizer_cfg
from mmpretrain.registry import MODELS


def to_official_layout(sd):
    """Our VQKDTokenizer keys written the way unilm beit2's VQKD names them."""
    rules = [
        (r'^(encoder|decoder)\.layers\.(\d+)\.ln1\.', r'\1.blocks.\2.norm1.'),
        (r'^(encoder|decoder)\.layers\.(\d+)\.ln2\.', r'\1.blocks.\2.norm2.'),
        (r'^(encoder|decoder)\.layers\.(\d+)\.attn\.', r'\1.blocks.\2.attn.'),
        (r'^(encoder|decoder)\.layers\.(\d+)\.ffn\.layers\.0\.0\.', r'\1.blocks.\2.mlp.fc1.'),
        (r'^(encoder|decoder)\.layers\.(\d+)\.ffn\.layers\.1\.', r'\1.blocks.\2.mlp.fc2.'),
        (r'^(encoder|decoder)\.patch_embed\.projection\.', r'\1.patch_embed.proj.'),
        (r'^(encoder|decoder)\.ln1\.', r'\1.fc_norm.'),
        (r'^quantizer\.codebook$', 'quantize.embedding.weight'),
        (r'^quantizer\.initted$', 'quantize.embedding.initted'),
        (r'^quantizer\.cluster_size$', 'quantize.cluster_size'),
    ]
    out = {}
    for key, value in sd.items():
        new = key
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, new)
            if n:
                break
        out[new] = value
    return out


def test_official_layout_round_trip(tmp_path, repo_root, capsys):
    torch.manual_seed(0)
    src = MODELS.build(tiny_vqkd_tokenizer_cfg(kmeans_init=False)).eval()
    official = to_official_layout(src.state_dict())
    assert 'encoder.blocks.0.mlp.fc1.weight' in official
    assert 'quantize.embedding.weight' in official
    official.update({
        'quantize.embedding.cluster_size': torch.zeros(64),
        'quantize.embedding.embed_avg': torch.zeros(64, 8),
        'teacher_model.visual.proj': torch.zeros(4, 4),
        'scaling_layer.shift': torch.zeros(1, 3, 1, 1),
    })
    converted, report = convert('vqkd_official', {'model': official})
    assert not report.unmatched
    assert 'teacher_model.visual.proj' in report.dropped
    assert set(converted) == set(src.state_dict())

    # through the command line tool, then the tokenizer's own checkpoint argument
    from tool_module import load_tool
    tool = load_tool('convert_ckpt')
    src_file, dst_file = tmp_path / 'official.pth', tmp_path / 'ours.pth'
    torch.save({'model': official}, src_file)
    assert tool.main(['vqkd_official', str(src_file), str(dst_file)]) == 0
    assert 'pretrain_method' not in torch.load(dst_file, weights_only=False)['meta']
    # a tokenizer is no downstream starting point: no advice about naming its method
    assert 'labelled' not in capsys.readouterr().out
    dst = MODELS.build(tiny_vqkd_tokenizer_cfg(checkpoint=str(dst_file))).eval()
    for key, value in src.state_dict().items():
        assert torch.equal(value, dst.state_dict()[key]), key
    x = torch.rand(2, 3, 32, 32) * 255
    torch.testing.assert_close(src.reconstruct(x).features, dst.reconstruct(x).features)

    # a source in another layout: nothing written unless asked for, and a failing status
    other, other_dst = tmp_path / 'other.pth', tmp_path / 'other_out.pth'
    torch.save({'state_dict': {'backbone.layers.0.ln1.weight': torch.ones(4)}}, other)
    assert tool.main(['vqkd_official', str(other), str(other_dst)]) == 1
    assert not other_dst.exists()
    assert tool.main(['vqkd_official', str(other), str(other_dst), '--allow-unmatched']) == 1
    assert other_dst.exists()


def test_unknown_official_keys_are_listed_not_dropped():
    _, report = convert('vqkd_official', {'encoder.some_new_thing': torch.zeros(1)})
    assert report.unmatched == ['encoder.some_new_thing']


def test_mmpretrain_vqkd_gives_identical_tokens():
    from mmpretrain.models.selfsup.beit import VQKD

    enc = dict(arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
               img_size=32, patch_size=8, out_indices=-1, norm_cfg=dict(type='LN', eps=1e-6),
               final_norm=True, out_type='featmap', with_cls_token=True, use_abs_pos_emb=True,
               use_rel_pos_bias=False, use_shared_rel_pos_bias=False,
               layer_scale_init_value=0.0)
    torch.manual_seed(0)
    theirs = VQKD(encoder_config=enc, num_embed=64, embed_dims=8,
                  quantize_kmeans_init=False).eval()
    # a whole mmpretrain MIM checkpoint: the tokenizer beside the student, neck and head
    sd = {'target_generator.' + k: v for k, v in theirs.state_dict().items()}
    around = {'backbone.cls_token': torch.zeros(1, 1, 32), 'neck.norm.weight': torch.ones(32),
              'head.cls_head.weight': torch.zeros(64, 32)}
    assert 'vqkd_mmpretrain' in CONVERTERS
    converted, report = convert('vqkd_mmpretrain', {'state_dict': {**sd, **around}})
    assert not report.unmatched
    assert sorted(report.dropped) == sorted(around)  # and the rest loads strictly, below
    ours = MODELS.build(tiny_vqkd_tokenizer_cfg(decoder_layers=None, input_range=(-1, 1)))
    missing, unexpected = ours.load_state_dict(converted, strict=True)
    ours.eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1  # mmpretrain's target view: [-1, 1]
    with torch.no_grad():
        assert torch.equal(theirs(x), ours.get_codebook_indices(x))


def official_vqkd_keys(enc_depth=2, dec_depth=1, dim=32, hidden=64, patch=8, grid=4,
                       codes=64, code_dim=8, target_dim=16):
    """Key -> shape of a unilm beit2 ``VQKD`` training checkpoint (its ``'model'``), written from
    the official modules, independently of the converter's rules: ``modeling_finetune``'s
    ``VisionTransformer`` as VQKD builds it (qkv_bias: q_bias/v_bias; init_values 0: no gamma;
    use_mean_pooling: ``fc_norm`` and an Identity ``norm``; num_classes 0: no head), the
    ``encode_task_layer`` / ``decode_task_layer`` MLPs, ``NormEMAVectorQuantizer`` (with its
    ``EmbeddingEMA``), and the frozen teacher and ``scaling_layer`` a training run also saves."""
    shapes = {}

    def vit(prefix, depth, in_chans, patch_size):
        shapes.update({f'{prefix}.cls_token': (1, 1, dim),
                       f'{prefix}.pos_embed': (1, grid * grid + 1, dim),
                       f'{prefix}.patch_embed.proj.weight': (dim, in_chans, patch_size, patch_size),
                       f'{prefix}.patch_embed.proj.bias': (dim, ),
                       f'{prefix}.fc_norm.weight': (dim, ), f'{prefix}.fc_norm.bias': (dim, )})
        for i in range(depth):
            b = f'{prefix}.blocks.{i}'
            shapes.update({
                f'{b}.norm1.weight': (dim, ), f'{b}.norm1.bias': (dim, ),
                f'{b}.attn.q_bias': (dim, ), f'{b}.attn.v_bias': (dim, ),
                f'{b}.attn.qkv.weight': (3 * dim, dim),
                f'{b}.attn.proj.weight': (dim, dim), f'{b}.attn.proj.bias': (dim, ),
                f'{b}.norm2.weight': (dim, ), f'{b}.norm2.bias': (dim, ),
                f'{b}.mlp.fc1.weight': (hidden, dim), f'{b}.mlp.fc1.bias': (hidden, ),
                f'{b}.mlp.fc2.weight': (dim, hidden), f'{b}.mlp.fc2.bias': (dim, )})

    vit('encoder', enc_depth, 3, patch)
    vit('decoder', dec_depth, code_dim, 1)
    shapes.update({
        'encode_task_layer.0.weight': (dim, dim), 'encode_task_layer.0.bias': (dim, ),
        'encode_task_layer.2.weight': (code_dim, dim), 'encode_task_layer.2.bias': (code_dim, ),
        'decode_task_layer.0.weight': (dim, dim), 'decode_task_layer.0.bias': (dim, ),
        'decode_task_layer.2.weight': (target_dim, dim),
        'decode_task_layer.2.bias': (target_dim, ),
        'quantize.embedding.weight': (codes, code_dim),
        'quantize.embedding.cluster_size': (codes, ),
        'quantize.embedding.embed_avg': (codes, code_dim),
        'quantize.embedding.initted': (1, ),
        'quantize.cluster_size': (codes, ),
        'teacher_model.visual.proj': (dim, target_dim),
        'teacher_model.visual.conv1.weight': (dim, 3, patch, patch),
        'scaling_layer.shift': (1, 3, 1, 1), 'scaling_layer.scale': (1, 3, 1, 1)})
    return shapes


def test_official_key_list_converts_and_loads_strictly():
    """Independent of :func:`to_official_layout`: every official tensor lands where it should."""
    gen = torch.Generator().manual_seed(0)
    official = {k: torch.randn(s, generator=gen) for k, s in official_vqkd_keys().items()}
    official['quantize.embedding.initted'] = torch.ones(1)
    converted, report = convert('vqkd_official', {'model': official})
    assert not report.unmatched
    assert {k for k in official if k.startswith(('teacher_model.', 'scaling_layer.'))} \
        <= set(report.dropped)
    ours = MODELS.build(tiny_vqkd_tokenizer_cfg()).eval()
    ours.load_state_dict(converted, strict=True)
    sd = ours.state_dict()
    expected = {  # official -> ours, one of each kind
        'encoder.patch_embed.proj.weight': 'encoder.patch_embed.projection.weight',
        'encoder.blocks.1.norm1.bias': 'encoder.layers.1.ln1.bias',
        'encoder.blocks.0.attn.q_bias': 'encoder.layers.0.attn.q_bias',
        'encoder.blocks.1.mlp.fc1.weight': 'encoder.layers.1.ffn.layers.0.0.weight',
        'encoder.blocks.0.mlp.fc2.bias': 'encoder.layers.0.ffn.layers.1.bias',
        'encoder.fc_norm.weight': 'encoder.ln1.weight',
        'decoder.blocks.0.norm2.weight': 'decoder.layers.0.ln2.weight',
        'decoder.patch_embed.proj.weight': 'decoder.patch_embed.projection.weight',
        'encode_task_layer.2.weight': 'encode_task_layer.2.weight',
        'decode_task_layer.0.bias': 'decode_task_layer.0.bias',
        'quantize.embedding.weight': 'quantizer.codebook',
        'quantize.cluster_size': 'quantizer.cluster_size',
    }
    for theirs, mine in expected.items():
        assert torch.equal(sd[mine], official[theirs]), f'{theirs} -> {mine}'
