"""tools/train.py and tools/test.py: argument parsing, scope dispatch, strict --cfg-options,
resume, AMP on CPU, gloo start-up without CUDA, and a real train -> resume -> test run."""
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from beitv2_mm.engine import launch
from launch_tiny_config import write_tiny_config
from tool_module import load_tool

REPO_ROOT = Path(__file__).resolve().parents[2]


def _scope_config(tmp_path, scope):
    path = tmp_path / f'{scope}_cfg.py'
    path.write_text(
        f"default_scope = {scope!r}\n"
        "model = dict(type='X', backbone=dict(depth=2, init_cfg=dict(checkpoint=None)))\n"
        "optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))\n"
        "train_dataloader = dict(dataset=dict(data_root='data/x'))\n"
        "param_scheduler = [dict(type='LinearLR', end=5, by_epoch=False)]\n")
    return path


def test_train_args_parse():
    train = load_tool('train')
    args = train.parse_args(['c.py', '--work-dir', 'w', '--resume', '--amp', '--launcher',
                             'pytorch', '--cfg-options', 'a.b=1', 'c=[1,2]', 'd=None'])
    assert args.resume == 'auto' and args.amp and args.launcher == 'pytorch'
    assert args.cfg_options == {'a.b': 1, 'c': [1, 2], 'd': None}
    assert train.parse_args(['c.py', '--resume', 'x.pth']).resume == 'x.pth'
    assert train.parse_args(['c.py']).resume is None
    with pytest.raises(SystemExit):
        train.parse_args(['c.py', '--launcher', 'mpi'])
    test = load_tool('test')
    args = test.parse_args(['c.py', 'ck.pth', '--out', 'm.json', '--launcher', 'slurm'])
    assert args.checkpoint == 'ck.pth' and args.out == 'm.json' and args.launcher == 'slurm'


@pytest.mark.parametrize('scope,registry_module,name', [
    ('mmpretrain', 'mmpretrain.registry', 'ImageClassifier'),
    ('mmseg', 'mmseg.registry', 'EncoderDecoder'),
    ('mmdet', 'mmdet.registry', 'MaskRCNN'),
])
def test_scope_dispatch(tmp_path, scope, registry_module, name):
    cfg = launch.prepare_train_config(str(_scope_config(tmp_path, scope)), cuda=False)
    assert cfg.default_scope == scope
    registry = importlib.import_module(registry_module).MODELS
    assert registry.get(name) is not None  # the scope's modules are registered
    assert cfg.work_dir == os.path.join('work_dirs', f'{scope}_cfg')
    assert cfg.launcher == 'none'


def test_train_cli_reports_a_bad_key_without_a_traceback(tmp_path, capsys):
    path = str(_scope_config(tmp_path, 'mmpretrain'))
    with pytest.raises(SystemExit) as exit_info:
        load_tool('train').main([path, '--cfg-options', 'model.backbone.dept=3'])
    message = str(exit_info.value.code)
    assert message.startswith('tools/train.py: error:')
    assert "did you mean 'model.backbone.depth'" in message.lower()


def test_unknown_scope_names_the_config(tmp_path):
    path = _scope_config(tmp_path, 'mmocr')
    with pytest.raises(ValueError, match=r'mmocr_cfg\.py.*default_scope'):
        launch.prepare_train_config(str(path), cuda=False)


def test_cfg_options_are_strict_with_suggestions(tmp_path):
    path = str(_scope_config(tmp_path, 'mmpretrain'))
    with pytest.raises(launch.ConfigKeyError) as err:
        launch.load_config(path, {'model.backbone.dept': 3})
    message = str(err.value)
    assert "'model.backbone.dept'" in message and "'model.backbone.depth'" in message
    assert 'mmpretrain_cfg.py' in message and '+model.backbone.dept' in message
    with pytest.raises(launch.ConfigKeyError, match="optim_wrapper.optimizer.lr"):
        launch.load_config(path, {'optim_wraper.optimizer.lr': 3})
    cfg = launch.load_config(path, {
        'model.backbone.depth': 4, '+model.backbone.with_cp': True,
        'param_scheduler.0.end': 2, 'model.backbone.init_cfg.checkpoint': 'pre.pth'})
    assert cfg.model.backbone.depth == 4 and cfg.model.backbone.with_cp is True
    assert cfg.param_scheduler[0].end == 2
    assert cfg.model.backbone.init_cfg.checkpoint == 'pre.pth'
    with pytest.raises(launch.ConfigKeyError):
        launch.load_config(path, {'param_scheduler.3.end': 2})
    # text where the config holds a number (mmengine failed later with int('abc'))
    with pytest.raises(launch.ConfigKeyError, match=r'param_scheduler\.0\.end=abc: .*holds a '
                                                    r'number there \(\d+\); give a number'):
        launch.load_config(path, {'param_scheduler.0.end': 'abc'})
    assert launch.load_config(path, {'param_scheduler.0.end': 3.0}).param_scheduler[0].end == 3


