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


def test_dist_scripts_need_their_arguments(tmp_path):
    for script, n_args in (('dist_train.sh', 2), ('dist_test.sh', 3),
                           ('slurm_train.sh', 3), ('slurm_test.sh', 4)):
        proc = subprocess.run(['bash', str(REPO_ROOT / 'tools' / script)],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and 'usage' in proc.stderr, script
    cfg, ckpt = tmp_path / 'cfg.py', tmp_path / 'c.pth'
    cfg.write_text('')
    ckpt.write_text('')
    env = {k: v for k, v in os.environ.items()
           if k not in ('NNODES', 'NODE_RANK', 'MASTER_ADDR', 'GPUS', 'GPUS_PER_NODE',
                        'TASKS_PER_NODE')}

    def error(script, *args, **extra):
        """A usage error before any process starts (exit 2, one line), else None."""
        proc = subprocess.run(['bash', str(REPO_ROOT / 'tools' / script), *args],
                              capture_output=True, text=True, timeout=30,
                              env=dict(env, PYTHON='/nonexistent/python', PATH='/usr/bin:/bin',
                                       **extra))
        assert proc.returncode == 2, (script, args, proc.stderr)
        return proc.stderr.strip()

    # the GPU count forgotten, zero, or CHECKPOINT and GPUS swapped: named, not torchrun's
    assert error('dist_train.sh', str(cfg), '--resume') == \
        "dist_train.sh: error: GPUS must be a positive integer, got '--resume'"
    assert 'GPUS must be a positive integer' in error('dist_train.sh', str(cfg), '0')
    assert error('dist_test.sh', str(cfg), '2', str(ckpt)) == \
        f'dist_test.sh: error: checkpoint not found: 2 (usage: {REPO_ROOT}/tools/dist_test.sh ' \
        'CONFIG CHECKPOINT GPUS)'
    assert error('dist_train.sh', str(tmp_path / 'typo.py'), '2') == \
        f'dist_train.sh: error: config file not found: {tmp_path / "typo.py"}'
    assert error('slurm_test.sh', 'p', 'j', str(tmp_path / 'typo.py'), str(ckpt)) == \
        f'slurm_test.sh: error: config file not found: {tmp_path / "typo.py"}'
    # several nodes without MASTER_ADDR: every node but the first would wait on itself
    assert 'NNODES=2 needs MASTER_ADDR' in error('dist_train.sh', str(cfg), '2', NNODES='2')
    # a forgotten NODE_RANK made every node rank 0; one out of range (NNODES left at 1, or
    # not a number) had torchrun wait for nodes that never come
    assert error('dist_train.sh', str(cfg), '2', NNODES='2', MASTER_ADDR='10.0.0.1') == \
        'dist_train.sh: error: NNODES=2 needs NODE_RANK (0 on the node at MASTER_ADDR, 1 to 1 ' \
        'on the others), one per node'
    assert error('dist_train.sh', str(cfg), '2', NODE_RANK='1') == \
        "dist_train.sh: error: NODE_RANK must be an integer from 0 to NNODES-1 (0), got '1' " \
        'with NNODES=1; set NNODES to the number of nodes'
    for node_rank in ('2', '-1', 'x', '01'):
        assert f"got '{node_rank}' with NNODES=2" in error(
            'dist_test.sh', str(cfg), str(ckpt), '2', NNODES='2', MASTER_ADDR='10.0.0.1',
            NODE_RANK=node_rank), node_rank
    # a URL: test.py refused it on every rank after torchrun / srun had started them
    url = 'https://example.org/beitv2.pth'
    for script, args in (('dist_test.sh', (str(cfg), url, '2')),
                         ('slurm_test.sh', ('p', 'j', str(cfg), url))):
        assert error(script, *args) == (
            f'{script}: error: CHECKPOINT is a URL: {url}; nothing is downloaded at run time: '
            'download the file and pass its local path')
    assert "GPUS must be a positive integer, got 'x'" in error(
        'slurm_train.sh', 'p', 'j', str(cfg), GPUS='x')


def test_one_node_without_port_gets_a_free_port(tmp_path):
    """Two single-node jobs on one machine must not both take torchrun's 29500; several nodes
    keep the shared default (every node must use the same one)."""
    fake = tmp_path / 'python'
    fake.write_text(f'#!/bin/bash\nif [ "$1" = -c ]; then exec {sys.executable} "$@"; fi\n'
                    'printf "%s\\n" "$@"\n')
    fake.chmod(0o755)

    def port(script, *args, **env):
        base = {k: v for k, v in os.environ.items() if k not in ('PORT', 'NNODES', 'NODE_RANK')}
        out = subprocess.run(['bash', str(REPO_ROOT / 'tools' / script), *args],
                             capture_output=True, text=True, timeout=60,
                             env=dict(base, PYTHON=str(fake), **env), check=True).stdout
        return next(a.split('=', 1)[1] for a in out.split() if a.startswith('--master_port='))

    cfg, ckpt = str(tmp_path / 'cfg.py'), str(tmp_path / 'c.pth')
    for path in (cfg, ckpt):
        Path(path).write_text('')
    for script, args in (('dist_train.sh', (cfg, '2')),
                         ('dist_test.sh', (cfg, ckpt, '2'))):
        picked = {port(script, *args) for _ in range(3)}
        assert all(p.isdigit() and p != '29500' for p in picked), picked
        assert port(script, *args, PORT='12345') == '12345'
        assert port(script, *args, NNODES='2', NODE_RANK='1', MASTER_ADDR='10.0.0.1') == '29500'


def test_slurm_scripts_pass_the_job_to_srun(tmp_path):
    """What slurm_train.sh / slurm_test.sh hand to srun (a stand-in srun on PATH prints it)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'srun').write_text('#!/bin/bash\nprintf "%s\\n" "$@"\n')
    (bin_dir / 'srun').chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k not in ('GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS', 'TASKS_PER_NODE')}
    env.update(PATH=f'{bin_dir}:{env["PATH"]}', PYTHON='/opt/py')
    (tmp_path / 'cfg.py').write_text('')  # the scripts check that the config exists

    def srun_args(script, *args, **extra):
        return subprocess.run(['bash', str(REPO_ROOT / 'tools' / script), *args],
                              capture_output=True, text=True, timeout=30, cwd=tmp_path,
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
    # a job smaller than a node asks for its own GPUs only
    assert srun_args('slurm_train.sh', 'dev', 'job', 'cfg.py', GPUS='2')[3:6] == [
        '--gres=gpu:2', '--ntasks=2', '--ntasks-per-node=2']
    # a CPU cluster: no --gres; all tasks on one node unless TASKS_PER_NODE says otherwise
    assert srun_args('slurm_train.sh', 'dev', 'job', 'cfg.py', GPUS='4',
                     GPUS_PER_NODE='0')[3:6] == ['--ntasks=4', '--ntasks-per-node=4',
                                                 '--cpus-per-task=5']
    assert srun_args('slurm_train.sh', 'dev', 'job', 'cfg.py', GPUS='4', GPUS_PER_NODE='0',
                     TASKS_PER_NODE='2')[3:5] == ['--ntasks=4', '--ntasks-per-node=2']


_SLURM_KEYS = ('MASTER_PORT', 'MASTER_ADDR', 'PORT', 'SLURM_JOB_ID', 'SLURM_PROCID',
               'SLURM_NTASKS', 'SLURM_NODELIST', 'SLURM_LOCALID', 'RANK', 'WORLD_SIZE',
               'LOCAL_RANK')


def _slurm_job(monkeypatch, **env):
    """A simulated srun task: the slurm variables ``env`` on top of none of _SLURM_KEYS (each
    restored after the test, also those the launcher sets)."""
    for key in _SLURM_KEYS:
        monkeypatch.setenv(key, '')  # recorded, so a value set by the code is undone too
        monkeypatch.delenv(key)
    for key, value in {'SLURM_PROCID': '0', 'SLURM_NTASKS': '2', 'SLURM_NODELIST': 'node1',
                       **env}.items():
        monkeypatch.setenv(key, value)


def test_slurm_rendezvous_port_differs_between_jobs(monkeypatch):
    """Two slurm jobs sharing a node took mmengine's fixed 29500: one failed to bind, a rank
    of the other joined the wrong job. The port follows the job id unless PORT is given."""
    from beitv2_mm.engine import launch

    def port(**env):
        _slurm_job(monkeypatch, MASTER_ADDR='node1', **env)
        launch._slurm_master_env()
        return os.environ['MASTER_PORT']

    assert port(SLURM_JOB_ID='1000') != port(SLURM_JOB_ID='1001')
    assert 29500 <= int(port(SLURM_JOB_ID='123456')) < 31500
    assert port(SLURM_JOB_ID='7', PORT='23456') == '23456'


def test_slurm_on_cuda_sets_the_rendezvous_for_mmengine(monkeypatch, tmp_path):
    """With CUDA the launcher returned 'nccl' before setting MASTER_PORT / MASTER_ADDR, so
    mmengine's slurm start-up took port 29500 (jobs sharing a node collided) and scontrol's
    output (an error text without scontrol) as the address."""
    from mmengine.config import Config

    from beitv2_mm.engine import launch

    monkeypatch.setenv('PATH', str(tmp_path))  # no scontrol
    _slurm_job(monkeypatch, SLURM_JOB_ID='4321', SLURM_NODELIST='gpu[07-08]')
    cfg = Config(dict(model=dict(type='X')))
    assert launch.configure_distributed(cfg, 'slurm', cuda=True) == 'nccl'
    assert os.environ['MASTER_PORT'] == str(29500 + 4321 % 2000)
    assert os.environ['MASTER_ADDR'] == 'gpu07'
    _slurm_job(monkeypatch, SLURM_JOB_ID='4321', PORT='23456', MASTER_ADDR='10.0.0.9')
    launch.configure_distributed(cfg, 'slurm', cuda=True)
    assert (os.environ['MASTER_PORT'], os.environ['MASTER_ADDR']) == ('23456', '10.0.0.9')


def test_slurm_master_address_without_scontrol(monkeypatch, tmp_path):
    """Without scontrol (containers) "/bin/sh: 1: scontrol: not found" became MASTER_ADDR and
    every rank waited until the dist timeout. scontrol is used when it works, else the first
    host of SLURM_NODELIST, else a clear error asking for MASTER_ADDR."""
    from beitv2_mm.engine import launch

    first = launch.first_slurm_host
    assert first('node[01-02,05]') == 'node01' and first('gpu-a,gpu-b') == 'gpu-a'
    assert first('n[1-3]x') == 'n1x' and first('rack[2-3]-n[08-09]') == 'rack2-n08'
    assert first('a[7,9],b[1-2]') == 'a7' and first('node5') == 'node5'
    assert first('n[05,07-09]') == 'n05' and first('c1.cluster.org') == 'c1.cluster.org'
    for bad in ('node[01-02', 'n]1[', '', 'n[a-b]'):
        assert first(bad) is None, bad

    def master_addr(nodelist):
        _slurm_job(monkeypatch, SLURM_NODELIST=nodelist)
        launch._slurm_master_env()
        return os.environ['MASTER_ADDR']

    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    monkeypatch.setenv('PATH', f'{bin_dir}:/usr/bin:/bin')
    assert master_addr('node[01-02]') == 'node01'  # no scontrol on PATH
    scontrol = bin_dir / 'scontrol'
    scontrol.write_text('#!/bin/sh\necho "scontrol: error: Invalid node name" >&2\nexit 1\n')
    scontrol.chmod(0o755)
    assert master_addr('node[03-04]') == 'node03'  # scontrol fails
    scontrol.write_text('#!/bin/sh\n[ "$3" = "node[03-04]" ] && printf "node3\\nnode4\\n"\n')
    assert master_addr('node[03-04]') == 'node3'  # scontrol's expansion wins
    with pytest.raises(ValueError, match=r"SLURM_NODELIST='\{weird\}'.*set MASTER_ADDR"):
        master_addr('{weird}')
    _slurm_job(monkeypatch, MASTER_ADDR='10.1.1.1', SLURM_NODELIST='{weird}')
    launch._slurm_master_env()
    assert os.environ['MASTER_ADDR'] == '10.1.1.1'


def _alive(pid: int) -> bool:
    try:
        with open(f'/proc/{pid}/status') as f:
            return 'State:\tZ' not in f.read()  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='PR_SET_PDEATHSIG is Linux')
def test_workers_stop_when_their_launcher_is_killed(tmp_path):
    """torchrun starts its workers in sessions of their own: a launcher killed with SIGKILL
    left them training (and writing into the work dir a --resume would use). A worker of
    tools/train.py / test.py now gets SIGTERM when its launcher dies."""
    import signal
    import time
    worker = ("import os, time\n"
              "os.environ['TORCHELASTIC_RUN_ID'] = 'test'\n"
              "from beitv2_mm.engine.launch import die_with_launcher\n"
              "print('tied' if die_with_launcher() else 'untied', flush=True)\n"
              "time.sleep(120)\n")
    launcher = ("import subprocess, sys, time\n"
                f"p = subprocess.Popen([sys.executable, '-c', {worker!r}], start_new_session=True,"
                " stdout=subprocess.PIPE, text=True)\n"
                "print(p.pid, p.stdout.readline().strip(), flush=True)\n"
                "time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, '-c', launcher], stdout=subprocess.PIPE, text=True,
                            cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    pid = None
    try:
        pid, state = proc.stdout.readline().split()
        pid = int(pid)
        assert state == 'tied' and _alive(pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.time() + 20
        while _alive(pid) and time.time() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), 'the worker outlived its killed launcher'
    finally:
        proc.kill()
        if isinstance(pid, int) and _alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.dist
def test_dist_test_of_a_downstream_config_needs_no_training_data(tmp_path, tiny_data):
    """tools/test.py and dist_test.sh on a demo linear probe (DownstreamResultsHook, no fixed
    seed) with only the test data given: the hook read ``runner.iter``, which builds the training
    loop: its data set (missing here) and, on rank 0 alone, a seed broadcast that left rank 1
    behind, so no results were written."""
    config = str(REPO_ROOT / 'configs' / 'demo' / 'linear_probe_vit-tiny_synthetic.py')
    root = str(tiny_data['imagenet'])
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    train = subprocess.run(
        [sys.executable, str(REPO_ROOT / 'tools' / 'train.py'), config, '--work-dir',
         str(tmp_path / 'train'), '--cfg-options', *(f'{k}={v}' for k, v in (
             ('train_dataloader.dataset.data_root', root),
             ('val_dataloader.dataset.data_root', root), ('train_cfg.max_iters', 2),
             ('train_cfg.val_interval', 2), ('default_hooks.checkpoint.interval', 2),
             ('train_dataloader.batch_size', 2), ('param_scheduler.0.end', 1),
             ('param_scheduler.1.begin', 1), ('param_scheduler.1.end', 2)))],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert train.returncode == 0, (train.stdout + train.stderr)[-4000:]
    checkpoint = str(tmp_path / 'train' / 'iter_2.pth')
    test_only = ['--cfg-options', f'test_dataloader.dataset.data_root={root}',
                 f'val_dataloader.dataset.data_root={root}']  # the training set is not there
    for name, cmd in (('one', [sys.executable, str(REPO_ROOT / 'tools' / 'test.py'), config,
                               checkpoint]),
                      ('two', ['bash', str(REPO_ROOT / 'tools' / 'dist_test.sh'), config,
                               checkpoint, '2'])):
        done = subprocess.run([*cmd, '--work-dir', str(tmp_path / name), *test_only],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path,
                              env=dict(env, PORT=str(_free_port())))
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        results = json.loads((tmp_path / name / 'results.json').read_text())
        assert results['stage'] == 'test' and results['final'] and results['iteration'] == 2
        assert 'accuracy/top1' in results['metrics']
