"""The checkpoint flow: this project's, mmpretrain's and converted official layouts -> BEiTViT."""
import logging
from pathlib import Path

import pytest
import torch

from beitv2_mm.downstream.checkpoint import (FINAL_NORM_FROM_NECK, extract_backbone_state_dict,
                                             load_beit_pretrained, method_from_config_text,
                                             read_pretrain_info, resize_rel_pos_table)

from downstream_helpers import TINY_ARCH


def build_vit(**kwargs):
    from mmpretrain.registry import MODELS
    cfg = dict(type='BEiTViT', arch=TINY_ARCH, img_size=64, patch_size=8, out_type='avg_featmap',
               use_rel_pos_bias=True, use_shared_rel_pos_bias=False, layer_scale_init_value=0.1)
    cfg.update(kwargs)
    torch.manual_seed(123)
    return MODELS.build(cfg)


def test_mim_layout_maps_pretrain_vit_to_beitvit(tiny_mim_checkpoint):
    path, sd = tiny_mim_checkpoint
    vit = build_vit()
    report = load_beit_pretrained(vit, path)
    shared = sd['backbone.rel_pos_bias.relative_position_bias_table']
    for i in range(4):
        assert torch.equal(vit.layers[i].attn.relative_position_bias_table, shared)
        assert torch.equal(vit.layers[i].attn.qkv.weight,
                           sd[f'backbone.layers.{i}.attn.qkv.weight'])
        assert torch.equal(vit.layers[i].gamma_1, sd[f'backbone.layers.{i}.gamma_1'])
    assert torch.equal(vit.patch_embed.projection.weight,
                       sd['backbone.patch_embed.projection.weight'])
    assert torch.equal(vit.cls_token, sd['backbone.cls_token'])
    # tokenizer, MIM neck/head and mask token are dropped on purpose and reported
    assert any(k.startswith('target_generator.') for k in report.dropped)
    assert any(k.startswith('neck.') for k in report.dropped)
    assert any(k.startswith('head.') for k in report.dropped)
    assert 'mask_token' in report.dropped
    # fc_norm (ln2) is new for fine-tuning: not missing, a note (logged at INFO)
    assert report.missing == [] and any(n.startswith('ln2 ') for n in report.notes)
    assert report.unexpected == []
    assert report.source_layout == 'algorithm'


def test_classifier_checkpoint_layout(tmp_path):
    """mmpretrain ImageClassifier checkpoint (per-layer tables already, ``head.fc``)."""
    from mmpretrain.registry import MODELS
    torch.manual_seed(1)
    clf = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='BEiTViT', arch=TINY_ARCH, img_size=64, patch_size=8),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=64)))
    path = tmp_path / 'clf.pth'
    torch.save({'state_dict': clf.state_dict(), 'meta': {}}, path)
    vit = build_vit()
    report = load_beit_pretrained(vit, str(path))
    assert report.missing == [] and report.unexpected == []
    assert 'head.fc.weight' in report.dropped
    for (k, v), (k2, v2) in zip(clf.backbone.state_dict().items(), vit.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_converted_official_layout_bare_backbone_keys(tiny_mim_checkpoint, tmp_path):
    """tools/convert_ckpt.py writes {'state_dict': backbone keys, 'meta': {converted_from}}."""
    _, sd = tiny_mim_checkpoint
    bare = {k[len('backbone.'):]: v for k, v in sd.items() if k.startswith('backbone.')}
    path = tmp_path / 'converted.pth'
    torch.save({'state_dict': bare, 'meta': {'converted_from': 'beitv2_official',
                                             'source': 'x.pth'}}, path)
    vit = build_vit()
    report = load_beit_pretrained(vit, str(path))
    assert report.source_layout == 'backbone'
    assert report.unexpected == []
    assert torch.equal(vit.layers[2].attn.relative_position_bias_table,
                       sd['backbone.rel_pos_bias.relative_position_bias_table'])
    assert read_pretrain_info(str(path))['method'] == 'beitv2_official'


def test_unconverted_official_layout_is_refused(tmp_path):
    path = tmp_path / 'official.pth'
    torch.save({'model': {'blocks.0.attn.qkv.weight': torch.zeros(3, 3),
                          'cls_token': torch.zeros(1, 1, 3)}}, path)
    with pytest.raises(ValueError, match='convert_ckpt.py'):
        load_beit_pretrained(build_vit(), str(path))


def test_missing_file_names_the_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match='model.backbone.init_cfg.checkpoint'):
        load_beit_pretrained(build_vit(), str(tmp_path / 'nope.pth'))