def test_a_config_variable_override_is_refused_naming_the_keys_that_use_it(tmp_path):
    """``max_iters = 7`` in a config file is substituted where the file uses it when mmengine
    reads the file: ``--cfg-options max_iters=2`` was accepted and changed nothing (the run
    kept 7 iterations). It is refused, naming the keys that hold the value; ``+`` forces it."""
    path = tmp_path / 'vars.py'
    path.write_text(
        "default_scope = 'mmpretrain'\nmax_iters = 7\nimg_size = 32\n"
        "model = dict(type='X', backbone=dict(img_size=img_size))\n"
        "train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)\n"
        "param_scheduler = [dict(type='LinearLR', end=max_iters, by_epoch=False)]\n")
    with pytest.raises(launch.ConfigKeyError) as err:
        launch.load_config(str(path), {'max_iters': 2})
    message = str(err.value)
    assert "'max_iters' is a variable of the config file" in message
    assert 'e.g. train_cfg.max_iters=..., param_scheduler.0.end=...' in message
    assert '+max_iters=...' in message and 'vars.py' in message
    with pytest.raises(launch.ConfigKeyError, match='model.backbone.img_size=...'):
        launch.load_config(str(path), {'img_size': 64})
    cfg = launch.load_config(str(path), {'train_cfg.max_iters': 2, '+max_iters': 2})
    assert cfg.train_cfg.max_iters == 2 and cfg.max_iters == 2
    # what the runner reads at the top level stays settable
    assert launch.load_config(str(path), {'default_scope': 'mmseg'}).default_scope == 'mmseg'


def test_pretrain_method_is_settable_and_labels_the_run(tmp_path):
    """``pretrain_method`` is read back from the saved config (it labels the checkpoints and
    the leaderboard rows), so ``--cfg-options pretrain_method=NAME`` names a variant; it was
    refused as a config-file variable that changes nothing."""
    from beitv2_mm.downstream.checkpoint import method_from_config_text
    path = tmp_path / 'mim.py'
    path.write_text("default_scope = 'mmpretrain'\npretrain_method = 'beitv2'\n"
                    "model = dict(type='BEiTMIM')\n")
    cfg = launch.load_config(str(path), {'pretrain_method': 'beitv2_1024codes'})
    assert method_from_config_text(cfg.pretty_text) == 'beitv2_1024codes'


def test_work_dir_and_resume(tmp_path, capsys, monkeypatch):
    path = str(_scope_config(tmp_path, 'mmpretrain'))
    monkeypatch.delenv('RANK', raising=False)
    work = tmp_path / 'w1'
    cfg = launch.prepare_train_config(path, work_dir=str(work), resume='auto', cuda=False)
    # --resume with nothing to resume from starts afresh, and says so; not a resume (mmengine
    # looked for a checkpoint '' and failed)
    assert cfg.work_dir == str(work) and cfg.resume is False and cfg.get('load_from') is None
    assert capsys.readouterr().err == (f'--resume: no checkpoint in {work} yet (no '
                                       'last_checkpoint): training starts from the beginning\n')
    work.mkdir()
    (work / 'last_checkpoint').write_text('\n')  # left empty by a kill while it was written
    cfg = launch.prepare_train_config(path, work_dir=str(work), resume='auto', cuda=False)
    assert cfg.resume is False and cfg.get('load_from') is None
    assert 'training starts from the beginning' in capsys.readouterr().err
    # ... as a run without --resume: the config's own initial weights are kept
    cfg = launch.prepare_train_config(path, {'+load_from': 'init.pth'}, work_dir=str(work),
                                      resume='auto', cuda=False)
    assert cfg.resume is False and cfg.load_from == 'init.pth'
    capsys.readouterr()
    torch.save(dict(meta={}), work / 'iter_2.pth')  # read: a damaged one fails before the run
    (work / 'last_checkpoint').write_text(str(work / 'iter_2.pth'))
    cfg = launch.prepare_train_config(path, work_dir=str(work), resume='auto', cuda=False)
    assert capsys.readouterr().err == '' and cfg.load_from == str(work / 'iter_2.pth')
    # a copied (or moved, or elsewhere mounted) work dir: its pointer names the original's
    # file; the copy resumes its own checkpoint of that name, not the other run's
    copy = tmp_path / 'copy'
    shutil.copytree(work, copy)
    cfg = launch.prepare_train_config(path, work_dir=str(copy), resume='auto', cuda=False)
    assert cfg.load_from == str(copy / 'iter_2.pth')
    assert 'the work dir was moved or copied' in capsys.readouterr().err
    (copy / 'iter_2.pth').unlink()
    shutil.rmtree(work)  # the original is gone too: the pointer names nothing
    with pytest.raises(FileNotFoundError, match=r'last_checkpoint names .*w1/iter_2\.pth, which '
                                                r'does not exist .*--resume PATH'):
        launch.prepare_train_config(path, work_dir=str(copy), resume='auto', cuda=False)
    ckpt = tmp_path / 'iter_3.pth'
    torch.save(dict(meta={}), ckpt)
    cfg = launch.prepare_train_config(path, resume=str(ckpt), cuda=False)
    assert cfg.resume is True and cfg.load_from == str(ckpt)
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        launch.prepare_train_config(path, resume=str(tmp_path / 'missing.pth'), cuda=False)
    with pytest.raises(FileNotFoundError, match='nothing.py'):
        launch.prepare_train_config(str(tmp_path / 'nothing.py'))


