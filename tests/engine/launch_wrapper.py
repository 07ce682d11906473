"""Run ``tools/train.py`` with test instrumentation (a test helper, not a launcher).

    python tests/engine/launch_wrapper.py [--delay S] [--record] [--fail-at-iter N] \
        [--per-sample-seed] \
        -- CONFIG [tools/train.py arguments]

* ``--delay S``: pause S seconds after every training iteration, so a test can SIGKILL the
  real launcher at a chosen point of a tiny demo run.
* ``--record``: every rank appends ``{"iter", "loss"}`` to ``<work_dir>/losses_rank<R>.jsonl``
  (mmengine logs rank 0's loss only) and, at the end, saves its model buffers to
  ``<work_dir>/buffers_rank<R>.pth`` (EMA codebooks must be identical on every rank); after
  ``tools/train.py`` returns, the names of the native threads still running go to
  ``<work_dir>/threads_rank<R>.json`` (Linux; gloo's must be gone before interpreter teardown).
* ``--fail-at-iter N``: every rank raises a RuntimeError after training iteration N (a run that
  fails inside ``Runner.train``); with ``--record`` the threads are recorded all the same.
* ``--per-sample-seed``: the augmentation of a sample depends only on its index (python, numpy
  and torch RNGs re-seeded around each ``dataset[i]``), so a 1-process run and a 2-process run
  with the same total batch see identical batches; only for world-size agreement tests.
"""
import argparse
import json
import os
import os.path as osp
import random
import runpy
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _install_delay(delay):
    from mmengine.runner import loops

    for loop in (loops.IterBasedTrainLoop, loops.EpochBasedTrainLoop):
        original = loop.run_iter

        def run_iter(self, *args, _original=original, **kwargs):
            _original(self, *args, **kwargs)
            time.sleep(delay)

        loop.run_iter = run_iter


def _install_recorder():
    import torch
    from mmengine.dist import get_rank
    from mmengine.hooks import Hook
    from mmengine.model import is_model_wrapper

    class RecordHook(Hook):
        priority = 'LOWEST'

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            loss = float(outputs['loss'].detach())
            with open(osp.join(runner.work_dir, f'losses_rank{get_rank()}.jsonl'), 'a') as f:
                f.write(json.dumps(dict(iter=runner.iter + 1, loss=loss)) + '\n')

        def after_train(self, runner):
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            torch.save({k: v.detach().cpu() for k, v in model.named_buffers()},
                       osp.join(runner.work_dir, f'buffers_rank{get_rank()}.pth'))

    _register_with_every_runner(RecordHook)


def _register_with_every_runner(hook_class):
    """Every runner built from now on registers a ``hook_class()`` after the config's hooks."""
    from mmengine.runner import Runner

    original = Runner.register_hooks

    def register_hooks(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.register_hook(hook_class())

    Runner.register_hooks = register_hooks


def _install_failure(at_iter):
    from mmengine.hooks import Hook

    class FailHook(Hook):
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter + 1 == at_iter:
                raise RuntimeError(f'launch_wrapper: failing on purpose after iteration {at_iter}')

    _register_with_every_runner(FailHook)


def _install_per_sample_seed():
    import numpy as np
    import torch
    from mmengine.runner import Runner

    original = Runner.build_dataloader

    def seeded_getitem(getitem):
        def __getitem__(self, idx):
            states = random.getstate(), np.random.get_state(), torch.get_rng_state()
            random.seed(idx)
            np.random.seed(idx)
            torch.manual_seed(idx)
            try:
                return getitem(self, idx)
            finally:
                random.setstate(states[0])
                np.random.set_state(states[1])
                torch.set_rng_state(states[2])
        return __getitem__

    def build_dataloader(dataloader, *args, **kwargs):
        built = original(dataloader, *args, **kwargs)
        dataset_cls = type(built.dataset)
        if not getattr(dataset_cls, '_per_sample_seeded', False):
            dataset_cls.__getitem__ = seeded_getitem(dataset_cls.__getitem__)
            dataset_cls._per_sample_seeded = True
        return built

    Runner.build_dataloader = staticmethod(build_dataloader)


def _record_native_threads(train_argv):
    """Names of this process's native threads (``/proc/self/task/*/comm``) into the work dir."""
    tasks = '/proc/self/task'
    if '--work-dir' not in train_argv or not osp.isdir(tasks):
        return
    names = []
    for task in sorted(os.listdir(tasks)):
        try:
            with open(osp.join(tasks, task, 'comm')) as f:
                names.append(f.read().strip())
        except OSError:  # the thread ended meanwhile
            pass
    work_dir = train_argv[train_argv.index('--work-dir') + 1]
    with open(osp.join(work_dir, f"threads_rank{os.environ.get('RANK', '0')}.json"), 'w') as f:
        json.dump(names, f)


def main():
    argv = sys.argv[1:]
    split = argv.index('--')
    parser = argparse.ArgumentParser()
    parser.add_argument('--delay', type=float, default=0.0)
    parser.add_argument('--record', action='store_true')
    parser.add_argument('--per-sample-seed', action='store_true')
    parser.add_argument('--fail-at-iter', type=int, default=0)
    args = parser.parse_args(argv[:split])
    sys.path.insert(0, REPO)
    import beitv2_mm  # noqa: F401  (its fixes first: the patches below wrap them)
    if args.delay:
        _install_delay(args.delay)
    if args.record:
        _install_recorder()
    if args.per_sample_seed:
        _install_per_sample_seed()
    if args.fail_at_iter:
        _install_failure(args.fail_at_iter)
    train = osp.join(REPO, 'tools', 'train.py')
    sys.argv = [train] + argv[split + 1:]
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    try:
        runpy.run_path(train, run_name='__main__')
    finally:
        if args.record:
            _record_native_threads(argv[split + 1:])


if __name__ == '__main__':
    main()