def test_unexpected_and_missing_keys_are_reported(tiny_mim_checkpoint, caplog):
    """Unexpected keys are reported (WARNING); missing trunk weights are refused unless
    allow_partial, which reports them; strict refuses both; a complete checkpoint logs INFO
    only (the fine-tune's fresh ln2 is a note)."""
    _, sd = tiny_mim_checkpoint
    logger = logging.getLogger('beitv2_mm.test_checkpoint_report')
    with caplog.at_level(logging.WARNING):
        report = load_beit_pretrained(build_vit(), {'state_dict': dict(sd)}, logger=logger)
    assert not report.missing and not caplog.text
    sd = dict(sd)
    sd['backbone.some_adapter.weight'] = torch.ones(2)
    with caplog.at_level(logging.WARNING):
        report = load_beit_pretrained(build_vit(), {'state_dict': sd}, logger=logger)
    assert report.unexpected == ['some_adapter.weight'] and 'some_adapter.weight' in caplog.text
    sd.pop('backbone.layers.3.ffn.layers.1.weight')
    sd.pop('backbone.layers.2.attn.proj.bias')
    with pytest.raises(ValueError, match=r'lacks 2 weights of the backbone trunk \(layers '
                                         r'\[2, 3\]: .*allow_partial=True'):
        load_beit_pretrained(build_vit(), {'state_dict': sd}, logger=logger)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        report = load_beit_pretrained(build_vit(), {'state_dict': sd}, logger=logger,
                                      allow_partial=True)
    assert 'layers.3.ffn.layers.1.weight' in report.missing
    assert 'layers.3.ffn.layers.1.weight' in caplog.text
    with pytest.raises(RuntimeError, match='strict'):
        load_beit_pretrained(build_vit(), {'state_dict': sd}, strict=True, logger=logger)


def test_architecture_mismatch_is_named(tiny_mim_checkpoint):
    _, sd = tiny_mim_checkpoint
    wide = build_vit(arch=dict(embed_dims=32, num_layers=4, num_heads=4, feedforward_channels=64))
    with pytest.raises(ValueError, match='does not fit'):
        load_beit_pretrained(wide, {'state_dict': sd})


def test_relative_position_tables_are_resized(tiny_mim_checkpoint):
    """8x8 pretrain window -> 16x16 (128 px), the 14 -> 32 step of ADE20K in small."""
    _, sd = tiny_mim_checkpoint
    vit = build_vit(img_size=128, out_type='featmap')
    report = load_beit_pretrained(vit, {'state_dict': sd})
    table = vit.layers[0].attn.relative_position_bias_table
    assert table.shape == ((2 * 16 - 1) ** 2 + 3, 4)
    assert 'layers.0.attn.relative_position_bias_table' in report.resized
    shared = sd['backbone.rel_pos_bias.relative_position_bias_table']
    assert torch.equal(table[-3:], shared[-3:])  # cls rows kept
    # the centre (relative offset 0) of the interpolated grid keeps its value
    src_c = (2 * 8 - 1) // 2 * (2 * 8 - 1) + (2 * 8 - 1) // 2
    dst_c = (2 * 16 - 1) // 2 * (2 * 16 - 1) + (2 * 16 - 1) // 2
    assert torch.allclose(table[dst_c], shared[src_c], atol=1e-4)
    out = vit(torch.randn(1, 3, 128, 128))[0]
    assert out.shape == (1, 64, 16, 16)