def test_resume_without_a_pointer_takes_the_newest_checkpoint(tmp_path, capsys, monkeypatch):
    """last_checkpoint missing or empty (a kill while mmengine wrote it) while the work dir
    holds checkpoints: --resume started again from iteration 0 (or, with an empty pointer,
    failed in mmengine). It resumes the newest iter_N.pth / epoch_N.pth and says so."""
    path = str(_scope_config(tmp_path, 'mmpretrain'))
    monkeypatch.delenv('RANK', raising=False)
    work = tmp_path / 'w'
    work.mkdir()
    for step in (2, 10, 4):
        torch.save(dict(meta={}), work / f'iter_{step}.pth')
    (work / 'iter_12.pth.tmp').write_text('')  # a partial write is no checkpoint
    cfg = launch.prepare_train_config(path, work_dir=str(work), resume='auto', cuda=False)
    assert cfg.resume is True and cfg.load_from == str(work / 'iter_10.pth')
    assert capsys.readouterr().err == (
        f'--resume: {work / "last_checkpoint"} does not exist; resuming {work / "iter_10.pth"}, '
        'the newest checkpoint file of the work dir\n')
    (work / 'last_checkpoint').write_text('')
    assert launch.latest_checkpoint(str(work)) == str(work / 'iter_10.pth')
    assert 'last_checkpoint is empty; resuming' in capsys.readouterr().err
    epochs = tmp_path / 'e'
    epochs.mkdir()
    for step in (3, 12):
        torch.save(dict(meta={}), epochs / f'epoch_{step}.pth')
    assert launch.latest_checkpoint(str(epochs), announce=False) == str(epochs / 'epoch_12.pth')


def test_test_config_without_a_test_loop_fails_early(tmp_path):
    """tools/test.py on a pretraining config died in mmengine with "self._test_loop should not
    be None" after building the runner; it fails first, naming the config and what to test."""
    ckpt = tmp_path / 'iter_2.pth'
    torch.save(dict(meta={}), ckpt)
    config = str(REPO_ROOT / 'configs' / 'demo' / 'beitv2_vit-tiny_synthetic.py')
    with pytest.raises(ValueError, match=r'beitv2_vit-tiny_synthetic\.py has no test_dataloader, '
                                         r'test_evaluator, test_cfg.*downstream configs'):
        launch.prepare_test_config(config, str(ckpt), work_dir=str(tmp_path / 'w'), cuda=False)
    with pytest.raises(SystemExit, match=r'^tools/test\.py: error: .*has no test_dataloader'):
        load_tool('test').main([config, str(ckpt), '--work-dir', str(tmp_path / 'w')])
    cfg = launch.prepare_test_config(
        str(REPO_ROOT / 'configs' / 'demo' / 'linear_probe_vit-tiny_synthetic.py'), str(ckpt),
        work_dir=str(tmp_path / 'w'), cuda=False)
    assert cfg.load_from == str(ckpt)


