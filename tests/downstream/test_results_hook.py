"""DownstreamResultsHook / results.json helpers."""
import json

import pytest
import torch

from beitv2_mm.downstream.results_hook import (DownstreamResultsHook, is_synthetic_root,
                                               write_json_atomic)


def test_atomic_write_and_synthetic_detection(tmp_path):
    path = tmp_path / 'results.json'
    write_json_atomic(path, {'a': 1})
    write_json_atomic(path, {'a': 2})
    assert json.loads(path.read_text()) == {'a': 2}
    assert [p.name for p in tmp_path.iterdir()] == ['results.json']
    assert is_synthetic_root('data/synthetic/imagenet')
    assert not is_synthetic_root('/datasets/imagenet')
    assert not is_synthetic_root(None)
    from beitv2_mm.datasets.synthetic import SYNTHETIC_CLASSES
    assert is_synthetic_root('/tmp/x', classes=list(SYNTHETIC_CLASSES))
    assert not is_synthetic_root('/tmp/x', classes=['cat', 'dog'])


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match='task must be one of'):
        DownstreamResultsHook(task='detection', dataset_name='COCO')


def test_eval_dataset_size_and_classes():
    """The evaluated dataset gives the sample count and the class names (synthetic detection
    when the data root does not say 'synthetic'); a loop without a dataset gives None."""
    from types import SimpleNamespace

    from beitv2_mm.datasets.synthetic import SYNTHETIC_CLASSES
    from beitv2_mm.downstream.results_hook import (_dataset_classes, _dataset_size,
                                                   _eval_dataset)

    class Data(list):
        metainfo = dict(classes=SYNTHETIC_CLASSES)

    runner = SimpleNamespace(val_loop=SimpleNamespace(dataloader=SimpleNamespace(
        dataset=Data(range(7)))), test_loop=None)
    dataset = _eval_dataset(runner, 'val')
    assert _dataset_size(dataset) == 7 and _dataset_classes(dataset) == SYNTHETIC_CLASSES
    assert _eval_dataset(runner, 'test') is None
    assert _dataset_size(None) is None and _dataset_classes(None) is None


