"""DALL-E tokenizer: official encoder.pkl without the dall_e package, dalle_encoder.pth, map_pixels."""
import sys
import textwrap

import pytest
import torch

import beitv2_mm  # noqa: F401
from beitv2_mm.tokenizers.dalle import (DALLE_SECOND_MEAN, DALLE_SECOND_STD, DALLETokenizer,
                                        load_dalle_encoder_state, map_pixels)
from mmpretrain.models.selfsup.cae import DALLEEncoder
from mmpretrain.registry import MODELS

SMALL = dict(group_count=4, n_hid=8, n_blk_per_group=1, vocab_size=64)

# A stand-in for OpenAI's dall_e package with its module/attribute names (dall_e.encoder.Encoder
# holding ``blocks`` of dall_e.utils.Conv2d with parameters ``w``/``b``).
FAKE_DALL_E = {
    '__init__.py': '',
    'utils.py': '''
        import torch, torch.nn as nn, torch.nn.functional as F
        class Conv2d(nn.Module):
            def __init__(self, n_in, n_out, kw):
                super().__init__()
                self.kw = kw
                self.w = nn.Parameter(torch.randn(n_out, n_in, kw, kw) * 0.1)
                self.b = nn.Parameter(torch.randn(n_out) * 0.1)
                self.device = torch.device('cpu')
            def forward(self, x):
                return F.conv2d(x, self.w, self.b, padding=(self.kw - 1) // 2)
    ''',
    'encoder.py': '''
        from collections import OrderedDict
        import torch.nn as nn
        from .utils import Conv2d
        class EncoderBlock(nn.Module):
            def __init__(self, n_in, n_out, n_layers):
                super().__init__()
                n_hid = n_out // 4
                self.post_gain = 1 / (n_layers ** 2)
                self.id_path = Conv2d(n_in, n_out, 1) if n_in != n_out else nn.Identity()
                self.res_path = nn.Sequential(OrderedDict([
                    ('relu_1', nn.ReLU()), ('conv_1', Conv2d(n_in, n_hid, 3)),
                    ('relu_2', nn.ReLU()), ('conv_2', Conv2d(n_hid, n_hid, 3)),
                    ('relu_3', nn.ReLU()), ('conv_3', Conv2d(n_hid, n_hid, 3)),
                    ('relu_4', nn.ReLU()), ('conv_4', Conv2d(n_hid, n_out, 1))]))
            def forward(self, x):
                return self.id_path(x) + self.post_gain * self.res_path(x)
        class Encoder(nn.Module):
            def __init__(self, group_count, n_hid, vocab_size):
                super().__init__()
                self.vocab_size = vocab_size
                groups = [('input', Conv2d(3, n_hid, 7))]
                widths = [n_hid * 2 ** i for i in range(4)]
                n_in = n_hid
                for g, width in enumerate(widths):
                    layers = [('block_1', EncoderBlock(n_in, width, group_count))]
                    if g < 3:
                        layers.append(('pool', nn.MaxPool2d(kernel_size=2)))
                    groups.append((f'group_{g + 1}', nn.Sequential(OrderedDict(layers))))
                    n_in = width
                groups.append(('output', nn.Sequential(OrderedDict([
                    ('relu', nn.ReLU()), ('conv', Conv2d(n_in, vocab_size, 1))]))))
                self.blocks = nn.Sequential(OrderedDict(groups))
            def forward(self, x):
                return self.blocks(x)
    ''',
}