def test_amp_selects_a_wrapper_per_device(tmp_path, capsys, monkeypatch):
    path = str(_scope_config(tmp_path, 'mmpretrain'))
    cfg = launch.prepare_train_config(path, amp=True, cuda=True)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    cfg = launch.prepare_train_config(path, amp=True, cuda=False)
    assert cfg.optim_wrapper.type == 'CPUAutocastOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    cfg = launch.prepare_train_config(path, amp=False, cuda=False)
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    # A config that asks for AmpOptimWrapper (the ViT-B recipes) runs on CPU in fp32 (bf16 is
    # emulated without AVX512-BF16 / AMX: 10-60x slower); --amp still asks for bf16.
    amp_recipe = {'optim_wrapper.type': 'AmpOptimWrapper', '+optim_wrapper.dtype': 'float16',
                  '+optim_wrapper.loss_scale': 'dynamic'}
    cfg = launch.prepare_train_config(path, dict(amp_recipe), cuda=False)
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper and 'dtype' not in cfg.optim_wrapper
    assert 'fp32' in capsys.readouterr().out
    cfg = launch.prepare_train_config(path, dict(amp_recipe), amp=True, cuda=False)
    assert cfg.optim_wrapper.type == 'CPUAutocastOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    cfg = launch.prepare_train_config(path, dict(amp_recipe), cuda=True)
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.dtype) == ('AmpOptimWrapper', 'float16')
    # the warning for emulated bf16 follows what torch says about the CPU
    monkeypatch.setattr(launch, 'cpu_has_native_bf16', lambda: False)
    launch.prepare_train_config(path, amp=True, cuda=False)
    assert 'no native bf16' in capsys.readouterr().out
    monkeypatch.setattr(launch, 'cpu_has_native_bf16', lambda: True)
    launch.prepare_train_config(path, amp=True, cuda=False)
    assert 'no native bf16' not in capsys.readouterr().out


def test_auto_scale_lr_flag(tmp_path, tiny_data):
    """--auto-scale-lr: lr x (world size x batch per GPU) / auto_scale_lr.base_batch_size; a
    config without a base batch is named in the error."""
    train = load_tool('train')
    assert train.parse_args(['c.py', '--auto-scale-lr']).auto_scale_lr
    assert not train.parse_args(['c.py']).auto_scale_lr
    path = str(write_tiny_config(tmp_path, tiny_data['imagenet'], max_iters=1))
    with pytest.raises(ValueError, match='tiny_cls.py has no auto_scale_lr.base_batch_size'):
        launch.prepare_train_config(path, auto_scale_lr=True, cuda=False)
    options = {'+auto_scale_lr': dict(base_batch_size=16)}  # the config's batch is 4
    for flag, expected_lr in ((False, 1e-3), (True, 1e-3 * 4 / 16)):
        cfg = launch.prepare_train_config(path, options, work_dir=str(tmp_path / f'w{flag}'),
                                          auto_scale_lr=flag, cuda=False)
        runner = launch.build_runner(cfg)
        runner.train()
        assert runner.optim_wrapper.get_lr()['lr'] == [pytest.approx(expected_lr)]


def test_vqkd_recipe_scales_lr_as_the_official_script():
    """run_vqkd_training.py always scales the lr by the total batch (MIM and fine-tuning do
    not): the VQ-KD configs turn mmengine's scaling on, the others leave it to the flag."""
    for rel in ('configs/vqkd/vqkd_vitb_clip-b16_in1k.py', 'configs/vqkd/vqkd_vitb_dino-b16_in1k.py',
                'configs/vqkd/vqkd_vitb-dec1_clip-b16_in1k.py'):
        cfg = Config.fromfile(str(REPO_ROOT / rel))
        assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=512)
        assert cfg.optim_wrapper.optimizer.lr == 2e-4
    for rel in ('configs/beitv2_vitb_mim.py', 'configs/finetune_in1k.py'):
        assert not Config.fromfile(str(REPO_ROOT / rel)).auto_scale_lr.get('enable', False)


