"""A damaged checkpoint (truncated at any point, or not one) fails naming the file and the fix
in every loader of user-given files: tokenizer, DALL-E weights, downstream pretrain, converter,
the checkpoint tools/test.py tests and the one tools/train.py --resume resumes.
Depending on where a zip file is cut, torch raises RuntimeError or OSError."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import beitv2_mm  # noqa: F401
from beitv2_mm.downstream.checkpoint import read_checkpoint, read_checkpoint_meta
from beitv2_mm.tokenizers.checkpoint import CheckpointLoadError, read_state_dict
from beitv2_mm.tokenizers.dalle import load_dalle_encoder_state

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def damaged(tmp_path_factory):
    root = tmp_path_factory.mktemp('damaged')
    good = root / 'good.pth'
    torch.save(dict(meta={}, state_dict={f'w{i}': torch.randn(64, 64) for i in range(20)}),
               good)
    data = good.read_bytes()
    files = []
    for frac in (0.01, 0.05, 0.1, 0.5, 0.99):  # RuntimeError and OSError cases of torch.load
        path = root / f'cut_{int(frac * 100)}.pth'
        path.write_bytes(data[:int(len(data) * frac)])
        files.append(path)
    garbage = root / 'garbage.pth'
    garbage.write_bytes(b'not a checkpoint' * 8)
    return files + [garbage]


@pytest.mark.parametrize('loader', [read_state_dict, load_dalle_encoder_state, read_checkpoint,
                                    read_checkpoint_meta])
def test_every_loader_names_the_damaged_file(damaged, loader):
    for path in damaged:
        with pytest.raises(CheckpointLoadError,
                           match=rf'cannot read checkpoint .*{path.name} '
                                 rf'\({path.stat().st_size} bytes\).*download or copy it'):
            loader(str(path))


def test_converter_names_the_damaged_file(damaged):
    path = damaged[1]  # an OSError cut
    proc = subprocess.run([sys.executable, str(REPO / 'tools' / 'convert_ckpt.py'),
                           'beit-official', str(path), str(path.with_suffix('.out'))],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f'cannot read checkpoint {path}' in proc.stderr and 'Traceback' not in proc.stderr


@pytest.mark.parametrize('tool', ['test', 'train'])
def test_test_and_resume_name_the_damaged_file(damaged, tool, tmp_path):
    config = str(REPO / 'configs' / 'demo' / 'linear_probe_vit-tiny_synthetic.py')
    path = damaged[1]  # an OSError cut
    args = [config, str(path)] if tool == 'test' else [config, '--resume', str(path)]
    proc = subprocess.run([sys.executable, str(REPO / 'tools' / f'{tool}.py'), *args,
                           '--work-dir', str(tmp_path / 'work')],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert f'tools/{tool}.py: error: cannot read checkpoint {path}' in proc.stderr
    assert 'Traceback' not in proc.stderr and not (tmp_path / 'work').exists()