def test_best_metrics_across_validations_and_resume(tmp_path):
    """``metrics`` are the latest validation's; ``best_metrics`` the best of each so far, with
    when; a resumed run continues the file's best values, a new run and a test run do not;
    a test run keeps the validation record it replaces."""
    from types import SimpleNamespace

    from mmengine.config import Config
    from mmengine.logging import MMLogger

    def runner(resume, it):
        cfg = Config(dict(resume=resume, model=dict(backbone=dict(init_cfg=dict(checkpoint=None)))))
        return SimpleNamespace(cfg=cfg, work_dir=str(tmp_path), _train_loop=SimpleNamespace(
                                   max_iters=100, iter=it, epoch=it // 10),
                               logger=MMLogger.get_current_instance())

    def results():
        return json.loads((tmp_path / 'results.json').read_text())

    hook = DownstreamResultsHook(task='finetune', dataset_name='ImageNet-1K')
    for it, (top1, top5) in zip((10, 20, 30), ((50.0, 80.0), (62.5, 79.0), (61.0, 90.0))):
        hook.after_val_epoch(runner(False, it), {'accuracy/top1': top1, 'accuracy/top5': top5})
    out = results()
    assert out['metrics'] == {'accuracy/top1': 61.0, 'accuracy/top5': 90.0}
    assert out['best_metrics'] == {
        'accuracy/top1': dict(value=62.5, iteration=20, epoch=2),
        'accuracy/top5': dict(value=90.0, iteration=30, epoch=3)}
    resumed = DownstreamResultsHook(task='finetune', dataset_name='ImageNet-1K')
    resumed.after_val_epoch(runner(True, 40), {'accuracy/top1': 60.0, 'accuracy/top5': 91.0})
    assert results()['best_metrics'] == {
        'accuracy/top1': dict(value=62.5, iteration=20, epoch=2),
        'accuracy/top5': dict(value=91.0, iteration=40, epoch=4)}
    fresh = DownstreamResultsHook(task='finetune', dataset_name='ImageNet-1K')
    fresh.after_val_epoch(runner(False, 10), {'accuracy/top1': 40.0})
    assert results()['best_metrics'] == {'accuracy/top1': dict(value=40.0, iteration=10, epoch=1)}
    fresh.after_val_epoch(runner(False, 20), {'accuracy/top1': 39.0})
    validation = results()

    # tools/test.py into the same work dir: its own record, the training run's kept whole
    for _ in range(2):  # a second test run keeps the same validation record
        DownstreamResultsHook(task='finetune', dataset_name='ImageNet-1K').after_test_epoch(
            runner(False, 100), {'accuracy/top1': 41.0})
        out = results()
        assert out['best_metrics'] is None and out['stage'] == 'test'
        assert out['metrics'] == {'accuracy/top1': 41.0}
        assert out['validation'] == validation
    assert validation['validation'] is None  # a validation record keeps nothing of before

    # training resumed after the test run carries the best values on
    DownstreamResultsHook(task='finetune', dataset_name='ImageNet-1K').after_val_epoch(
        runner(True, 30), {'accuracy/top1': 39.5})
    assert results()['best_metrics'] == {'accuracy/top1': dict(value=40.0, iteration=10, epoch=1)}
    assert results()['stage'] == 'val' and results()['validation'] is None

    # an unreadable file: a resumed run starts its best values afresh, a test run keeps none
    (tmp_path / 'results.json').write_text('{not json')
    DownstreamResultsHook(task='finetune', dataset_name='ImageNet-1K').after_test_epoch(
        runner(False, 100), {'accuracy/top1': 41.0})
    assert results()['validation'] is None


def test_tested_checkpoint_pretrain_from_its_meta(tiny_mim_checkpoint, tmp_path):
    """What a tested downstream checkpoint was pretrained from: the hook's record, else the
    saved config of a downstream run, else a converted file's origin; never random_init by
    default."""
    from beitv2_mm.downstream.checkpoint import tested_checkpoint_pretrain

    mim_path, _ = tiny_mim_checkpoint
    recorded = dict(checkpoint='work_dirs/mim/iter_4.pth', method='beitv2',
                    method_source='meta.cfg')
    got = tested_checkpoint_pretrain(dict(pretrain=recorded, cfg='ignored'))
    assert (got['checkpoint'], got['method']) == ('work_dirs/mim/iter_4.pth', 'beitv2')
    assert "meta.pretrain" in got['source']

    # written before the hook recorded it: the downstream run's config names the pretrain
    cfg_text = (f"custom_hooks = [dict(type='DownstreamResultsHook', task='finetune', "
                f"dataset_name='x')]\nmodel = dict(type='ImageClassifier', backbone=dict("
                f"type='BEiTViT', init_cfg=dict(type='BEiTPretrained', "
                f"checkpoint={mim_path!r})))\n")
    got = tested_checkpoint_pretrain(dict(cfg=cfg_text))
    assert (got['checkpoint'], got['method']) == (mim_path, 'beitv2')
    assert got['source'].startswith("tested checkpoint's meta.cfg")
    scratch = cfg_text.replace(repr(mim_path), 'None')
    assert tested_checkpoint_pretrain(dict(cfg=scratch))['method'] == 'random_init'

    # a MIM run's own checkpoint (no results hook in its config), a converted file, nothing
    mim_meta = torch.load(mim_path, weights_only=False)['meta']
    assert tested_checkpoint_pretrain(mim_meta)['method'] is None
    assert tested_checkpoint_pretrain(dict(converted_from='beit-official'))['method'] == \
        'beit-official'
    for meta in (None, {}, dict(cfg="model = dict(type='ImageClassifier')\n")):
        got = tested_checkpoint_pretrain(meta)
        assert got['method'] is None and got['source'].startswith('unknown'), got


def test_relative_data_root_is_written_absolute(tmp_path, monkeypatch):
    """A config's relative data root (tools/train.py from the repo root) and the suite's
    absolute one must read as the same data set on the leaderboard."""
    from types import SimpleNamespace

    from mmengine.config import Config
    from mmengine.logging import MMLogger

    monkeypatch.chdir(tmp_path)
    cfg = Config(dict(model=dict(backbone=dict(init_cfg=None)),
                      val_dataloader=dict(dataset=dict(data_root='data/synthetic/imagenet'))))
    runner = SimpleNamespace(cfg=cfg, work_dir=str(tmp_path),
                             _train_loop=SimpleNamespace(max_iters=1, iter=1, epoch=0),
                             logger=MMLogger.get_current_instance())
    DownstreamResultsHook(task='finetune', dataset_name='x').after_val_epoch(
        runner, {'accuracy/top1': 1.0})
    dataset = json.loads((tmp_path / 'results.json').read_text())['dataset']
    assert dataset['data_root'] == str(tmp_path / 'data' / 'synthetic' / 'imagenet')
    assert dataset['synthetic'] is True


def _fake_runner(tmp_path, loop=None, **cfg):
    from types import SimpleNamespace

    from mmengine.config import Config
    from mmengine.logging import MMLogger
    cfg = Config(dict(model=dict(backbone=dict(init_cfg=dict(checkpoint=None))), **cfg))
    return SimpleNamespace(cfg=cfg, work_dir=str(tmp_path), _train_loop=loop,
                           logger=MMLogger.get_current_instance())


def test_final_from_the_last_iteration_or_epoch_on(tmp_path):
    """``final`` (the leaderboard counts only final results; the suite's done check needs one)
    is true at the schedule's last iteration / epoch, false before it, true for a test run."""
    from types import SimpleNamespace
    hook = DownstreamResultsHook(task='finetune', dataset_name='x')
    for loop, final in ((SimpleNamespace(max_iters=8, iter=7, epoch=0), False),
                        (SimpleNamespace(max_iters=8, iter=8, epoch=0), True),
                        (SimpleNamespace(max_epochs=3, epoch=2, iter=20), False),
                        (SimpleNamespace(max_epochs=3, epoch=3, iter=30), True)):
        hook.after_val_epoch(_fake_runner(tmp_path, loop), {'accuracy/top1': 1.0})
        assert json.loads((tmp_path / 'results.json').read_text())['final'] is final, loop
    hook.after_test_epoch(_fake_runner(tmp_path), {'accuracy/top1': 1.0})
    assert json.loads((tmp_path / 'results.json').read_text())['final'] is True


def test_non_finite_metrics_are_written_as_null(tmp_path):
    """A diverged run's NaN / inf metrics: results.json stays standard JSON (no NaN literal,
    which strict readers such as jq and browsers refuse) with null in their place, and a NaN
    never becomes a best value."""
    from types import SimpleNamespace

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f'{c} in results.json'))

    hook = DownstreamResultsHook(task='semantic_segmentation', dataset_name='x')
    loop = SimpleNamespace(max_iters=8, iter=4, epoch=0)
    hook.after_val_epoch(_fake_runner(tmp_path, loop), {'mIoU': float('nan'), 'aAcc': 50.0,
                                                        'mAcc': float('inf')})
    out = strict((tmp_path / 'results.json').read_text())
    assert out['metrics'] == {'mIoU': None, 'aAcc': 50.0, 'mAcc': None}
    assert out['best_metrics'] == {'aAcc': dict(value=50.0, iteration=4, epoch=0)}


def test_test_run_reports_how_far_the_tested_weights_trained(tmp_path):
    """tools/test.py builds no training loop: iteration and epoch are those of the tested
    checkpoint (its meta), not 0, so the leaderboard can tell a smoke checkpoint from a full
    one."""
    hook = DownstreamResultsHook(task='finetune', dataset_name='x')
    runner = _fake_runner(tmp_path, load_from=str(tmp_path / 'epoch_12.pth'))
    hook.after_load_checkpoint(runner, dict(meta=dict(iter=1200, epoch=12)))
    hook.after_test_epoch(runner, {'accuracy/top1': 3.0})
    out = json.loads((tmp_path / 'results.json').read_text())
    assert (out['stage'], out['iteration'], out['epoch']) == ('test', 1200, 12)
    assert out['evaluated_checkpoint'] == str(tmp_path / 'epoch_12.pth')