def test_cpu_autocast_wrapper_runs_bf16():
    from mmengine.registry import OPTIM_WRAPPERS
    model = torch.nn.Linear(4, 2)
    wrapper = OPTIM_WRAPPERS.build(dict(
        type='CPUAutocastOptimWrapper', dtype='bfloat16',
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1)))
    with wrapper.optim_context(model):
        out = model(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16
    before = model.weight.detach().clone()
    wrapper.update_params(out.float().sum())
    assert model.weight.dtype == torch.float32 and not torch.equal(before, model.weight)
    with pytest.raises(ValueError, match='bfloat16'):
        OPTIM_WRAPPERS.build(dict(type='CPUAutocastOptimWrapper', dtype='float16',
                                  optimizer=torch.optim.SGD(model.parameters(), lr=0.1)))


def test_distributed_without_cuda_uses_gloo(tmp_path, monkeypatch):
    import torch.distributed as dist
    from mmengine.dist import get_dist_info

    path = str(_scope_config(tmp_path, 'mmpretrain'))
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    # not started by torchrun: said with the way to start it (torch only says "RANK expected")
    with pytest.raises(ValueError, match=r'--launcher pytorch: RANK, WORLD_SIZE, MASTER_ADDR, '
                                         r'MASTER_PORT not set.*tools/dist_train\.sh'):
        launch.prepare_train_config(path, launcher='pytorch', cuda=True)

    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    for key, value in dict(RANK='0', WORLD_SIZE='1', LOCAL_RANK='0', MASTER_ADDR='127.0.0.1',
                           MASTER_PORT=str(port)).items():
        monkeypatch.setenv(key, value)
    cfg = launch.prepare_train_config(path, launcher='pytorch', cuda=True)
    assert cfg.env_cfg.dist_cfg.backend == 'nccl' and 'model_wrapper_cfg' not in cfg
    assert not dist.is_initialized()  # on CUDA, mmengine starts the group itself
    try:
        cfg = launch.prepare_train_config(path, launcher='pytorch', cuda=False)
        assert dist.is_initialized() and dist.get_backend() == 'gloo'
        assert get_dist_info() == (0, 1)
        assert cfg.env_cfg.dist_cfg.backend == 'gloo' and cfg.launcher == 'pytorch'
        assert cfg.model_wrapper_cfg.device_ids is None  # DDP on CPU modules
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


class _CyclicRunner:
    """Stands in for mmengine's runner: in reference cycles, and its train() fails deep down."""

    def __init__(self):
        self.me = self

    def train(self):
        def step(runner):
            raise RuntimeError('loss is nan')
        return step(self)

    def test(self):
        return {'accuracy/top1': 1.0}


@pytest.mark.parametrize('method', ['train', 'test'])
def test_run_then_close_frees_the_runner_before_destroying_the_group(monkeypatch, method):
    """The process group is destroyed only once the runner is gone, also when the run raised
    (the traceback's frames held it): otherwise gloo's threads could abort the process."""
    import torch.distributed as dist
    import weakref

    runners, seen_at_destroy = [], []
    monkeypatch.setattr(launch, 'build_runner',
                        lambda cfg: runners.append(weakref.ref(r := _CyclicRunner())) or r)
    monkeypatch.setattr(dist, 'is_initialized', lambda: True)
    monkeypatch.setattr(dist, 'get_rank', lambda *a: 0)
    monkeypatch.setattr(dist, 'destroy_process_group',
                        lambda *a: seen_at_destroy.append(runners[0]() is None))
    if method == 'train':
        with pytest.raises(RuntimeError, match='loss is nan') as info:
            launch.run_then_close(Config(), 'train')
        # the traceback still names every frame, down to the failing one
        assert [e.name for e in traceback.extract_tb(info.value.__traceback__)][-2:] == [
            'train', 'step']
    else:
        assert launch.run_then_close(Config(), 'test') == ({'accuracy/top1': 1.0}, True)
    assert seen_at_destroy == [True]


def test_run_then_close_keeps_a_failed_single_process_run_debuggable(monkeypatch):
    """Without a process group the failing frames keep their locals (pdb post-mortem)."""
    monkeypatch.setattr(launch, 'build_runner', lambda cfg: _CyclicRunner())
    with pytest.raises(RuntimeError, match='loss is nan') as info:
        launch.run_then_close(Config(), 'train')
    frames = [frame for frame, _ in traceback.walk_tb(info.value.__traceback__)]
    assert isinstance(frames[-1].f_locals['runner'], _CyclicRunner)


@pytest.mark.slow
def test_train_resume_and_test_end_to_end(tmp_path, tiny_data):
    """A real run: 2 iterations with --amp (bf16 on CPU), resume to 3, then tools/test.py."""
    config = write_tiny_config(tmp_path, tiny_data['imagenet'], max_iters=2)
    work = tmp_path / 'work'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    train = [sys.executable, str(REPO_ROOT / 'tools' / 'train.py'), str(config),
             '--work-dir', str(work)]
    proc = subprocess.run(train + ['--amp'], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (work / 'iter_2.pth').is_file()
    saved_cfg = Config.fromfile(str(work / 'tiny_cls.py'), import_custom_modules=False)
    assert saved_cfg.optim_wrapper.type == 'CPUAutocastOptimWrapper'

    proc = subprocess.run(train + ['--resume', '--cfg-options', 'train_cfg.max_iters=3'],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 0, iter: 2' in log
    assert (work / 'iter_3.pth').is_file()

    out = tmp_path / 'metrics.json'
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / 'tools' / 'test.py'), str(config),
         str(work / 'iter_3.pth'), '--work-dir', str(tmp_path / 'test_work'), '--out', str(out)],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads(out.read_text())['metrics']
    assert 0.0 <= metrics['accuracy/top1'] <= 100.0

    # a checkpoint without the head (as a pretrain checkpoint would be) is refused by name,
    # without a traceback and without metrics
    headless = tmp_path / 'headless.pth'
    ckpt = torch.load(work / 'iter_3.pth', weights_only=False)
    ckpt['state_dict'] = {k: v for k, v in ckpt['state_dict'].items() if not k.startswith('head.')}
    torch.save(ckpt, headless)
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / 'tools' / 'test.py'), str(config), str(headless),
         '--work-dir', str(tmp_path / 'test_headless'), '--out', str(tmp_path / 'no.json')],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r'tools/test\.py: error: .*headless\.pth lacks 2 of the \d+ weights .*'
                     r'head\.fc\.weight', proc.stderr), proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr and not (tmp_path / 'no.json').exists()


