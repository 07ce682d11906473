"""Each demo config trains a few iterations from a tiny pretrain checkpoint, evaluates, and writes
results.json with the task's metric keys."""
import json

import pytest
import torch

from downstream_helpers import REPO_ROOT, load_config, set_data_roots

CASES = {
    'finetune': ('configs/demo/finetune_vit-tiny_synthetic.py', 'imagenet', ['accuracy/top1']),
    'linear_probe': ('configs/demo/linear_probe_vit-tiny_synthetic.py', 'imagenet',
                     ['accuracy/top1']),
    'semantic_segmentation': ('configs/demo/upernet_vit-tiny_synthetic.py', 'ade20k', ['mIoU']),
    'instance_segmentation': ('configs/demo/mask_rcnn_vit-tiny_synthetic.py', 'coco',
                              ['coco/bbox_mAP', 'coco/segm_mAP']),
}


def run_demo(config, data_root, work_dir, checkpoint, iters=3):
    from mmengine.runner import Runner
    cfg = load_config(config)
    set_data_roots(cfg, data_root)
    cfg.model.backbone.init_cfg.checkpoint = checkpoint
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    cfg.default_hooks.checkpoint.interval = iters
    cfg.default_hooks.logger.interval = 1
    cfg.train_dataloader.batch_size = 4
    cfg.val_dataloader.batch_size = 8
    cfg.val_dataloader.dataset.indices = 8  # one validation batch keeps the test fast
    for sched in cfg.param_scheduler:  # keep schedulers inside the shortened run
        sched['end'] = min(sched.get('end', iters), iters)
        sched['begin'] = min(sched.get('begin', 0), iters - 1)
        if 'milestones' in sched:
            sched['milestones'] = [iters - 1]
    if cfg.default_scope == 'mmdet':
        cfg.model.test_cfg.rcnn.score_thr = 0.0  # an untrained head must still emit boxes
    cfg.work_dir = str(work_dir)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


@pytest.mark.slow
@pytest.mark.parametrize('task', list(CASES))
def test_demo_trains_from_pretrain_and_writes_results(task, tiny_data, tiny_mim_checkpoint,
                                                      tmp_path):
    config, data_key, metric_keys = CASES[task]
    ckpt_path, sd = tiny_mim_checkpoint
    runner = run_demo(config, tiny_data[data_key], tmp_path, ckpt_path)
    results = json.loads((tmp_path / 'results.json').read_text())
    assert results['task'] == task
    for key in metric_keys:
        assert key in results['metrics'], (key, results['metrics'])
        assert isinstance(results['metrics'][key], float)
    assert results['final'] is True
    assert results['dataset']['synthetic'] is True
    assert results['dataset']['data_root'] == str(tiny_data[data_key])
    assert results['dataset']['num_samples'] == 8  # the evaluated split (indices=8 above)
    # with what the MIM checkpoint's meta says (its config names the tokenizer; 40 iterations)
    assert results['pretrain'] == dict(checkpoint=ckpt_path, method='beitv2',
                                       method_source='meta.cfg', tokenizer='VQ-KD',
                                       backbone='BEiTPretrainViT', iters=40)
    assert results['config'].endswith(config.split('/')[-1])
    # the backbone really started from the checkpoint: the patch embedding moved only a little
    # (fine-tune) or not at all (probe) from the pretrained weights, nowhere near a fresh init
    pe = runner.model.backbone.patch_embed.projection.weight.detach()
    start = sd['backbone.patch_embed.projection.weight']
    assert (pe - start).abs().max() < 0.05
    assert not (tmp_path / '.results.json.tmp').exists()
    check_test_runs(runner, tmp_path, ckpt_path)


