"""PeCo VQ-VAE tokenizer: code grid, encode/get_codebook_indices agreement, decode, freezing,
checkpoint hand-off."""
import pytest
import torch

from beitv2_mm.tokenizers.peco import PeCoVQVAE

TINY = dict(patch_size=8, base_channels=8, ch_mult=(1, 2, 2, 2), num_res_blocks=1,
            z_channels=16, norm_groups=4, num_embed=32, embed_dims=8)


def tiny_tokenizer(**overrides) -> PeCoVQVAE:
    torch.manual_seed(0)
    cfg = dict(TINY)
    cfg.update(overrides)
    tokenizer = PeCoVQVAE(**cfg)
    tokenizer.init_weights()
    return tokenizer


def images(batch=2, size=64, seed=1):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_code_grid_and_index_apis_agree():
    tokenizer = tiny_tokenizer()
    x = images(size=64)
    tokenizer.reconstruct(x)  # first training batch: k-means init of the codebook
    tokenizer.eval()
    codes = tokenizer.encode(x)
    assert codes.shape == (2, 8, 8) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < 32
    flat = tokenizer.get_codebook_indices(x)
    assert flat.shape == (2, 64)
    assert torch.equal(flat, codes.flatten(1))
    assert torch.equal(tokenizer(x), flat)  # forward == VQKD.forward: MIM targets
    # non-square inputs keep one token per patch
    assert tokenizer.encode(images(size=64)[:, :, :32]).shape == (2, 4, 8)


def test_reconstruct_and_decode_shapes():
    tokenizer = tiny_tokenizer()
    x = images()
    recon, commit, codes = tokenizer.reconstruct(x)
    assert recon.shape == x.shape and commit.dim() == 0 and codes.shape == (2, 8, 8)
    tokenizer.eval()
    codes = tokenizer.encode(x)
    from_grid = tokenizer.decode(codes)
    from_flat = tokenizer.decode(codes.flatten(1))
    assert from_grid.shape == x.shape
    assert torch.allclose(from_grid, from_flat)
    # decoding the codes is the eval-mode reconstruction of the image
    assert torch.allclose(tokenizer.reconstruct(x)[0], from_grid, atol=1e-5)


def test_patch_size_must_match_downsampling():
    with pytest.raises(ValueError, match='patch_size=16'):
        PeCoVQVAE(**dict(TINY, patch_size=16))
    tokenizer = tiny_tokenizer()
    with pytest.raises(ValueError, match='multiples of patch_size=8'):
        tokenizer.encode(torch.zeros(1, 3, 60, 64))


def test_frozen_tokenizer_stays_eval_and_unchanged():
    tokenizer = tiny_tokenizer()
    tokenizer.reconstruct(images())  # initialise the codebook
    frozen = tiny_tokenizer(frozen=True)
    frozen.load_state_dict(tokenizer.state_dict())
    frozen.train()
    assert not frozen.training and not frozen.quantize.training
    assert not any(p.requires_grad for p in frozen.parameters())
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    frozen.get_codebook_indices(images(seed=3))
    frozen.reconstruct(images(seed=4))
    for key, value in frozen.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_checkpoint_of_training_run_loads(tmp_path):
    tokenizer = tiny_tokenizer()
    tokenizer.reconstruct(images())
    tokenizer.eval()
    # as an mmengine checkpoint of PeCoVQVAETrainer: keys prefixed by the attribute name
    state = {f'tokenizer.{k}': v for k, v in tokenizer.state_dict().items()}
    path = tmp_path / 'iter_10.pth'
    torch.save(dict(meta=dict(iter=10), state_dict=state), path)
    loaded = tiny_tokenizer(checkpoint=str(path), frozen=True)
    loaded.init_weights()  # must not re-draw the loaded weights
    x = images(seed=5)
    assert torch.equal(loaded.encode(x), tokenizer.encode(x))

    raw = tmp_path / 'raw.pth'
    torch.save(tokenizer.state_dict(), raw)
    assert torch.equal(tiny_tokenizer(checkpoint=str(raw)).encode(x), tokenizer.encode(x))

    with pytest.raises(RuntimeError, match='mismatch|missing'):
        tiny_tokenizer(checkpoint=str(raw), num_embed=64)
    with pytest.raises(FileNotFoundError, match=r'model.target_generator.checkpoint.*'
                                                r'peco_vqvae_in1k.py'):
        tiny_tokenizer(checkpoint=str(tmp_path / 'nope.pth'))


def test_quantizer_settings_come_from_tokenizer_args():
    tokenizer = tiny_tokenizer(quantizer=dict(l2_normalize=True, decay=0.9))
    assert tokenizer.quantize.num_codes == 32 and tokenizer.quantize.code_dim == 8
    assert tokenizer.quantize.l2_normalize and tokenizer.quantize.decay == 0.9
    with pytest.raises(ValueError, match='num_embed'):
        tiny_tokenizer(quantizer=dict(num_codes=16))


def test_decoder_has_vqgans_extra_block_per_resolution():
    """VQGAN's Decoder builds ``num_res_blocks + 1`` residual blocks per resolution (attention
    after each at the lowest one); the encoder ``num_res_blocks``."""
    tokenizer = tiny_tokenizer(num_res_blocks=2)
    assert [len(stage.blocks) for stage in tokenizer.encoder.down] == [2, 2, 2, 2]
    assert [len(stage.blocks) for stage in tokenizer.decoder.up] == [3, 3, 3, 3]
    lowest = tokenizer.decoder.up[0]
    assert all(type(a).__name__ == 'AttnBlock' for a in lowest.attns)
    assert all(isinstance(a, torch.nn.Identity) for s in tokenizer.decoder.up[1:] for a in s.attns)
