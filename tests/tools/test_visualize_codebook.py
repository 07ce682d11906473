"""tools/visualize_codebook.py writes a valid patch-grid PNG and a usage histogram PNG."""

import numpy as np
import pytest
import torch
from PIL import Image

import beitv2_mm  # noqa: F401
from beitv2_mm.tokenizers import tiny_vqkd_tokenizer_cfg
from mmpretrain.registry import MODELS
from tool_module import load_tool


def test_writes_valid_pngs(tmp_path, repo_root):
    torch.manual_seed(0)
    tok_cfg = tiny_vqkd_tokenizer_cfg(kmeans_init=False)
    tok = MODELS.build(tok_cfg)
    ckpt = tmp_path / 'tok.pth'
    torch.save(dict(state_dict={'tokenizer.' + k: v for k, v in tok.state_dict().items()}), ckpt)
    cfg_file = tmp_path / 'tok_cfg.py'
    cfg_file.write_text(f'model = dict(tokenizer={tok_cfg!r})\n')
    img_dir = tmp_path / 'images' / 'sub'
    img_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
            img_dir / f'{i}.png')
    tool = load_tool('visualize_codebook')
    out = tool.main([str(cfg_file), str(ckpt), str(tmp_path / 'images'),
                     '--out-dir', str(tmp_path / 'vis'), '--codes', '4', '--patches', '5'])
    for key in ('grid', 'histogram'):
        with Image.open(out[key]) as im:
            im.verify()
        with Image.open(out[key]) as im:
            assert im.format == 'PNG' and im.size[0] > 10 and im.size[1] > 10
    assert 0 < out['used_codes'] <= 64
    assert out['usage'] == out['used_codes'] / 64
    # the grid has one row per shown code: (scale 4 * patch 8 + 2) px per row
    with Image.open(out['grid']) as im:
        assert im.size == (5 * 34, min(4, out['used_codes']) * 34)


def test_bad_input_is_one_line_naming_it(tmp_path, capsys):
    """A missing config, checkpoint or image folder, an empty folder, an unreadable image, a
    config without a VQ-KD tokenizer, a checkpoint of another model: exit 1 with the culprit
    named, no traceback."""
    tool = load_tool('visualize_codebook')
    cfg_file = tmp_path / 'tok_cfg.py'
    cfg_file.write_text(f'model = dict(tokenizer={tiny_vqkd_tokenizer_cfg(kmeans_init=False)!r})\n')
    images = tmp_path / 'images'
    images.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / 'a.png')
    broken = tmp_path / 'broken'
    broken.mkdir()
    (broken / 'b.jpg').write_bytes((images / 'a.png').read_bytes()[:20])
    no_tokenizer = tmp_path / 'cls_cfg.py'
    no_tokenizer.write_text("model = dict(type='ImageClassifier')\n")
    peco = tmp_path / 'peco_cfg.py'
    peco.write_text("model = dict(type='BEiT', target_generator=dict(type='PeCoVQVAE'))\n")
    (tmp_path / 'empty').mkdir()
    torch.save({'other.weight': torch.zeros(2)}, tmp_path / 'other.pth')
    tok = MODELS.build(tiny_vqkd_tokenizer_cfg(kmeans_init=False))
    torch.save(tok.state_dict(), tmp_path / 'tok.pth')
    cases = [
        ([tmp_path / 'no_cfg.py', tmp_path / 'tok.pth', images],
         f"config not found: {tmp_path / 'no_cfg.py'}"),
        ([cfg_file, tmp_path / 'missing.pth', images],
         f"checkpoint not found: {tmp_path / 'missing.pth'}"),
        ([cfg_file, tmp_path / 'tok.pth', tmp_path / 'nowhere'], 'image folder not found: '),
        ([cfg_file, tmp_path / 'tok.pth', tmp_path / 'empty'], 'no images ('),
        ([cfg_file, tmp_path / 'tok.pth', broken], f"cannot read image {broken / 'b.jpg'}"),
        ([no_tokenizer, tmp_path / 'tok.pth', images], 'model is a ImageClassifier; this tool'),
        ([peco, tmp_path / 'tok.pth', images], 'model.target_generator is a PeCoVQVAE'),
        ([cfg_file, tmp_path / 'other.pth', images], f"from {tmp_path / 'other.pth'}: the "
                                                     'checkpoint does not match the model'),
    ]
    for args, expected in cases:
        with pytest.raises(SystemExit) as err:
            tool.main([str(a) for a in args])
        assert err.value.code == 1
        stderr = capsys.readouterr().err
        assert stderr.startswith('tools/visualize_codebook.py: error: ') and expected in stderr, \
            stderr


def test_reads_the_tokenizer_of_a_mim_checkpoint(tmp_path):
    """A MIM config and checkpoint: its target generator holds the encoder and codebook only
    (the decoder, which this tool does not use, was required)."""
    tok_cfg = tiny_vqkd_tokenizer_cfg(kmeans_init=False, decoder_layers=None)
    tok = MODELS.build(tok_cfg)
    ckpt = tmp_path / 'mim.pth'
    torch.save(dict(state_dict={'target_generator.' + k: v
                                for k, v in tok.state_dict().items()}), ckpt)
    cfg_file = tmp_path / 'mim_cfg.py'
    full = tiny_vqkd_tokenizer_cfg(kmeans_init=False)  # with a decoder, as a tokenizer config
    cfg_file.write_text(f"model = dict(type='BEiT', target_generator={full!r})\n")
    images = tmp_path / 'images'
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
            images / f'{i}.png')
    out = load_tool('visualize_codebook').main(
        [str(cfg_file), str(ckpt), str(images), '--out-dir', str(tmp_path / 'vis')])
    assert out['used_codes'] > 0