def check_test_runs(runner, work_dir, mim_checkpoint):
    """tools/test.py's path on the trained checkpoint, with a config that names no pretrain
    (as a user tests): results.json says what the tested weights were pretrained from; the
    MIM checkpoint itself, which has no downstream head, is refused."""
    from beitv2_mm.engine import launch
    from beitv2_mm.engine.hooks import CheckpointMismatchError

    trained = str(work_dir / f'iter_{runner.iter}.pth')
    assert torch.load(trained, weights_only=False)['meta']['pretrain']['method'] == 'beitv2'
    config = work_dir / 'as_trained.py'
    runner.cfg.dump(str(config))
    options = {'model.backbone.init_cfg.checkpoint': None, '+test_dataloader.dataset.indices': 8}
    validation = json.loads((work_dir / 'results.json').read_text())
    # into the training run's work dir, as tools/test.py does by default
    cfg = launch.prepare_test_config(str(config), trained, options, work_dir=str(work_dir))
    launch.run_then_close(cfg, 'test')
    results = json.loads((work_dir / 'results.json').read_text())
    assert results['stage'] == 'test' and results['evaluated_checkpoint'] == trained
    assert results['validation'] == validation and validation['best_metrics']
    assert (results['pretrain_method'], results['pretrain_checkpoint']) == ('beitv2',
                                                                           mim_checkpoint)
    assert "meta.pretrain" in results['pretrain']['method_source']

    cfg = launch.prepare_test_config(str(config), mim_checkpoint, options,
                                     work_dir=str(work_dir / 'test_mim'))
    with pytest.raises(CheckpointMismatchError, match=r'lacks \d+ of the \d+ weights') as err:
        launch.run_then_close(cfg, 'test')
    assert mim_checkpoint in str(err.value) and 'init_cfg.checkpoint' in str(err.value)
    assert not (work_dir / 'test_mim' / 'results.json').exists()


@pytest.mark.slow
def test_resume_keeps_the_pretrain_record_when_its_file_is_gone(tiny_data, tiny_mim_checkpoint,
                                                                 tmp_path, monkeypatch, capsys):
    """A fine-tune resumed after its pretrain file was moved: the resumed weights replace the
    pretrain ones anyway, so the run resumes (it failed on the missing file; with the key set
    to None it ran and was labelled random_init), and results.json and the new checkpoint keep
    the pretrain record of the checkpoint it resumed from. Paths are written absolute."""
    import shutil

    from beitv2_mm.engine import launch

    monkeypatch.chdir(tmp_path)
    shutil.copy(tiny_mim_checkpoint[0], tmp_path / 'pretrain.pth')
    work = tmp_path / 'work'

    def train(iters, resume=None):
        options = {'model.backbone.init_cfg.checkpoint': 'pretrain.pth',  # relative
                   'train_cfg.max_iters': iters, 'train_cfg.val_interval': 2,
                   'default_hooks.checkpoint.interval': 2,
                   'train_dataloader.batch_size': 4, '+val_dataloader.dataset.indices': 8}
        for key in ('train_dataloader', 'val_dataloader'):
            options[f'{key}.dataset.data_root'] = str(tiny_data['imagenet'])
        cfg = launch.prepare_train_config(str(REPO_ROOT / CASES['finetune'][0]), options,
                                          work_dir=str(work),
                                          resume=resume, cuda=False)
        cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
        launch.run_then_close(cfg, 'train')
        return json.loads((work / 'results.json').read_text())

    first = train(2)
    absolute = str(tmp_path / 'pretrain.pth')
    assert (first['pretrain']['method'], first['pretrain']['checkpoint']) == ('beitv2', absolute)
    (tmp_path / 'pretrain.pth').unlink()
    capsys.readouterr()
    resumed = train(4, resume='auto')
    assert 'pretrain.pth (model.backbone.init_cfg.checkpoint) no longer exists' in \
        capsys.readouterr().err
    assert resumed['iteration'] == 4
    assert (resumed['pretrain']['method'], resumed['pretrain']['checkpoint']) == ('beitv2',
                                                                                  absolute)
    assert 'resumed checkpoint' in resumed['pretrain']['method_source']
    meta = torch.load(work / 'iter_4.pth', weights_only=False)['meta']
    assert (meta['pretrain']['method'], meta['pretrain']['checkpoint']) == ('beitv2', absolute)
