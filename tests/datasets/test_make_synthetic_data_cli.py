"""tools/make_synthetic_data.py: writes the set, refuses a non-empty folder unless --force."""
import json

import pytest
from tool_module import load_tool


@pytest.fixture(scope='module')
def cli():
    return load_tool('make_synthetic_data')


def test_writes_and_reports_counts(cli, tmp_path, capsys):
    out = tmp_path / 'syn'
    assert cli.main(['--out', str(out), '--size', 'tiny', '--seed', '3']) == 0
    printed = capsys.readouterr().out
    assert 'imagenet train:    40 images in 10 class folders' in printed
    assert 'ade20k   validation:    20 images,    20 label maps' in printed
    assert 'coco     val2017  :    20 images' in printed
    data = json.loads((out / 'coco/annotations/instances_val2017.json').read_text())
    assert 'seed 3' in data['info']['description']


def test_refuses_non_empty_dir_unless_force(cli, tmp_path, capsys):
    out = tmp_path / 'busy'
    out.mkdir()
    (out / 'keep.txt').write_text('precious')
    assert cli.main(['--out', str(out), '--size', 'tiny']) == 2
    err = capsys.readouterr().err
    assert str(out) in err and 'not empty' in err and '--force' in err
    assert not (out / 'imagenet').exists()
    assert cli.main(['--out', str(out), '--size', 'tiny', '--force']) == 0
    assert (out / 'keep.txt').read_text() == 'precious'  # only the layouts are replaced
    stale = out / 'coco' / 'train2017' / 'stale.jpg'
    stale.write_bytes(b'x')
    assert cli.main(['--out', str(out), '--size', 'tiny', '--force']) == 0
    assert not stale.exists()
    assert len(list((out / 'imagenet' / 'train').glob('*/*.JPEG'))) == 40


def test_out_is_a_file(cli, tmp_path, capsys):
    target = tmp_path / 'file'
    target.write_text('')
    assert cli.main(['--out', str(target), '--size', 'tiny']) == 2
    assert 'not a folder' in capsys.readouterr().err