@pytest.mark.parametrize('target', ['FastBEiTViT', 'BEiTViT'])
@pytest.mark.parametrize('img_size', [64, 128])
def test_stock_per_layer_checkpoint_into_fast_backbone(img_size, target):
    """A stock fine-tuned / detector backbone (per-layer tables and index buffers) loads into
    ``FastBEiTViT`` (the detector's backbone), which stores no index, and into a stock
    ``BEiTViT`` of another size, which keeps its own index for its window (the checkpoint's,
    of the 8x8 window, is dropped): nothing unexpected, nothing missing, same window (64 px) or
    resized (128 px)."""
    stock = build_vit(out_type='featmap')
    with torch.no_grad():
        for layer in stock.layers:
            layer.attn.relative_position_bias_table.normal_()
    sd = {'backbone.' + k: v for k, v in stock.state_dict().items()}
    assert sum(k.endswith('relative_position_index') for k in sd) == len(stock.layers)
    fast = build_vit(type=target, img_size=img_size, out_type='featmap')
    own_index = {k: v.clone() for k, v in fast.state_dict().items()
                 if k.endswith('relative_position_index')}
    report = load_beit_pretrained(fast, {'state_dict': sd})
    assert not report.unexpected and not report.missing
    for key, index in own_index.items():  # the model's index, for its window
        assert torch.equal(fast.state_dict()[key], index), key
        assert (key in report.dropped) == (img_size != 64), key
    table = fast.layers[1].attn.relative_position_bias_table
    if img_size == 64:
        assert torch.equal(table, stock.layers[1].attn.relative_position_bias_table)
        x = torch.randn(1, 3, 64, 64)
        torch.testing.assert_close(fast(x)[0], stock(x)[0], atol=1e-5, rtol=1e-4)
    else:
        assert 'layers.1.attn.relative_position_bias_table' in report.resized
        assert fast(torch.randn(1, 3, 128, 128))[0].shape == (1, 64, 16, 16)


def test_mim_checkpoint_into_windowed_detector_backbone(tiny_mim_checkpoint):
    """ViTDet layout (``WindowedBEiTViT``): blocks whose window is the pretraining grid take the
    pretrained table as it is, the global block gets it resized to the whole grid, and the
    [CLS] token (which the backbone does not have) is dropped with its reason."""
    path, sd = tiny_mim_checkpoint
    vit = build_vit(type='WindowedBEiTViT', img_size=128, window_size=8,
                    window_block_indexes=[0, 1, 2], out_type='featmap')
    report = load_beit_pretrained(vit, path)
    shared = sd['backbone.rel_pos_bias.relative_position_bias_table']
    for i in range(3):
        assert torch.equal(vit.layers[i].attn.relative_position_bias_table, shared)
    assert report.resized == {'layers.3.attn.relative_position_bias_table': '(228, 4) -> (964, 4)'}
    assert 'cls_token' in report.dropped and 'no' in report.dropped['cls_token']
    assert not report.missing and not report.unexpected
    assert torch.equal(vit.layers[2].attn.qkv.weight, sd['backbone.layers.2.attn.qkv.weight'])
    assert vit(torch.randn(1, 3, 128, 128))[0].shape == (1, 64, 16, 16)


def test_smaller_window_takes_the_centre_of_the_table():
    """A window smaller than the pretraining grid keeps the bias of each offset it can see."""
    side, heads = 2 * 8 - 1, 2  # an 8x8 pretraining grid: offsets -7..7
    offsets = torch.arange(side) - 7
    grid = (100 * offsets[:, None] + offsets[None, :]).float()  # row dy, column dx
    table = torch.cat([grid.reshape(-1, 1).repeat(1, heads), torch.full((3, heads), -1.0)])
    table[:, 1] *= 2
    small = resize_rel_pos_table(table, (2 * 4 - 1) ** 2 + 3)  # a 4x4 window: offsets -3..3
    assert small.shape == (7 * 7 + 3, heads)
    near = torch.arange(7) - 3
    expected = (100 * near[:, None] + near[None, :]).float().reshape(-1)
    torch.testing.assert_close(small[:-3, 0], expected, rtol=0, atol=0)
    torch.testing.assert_close(small[:-3, 1], 2 * expected, rtol=0, atol=0)
    assert torch.equal(small[-3:], table[-3:])


