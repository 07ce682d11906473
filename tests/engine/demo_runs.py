"""Helpers to run the real demo configs through tools/train.py in the reliability tests."""
import glob
import json
import os.path as osp

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LAUNCH_WRAPPER = osp.join(osp.dirname(osp.abspath(__file__)), 'launch_wrapper.py')

#: demo config -> synthetic data kind; tokenizer / pretrain checkpoints stay unset (random
#: init) where the config allows it; the VQ-KD teacher gets a random checkpoint file.
DEMO_CONFIGS = {
    'beitv2_vit-tiny_synthetic.py': 'imagenet',
    'finetune_vit-tiny_synthetic.py': 'imagenet',
    'upernet_vit-tiny_synthetic.py': 'ade20k',
    'mask_rcnn_vit-tiny_synthetic.py': 'coco',
    'vqkd_vit-tiny_synthetic.py': 'imagenet',
}


def config_path(config):
    return osp.join(REPO, 'configs', 'demo', config)


def scalar_losses(work_dir):
    """``{iteration: loss}`` from every run's ``vis_data/scalars.json`` (later runs win)."""
    losses = {}
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if 'loss' in rec and 'iter' in rec:
                    losses[rec['iter']] = rec['loss']
    return losses


def rank_losses(work_dir, rank):
    """``{iteration: loss}`` recorded by ``launch_wrapper.py --record`` for one rank."""
    losses = {}
    path = osp.join(work_dir, f'losses_rank{rank}.jsonl')
    if osp.exists(path):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                losses[rec['iter']] = rec['loss']
    return losses


def _random_checkpoint(config, key, out_dir, name):
    """Save the randomly initialised (seed 0) module ``cfg.<key>`` of a demo config, once."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import beitv2_mm  # noqa: F401
    from mmpretrain.registry import MODELS
    path = osp.join(str(out_dir), name)
    if not osp.exists(path):
        cfg = Config.fromfile(config_path(config))
        init_default_scope(cfg.default_scope)
        node = cfg
        for part in key.split('.'):
            node = node[part]
        torch.manual_seed(0)
        module = MODELS.build(node)
        torch.save({'state_dict': module.state_dict(), 'meta': {}}, path)
    return path


def tiny_teacher_checkpoint(out_dir):
    """A random demo teacher (what the VQ-KD demo distils), saved as a checkpoint file."""
    return _random_checkpoint('teacher_vit-tiny_synthetic.py', 'model', out_dir,
                              'teacher_random.pth')


def tiny_tokenizer_checkpoint(out_dir):
    """A random demo VQ-KD tokenizer (the MIM demo's target generator) as a raw state dict."""
    import torch
    path = _random_checkpoint('vqkd_vit-tiny_synthetic.py', 'model.tokenizer', out_dir,
                              'tokenizer_random.pth')
    state = torch.load(path, weights_only=False)
    if 'state_dict' in state:  # the tokenizer loader takes a raw state dict of the module too
        torch.save(state['state_dict'], path)
    return path


def demo_options(config, data, tmp_path, max_iters=10, ckpt_interval=4, batch_size=None,
                 as_cli=True):
    """``--cfg-options`` for a quick demo run: tiny data roots, few iterations, a checkpoint
    every ``ckpt_interval`` iterations, a loss logged every iteration, no dataloader workers.

    Returns:
        list[str] | dict: ``KEY=VALUE`` strings for tools/train.py, or the dict
        (``as_cli=False``) for ``beitv2_mm.engine.launch.prepare_train_config``.
    """
    from mmengine.config import Config

    from beitv2_mm.engine.launch import cfg_has_key
    kind = DEMO_CONFIGS[config]
    cfg = Config.fromfile(config_path(config))
    options = {}

    def put(key, value, add=False):
        """Set ``key`` if the config has it (tools/train.py rejects unknown keys); with
        ``add``, add it on purpose (``+key``) when missing."""
        if cfg_has_key(cfg, key):
            options[key] = value
        elif add:
            options['+' + key] = value

    put('train_dataloader.dataset.data_root', str(data[kind]), add=True)
    put('default_hooks.checkpoint.interval', ckpt_interval)
    put('default_hooks.checkpoint.by_epoch', False, add=True)
    put('default_hooks.logger.interval', 1)
    put('train_dataloader.num_workers', 0)
    put('train_dataloader.persistent_workers', False)
    if batch_size:
        put('train_dataloader.batch_size', batch_size)
    if cfg.get('val_dataloader'):
        put('val_dataloader.dataset.data_root', str(data[kind]), add=True)
        put('val_dataloader.num_workers', 0)
        put('val_dataloader.persistent_workers', False)
    put('log_processor.window_size', 1, add=True)
    if cfg.train_cfg.get('max_iters') is not None:
        put('train_cfg.max_iters', max_iters)
        put('train_cfg.val_interval', max_iters)
    if config.startswith('vqkd'):
        put('model.teacher.checkpoint', tiny_teacher_checkpoint(tmp_path), add=True)
    if config.startswith('beitv2'):
        put('model.target_generator.checkpoint', tiny_tokenizer_checkpoint(tmp_path))
    return [f'{k}={v}' for k, v in options.items()] if as_cli else options


def train_in_process(config, options, work_dir, extra_hooks=(), resume=False):
    """Train a demo config in this process the way tools/train.py does (plus test hooks)."""
    from beitv2_mm.engine import launch
    cfg = launch.prepare_train_config(config_path(config), dict(options), work_dir=str(work_dir),
                                      resume='auto' if resume else None)
    cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + list(extra_hooks)
    cfg.log_level = 'WARNING'
    runner = launch.build_runner(cfg)
    runner.train()
    return runner
