"""tools/run_suite.py: the whole chain on the tiny synthetic set (2 iterations per stage),
killed part-way and resumed without redoing finished stages; plus planning unit tests."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from beitv2_mm import suite

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_plan_wires_the_hand_off_keys(tmp_path):
    opts = suite.SuiteOptions(work_dir=tmp_path / 'w', data_dir=tmp_path / 'd', schedule=0.5)
    stages = {s.name: s for s in suite.plan(opts)}
    order = list(stages)
    assert order[0] == 'data' and order.index('teacher') < order.index('tokenizer/vqkd')
    vqkd = stages['tokenizer/vqkd']
    assert vqkd.dep_options == {suite.TEACHER_CKPT_KEY: 'teacher'}
    assert vqkd.options['train_dataloader.dataset.data_root'] == str(
        (tmp_path / 'd' / 'imagenet').resolve())
    # BEiT v1's demo reads the pixel VQ-VAE only if its target generator can load it.
    beitv1_target = suite.load_config(
        str(REPO_ROOT / suite.DEMO_METHODS['beitv1']['config'])).model.target_generator.type
    beitv1_tok = 'pixel' if beitv1_target in suite.DEMO_TOKENIZERS['pixel']['loads_into'] else None
    assert ('tokenizer/pixel' in stages) == (beitv1_tok is not None)
    for method, tok in (('beitv2', 'vqkd'), ('beitv1', beitv1_tok), ('peco', 'peco')):
        mim = stages[f'mim/{method}']
        if tok is None:
            assert mim.dep_options == {} and not any(d.startswith('tokenizer/') for d in mim.deps)
            continue
        assert mim.dep_options == {suite.TOKENIZER_CKPT_KEY: f'tokenizer/{tok}'}
        assert f'tokenizer/{tok}' in mim.deps
        for task in ('linear_probe', 'finetune', 'upernet', 'mask_rcnn'):
            down = stages[f'downstream/{method}/{task}']
            assert down.dep_options == {suite.PRETRAIN_CKPT_KEY: f'mim/{method}'}
            assert down.needs_results
    # Baselines: random init has no pretrain checkpoint; supervised = fine-tune from scratch,
    # whose run is also the random-init fine-tune result (not run twice).
    assert stages['downstream/random/linear_probe'].options[suite.PRETRAIN_CKPT_KEY] is None
    assert 'downstream/random/finetune' not in stages
    assert stages['pretrain/supervised'].options[suite.PRETRAIN_CKPT_KEY] is None
    assert stages['downstream/supervised/upernet'].dep_options == {
        suite.PRETRAIN_CKPT_KEY: 'pretrain/supervised'}
    # Schedule 0.5 halves iterations and the iteration-based LR schedule with them.
    teacher_cfg = suite.load_config(str(REPO_ROOT / suite.DEMO_TEACHER['config']))
    old = teacher_cfg.train_cfg.max_iters
    assert stages['teacher'].options['train_cfg.max_iters'] == round(old * 0.5)
    ends = [v for k, v in stages['teacher'].options.items() if k.endswith('.end')]
    assert ends and max(ends) <= round(old * 0.5)


def _scheduled_lrs(cfg, options: dict, iters: int, lr: float = 1.0) -> list:
    """The lr of each of ``iters`` iterations under the config's param schedulers with the
    suite's options, built and stepped by mmengine as its runner does."""
    import copy

    import torch
    from mmengine.registry import PARAM_SCHEDULERS

    cfg = copy.deepcopy(cfg)
    cfg.merge_from_dict({k: v for k, v in options.items() if k.startswith('param_scheduler')})
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=optimizer))
                  for s in cfg.param_scheduler]
    lrs = []
    for _ in range(iters):
        lrs.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        for sched in schedulers:
            sched.step()
    return lrs


def test_a_scaled_warm_up_still_warms_up(tmp_path):
    """--max-iters 40 scaled the MIM demo's 5-iteration warm-up (of 2400) to 1 iteration: a
    1-iteration LinearLR applies start_factor (0.01) and never steps again, and the cosine
    chained on it began at lr * 0.01 = its eta_min: the whole run at a flat 1e-5."""
    import math
    opts = suite.SuiteOptions(work_dir=tmp_path / 'w', data_dir=tmp_path / 'd', max_iters=40)
    stages = [s for s in suite.plan(opts) if s.config]
    mim = next(s for s in stages if s.name == 'mim/beitv2')
    cfg = suite.load_config(mim.config)
    warm_up, cosine = cfg.param_scheduler
    assert (cfg.train_cfg.max_iters, warm_up.end, cosine.begin) == (2400, 5, 5)
    base_lr = cfg.optim_wrapper.optimizer.lr
    lrs = _scheduled_lrs(cfg, mim.options, 40, lr=base_lr)
    # 2 iterations of warm-up from base * start_factor up to base, then the cosine from
    # there down to eta_min over the other 38
    assert lrs[:2] == pytest.approx([base_lr * warm_up.start_factor, base_lr])
    eta = cosine.eta_min
    assert lrs[2:] == pytest.approx(
        [eta + (base_lr - eta) * (1 + math.cos(math.pi * i / 38)) / 2 for i in range(38)])
    # Every demo config, at any length: a warm-up still rises (2 iterations or more), and a
    # 1-iteration run has none (not one iteration at its start factor).
    configs = {s.config: suite.load_config(s.config) for s in stages}
    for path, cfg in configs.items():
        if not any(s.get('type') == 'LinearLR' and s.get('begin', 0) == 0
                   for s in cfg.param_scheduler):
            continue
        for kw in (dict(max_iters=40), dict(max_iters=3), dict(max_iters=2),
                   dict(max_iters=1), dict(schedule=0.01), dict(schedule=0.5)):
            options, iters = suite.schedule_options(cfg, suite.SuiteOptions(
                work_dir=tmp_path / 'w', **kw))
            lrs = _scheduled_lrs(cfg, options, iters)
            assert lrs[1] > lrs[0] if iters > 1 else lrs == [1.0], (path, kw, lrs)
    upernet = next(s for s in stages if s.name == 'downstream/random/upernet')
    cfg = configs[upernet.config]
    # its poly decay ends one past the run (no last iteration at lr 0): scaled, it still does
    assert cfg.param_scheduler[1].end == cfg.train_cfg.max_iters + 1
    options, iters = suite.schedule_options(cfg, suite.SuiteOptions(work_dir=tmp_path / 'w',
                                                                    max_iters=10))
    assert options['param_scheduler.1.end'] == 11 and _scheduled_lrs(cfg, options, 10)[-1] > 0