@pytest.fixture
def official_encoder_pkl(tmp_path, monkeypatch):
    """encoder.pkl written by torch.save of a whole dall_e Encoder, then dall_e made unimportable."""
    pkg = tmp_path / 'pkgs' / 'dall_e'
    pkg.mkdir(parents=True)
    for name, text in FAKE_DALL_E.items():
        (pkg / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path / 'pkgs'))
    from dall_e.encoder import Encoder  # noqa: E402
    torch.manual_seed(0)
    encoder = Encoder(group_count=4, n_hid=8, vocab_size=64)
    path = tmp_path / 'encoder.pkl'
    torch.save(encoder, path)
    x = torch.rand(2, 3, 32, 32)
    expected = encoder(map_pixels(x))
    # the package goes away: the loader must not need it
    for mod in [m for m in sys.modules if m == 'dall_e' or m.startswith('dall_e.')]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.syspath_prepend(str(tmp_path / 'nothing_here'))
    (pkg / '__init__.py').unlink()
    for name in ('utils.py', 'encoder.py'):
        (pkg / name).unlink()
    pkg.rmdir()
    return path, x, expected


def test_official_pickle_loads_without_dall_e_and_matches_its_outputs(official_encoder_pkl):
    path, x, expected = official_encoder_pkl
    with pytest.raises(ImportError):
        import dall_e  # noqa: F401
    state = load_dalle_encoder_state(str(path))
    assert 'blocks.input.w' in state and 'blocks.group_1.block_1.res_path.conv_1.w' in state
    tok = DALLETokenizer(weights=str(path), apply_map_pixels=True, use_float16=False,
                         **SMALL)
    torch.testing.assert_close(tok(x), expected, atol=1e-5, rtol=1e-4)
    ids = tok.get_codebook_indices(x)
    assert ids.shape == (2, 16)
    torch.testing.assert_close(ids, expected.argmax(1).flatten(1))


def test_mmpretrain_state_dict_and_prefixed_checkpoints_load(tmp_path):
    torch.manual_seed(0)
    ref = DALLEEncoder(**SMALL)
    torch.save(ref.state_dict(), tmp_path / 'dalle_encoder.pth')
    torch.save({'state_dict': {f'target_generator.encoder.{k}': v
                               for k, v in ref.state_dict().items()}},
               tmp_path / 'mim.pth')
    x = torch.randn(1, 3, 16, 16)
    for name in ('dalle_encoder.pth', 'mim.pth'):
        tok = MODELS.build(dict(type='DALLETokenizer', weights=str(tmp_path / name), **SMALL))
        torch.testing.assert_close(tok(x), ref(x))
        # frozen on its own, not only inside BEiTMIM
        assert not any(p.requires_grad for p in tok.parameters())


def test_wrong_architecture_or_missing_file_fails_clearly(tmp_path):
    torch.save(DALLEEncoder(**SMALL).state_dict(), tmp_path / 'small.pth')
    with pytest.raises(KeyError, match='do not fit'):
        DALLETokenizer(weights=str(tmp_path / 'small.pth'), group_count=4, n_hid=8,
                       n_blk_per_group=2, vocab_size=64)
    with pytest.raises(FileNotFoundError, match='encoder.pkl'):
        DALLETokenizer(weights=str(tmp_path / 'absent.pkl'), **SMALL)
    # another width (n_hid): the file and the shapes are named, not torch's bare size error
    with pytest.raises(KeyError, match=r"small.pth' do not fit .*other shapes \(file vs "
                                       r'model\) \[.blocks.input.w \(8, 3, 7, 7\) vs '
                                       r'\(16, 3, 7, 7\)'):
        DALLETokenizer(weights=str(tmp_path / 'small.pth'), group_count=4, n_hid=16,
                       n_blk_per_group=1, vocab_size=64)


def test_preprocessor_constants_are_map_pixels():
    pixels = torch.randint(0, 256, (2, 3, 4, 4)).float()
    mean = torch.tensor(DALLE_SECOND_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(DALLE_SECOND_STD).view(1, 3, 1, 1)
    torch.testing.assert_close((pixels - mean) / std, map_pixels(pixels / 255))
    assert DALLE_SECOND_MEAN[0] == pytest.approx(-31.875)
    assert DALLE_SECOND_STD[0] == pytest.approx(318.75)
