"""tools/bootstrap.sh stops before installing anything when the disk is too full, naming it."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bootstrap_names_a_disk_without_room_before_creating_the_venv(tmp_path):
    venv = tmp_path / 'not' / 'yet' / 'venv'
    env = dict(os.environ, VENV=str(venv), BOOTSTRAP_NEED_FREE_GB='100000000')
    proc = subprocess.run(['bash', str(ROOT / 'tools' / 'bootstrap.sh')], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f'on the disk of {tmp_path}' in proc.stdout  # the nearest existing folder
    assert 'installing torch needs about 100000000 GB' in proc.stdout
    assert 'BOOTSTRAP_NEED_FREE_GB' in proc.stdout
    assert not (tmp_path / 'not').exists()