def test_abs_pos_embed_is_resized_and_survives_init_weights(tmp_path):
    from mmpretrain.registry import MODELS
    torch.manual_seed(3)
    src = MODELS.build(dict(type='BEiTViT', arch=TINY_ARCH, img_size=64, patch_size=8,
                            use_abs_pos_emb=True, use_rel_pos_bias=False))
    with torch.no_grad():
        src.pos_embed.normal_()
    path = tmp_path / 'abs.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in src.state_dict().items()}}, path)
    dst = build_vit(img_size=96, use_abs_pos_emb=True, use_rel_pos_bias=False,
                    init_cfg=dict(type='BEiTPretrained', checkpoint=str(path)))
    dst.init_weights()
    assert dst.pos_embed.shape == (1, 1 + 12 * 12, 64)
    assert torch.equal(dst.pos_embed[:, 0], src.pos_embed[:, 0])
    assert torch.equal(dst.layers[1].attn.qkv.weight, src.layers[1].attn.qkv.weight)


@pytest.mark.parametrize('img_size', [64, 128])
def test_abs_pos_embed_into_a_backbone_without_cls_token(tmp_path, img_size):
    """ViTDet's windowed backbone has no [CLS] token: it takes the checkpoint's patch positions
    without the [CLS] one, resized like a [CLS] model's (a checkpoint's [CLS] position used to
    be counted as a patch: "65 tokens minus 0 extra is not a square grid")."""
    torch.manual_seed(3)
    src = build_vit(use_abs_pos_emb=True, out_type='featmap')
    with torch.no_grad():
        src.pos_embed.normal_()
    sd = {f'backbone.{k}': v for k, v in src.state_dict().items()}
    windowed = build_vit(type='WindowedBEiTViT', img_size=img_size, window_size=8,
                         window_block_indexes=[0, 1, 2], use_abs_pos_emb=True, out_type='featmap')
    assert windowed.num_extra_tokens == 0
    report = load_beit_pretrained(windowed, {'state_dict': sd})
    assert not report.missing and not report.unexpected
    assert 'cls_token' in report.dropped
    assert report.resized['pos_embed'] == f'(1, 65, 64) -> (1, {(img_size // 8) ** 2}, 64)'
    with_cls = build_vit(img_size=img_size, use_abs_pos_emb=True, out_type='featmap')
    load_beit_pretrained(with_cls, {'state_dict': sd})
    # the same patch positions as a [CLS] model of that size, the [CLS] one left out
    assert torch.equal(windowed.pos_embed, with_cls.pos_embed[:, 1:])
    if img_size == 64:
        assert torch.equal(windowed.pos_embed, src.pos_embed[:, 1:])
    assert windowed(torch.randn(1, 3, img_size, img_size))[0].shape[-1] == img_size // 8


def test_abs_pos_embed_with_a_distillation_token_keeps_the_cls_position():
    """A DeiT-style checkpoint ([CLS], distillation token, patches): a [CLS] model keeps the
    [CLS] position and the patch grid, not the distillation token's position; a checkpoint
    with fewer extra tokens than the model is an error."""
    from beitv2_mm.downstream.checkpoint import LoadReport, adapt_backbone_state_dict

    model = build_vit(use_abs_pos_emb=True, out_type='featmap')
    assert model.pos_embed.shape == (1, 65, 64)
    src = torch.randn(1, 66, 64)
    sd = adapt_backbone_state_dict({'pos_embed': src}, model, LoadReport())
    torch.testing.assert_close(sd['pos_embed'], torch.cat([src[:, :1], src[:, 2:]], dim=1))
    with pytest.raises(ValueError, match='cannot be made up'):
        adapt_backbone_state_dict({'pos_embed': torch.randn(1, 64, 64)}, model, LoadReport())


