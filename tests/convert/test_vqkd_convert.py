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


def test_official_layout_round_trip(tmp_path, repo_root):
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
    import importlib.util
    spec = importlib.util.spec_from_file_location('convert_ckpt',
                                                  repo_root / 'tools/convert_ckpt.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    src_file, dst_file = tmp_path / 'official.pth', tmp_path / 'ours.pth'
    torch.save({'model': official}, src_file)
    assert tool.main(['vqkd_official', str(src_file), str(dst_file)]) == 0
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