@pytest.mark.parametrize('config,epochs', [('configs/finetune_in1k.py', 100),
                                            ('configs/beitv2_vitb_mim.py', 300)])
def test_a_scaled_epoch_schedule_still_warms_up_and_decays(tmp_path, config, epochs):
    """An epoch-based config (a full recipe given its own DEMO_METHODS entry) under --schedule:
    its epoch-based schedulers scale with max_epochs as the iteration ones do. They kept their
    epoch bounds before: at 5 of 100 epochs the fine-tune ran its 20-epoch warm-up only."""
    cfg = suite.load_config(config)
    assert cfg.train_cfg.max_epochs == epochs
    options, _ = suite.schedule_options(cfg, suite.SuiteOptions(work_dir=tmp_path,
                                                                schedule=5 / epochs))
    assert options['train_cfg.max_epochs'] == 5
    warm_up, decay = cfg.param_scheduler
    assert warm_up.type == 'LinearLR' and warm_up.by_epoch and decay.by_epoch
    # the warm-up keeps 2 epochs (of 5), the decay takes the rest
    assert (options['param_scheduler.0.end'], options['param_scheduler.1.begin'],
            options['param_scheduler.1.end']) == (2, 2, 5)
    # stepped per epoch by mmengine (convert_to_iter_based is the runner's, per iteration)
    cfg.param_scheduler = [{k: v for k, v in s.items() if k != 'convert_to_iter_based'}
                           for s in cfg.param_scheduler]
    lrs = _scheduled_lrs(cfg, options, 5)
    assert lrs[0] < lrs[1] == lrs[2] == pytest.approx(1.0) and lrs[2] > lrs[3] > lrs[4]


def test_plan_rejects_unknown_names(tmp_path):
    with pytest.raises(ValueError, match='unknown method'):
        suite.plan(suite.SuiteOptions(work_dir=tmp_path, methods=('mae',)))
    with pytest.raises(ValueError, match='unknown task'):
        suite.plan(suite.SuiteOptions(work_dir=tmp_path, tasks=('pose',)))


WNIDS = ('n01440764', 'n01443537', 'n02105855')


def _real_layout_roots(tmp_path, labels=(0, 1, 2)) -> dict:
    """What planning reads of real roots: ImageNet class folders and meta/train.txt (real
    ImageNet's labels of a subset can exceed its folder count), COCO's val categories (ids
    with gaps, as COCO's), an ADE20K folder."""
    roots = {kind: tmp_path / kind for kind in ('in', 'ade', 'coco')}
    for wnid in WNIDS:
        (roots['in'] / 'train' / wnid).mkdir(parents=True)
    (roots['in'] / 'meta').mkdir()
    (roots['in'] / 'meta' / 'train.txt').write_text(''.join(
        f'{wnid}/{wnid}_1.JPEG {label}\n' for wnid, label in zip(WNIDS, labels)))
    roots['ade'].mkdir()
    (roots['coco'] / 'annotations').mkdir(parents=True)
    (roots['coco'] / 'annotations' / 'instances_val2017.json').write_text(json.dumps(dict(
        images=[], annotations=[],
        categories=[dict(id=1, name='person'), dict(id=90, name='toothbrush')])))
    return roots


def test_real_data_roots_replace_synthetic_ones(tmp_path):
    roots = _real_layout_roots(tmp_path)
    opts = suite.SuiteOptions(work_dir=tmp_path / 'w', methods=('random',),
                              tasks=('linear_probe', 'upernet'), imagenet_root=str(roots['in']),
                              ade20k_root=str(roots['ade']), coco_root=str(roots['coco']))
    stages = {s.name: s for s in suite.plan(opts)}
    assert 'data' not in stages  # nothing synthetic is needed
    lp = stages['downstream/random/linear_probe'].options
    assert lp['val_dataloader.dataset.data_root'] == str(roots['in'].resolve())
    seg = stages['downstream/random/upernet'].options
    assert seg['train_dataloader.dataset.data_root'] == str(roots['ade'].resolve())