def test_init_cfg_inside_classifier_is_not_overwritten_by_children(tiny_mim_checkpoint):
    """mmengine runs children's init_weights after non-Pretrained initializers: make sure the
    loaded weights (incl. FFN linears that BEiT layers re-draw) are what stays."""
    from mmpretrain.registry import MODELS
    path, sd = tiny_mim_checkpoint
    clf = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='BEiTViT', arch=TINY_ARCH, img_size=64, patch_size=8,
                      init_cfg=dict(type='BEiTPretrained', checkpoint=path)),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=64)))
    clf.init_weights()
    for i in range(4):
        assert torch.equal(clf.backbone.layers[i].ffn.layers[0][0].weight,
                           sd[f'backbone.layers.{i}.ffn.layers.0.0.weight'])
        assert torch.equal(clf.backbone.layers[i].attn.relative_position_bias_table,
                           sd['backbone.rel_pos_bias.relative_position_bias_table'])


def test_allow_partial_is_a_config_setting(tiny_mim_checkpoint, tmp_path):
    """model.backbone.init_cfg.allow_partial=True starts the missing trunk layers at random on
    purpose; without it the config's init fails naming the setting; a typo is named too."""
    _, sd = tiny_mim_checkpoint
    partial = {k: v for k, v in sd.items() if not k.startswith('backbone.layers.3.')}
    path = str(tmp_path / 'partial.pth')
    torch.save({'state_dict': partial}, path)
    with pytest.raises(ValueError, match=r'layers \[3\].*allow_partial'):
        build_vit(init_cfg=dict(type='BEiTPretrained', checkpoint=path)).init_weights()
    vit = build_vit(init_cfg=dict(type='BEiTPretrained', checkpoint=path, allow_partial=True))
    vit.init_weights()
    assert torch.equal(vit.layers[2].attn.qkv.weight, sd['backbone.layers.2.attn.qkv.weight'])
    with pytest.raises(TypeError, match=r"unknown settings \['allow_parital'\].*allow_partial"):
        build_vit(init_cfg=dict(type='BEiTPretrained', checkpoint=path,
                                allow_parital=True)).init_weights()


def test_no_checkpoint_keeps_random_init():
    vit = build_vit(init_cfg=dict(type='BEiTPretrained', checkpoint=None))
    vit.init_weights()  # warns, does not fail


def test_extract_strips_ddp_prefix_and_method_inference(tiny_mim_checkpoint):
    path, sd = tiny_mim_checkpoint
    ddp = {f'module.{k}': v for k, v in sd.items()}
    assert set(extract_backbone_state_dict({'state_dict': ddp})) == \
        {k[len('backbone.'):] for k in sd if k.startswith('backbone.')} | \
        {FINAL_NORM_FROM_NECK + 'weight', FINAL_NORM_FROM_NECK + 'bias'}
    assert read_pretrain_info(path)['method'] == 'beitv2'
    assert read_pretrain_info(None)['method'] == 'random_init'
    assert method_from_config_text("model=dict(type='BEiT', target_generator="
                                   "dict(type='DALL-E'))") == 'beitv1'
    assert method_from_config_text("model=dict(type='ImageClassifier')") == 'supervised'
    # a declared name is taken as written, whatever its characters
    for name in ('beitv2_mask40', 'BEiT v2, 40% mask', 'beitv2+m40'):
        assert method_from_config_text(f"pretrain_method = {name!r}  # mine\n"
                                       "model=dict(type='BEiT')") == name