def test_hooks_given_as_strings_are_a_clear_error():
    """--cfg-options "custom_hooks=[dict(type='X')]" gives strings (mmengine cannot parse
    dicts inside lists there); adding the guards used to fail with an AttributeError."""
    cfg = Config(dict(custom_hooks=["dict(type='X')"]))
    with pytest.raises(TypeError, match=r"custom_hooks holds \"dict\(type='X'\)\", a str, "
                                        r'not a dict.*in a config file'):
        launch.add_guard_hooks(cfg)
    cfg = Config(dict(custom_hooks=[dict(type='NaNGuardHook')]))
    launch.add_guard_hooks(cfg)
    assert [h['type'] for h in cfg.custom_hooks] == [
        'NaNGuardHook', 'NumClassesGuardHook', 'BroadcastBuffersHook', 'SkippedImagesHook',
        'TrainBatchesGuardHook']


def test_missing_pretrain_file_fails_before_the_runner(tmp_path):
    """A pretrain checkpoint that does not exist fails in prepare_train_config, naming the key,
    before the runner makes its work dir."""
    path = str(_scope_config(tmp_path, 'mmpretrain'))
    options = {'+model.backbone.init_cfg': dict(type='BEiTPretrained',
                                                checkpoint=str(tmp_path / 'gone.pth'))}
    with pytest.raises(FileNotFoundError, match=r"gone\.pth'.*model\.backbone\.init_cfg\."
                                                r'checkpoint=PATH'):
        launch.prepare_train_config(path, options, work_dir=str(tmp_path / 'work'), cuda=False)
    assert not (tmp_path / 'work').exists()


@pytest.mark.parametrize('config', ['configs/upernet_ade20k.py', 'configs/mask_rcnn_coco.py',
                                    'configs/finetune_in1k.py', 'configs/linear_probe_in1k.py'])
def test_full_downstream_configs_require_a_pretrain_checkpoint(tmp_path, config):
    """The full configs say ``required=True``: launched without the pretrain key they fail at
    start, naming it and the opt-out, instead of training a random-init baseline for the whole
    schedule; ``required=False`` is that baseline on purpose."""
    work = tmp_path / 'work'
    with pytest.raises(ValueError, match=r'model\.backbone\.init_cfg\.checkpoint is not set.*'
                                         r'model\.backbone\.init_cfg\.required=False'):
        launch.prepare_train_config(str(REPO_ROOT / config), None, work_dir=str(work),
                                    cuda=False)
    assert not work.exists()
    cfg = launch.prepare_train_config(str(REPO_ROOT / config),
                                      {'model.backbone.init_cfg.required': False},
                                      work_dir=str(work), cuda=False)
    assert cfg.model.backbone.init_cfg.checkpoint is None