def test_real_roots_set_the_classes_heads_and_names_of_the_demo_configs(tmp_path):
    """The demo configs are written for the 10 synthetic classes; on real roots the classes,
    the heads, the ADE20K dataset type, its test batch (one image size per batch in mmseg)
    and the results' data set name follow the real data set. Every key exists in the config
    (tools/train.py refuses unknown keys)."""
    from beitv2_mm.engine.launch import cfg_get, cfg_has_key
    roots = _real_layout_roots(tmp_path)
    opts = suite.SuiteOptions(work_dir=tmp_path / 'w', methods=('random', 'beitv2'),
                              tasks=('finetune', 'upernet', 'mask_rcnn'),
                              imagenet_root=str(roots['in']), ade20k_root=str(roots['ade']),
                              coco_root=str(roots['coco']))
    stages = {s.name: s for s in suite.plan(opts)}
    for stage in stages.values():
        cfg = suite.load_config(stage.config)
        assert all(cfg_has_key(cfg, key) for key in stage.options), stage.name
    ft = stages['downstream/random/finetune'].options
    assert ft['model.head.num_classes'] == ft['data_preprocessor.num_classes'] == 3
    assert ft['train_dataloader.dataset.metainfo.classes'] == list(WNIDS)
    assert ft['val_dataloader.dataset.metainfo.classes'] == list(WNIDS)
    assert ft['custom_hooks.0.dataset_name'] == 'ImageNet'
    teacher = stages['teacher'].options
    assert teacher['model.head.num_classes'] == 3
    seg = stages['downstream/random/upernet'].options
    assert seg['model.decode_head.num_classes'] == seg['model.auxiliary_head.num_classes'] == 150
    assert seg['val_dataloader.dataset.type'] == 'CheckedADE20KDataset'
    assert seg['train_dataloader.dataset.type'] == 'CheckedADE20KDataset'
    assert seg['val_dataloader.batch_size'] == seg['test_dataloader.batch_size'] == 1
    assert 'train_dataloader.batch_size' not in seg
    assert seg['custom_hooks.0.dataset_name'] == 'ADE20K'
    det = stages['downstream/random/mask_rcnn'].options
    assert det['model.roi_head.bbox_head.num_classes'] == 80
    assert det['model.roi_head.mask_head.num_classes'] == 80
    assert det['val_dataloader.dataset.metainfo'] is None  # mmdet's COCO classes
    cfg = suite.load_config(stages['downstream/random/mask_rcnn'].config)
    hook = [h['type'] for h in cfg.custom_hooks].index('DownstreamResultsHook')
    assert det[f'custom_hooks.{hook}.dataset_name'] == 'COCO'
    # a MIM config has no head: only its data root and classes change
    mim = stages['mim/beitv2'].options
    assert not any(key.endswith('num_classes') for key in mim)
    assert cfg_get(suite.load_config(stages['mim/beitv2'].config), 'model.head.num_classes') \
        is None

    # the labels of a subset's list beyond its folders: the list's count, generic names
    roots = _real_layout_roots(tmp_path / 'subset', labels=(0, 1, 230))
    stages = {s.name: s for s in suite.plan(suite.SuiteOptions(
        work_dir=tmp_path / 'w2', methods=('random',), tasks=('finetune',),
        imagenet_root=str(roots['in'])))}
    ft = stages['downstream/random/finetune'].options
    assert ft['model.head.num_classes'] == 231
    assert ft['train_dataloader.dataset.metainfo.classes'][230] == 'class_230'
    # categories COCO does not have fail at planning, naming the file
    (roots['coco'] / 'annotations' / 'instances_val2017.json').write_text(json.dumps(dict(
        categories=[dict(id=1, name='widget')])))
    with pytest.raises(ValueError, match='instances_val2017.json has categories that are not '
                                         "COCO's 80 \\(widget\\)"):
        suite.plan(suite.SuiteOptions(work_dir=tmp_path / 'w3', methods=('random',),
                                      tasks=('mask_rcnn',), coco_root=str(roots['coco'])))
    with pytest.raises(FileNotFoundError, match='neither class folders'):
        suite.plan(suite.SuiteOptions(work_dir=tmp_path / 'w4', methods=('random',),
                                      tasks=('finetune',), imagenet_root=str(roots['ade'])))


def test_no_synthetic_set_when_every_planned_stage_has_its_root(tmp_path):
    """--imagenet-root alone with ImageNet-only stages plans no data stage (nor a dependency on
    it); a planned stage on a data set without its root brings it back."""
    _real_layout_roots(tmp_path)
    opts = dict(work_dir=tmp_path / 'w', methods=('random',), imagenet_root=str(tmp_path / 'in'))
    stages = suite.plan(suite.SuiteOptions(tasks=('linear_probe', 'finetune'), **opts))
    assert [s.name for s in stages if s.kind == 'data'] == []
    assert all('data' not in s.deps for s in stages)
    stages = {s.name: s for s in suite.plan(suite.SuiteOptions(tasks=('linear_probe', 'upernet'),
                                                               **opts))}
    assert 'data' in stages and stages['downstream/random/upernet'].deps == ['data']
    assert stages['downstream/random/linear_probe'].options[
        'val_dataloader.dataset.data_root'] == str((tmp_path / 'in').resolve())


def _manifests(work: Path) -> dict:
    found = {}
    for path in work.rglob(suite.MANIFEST):
        data = json.loads(path.read_text())
        if data.get('status') == 'done':
            found[data['stage']] = data
    return found


@pytest.mark.slow
def test_suite_end_to_end_and_resume_after_kill(tmp_path):
    work, data = tmp_path / 'work', tmp_path / 'data'
    cmd = [sys.executable, str(REPO_ROOT / 'tools' / 'run_suite.py'), '--work-dir', str(work),
           '--data-dir', str(data), '--data-size', 'tiny', '--max-iters', '2', '--jobs', '2']
    env = dict(os.environ, OMP_NUM_THREADS='1')

    # 1. Start the suite and kill it (with its running stages) once a tokenizer trained
    #    from the teacher is done.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            cwd=tmp_path, start_new_session=True, text=True)
    deadline = time.time() + 400  # generous: CI machines are shared
    try:
        while time.time() < deadline and proc.poll() is None:
            if {'tokenizer/vqkd', 'tokenizer/peco'} & set(_manifests(work)):
                break
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the suite's own process group
        first_output = proc.communicate(timeout=30)[0]
    finished = _manifests(work)
    assert 'teacher' in finished, first_output[-3000:]
    stamps = {name: Path(m['checkpoint']).stat().st_mtime_ns for name, m in finished.items()}

    # 2. The same command resumes: finished stages are skipped, the rest runs to the end.
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert 'already done, skipped' in output
    for name, stamp in stamps.items():
        assert f'start {name} ' not in output, f'{name} was run again:\n{output[-5000:]}'
        assert Path(finished[name]['checkpoint']).stat().st_mtime_ns == stamp, \
            f'{name} checkpoint rewritten:\n{output[-5000:]}'

    planned = suite.plan(suite.SuiteOptions(work_dir=work, data_dir=data, data_size='tiny',
                                            max_iters=2))
    done = _manifests(work)
    assert {s.name for s in planned if s.kind != 'data'} == set(done)
    for stage in planned:
        if stage.needs_results:
            results = json.loads((stage.work_dir / 'results.json').read_text())
            assert results['final'] and results['dataset']['synthetic'], stage.name

    board = work / 'leaderboard'
    for name in ('leaderboard.md', 'leaderboard.csv', 'leaderboard.html'):
        assert (board / name).is_file()
    md = (board / 'leaderboard.md').read_text()
    for method in ('BEiT v2', 'BEiT v1', 'PeCo', 'Random init', 'Supervised'):
        assert f'| measured | {method}' in md, method
    assert md.count('[SYNTHETIC]') >= 5 and '| measured | BEiT v2 [SYNTHETIC]' in output