@pytest.mark.parametrize('config, method', [
    ('configs/demo/beitv1_vit-tiny_synthetic.py', 'beitv1'),
    ('configs/demo/peco_vit-tiny_synthetic.py', 'peco'),
    ('configs/demo/beitv2_vit-tiny_synthetic.py', 'beitv2'),
    ('configs/beitv2_vitl_mim.py', 'beitv2'),
    ('configs/beitv1_vitb_mim.py', 'beitv1'),
    ('configs/peco/peco_vitb_mim.py', 'peco'),
])
def test_mim_configs_declare_their_method(config, method):
    """The saved config text of a MIM run names its method: the demo BEiT v1 (pixel VQ-VAE
    through the PeCo machinery) used to be reported as 'peco' by the type-based guess."""
    from mmengine.config import Config
    root = Path(__file__).resolve().parents[2]
    assert method_from_config_text(Config.fromfile(str(root / config)).pretty_text) == method


def test_beitv2_final_norm_from_neck_feeds_the_probe(tiny_mim_checkpoint):
    """BEiT v2 keeps its final LayerNorm at neck.norm; the [CLS] probe (final_norm=True) uses it."""
    from mmpretrain.registry import MODELS
    _, sd = tiny_mim_checkpoint
    probe = MODELS.build(dict(type='FrozenBEiTViT', arch=TINY_ARCH, img_size=64, patch_size=8,
                              final_norm=True))
    report = load_beit_pretrained(probe, {'state_dict': sd})
    assert torch.equal(probe.ln1.weight, sd['neck.norm.weight'])
    assert torch.equal(probe.ln1.bias, sd['neck.norm.bias'])
    assert report.missing == [] and report.unexpected == []
    assert any('neck.norm' in n for n in report.notes)


def test_tokenizer_checkpoint_given_as_pretrain_is_named(tmp_path):
    """A VQ-KD run's checkpoint (tokenizer.* keys) or a converted tokenizer at
    model.backbone.init_cfg.checkpoint: the error says what it is and where it belongs."""
    from beitv2_mm.tokenizers import tiny_vqkd_tokenizer_cfg
    from mmpretrain.registry import MODELS

    tokenizer = MODELS.build(tiny_vqkd_tokenizer_cfg())
    for state in ({f'tokenizer.{k}': v for k, v in tokenizer.state_dict().items()},
                  tokenizer.state_dict()):
        with pytest.raises(ValueError, match=r'tokenizer checkpoint .* belongs in a MIM '
                                             r"config's model\.target_generator\.checkpoint"):
            load_beit_pretrained(build_vit(), {'state_dict': state})


def test_pretrain_details_from_the_checkpoints_meta(repo_root):
    """Tokenizer, backbone and length of a MIM run, read from its checkpoint's meta (saved
    config and mmengine's counters): epochs for an epoch-based recipe, iters otherwise; nothing
    from a meta without a config or with an unparsable one."""
    from mmengine.config import Config

    from beitv2_mm.downstream.checkpoint import pretrain_details

    def trained(rel):  # a run's saved config names its tokenizer's weights
        cfg = Config.fromfile(str(repo_root / rel))
        cfg.model.target_generator.checkpoint = 'work_dirs/vqkd/epoch_100.pth'
        return cfg

    vitb_cfg = trained('configs/beitv2_vitb_mim.py')
    vitb = vitb_cfg.pretty_text
    assert pretrain_details(dict(cfg=vitb, epoch=300, iter=187500)) == dict(
        tokenizer='VQ-KD, 8192 codes', backbone='ViT-B/16', epochs=300)
    # a run without tokenizer weights (a pipeline check) is not labelled as a trained tokenizer
    vitb_cfg.model.target_generator.checkpoint = None
    assert pretrain_details(dict(cfg=vitb_cfg.pretty_text, epoch=1))['tokenizer'] == (
        'VQ-KD, 8192 codes (untrained: random weights)')
    demo = trained('configs/demo/beitv1_vit-tiny_synthetic.py')
    assert pretrain_details(dict(cfg=demo.pretty_text, epoch=0, iter=2400)) == dict(
        tokenizer='VQ-VAE (PeCoVQVAE), 512 codes', backbone='ViT 64d x4L /8', iters=2400)
    # the codebook size tells a variant's rows apart (--cfg-options counted, as the suite's)
    from beitv2_mm.downstream.checkpoint import tokenizer_codes
    v2 = trained('configs/demo/beitv2_vit-tiny_synthetic.py')
    v2.model.target_generator.num_codes = 1024
    assert pretrain_details(dict(cfg=v2.pretty_text, iter=3))['tokenizer'] == 'VQ-KD, 1024 codes'
    assert tokenizer_codes(v2, {'model.target_generator.num_codes': 64}) == 64
    dalle = Config.fromfile(str(repo_root / 'configs/beitv1_vitb_mim.py'))
    assert tokenizer_codes(dalle) is None
    assert pretrain_details(dict(iter=5)) == {} and pretrain_details(None) == {}
    # the run name mmengine saves gives the config file (the leaderboard's Config cell)
    named = pretrain_details(dict(cfg=vitb, epoch=300,
                                  experiment_name='beitv2_vitb_mim_20261124_205011'))
    assert named['config'] == 'beitv2_vitb_mim.py'
    assert 'config' not in pretrain_details(dict(cfg=vitb, experiment_name='my_run'))
    assert pretrain_details(dict(cfg='model = dict(')) == {}


