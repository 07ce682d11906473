"""VQKDTokenizer: API shapes, input ranges, frozen mode, checkpoint loading and its errors;
the shipped configs' VQ-KD ViTs."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import beitv2_mm  # noqa: F401
from beitv2_mm.tokenizers import load_tokenizer_checkpoint, tiny_vqkd_tokenizer_cfg
from mmpretrain.registry import MODELS

REPO = Path(__file__).resolve().parents[2]


def build(**kw):
    torch.manual_seed(0)
    return MODELS.build(tiny_vqkd_tokenizer_cfg(**kw))


def images(b=2, size=32):
    g = torch.Generator().manual_seed(1)
    return torch.rand(b, 3, size, size, generator=g) * 255


def test_public_api_shapes():
    tok = build().eval()
    x = images()
    codes = tok.encode(x)
    assert codes.shape == (2, 4, 4) and codes.dtype == torch.long
    assert codes.min() >= 0 and codes.max() < 64
    flat = tok.get_codebook_indices(x)
    assert flat.shape == (2, 16) and torch.equal(flat, codes.flatten(1))
    assert torch.equal(tok(x), flat)  # mmpretrain VQKD.forward interface
    out = tok.reconstruct(x)
    assert out.features.shape == (2, 16, 16)
    assert out.indices.shape == (2, 4, 4) and out.commit_loss.dim() == 0


def test_input_ranges_give_the_same_codes():
    x255 = images()
    codes = {}
    for rng, x in (((0, 255), x255), ((0, 1), x255 / 255), ((-1, 1), x255 / 127.5 - 1)):
        tok = build(input_range=rng, kmeans_init=False).eval()
        codes[rng] = tok.encode(x)
    assert torch.equal(codes[(0, 255)], codes[(0, 1)])
    assert torch.equal(codes[(0, 255)], codes[(-1, 1)])
    with pytest.raises(ValueError, match='input_range'):
        build(input_range=(0, 2))


def test_gradients_reach_encoder_through_straight_through():
    tok = build(kmeans_init=False).train()
    out = tok.reconstruct(images())
    (out.features.sum() + out.commit_loss).backward()
    assert tok.encoder.patch_embed.projection.weight.grad.abs().sum() > 0
    assert tok.decoder.patch_embed.projection.weight.grad.abs().sum() > 0


def test_decoder_reads_each_code_at_its_patch_position():
    """The decoder's input map holds token ``n = i * w + j`` at row ``i``, column ``j`` (the
    encoder's raster order): a map built without the transpose, or transposed, feeds the
    decoder shuffled codes with every shape still right."""
    tok = build(kmeans_init=False).eval()
    seen = []
    tok.decoder.patch_embed.projection.register_forward_pre_hook(
        lambda module, args: seen.append(args[0]))
    codes = torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(2))
    features = tok.decode(codes, (4, 4))
    assert features.shape == (2, 16, 16)
    code_map, = seen
    assert code_map.shape == (2, 8, 4, 4)
    for n in range(16):
        assert torch.equal(code_map[:, :, n // 4, n % 4], codes[:, n]), n


def test_commitment_weight_reaches_the_quantizer():
    x = images()
    losses = [build(kmeans_init=False, beta=beta).eval().reconstruct(x).commit_loss
              for beta in (1.0, 0.25)]
    assert losses[0] > 0
    torch.testing.assert_close(losses[1], 0.25 * losses[0])


def test_frozen_tokenizer_stays_in_eval_and_changes_nothing():
    tok = build(kmeans_init=False, frozen=True)
    tok.train()
    assert not tok.training and not tok.quantizer.training
    assert not any(p.requires_grad for p in tok.parameters())
    state = {k: v.clone() for k, v in tok.state_dict().items()}
    tok.encode(images())
    assert all(torch.equal(v, state[k]) for k, v in tok.state_dict().items())


@pytest.mark.parametrize('prefix', ['', 'tokenizer.', 'target_generator.'])
def test_checkpoint_round_trip_with_prefixes(tmp_path, prefix):
    src = build(kmeans_init=False).eval()
    path = tmp_path / 'tok.pth'
    sd = {prefix + k: v for k, v in src.state_dict().items()}
    if prefix:  # an mmengine training checkpoint with other modules around
        sd['teacher.something'] = torch.zeros(1)
        torch.save(dict(meta=dict(), state_dict=sd), path)
    else:
        torch.save(sd, path)
    torch.manual_seed(123)
    dst = MODELS.build(tiny_vqkd_tokenizer_cfg(checkpoint=str(path))).eval()
    assert dst.is_init
    x = images()
    assert torch.equal(src.encode(x), dst.encode(x))
    torch.testing.assert_close(src.reconstruct(x).features, dst.reconstruct(x).features)
    dst.init_weights()  # the runner calls it: it must not overwrite the loaded weights
    assert torch.equal(src.encode(x), dst.encode(x))


def test_encoder_only_tokenizer_loads_training_checkpoint(tmp_path):
    src = build(kmeans_init=False).eval()
    path = tmp_path / 'train.pth'
    torch.save(dict(state_dict={'tokenizer.' + k: v for k, v in src.state_dict().items()}),
               path)
    enc_only = MODELS.build(tiny_vqkd_tokenizer_cfg(decoder_layers=None))
    report = load_tokenizer_checkpoint(enc_only, str(path))
    assert report.prefix == 'tokenizer.' and not report.missing
    assert any(k.startswith('decoder.') for k in report.unexpected)
    x = images()
    assert torch.equal(src.encode(x), enc_only.eval().encode(x))


def test_checkpoint_errors_name_file_and_keys(tmp_path):
    # the key to set and where such a file comes from, as for a missing teacher
    with pytest.raises(FileNotFoundError, match=r"nope.pth' \(model.target_generator.checkpoint\)"
                                                r'.*convert_ckpt.py vqkd_official'):
        MODELS.build(tiny_vqkd_tokenizer_cfg(checkpoint=str(tmp_path / 'nope.pth')))
    src = build(num_codes=32)  # another codebook size
    path = tmp_path / 'other.pth'
    sd = src.state_dict()
    del sd['encode_task_layer.0.bias']
    torch.save(sd, path)
    with pytest.raises(RuntimeError) as err:
        MODELS.build(tiny_vqkd_tokenizer_cfg(checkpoint=str(path)))
    msg = str(err.value)
    assert 'other.pth' in msg
    assert 'shape mismatch for quantizer.codebook: checkpoint (32, 8) vs module (64, 8)' in msg
    assert 'encode_task_layer.0.bias' in msg
    assert 'beitv2_mm.tokenizers.vqkd.VQKDTokenizer' in msg  # which class, timm's or ours
    # this project's own layout: the codebook size to set, not the official-layout converter
    assert 'set the tokenizer\'s num_codes=32 and code_dim=8' in msg
    # the keys of a MIM config, the head's vocabulary included (it is checked next)
    assert 'model.target_generator.num_codes=32' in msg and 'model.head.num_embed=32' in msg
    assert 'convert_ckpt' not in msg

    # a file of another model: the missing keys are shown in part, with the count
    torch.save({f'other.{i}': torch.zeros(1) for i in range(3)}, path)
    with pytest.raises(RuntimeError, match=r'missing keys \((\d+)\): [^\n]*\.\.\. \(\d+ more\)'):
        MODELS.build(tiny_vqkd_tokenizer_cfg(checkpoint=str(path)))

    # a PeCo VQ-VAE checkpoint (its encoder.down.N.blocks and quantize.* keys looked like the
    # official VQ-KD layout): named as what it is, not sent to the converter
    torch.save({'encoder.down.0.blocks.0.conv1.weight': torch.zeros(1),
                'quant_conv.weight': torch.zeros(1), 'quantize.codebook': torch.zeros(1)}, path)
    with pytest.raises(RuntimeError) as err:
        MODELS.build(tiny_vqkd_tokenizer_cfg(checkpoint=str(path)))
    assert "target_generator.type='PeCoVQVAE'" in str(err.value)
    assert 'convert_ckpt' not in str(err.value)

    # truncated or not a checkpoint at all: the file, its size and what to do
    good = tmp_path / 'good.pth'
    torch.save(build().state_dict(), good)
    for name, data in (('truncated.pth', good.read_bytes()[:4000]),
                       ('garbage.pth', b'not a checkpoint at all' * 10)):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(RuntimeError, match=rf'cannot read checkpoint .*{name} '
                                               rf'\({len(data)} bytes\).*download or copy it'):
            MODELS.build(tiny_vqkd_tokenizer_cfg(checkpoint=str(tmp_path / name)))


def test_init_is_the_official_one():
    """Encoder/decoder Linear layers trunc-normal(0.02) with zero bias (mmpretrain's ViT layers
    re-draw the FFN Xavier-uniform: std sqrt(2 / (fan_in + fan_out)), not 0.02), residual
    outputs divided by sqrt(2 * layer_id)."""
    tok = build()
    tok.init_weights()
    for vit in (tok.encoder, tok.decoder):
        for i, layer in enumerate(vit.layers):
            fc1, fc2 = layer.ffn.layers[0][0], layer.ffn.layers[1]
            torch.testing.assert_close(fc1.weight.std().item(), 0.02, rtol=0.12, atol=0)
            torch.testing.assert_close(fc2.weight.std().item(), 0.02 / (2 * (i + 1)) ** 0.5,
                                       rtol=0.12, atol=0)
            assert not fc1.bias.any() and not fc2.bias.any()


# every VQ-KD encoder/decoder a shipped config spells out, and the module default it must match
VQKD_VITS = [
    ('configs/_base_/vqkd_vitb_model.py', 'model.tokenizer.encoder'),
    ('configs/_base_/vqkd_vitb_model.py', 'model.tokenizer.decoder'),
    ('configs/_base_/mim_model_beitv2_vitb.py', 'model.target_generator.encoder'),
    ('configs/demo/vqkd_vit-tiny_synthetic.py', 'model.tokenizer.encoder'),
    ('configs/demo/vqkd_vit-tiny_synthetic.py', 'model.tokenizer.decoder'),
    ('configs/demo/beitv2_vit-tiny_synthetic.py', 'model.target_generator.encoder'),
]


@pytest.mark.parametrize('rel,key', VQKD_VITS)
def test_config_vqkd_vits_are_the_official_architecture(rel, key):
    """The configs write the VQ-KD ViTs out (to be read); they must stay what
    ``vqkd_vit_cfg`` builds, the official encoder/decoder, apart from the size: every setting
    the config leaves out is ``BEiTViT``'s default, and that must agree too."""
    import inspect

    from mmpretrain.models import BEiTViT

    from beitv2_mm.tokenizers.vqkd import vqkd_vit_cfg

    cfg = Config.fromfile(str(REPO / rel))
    vit = dict(cfg)
    for part in key.split('.'):
        vit = vit[part]
    vit = dict(vit)
    size = {k: vit.pop(k) for k in ('arch', 'img_size', 'patch_size') if k in vit}
    official = vqkd_vit_cfg(**size)
    defaults = {name: p.default for name, p in inspect.signature(BEiTViT).parameters.items()}
    for name, want in official.items():
        if name in size or name == 'in_channels':  # in_channels: the tokenizer sets it
            continue
        if name == 'init_cfg' and 'target_generator' in key:
            continue  # a MIM target generator loads trained weights; its init is not used
        got = vit.get(name, defaults.get(name))
        assert got == want, f'{rel}: {key}.{name} = {got!r}, the official VQ-KD ViT has {want!r}'
    assert set(vit) <= set(official), f'{rel}: {key} sets {set(vit) - set(official)}'