FAKE_TRAIN = '''
import sys, pathlib
work = pathlib.Path(sys.argv[1])
if sys.argv[2] == 'fail':
    sys.exit(3)
options = dict(a.split('=', 1) for a in sys.argv[3:])
work.mkdir(parents=True, exist_ok=True)
(work / 'options.txt').write_text(repr(sorted(options.items())))
(work / 'iter_1.pth').write_text('ckpt')
(work / 'last_checkpoint').write_text(str(work / 'iter_1.pth'))
'''


def _fake_stage(tmp_path, name, deps=(), mode='ok', dep_options=None):
    script = tmp_path / 'fake_train.py'
    script.write_text(FAKE_TRAIN)
    work = tmp_path / 'w' / name
    return suite.Stage(name=name, kind='mim', work_dir=work, deps=list(deps),
                       dep_options=dep_options or {},
                       command=[sys.executable, str(script), str(work), mode])


def test_run_stages_skips_done_blocks_dependents_of_failures(tmp_path):
    import io
    a = _fake_stage(tmp_path, 'a')
    b = _fake_stage(tmp_path, 'b', deps=['a'], dep_options={'model.ckpt': 'a'})
    bad = _fake_stage(tmp_path, 'bad', mode='fail')
    after_bad = _fake_stage(tmp_path, 'after_bad', deps=['bad'])
    stream = io.StringIO()
    status = suite.run_stages([a, b, bad, after_bad], jobs=2, stream=stream, heartbeat=0)
    assert status == {'a': 'done', 'b': 'done', 'bad': 'failed', 'after_bad': 'blocked'}
    # The dependency's checkpoint was handed over through the hand-off key.
    assert str(a.work_dir / 'iter_1.pth') in (b.work_dir / 'options.txt').read_text()
    assert 'FAILED bad (exit 3)' in stream.getvalue()
    assert '/4] start a' in stream.getvalue() and 'est. left' in stream.getvalue()
    assert suite.read_manifest(a.work_dir)['status'] == 'done'
    stamp = (a.work_dir / 'iter_1.pth').stat().st_mtime_ns

    # Second run: done stages are skipped (outputs untouched), the failed one is retried.
    bad_fixed = _fake_stage(tmp_path, 'bad')
    stream = io.StringIO()
    status = suite.run_stages([a, b, bad_fixed, after_bad], jobs=1, stream=stream, heartbeat=0)
    assert status == {'a': 'skipped', 'b': 'skipped', 'bad': 'done', 'after_bad': 'done'}
    assert (a.work_dir / 'iter_1.pth').stat().st_mtime_ns == stamp
    assert 'already done, skipped: a, b' in stream.getvalue()

    # A stage whose output disappeared is not done any more.
    (a.work_dir / 'iter_1.pth').unlink()
    assert not suite.stage_done(a)


def test_no_forked_stages_where_cuda_is_visible(tmp_path, monkeypatch):
    """A child forked after ``torch.cuda.is_available()`` cannot use CUDA (seen on an H100:
    every forked stage failed), so with a GPU the stages start fresh interpreters."""
    import io

    import torch
    forked = []

    class NoFork:
        def __init__(self, *args, **kwargs):
            forked.append(args)
            raise RuntimeError('forked')

    monkeypatch.setattr(suite, '_ForkedRun', NoFork)
    monkeypatch.setattr(suite, 'warm_imports', lambda: None)
    missing = str(tmp_path / 'missing_config.py')  # tools/train.py fails fast on it
    stage = suite.Stage(name='mim/x', kind='mim', work_dir=tmp_path / 'w' / 'x', config=missing)

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert suite.fork_is_safe() is False
    status = suite.run_stages([stage], jobs=1, stream=io.StringIO(), heartbeat=0)
    assert status == {'mim/x': 'failed'} and forked == []
    assert 'missing_config.py' in (stage.work_dir / 'suite_stage.log').read_text()

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert suite.fork_is_safe() is sys.platform.startswith('linux')


def test_changed_config_reruns_the_stage(tmp_path):
    import io
    a = _fake_stage(tmp_path, 'a')
    a.fingerprint = 'config-v1'
    assert suite.run_stages([a], stream=io.StringIO(), heartbeat=0) == {'a': 'done'}
    assert suite.run_stages([a], stream=io.StringIO(), heartbeat=0) == {'a': 'skipped'}
    a.fingerprint = 'config-v2'  # e.g. the config file was edited
    stream = io.StringIO()
    assert suite.run_stages([a], stream=stream, heartbeat=0) == {'a': 'done'}
    assert 'config or inputs changed' in stream.getvalue()
    assert suite.read_manifest(a.work_dir)['fingerprint'] == 'config-v2'


def test_a_moved_or_copied_suite_is_not_trained_again(tmp_path):
    """Paths under the work dir, the synthetic data dir and the repository enter the
    fingerprints relative to them; a real data root stays absolute (other data)."""
    def fingerprints(root, **kw):
        opts = suite.SuiteOptions(work_dir=root / 'w', data_dir=root / 'd', max_iters=2,
                                  methods=('beitv2',), tasks=('linear_probe',), **kw)
        return {s.name: s.fingerprint for s in suite.plan(opts)}

    here = fingerprints(tmp_path / 'a')
    assert fingerprints(tmp_path / 'b' / 'moved') == here
    for root in ('imagenet', 'imagenet2'):
        for split in ('train', 'val'):
            (tmp_path / root / split / 'n01').mkdir(parents=True)
    real = fingerprints(tmp_path / 'a', imagenet_root=str(tmp_path / 'imagenet'))
    other = fingerprints(tmp_path / 'a', imagenet_root=str(tmp_path / 'imagenet2'))
    assert len({here['tokenizer/vqkd'], real['tokenizer/vqkd'], other['tokenizer/vqkd']}) == 3


