"""tools/dist_train.sh and tools/dist_test.sh: 2-process runs on gloo (no GPU) of a tiny config."""
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from launch_tiny_config import write_tiny_config

REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.skipif(not os.access(REPO_ROOT / 'tools' / 'dist_train.sh', os.X_OK),
                    reason='tools/dist_train.sh is not executable')
def test_dist_train_two_processes_on_gloo(tmp_path, tiny_data):
    config = write_tiny_config(tmp_path, tiny_data['imagenet'], max_iters=2)
    work = tmp_path / 'work'
    env = dict(os.environ, PORT=str(_free_port()), OMP_NUM_THREADS='1',
               CUDA_VISIBLE_DEVICES='')  # also on a GPU machine: exercise the CPU path
    proc = subprocess.run(
        ['bash', str(REPO_ROOT / 'tools' / 'dist_train.sh'), str(config), '2',
         '--work-dir', str(work)],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert (work / 'iter_2.pth').is_file()
    # Both ranks took part: mmengine logs the world size and the backend of the group.
    assert 'Distributed training: True' in log and re.search(r'GPU number: 2\b', log), log[-3000:]
    assert "dist_cfg: {'backend': 'gloo'}" in log, log[-3000:]

    # Evaluation split over 2 ranks gives the metrics of one process on the whole set; 15 of
    # the 20 val images, so the sampler pads rank 1 and the gathered results must drop the pad.
    def evaluate(*cmd, name):
        out = tmp_path / f'{name}.json'
        done = subprocess.run([*cmd, '--work-dir', str(tmp_path / name), '--out', str(out),
                               '--cfg-options', '+test_dataloader.dataset.indices=15'],
                              capture_output=True, text=True, env=dict(env, PORT=str(_free_port())),
                              timeout=300, cwd=tmp_path)
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        return done.stdout, json.loads(out.read_text())['metrics']

    checkpoint = str(work / 'iter_2.pth')
    _, single = evaluate(sys.executable, str(REPO_ROOT / 'tools' / 'test.py'), str(config),
                         checkpoint, name='test_one')
    printed, split = evaluate('bash', str(REPO_ROOT / 'tools' / 'dist_test.sh'), str(config),
                              checkpoint, '2', name='test_two')
    assert split == single and 'accuracy/top1' in split, (split, single)
    assert printed.count('"accuracy/top1"') == 1  # printed by the main process only
    assert re.search(r'GPU number: 2\b', printed), printed[-3000:]


def test_dist_scripts_need_their_arguments():
    for script, n_args in (('dist_train.sh', 2), ('dist_test.sh', 3),
                           ('slurm_train.sh', 3), ('slurm_test.sh', 4)):
        proc = subprocess.run(['bash', str(REPO_ROOT / 'tools' / script)],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and 'usage' in proc.stderr, script


def test_one_node_without_port_gets_a_free_port(tmp_path):
    """Two single-node jobs on one machine must not both take torchrun's 29500; several nodes
    keep the shared default (every node must use the same one)."""
    fake = tmp_path / 'python'
    fake.write_text(f'#!/bin/bash\nif [ "$1" = -c ]; then exec {sys.executable} "$@"; fi\n'
                    'printf "%s\\n" "$@"\n')
    fake.chmod(0o755)

    def port(script, *args, **env):
        base = {k: v for k, v in os.environ.items() if k not in ('PORT', 'NNODES')}
        out = subprocess.run(['bash', str(REPO_ROOT / 'tools' / script), *args],
                             capture_output=True, text=True, timeout=60,
                             env=dict(base, PYTHON=str(fake), **env), check=True).stdout
        return next(a.split('=', 1)[1] for a in out.split() if a.startswith('--master_port='))

    for script, args in (('dist_train.sh', ('cfg.py', '2')),
                         ('dist_test.sh', ('cfg.py', 'c.pth', '2'))):
        picked = {port(script, *args) for _ in range(3)}
        assert all(p.isdigit() and p != '29500' for p in picked), picked
        assert port(script, *args, PORT='12345') == '12345'
        assert port(script, *args, NNODES='2') == '29500'


def test_slurm_scripts_pass_the_job_to_srun(tmp_path):
    """What slurm_train.sh / slurm_test.sh hand to srun (a stand-in srun on PATH prints it)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'srun').write_text('#!/bin/bash\nprintf "%s\\n" "$@"\n')
    (bin_dir / 'srun').chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k not in ('GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS')}
    env.update(PATH=f'{bin_dir}:{env["PATH"]}', PYTHON='/opt/py')

    def srun_args(script, *args, **extra):
        return subprocess.run(['bash', str(REPO_ROOT / 'tools' / script), *args],
                              capture_output=True, text=True, timeout=30,
                              env=dict(env, **extra), check=True).stdout.split('\n')[:-1]

    tools = str(REPO_ROOT / 'tools')
    assert srun_args('slurm_train.sh', 'dev', 'job', 'cfg.py', 'wd', '--amp') == [
        '-p', 'dev', '--job-name=job', '--gres=gpu:8', '--ntasks=8', '--ntasks-per-node=8',
        '--cpus-per-task=5', '--kill-on-bad-exit=1', '/opt/py', '-u', f'{tools}/train.py',
        'cfg.py', '--work-dir', 'wd', '--launcher', 'slurm', '--amp']
    # no WORK_DIR: the next argument is an option of train.py; the environment sizes the job
    got = srun_args('slurm_train.sh', 'dev', 'job', 'cfg.py', '--resume', GPUS='16',
                    GPUS_PER_NODE='4', CPUS_PER_TASK='10', SRUN_ARGS='--quotatype=auto -x n1')
    assert got[:10] == ['-p', 'dev', '--job-name=job', '--gres=gpu:4', '--ntasks=16',
                        '--ntasks-per-node=4', '--cpus-per-task=10', '--kill-on-bad-exit=1',
                        '--quotatype=auto', '-x']
    assert got[10:] == ['n1', '/opt/py', '-u', f'{tools}/train.py', 'cfg.py', '--launcher',
                        'slurm', '--resume']
    assert srun_args('slurm_test.sh', 'dev', 'job', 'cfg.py', 'c.pth', '--out', 'm.json')[-9:] == [
        '/opt/py', '-u', f'{tools}/test.py', 'cfg.py', 'c.pth', '--launcher', 'slurm', '--out',
        'm.json']