def test_checkpoint_meta_is_read_without_the_tensors(tmp_path, monkeypatch):
    """``read_checkpoint_meta`` maps a zip-format file instead of reading it in full (the
    results hook reads a pretrain checkpoint's meta at the end of every downstream run); a
    legacy-format file is read in full; both give the same meta."""
    from beitv2_mm.downstream import checkpoint as ckpt_module
    meta = dict(cfg="model = dict(type='BEiT')", epoch=3)
    ckpt = dict(meta=meta, state_dict={'backbone.w': torch.arange(6.)})
    zipped, legacy = tmp_path / 'zip.pth', tmp_path / 'legacy.pth'
    torch.save(ckpt, zipped)
    torch.save(ckpt, legacy, _use_new_zipfile_serialization=False)
    full_reads = []
    read_in_full = ckpt_module.read_checkpoint
    monkeypatch.setattr(ckpt_module, 'read_checkpoint',
                        lambda path: full_reads.append(path) or read_in_full(path))
    assert ckpt_module.read_checkpoint_meta(str(zipped)) == meta
    assert full_reads == []  # mapped, not read
    assert ckpt_module.read_checkpoint_meta(str(legacy)) == meta
    assert full_reads == [str(legacy)]
    assert read_pretrain_info(str(zipped))['source'] == 'meta.cfg'
    torch.save({'state_dict': {}}, tmp_path / 'no_meta.pth')
    assert ckpt_module.read_checkpoint_meta(str(tmp_path / 'no_meta.pth')) == {}
    with pytest.raises(FileNotFoundError, match='model.backbone.init_cfg.checkpoint'):
        ckpt_module.read_checkpoint_meta(str(tmp_path / 'missing.pth'))


def test_required_initializer_refuses_random_weights():
    """``BEiTPretrained(required=True)`` without a checkpoint fails inside the runner too (a
    config run without tools/train.py's start-up check), naming the key and the opt-out."""
    from mmengine.registry import WEIGHT_INITIALIZERS
    from mmpretrain.models.backbones.beit import BEiTViT
    init = WEIGHT_INITIALIZERS.build(dict(type='BEiTPretrained', checkpoint=None, required=True))
    vit = BEiTViT(arch=dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64),
                  img_size=32, patch_size=16)
    with pytest.raises(ValueError, match=r'init_cfg\.checkpoint is not set.*required=False'):
        init(vit)
    WEIGHT_INITIALIZERS.build(dict(type='BEiTPretrained', checkpoint=None))(vit)  # baseline