def test_a_config_change_reruns_its_stage_and_every_stage_reading_it(tmp_path, monkeypatch):
    """A stage's fingerprint covers its config as loaded and the fingerprints of the stages it
    reads: an edited teacher config changes the teacher's, the tokenizer's trained from it, the
    MIM run's and its downstream run's, and no other (the random-init baseline reads none)."""
    opts = suite.SuiteOptions(work_dir=tmp_path / 'w', data_dir=tmp_path / 'd', max_iters=2,
                              methods=('beitv2', 'random'), tasks=('linear_probe',))
    stages = suite.plan(opts)
    before = {s.name: s.fingerprint for s in stages}
    teacher_config = next(s.config for s in stages if s.name == 'teacher')
    load = suite.load_config

    def edited(path):
        cfg = load(path)
        if path == teacher_config:  # e.g. another learning rate written into the file
            cfg.optim_wrapper.optimizer.lr *= 2
        return cfg

    monkeypatch.setattr(suite, 'load_config', edited)
    after = {s.name: s.fingerprint for s in suite.plan(opts)}
    assert before.keys() == after.keys()
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == ['downstream/beitv2/linear_probe', 'mim/beitv2', 'teacher',
                       'tokenizer/vqkd']


def test_a_copied_suite_hands_on_its_own_checkpoints(tmp_path):
    """Manifests and ``last_checkpoint`` hold the absolute paths the runs wrote: a copied
    suite dir must be done with, hand on and resume its own files, not the original's."""
    import io
    import shutil
    (tmp_path / 'orig').mkdir()
    a = _fake_stage(tmp_path / 'orig', 'a')
    b = _fake_stage(tmp_path / 'orig', 'b', deps=['a'], dep_options={'model.ckpt': 'a'})
    assert suite.run_stages([a, b], stream=io.StringIO(), heartbeat=0) == {
        'a': 'done', 'b': 'done'}
    shutil.copytree(tmp_path / 'orig', tmp_path / 'copy')
    shutil.rmtree(tmp_path / 'orig' / 'w')  # as good as moved
    a2 = _fake_stage(tmp_path / 'copy', 'a')
    b2 = _fake_stage(tmp_path / 'copy', 'b', deps=['a'], dep_options={'model.ckpt': 'a'})
    assert 'orig' in suite.read_manifest(a2.work_dir)['checkpoint']
    assert suite.stage_done(a2) and suite.stage_done(b2)
    suite.clean_stage(b2)  # e.g. --redo b
    assert suite.run_stages([a2, b2], stream=io.StringIO(), heartbeat=0) == {
        'a': 'skipped', 'b': 'done'}
    handed = (b2.work_dir / 'options.txt').read_text()
    assert str(a2.work_dir / 'iter_1.pth') in handed and 'orig' not in handed
    # an interrupted stage of the copy resumes its own checkpoint
    assert suite.last_checkpoint(a2.work_dir) == a2.work_dir / 'iter_1.pth'
    assert suite.resume_or_restart(a2, io.StringIO().write) is True


def test_manifests_of_the_absolute_path_fingerprint_stay_done(tmp_path):
    """Manifests written before the fingerprints became portable hold the hash over absolute
    paths (``legacy_fingerprint``): such a finished run is not trained again."""
    import io
    opts = suite.SuiteOptions(work_dir=tmp_path / 'w', data_dir=tmp_path / 'd', max_iters=2,
                              methods=('beitv2',), tasks=('linear_probe',))
    vqkd = {s.name: s for s in suite.plan(opts)}['tokenizer/vqkd']
    assert vqkd.legacy_fingerprint and vqkd.legacy_fingerprint != vqkd.fingerprint
    a = _fake_stage(tmp_path, 'a')
    a.fingerprint, a.legacy_fingerprint = 'portable', 'absolute'
    a.work_dir.mkdir(parents=True)
    (a.work_dir / 'iter_1.pth').write_text('ckpt')
    suite.write_manifest(a.work_dir, dict(status='done', fingerprint='absolute',
                                          checkpoint=str(a.work_dir / 'iter_1.pth')))
    assert suite.stage_done(a)
    assert suite.run_stages([a], stream=io.StringIO(), heartbeat=0) == {'a': 'skipped'}
    a.legacy_fingerprint = 'absolute, other settings'
    assert not suite.stage_done(a)


def test_interrupted_stage_resumes_only_with_the_same_settings(tmp_path):
    """A stage killed part-way resumes from its checkpoint when rerun with the same settings;
    with changed ones it starts over (resuming would continue the old schedule and record the
    result under the new settings)."""
    import io
    a = _fake_stage(tmp_path, 'a')
    a.fingerprint = 'config-v1'
    say = io.StringIO()
    assert suite.resume_or_restart(a, say.write) is False  # nothing to resume yet
    assert suite.read_manifest(a.work_dir)['status'] == 'running'
    # killed after its first checkpoint
    (a.work_dir / 'iter_5.pth').write_text('ckpt')
    (a.work_dir / 'last_checkpoint').write_text(str(a.work_dir / 'iter_5.pth'))
    assert suite.resume_or_restart(a, say.write) is True
    assert (a.work_dir / 'iter_5.pth').is_file() and say.getvalue() == ''
    a.fingerprint = 'config-v2'  # e.g. --cfg-options optim_wrapper.optimizer.lr=0.001 added
    assert suite.resume_or_restart(a, say.write) is False
    assert not (a.work_dir / 'iter_5.pth').exists()
    assert 'changed since the interrupted run' in say.getvalue()
    assert suite.read_manifest(a.work_dir)['fingerprint'] == 'config-v2'
    # and through the runner: the stage records done with the new fingerprint
    assert suite.run_stages([a], stream=io.StringIO(), heartbeat=0) == {'a': 'done'}
    assert suite.read_manifest(a.work_dir)['fingerprint'] == 'config-v2'


def test_a_data_stage_that_fails_leaves_no_ready_manifest(tmp_path):
    """The synthetic set is regenerated with another seed and the run is killed: the old
    manifest must not make the half-written set pass as ready."""
    import io
    data_dir = tmp_path / 'data'
    data_dir.mkdir()
    (data_dir / suite.DATA_MANIFEST).write_text('{"size": "demo", "seed": 0}')
    assert suite.data_ready(data_dir, {'size': 'demo', 'seed': 0})
    stage = suite.Stage(name='data', kind='data', work_dir=data_dir,
                        options={'size': 'demo', 'seed': 1}, log_path=tmp_path / 'data.log',
                        command=[sys.executable, '-c', 'import sys; sys.exit(3)'])
    assert suite.run_stages([stage], stream=io.StringIO(), heartbeat=0,
                            fork=False) == {'data': 'failed'}
    assert not suite.data_ready(data_dir, {'size': 'demo', 'seed': 0})


def test_extra_options_reach_the_configs_that_have_the_key(tmp_path):
    """``run_suite --cfg-options`` keys are checked the way tools/train.py checks them: list
    items by position count (they were silently dropped), keys a config lacks are left out
    of that stage (a key of another planned stage's config), ``+key`` goes everywhere."""
    seg_key = 'model.decode_head.channels'  # UperNet's config only
    probe_cfg = suite.load_config(str(REPO_ROOT / suite.DEMO_TASKS['linear_probe']))
    seg_cfg = suite.load_config(str(REPO_ROOT / suite.DEMO_TASKS['upernet']))
    assert seg_cfg.model.decode_head.channels and 'decode_head' not in probe_cfg.model
    opts = suite.SuiteOptions(work_dir=tmp_path / 'w', methods=('random',),
                              tasks=('linear_probe', 'upernet'),
                              extra_options={'param_scheduler.1.eta_min': 0.5,
                                             'model.neck.input_features': 64,
                                             seg_key: 16, '+model.new_key': 1})
    stages = {s.name: s for s in suite.plan(opts)}
    probe = stages['downstream/random/linear_probe'].options
    assert probe['param_scheduler.1.eta_min'] == 0.5
    assert probe['model.neck.input_features'] == 64
    assert seg_key not in probe
    assert stages['downstream/random/upernet'].options[seg_key] == 16
    for stage in stages.values():
        if stage.kind != 'data':
            assert stage.options['+model.new_key'] == 1  # tools/train.py strips the +
    # a variable of the config files changes nothing once they are read: refused at planning
    with pytest.raises(suite.ConfigKeyError, match="'max_iters' is a variable of the config "
                                                   'file.*train_cfg.max_iters=...'):
        suite.plan(suite.SuiteOptions(work_dir=tmp_path / 'w', methods=('random',),
                                      tasks=('linear_probe',),
                                      extra_options={'max_iters': 3}))


def _run_suite_tool():
    from tool_module import load_tool
    return load_tool('run_suite')


def _dry_run(tmp_path, *args):
    """``tools/run_suite.py --dry-run`` in this process: (exit status, error message)."""
    tool = _run_suite_tool()
    argv = ['--work-dir', str(tmp_path / 'w'), '--data-dir', str(tmp_path / 'd'), '--dry-run',
            *args]
    try:
        return tool.main(argv), ''
    except SystemExit as exit_:
        if isinstance(exit_.code, str):
            return 1, exit_.code  # sys.exit(message) exits with status 1
        return exit_.code, ''


def test_cfg_options_key_of_no_planned_config_fails_before_anything_runs(tmp_path):
    """A typo used to vanish (kept only for stages whose config has it: none)."""
    from beitv2_mm.engine.launch import ConfigKeyError
    code, message = _dry_run(tmp_path, '--methods', 'random', '--tasks', 'linear_probe',
                             '--cfg-options', 'train_cfg.max_iter=3')
    assert code == 1
    assert message == (
        "tools/run_suite.py: error: --cfg-options: no config of the planned stages has the key "
        "'train_cfg.max_iter' (1 checked). Did you mean 'train_cfg.max_iters' or "
        "'train_cfg.val_interval' or 'train_cfg.type'? To add a new key on purpose, write it "
        "as +train_cfg.max_iter=...")
    assert not (tmp_path / 'w').exists() and not (tmp_path / 'd').exists()
    # A key of a config that is not planned (UperNet without --tasks upernet) is one too.
    opts = suite.SuiteOptions(work_dir=tmp_path / 'w', methods=('random',),
                              tasks=('linear_probe',),
                              extra_options={'model.decode_head.channels': 16})
    with pytest.raises(ConfigKeyError, match="has the key 'model.decode_head.channels' "):
        suite.plan(opts)
    # +key adds it on purpose: no check, as in tools/train.py.
    code, message = _dry_run(tmp_path, '--methods', 'random', '--tasks', 'linear_probe',
                             '--cfg-options', '+train_cfg.max_iter=3')
    assert (code, message) == (0, '')


def test_redo_of_an_unknown_stage_fails_listing_the_planned_ones(tmp_path, capsys):
    code, message = _dry_run(tmp_path, '--methods', 'beitv2,random',
                             '--tasks', 'linear_probe', '--redo', 'downstream/beitv3')
    assert code == 1
    assert message.startswith(
        'tools/run_suite.py: error: --redo downstream/beitv3: no planned stage has this name or '
        'prefix. Did you mean downstream/beitv2')
    assert ('Prefixes: tokenizer, mim, downstream, downstream/beitv2, downstream/random; '
            'stages: data, teacher, tokenizer/vqkd, mim/beitv2, downstream/beitv2/linear_probe, '
            'downstream/random/linear_probe (--methods / --tasks decide which stages are '
            'planned)') in message
    # Valid names and prefixes (trailing / too) select their stages.
    stages = suite.plan(suite.SuiteOptions(work_dir=tmp_path / 'w', methods=('beitv2', 'random'),
                                           tasks=('linear_probe',)))
    chosen = suite.select_stages(stages, ('teacher', 'downstream/beitv2/'))
    assert [s.name for s in chosen] == ['teacher', 'downstream/beitv2/linear_probe']
    assert suite.select_stages(stages, ()) == []
    assert _dry_run(tmp_path, '--methods', 'random', '--tasks', 'linear_probe',
                    '--redo', 'downstream')[0] == 0


def test_redo_reruns_every_stage_that_reads_the_redone_output(tmp_path, capsys):
    """A fingerprint covers configs, options and upstream fingerprints, not upstream outputs:
    after --redo mim/beitv2 alone its downstream runs stayed done with the old checkpoint's
    results (and with none left, were the redo interrupted)."""
    import io
    code, _ = _dry_run(tmp_path, '--methods', 'beitv2,random', '--tasks', 'linear_probe',
                       '--redo', 'mim/beitv2')
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    redone = [line.split()[1] for line in lines if line.endswith('[redo]')]
    assert redone == ['mim/beitv2', 'downstream/beitv2/linear_probe']
    assert '[suite] --redo: the 2 stage(s) marked [redo] would be deleted and run again ' \
           '(those named and every stage that reads their output)' in lines
    stages = suite.plan(suite.SuiteOptions(work_dir=tmp_path / 'w', methods=('beitv2', 'random'),
                                           tasks=('linear_probe',)))
    chosen = suite.with_dependents(stages, suite.select_stages(stages, ('teacher',)))
    assert [s.name for s in chosen] == ['teacher', 'tokenizer/vqkd', 'mim/beitv2',
                                        'downstream/beitv2/linear_probe']
    # run: the dependent of a redone stage trains again, from the new checkpoint
    a = _fake_stage(tmp_path, 'a')
    b = _fake_stage(tmp_path, 'b', deps=['a'], dep_options={'model.ckpt': 'a'})
    c = _fake_stage(tmp_path, 'c')
    assert suite.run_stages([a, b, c], stream=io.StringIO(), heartbeat=0) == {
        'a': 'done', 'b': 'done', 'c': 'done'}
    for stage in suite.with_dependents([a, b, c], [a]):
        suite.clean_stage(stage)
    assert suite.run_stages([a, b, c], stream=io.StringIO(), heartbeat=0) == {
        'a': 'done', 'b': 'done', 'c': 'skipped'}


@pytest.mark.parametrize('option, fix', [
    ('--max-iters', "leave --max-iters out for the configs' full schedules"),
    ('--jobs', '--jobs (or env SUITE_JOBS) 1 runs one stage at a time'),
    ('--batch-size-cap', "leave --batch-size-cap out for the configs' batch sizes"),
    ('--schedule', "e.g. 0.5 halves every run, 1 (the default) keeps the configs' lengths")])
def test_number_options_must_be_positive(option, fix, capsys, monkeypatch):
    """--max-iters 0 ran the full schedules (0 read as no cap), --max-iters -5 planned stages
    that failed after starting, --jobs 0 and --batch-size-cap 0 were not checked."""
    tool = _run_suite_tool()
    kind = 'finite number > 0' if option == '--schedule' else 'positive integer'
    for value in ('0', '-5', 'nan'):
        with pytest.raises(SystemExit) as exit_:
            tool.parse_args([option, value])
        assert exit_.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1].endswith(  # prog: sys.argv[0]
            f': error: argument {option}: must be a {kind}, got {value!r}; {fix}')
    attr = option[2:].replace('-', '_')
    assert getattr(tool.parse_args([option, '3']), attr) == 3
    if option == '--jobs':  # its default comes from the environment, checked the same way
        monkeypatch.setenv('SUITE_JOBS', '0')
        with pytest.raises(SystemExit):
            tool.parse_args([])
        assert "argument --jobs: must be a positive integer, got '0'" in capsys.readouterr().err
        monkeypatch.setenv('SUITE_JOBS', '4')
        assert tool.parse_args([]).jobs == 4


def test_data_roots_are_checked_and_the_plan_says_what_is_synthetic(tmp_path, capsys):
    """--imagenet-root alone is documented: real ImageNet, synthetic ADE20K and COCO. It is
    said at planning time; a root that does not exist fails then, not inside a stage."""
    missing = tmp_path / 'no_such_imagenet'
    code, message = _dry_run(tmp_path, '--methods', 'random', '--imagenet-root', str(missing))
    assert code == 1
    assert message == (
        f'tools/run_suite.py: error: --imagenet-root {missing} does not exist; give the ImageNet '
        f'root (train/, val/, meta/), or leave --imagenet-root out to use the synthetic ImageNet')
    a_file = tmp_path / 'coco.txt'
    a_file.write_text('')
    with pytest.raises(FileNotFoundError, match=f'--coco-root {a_file} is not a directory'):
        suite.plan(suite.SuiteOptions(work_dir=tmp_path / 'w', coco_root=str(a_file)))

    imagenet = _real_layout_roots(tmp_path)['in']
    capsys.readouterr()
    code, _ = _dry_run(tmp_path, '--methods', 'random', '--tasks', 'linear_probe,upernet,coco',
                       '--imagenet-root', str(imagenet))
    assert code == 0
    assert (f'[suite] data sets: real: ImageNet ({imagenet.resolve()}); synthetic: ADE20K, COCO '
            f'(generated in {tmp_path / "d"}; give --ade20k-root / --coco-root for real data)\n'
            in capsys.readouterr().out)
    # Only the data sets the planned stages read are named.
    suite.plan(suite.SuiteOptions(work_dir=tmp_path / 'w', data_dir=tmp_path / 'd',
                                  methods=('random',), tasks=('linear_probe',)))
    assert capsys.readouterr().out == (
        f'[suite] data sets: synthetic: ImageNet (generated in {tmp_path / "d"}; give '
        f'--imagenet-root for real data)\n')


def test_help_keeps_the_example_line_breaks(capsys, monkeypatch):
    monkeypatch.setenv('COLUMNS', '80')  # argparse wraps option help to this width
    with pytest.raises(SystemExit) as exit_:
        _run_suite_tool().parse_args(['--help'])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    # The example's shell continuation stays two lines (it was joined into one).
    assert ('--imagenet-root /data/imagenet --ade20k-root \\\n'
            '        /data/ade/ADEChallengeData2016 --coco-root /data/coco') in out
    # Option help is still wrapped to the terminal width.
    assert 'extra options for every stage whose config has the key\n' in out


@pytest.mark.parametrize('key', sorted(suite.HANDOFF_KEYS))
def test_cfg_options_of_a_hand_off_key_is_refused(tmp_path, key):
    """The suite sets the hand-off keys itself: a value given with --cfg-options was replaced
    without a word (MIM, downstream) or turned the random-init baseline into a pretrained model
    still labelled "Random init"; with or without '+' it is refused, saying what to do."""
    for spelled in (key, '+' + key):
        opts = suite.SuiteOptions(work_dir=tmp_path / 'w', methods=('beitv2', 'random'),
                                  tasks=('finetune',), extra_options={spelled: '/my/ckpt.pth'})
        with pytest.raises(suite.ConfigKeyError, match=rf"'{re.escape(key)}' is a hand-off "
                                                       r'key: the suite sets it itself'):
            suite.plan(opts)


def test_a_config_without_the_hand_off_key_fails_at_planning(tmp_path, monkeypatch):
    """A MIM config without model.target_generator.checkpoint trained on a random tokenizer
    (the key was dropped for want of it) while its rows named the trained one."""
    src = (REPO_ROOT / suite.DEMO_METHODS['beitv2']['config']).read_text()
    assert "        checkpoint=None))" in src and "_base_ = ['_base_/mim_demo.py']" in src
    config = tmp_path / '_test_no_handoff.py'  # outside the repository: its base by full path
    config.write_text(src.replace("        checkpoint=None))", "        ))").replace(
        "_base_ = ['_base_/mim_demo.py']",
        f"_base_ = ['{REPO_ROOT / 'configs' / 'demo' / '_base_' / 'mim_demo.py'}']"))
    monkeypatch.setitem(suite.DEMO_METHODS, 'beitv2',
                        dict(suite.DEMO_METHODS['beitv2'], config=str(config)))
    opts = suite.SuiteOptions(work_dir=tmp_path / 'w', methods=('beitv2',), tasks=('finetune',))
    with pytest.raises(suite.ConfigKeyError,
                       match=r'_test_no_handoff.py: stage mim/beitv2 reads the output of '
                             r'tokenizer/vqkd through model.target_generator.checkpoint, '
                             r'which the config does not have'):
        suite.plan(opts)


def test_a_new_method_is_part_of_the_default_plan(tmp_path, monkeypatch, capsys):
    """An entry added to DEMO_METHODS is planned by a plain run_suite.py (make demo), as the
    README says, not only when --methods names it."""
    monkeypatch.setitem(suite.DEMO_METHODS, 'beitv2_copy',
                        dict(suite.DEMO_METHODS['beitv2'], name='BEiT v2 (copy)'))
    code, message = _dry_run(tmp_path, '--tasks', 'linear_probe')
    assert (code, message) == (0, '')
    plan = capsys.readouterr().out
    for stage in ('mim/beitv2_copy', 'downstream/beitv2_copy/linear_probe', 'mim/peco',
                  'downstream/supervised/linear_probe'):
        assert stage in plan


def test_the_codebook_size_is_in_the_tokenizer_name(tmp_path):
    """A suite run with another codebook size (--cfg-options) was the same leaderboard row name
    as the standard one: the MIM stage's tokenizer name now carries the size it trains with."""
    key = 'model.target_generator.num_codes'
    for extra, codes in (({}, 512), ({key: 1024, 'model.head.num_embed': 1024}, 1024)):
        opts = suite.SuiteOptions(work_dir=tmp_path / 'w', methods=('beitv2',),
                                  tasks=('linear_probe',), extra_options=extra)
        stages = {s.name: s for s in suite.plan(opts)}
        assert stages['mim/beitv2'].produces['tokenizer'] == f'VQ-KD (ViT-tiny), {codes} codes'
        assert stages['downstream/beitv2/linear_probe'].pretrain['tokenizer'] == \
            f'VQ-KD (ViT-tiny), {codes} codes'


def test_a_finished_stage_takes_the_plans_names_without_training_again(tmp_path):
    """Names (method, tokenizer) describe a run and are not in its fingerprint: a rerun of the
    suite after they changed relabels the finished stages; checkpoint and fingerprint stay."""
    import io
    a = _fake_stage(tmp_path, 'a')
    a.fingerprint = 'f1'
    a.work_dir.mkdir(parents=True)
    ckpt = str(a.work_dir / 'iter_1.pth')
    (a.work_dir / 'iter_1.pth').write_text('ckpt')
    suite.write_manifest(a.work_dir, dict(
        status='done', fingerprint='f1', checkpoint=ckpt, seconds=3.0,
        pretrain=dict(method='random_init'),
        produces=dict(method='beitv2', tokenizer='VQ-KD (ViT-tiny)', checkpoint=ckpt)))
    a.pretrain = dict(method='random_init')
    a.produces = dict(method='beitv2', tokenizer='VQ-KD (ViT-tiny), 512 codes')
    assert suite.run_stages([a], stream=io.StringIO(), heartbeat=0) == {'a': 'skipped'}
    manifest = suite.read_manifest(a.work_dir)
    assert manifest['produces'] == dict(method='beitv2', tokenizer='VQ-KD (ViT-tiny), 512 codes',
                                        checkpoint=ckpt)
    assert (manifest['fingerprint'], manifest['checkpoint'], manifest['seconds']) == (
        'f1', ckpt, 3.0)
    assert (a.work_dir / 'iter_1.pth').read_text() == 'ckpt'
