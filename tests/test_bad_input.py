"""Bad input fails early with a message naming the culprit (issue 8, item 2), end to end.

Each case runs a real demo config through the launcher's code path (``beitv2_mm.engine.launch``:
config loading, strict ``--cfg-options``, runner) on the tiny synthetic data with one thing
broken, and asserts that the error names the file / key / setting. The checks themselves
belong to other engineers (data: ``beitv2_mm/datasets``; vqkd/mim: checkpoint loaders;
launch: ``--cfg-options``); a case whose check is not wired into the demo config is skipped with
the reason, so the gap is visible in the test report.
"""
import os
import os.path as osp
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / 'configs' / 'demo'
FINETUNE = DEMO / 'finetune_vit-tiny_synthetic.py'
UPERNET = DEMO / 'upernet_vit-tiny_synthetic.py'
MASK_RCNN = DEMO / 'mask_rcnn_vit-tiny_synthetic.py'
BEITV2 = DEMO / 'beitv2_vit-tiny_synthetic.py'
VQKD = DEMO / 'vqkd_vit-tiny_synthetic.py'

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- helpers
def _require(config: Path):
    if not config.exists():
        pytest.skip(f'{config.relative_to(REPO)} does not exist yet')
    pytest.importorskip('mmpretrain')
    from beitv2_mm.engine import launch
    return launch


def _load(config: Path, options: dict | None = None):
    launch = _require(config)
    return launch.load_config(str(config), options)


def _get(cfg, dotted: str):
    node = cfg
    for part in dotted.split('.'):
        node = node[int(part)] if isinstance(node, (list, tuple)) else node.get(part)
        if node is None:
            return None
    return node


def _require_type(config: Path, dotted: str, wanted: set, what: str):
    """Skip when the demo config does not use a type that performs the check."""
    cfg = _load(config)
    actual = _get(cfg, dotted)
    if actual not in wanted:
        pytest.skip(f'NOT WIRED: {config.relative_to(REPO)} sets {dotted}={actual!r}; the early '
                    f'{what} check lives in {sorted(wanted)} and the config does not use it')


def _train(config: Path, options: dict, work_dir: Path, max_iters: int = 2, edit=None):
    """Build and train ``config`` like tools/train.py does, with overrides; returns the runner."""
    launch = _require(config)
    options = dict(options)
    cfg = launch.prepare_train_config(str(config), options, work_dir=str(work_dir))
    if cfg.train_cfg.get('max_iters'):
        cfg.train_cfg.max_iters = max_iters
        cfg.train_cfg.val_interval = 10 ** 6
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint.interval = 10 ** 6
    cfg.log_level = 'WARNING'
    if edit is not None:
        edit(cfg)
    runner = launch.build_runner(cfg)
    runner.train()
    return runner


def _roots(kind: str, root) -> dict:
    return {'train_dataloader.dataset.data_root': str(root),
            'val_dataloader.dataset.data_root': str(root)}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------- data root / layout
@pytest.mark.parametrize('config,kind,checked', [
    (FINETUNE, 'imagenet', {'CheckedImageNet', 'CheckedCustomDataset'}),
    (UPERNET, 'ade20k', {'CheckedADE20KDataset', 'SyntheticADE20KDataset'}),
    (MASK_RCNN, 'coco', {'CheckedCocoDataset'}),
])
def test_missing_data_root_is_named(tmp_path, config, kind, checked):
    _require_type(config, 'train_dataloader.dataset.type', checked, 'data-root/layout')
    missing = tmp_path / 'no_such_data'
    with pytest.raises(FileNotFoundError) as info:
        _train(config, _roots(kind, missing), tmp_path / 'work')
    assert str(missing) in str(info.value)
    # the keys that set it (a top-level data_root override would not) and the suite's flag
    assert 'train_dataloader.dataset.data_root=DIR' in str(info.value)
    assert f'run_suite.py --{kind}-root DIR' in str(info.value)


@pytest.mark.parametrize('config', ['configs/beitv2_vitb_mim.py', 'configs/beitv1_vitb_mim.py',
                                    'configs/vqkd/vqkd_vitb_clip-b16_in1k.py',
                                    'configs/peco/peco_vqvae_in1k.py',
                                    'configs/peco/peco_vitb_mim.py', str(BEITV2), str(VQKD)])
def test_pretraining_configs_check_their_imagenet_root(tmp_path, config):
    """The tokenizer and MIM recipes read ImageNet too: a wrong root names the path and the
    expected layout (mmpretrain's own ImageNet gave a bare FileNotFoundError)."""
    from beitv2_mm.datasets.layout import DatasetLayoutError
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS
    cfg = _load(REPO / config)
    init_default_scope('mmpretrain')
    dataset = dict(cfg.train_dataloader.dataset, data_root=str(tmp_path / 'no_such_data'))
    with pytest.raises(DatasetLayoutError, match=r'no_such_data does not exist.*\n'
                                                 r'expected ImageNet layout'):
        DATASETS.build(dataset)


def test_ade20k_without_annotations_names_the_missing_folder(tmp_path, tiny_data):
    _require_type(UPERNET, 'train_dataloader.dataset.type',
                  {'CheckedADE20KDataset', 'SyntheticADE20KDataset'}, 'ADE20K layout')
    root = _copy(Path(tiny_data['ade20k']), tmp_path / 'ADEChallengeData2016')
    shutil.rmtree(root / 'annotations')
    with pytest.raises(FileNotFoundError) as info:
        _train(UPERNET, _roots('ade20k', root), tmp_path / 'work')
    assert 'annotations' in str(info.value) and str(root) in str(info.value)


def test_seg_labels_out_of_range_name_file_and_values(tmp_path, tiny_data):
    _require_type(UPERNET, 'train_dataloader.dataset.type',
                  {'CheckedADE20KDataset', 'SyntheticADE20KDataset'}, 'label range')
    from PIL import Image
    root = _copy(Path(tiny_data['ade20k']), tmp_path / 'ADEChallengeData2016')
    label_file = sorted((root / 'annotations' / 'training').glob('*.png'))[0]
    label = np.array(Image.open(label_file))
    label[0, 0] = 200  # 10 classes: valid values are 0..10 (and 255 = ignore)
    Image.fromarray(label).save(label_file)
    options = dict(_roots('ade20k', root))
    options['+train_dataloader.dataset.check_labels'] = True
    with pytest.raises(ValueError) as info:
        _train(UPERNET, options, tmp_path / 'work')
    assert label_file.name in str(info.value) and '200' in str(info.value)


def test_malformed_coco_json_names_the_file(tmp_path, tiny_data):
    _require_type(MASK_RCNN, 'train_dataloader.dataset.type', {'CheckedCocoDataset'},
                  'COCO json')
    root = _copy(Path(tiny_data['coco']), tmp_path / 'coco')
    ann = root / 'annotations' / 'instances_train2017.json'
    ann.write_text('{"images": [')  # truncated json
    with pytest.raises(ValueError) as info:
        _train(MASK_RCNN, _roots('coco', root), tmp_path / 'work')
    assert 'instances_train2017.json' in str(info.value)


# --------------------------------------------------------------------------- corrupt images
def _corrupt_one_image(root: Path) -> Path:
    image = sorted((root / 'train').rglob('*.JPEG'))[0]
    image.write_bytes(b'\xff\xd8 not really a jpeg')
    return image


def _whole_set_in_two_batches(root: Path) -> dict:
    """Batch size so that two iterations read every training image (the corrupt one too)."""
    num_images = len(list((root / 'train').rglob('*.JPEG')))
    return {'train_dataloader.batch_size': (num_images + 1) // 2,
            'train_dataloader.num_workers': 0}


def test_training_set_smaller_than_a_batch_is_named(tmp_path, tiny_data):
    """drop_last with fewer images than one batch: an empty loader, which mmengine's loop
    meets as a bare StopIteration; the guard names the data set, its size and the key."""
    from beitv2_mm.engine.hooks import EmptyTrainLoaderError
    root = Path(tiny_data['imagenet'])
    num_images = len(list((root / 'train').rglob('*.JPEG')))
    options = dict(_roots('imagenet', root))
    options.update({'train_dataloader.batch_size': num_images + 1,
                    'train_dataloader.num_workers': 0,
                    'train_dataloader.persistent_workers': False,
                    'train_dataloader.drop_last': True})
    with pytest.raises(EmptyTrainLoaderError) as info:
        _train(FINETUNE, options, tmp_path / 'work', max_iters=2)
    message = str(info.value)
    assert f'has {num_images} samples' in message and f'batch of {num_images + 1}' in message
    assert str(root) in message and 'train_dataloader.batch_size' in message


def test_corrupt_image_fail_policy_names_the_path(tmp_path, tiny_data):
    _require_type(FINETUNE, 'train_dataloader.dataset.pipeline.0.type',
                  {'SafeLoadImageFromFile'}, 'corrupt-image policy')
    root = _copy(Path(tiny_data['imagenet']), tmp_path / 'imagenet')
    bad = _corrupt_one_image(root)
    options = dict(_roots('imagenet', root))
    options['train_dataloader.dataset.pipeline.0.on_error'] = 'raise'
    options.update(_whole_set_in_two_batches(root))
    with pytest.raises(OSError) as info:
        _train(FINETUNE, options, tmp_path / 'work', max_iters=2)
    assert bad.name in str(info.value)


def test_corrupt_image_skip_policy_counts_and_reports(tmp_path, tiny_data):
    _require_type(FINETUNE, 'train_dataloader.dataset.pipeline.0.type',
                  {'SafeLoadImageFromFile'}, 'corrupt-image policy')
    from beitv2_mm.datasets.transforms import reset_skipped_images, skipped_images
    root = _copy(Path(tiny_data['imagenet']), tmp_path / 'imagenet')
    bad = _corrupt_one_image(root)
    options = dict(_roots('imagenet', root))
    options['train_dataloader.dataset.pipeline.0.on_error'] = 'skip'
    options.update(_whole_set_in_two_batches(root))
    reset_skipped_images()
    _train(FINETUNE, options, tmp_path / 'work', max_iters=2)
    listed = (tmp_path / 'work' / 'skipped_images.txt').read_text()
    assert listed.startswith(f'{bad}\t')  # the only unreadable file, with its read count
    assert skipped_images() == []  # the temporary record is removed at the end of the run


# --------------------------------------------------------------------------- checkpoints
def test_missing_tokenizer_checkpoint_is_named(tmp_path, tiny_data):
    missing = tmp_path / 'no_tokenizer.pth'
    options = dict(_roots('imagenet', tiny_data['imagenet']))
    options.pop('val_dataloader.dataset.data_root')
    options['model.target_generator.checkpoint'] = str(missing)
    with pytest.raises(FileNotFoundError) as info:
        _train(BEITV2, options, tmp_path / 'work')
    assert str(missing) in str(info.value)


def test_tokenizer_checkpoint_of_wrong_architecture_reports_keys(tmp_path, tiny_data):
    import torch
    options = dict(_roots('imagenet', tiny_data['imagenet']))
    options.pop('val_dataloader.dataset.data_root')
    launch = _require(BEITV2)
    cfg = launch.prepare_train_config(str(BEITV2), dict(options), work_dir=str(tmp_path / 'w0'))
    cfg.model.target_generator.checkpoint = None
    from mmengine.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    state = model.target_generator.state_dict()
    wrong_key = next(k for k, v in state.items() if v.ndim == 2)
    state[wrong_key] = torch.zeros(state[wrong_key].shape[0] + 3, state[wrong_key].shape[1])
    bad = tmp_path / 'wrong_arch_tokenizer.pth'
    torch.save(state, bad)
    options['model.target_generator.checkpoint'] = str(bad)
    with pytest.raises(Exception) as info:
        _train(BEITV2, options, tmp_path / 'work')
    assert wrong_key.split('.')[-1] in str(info.value) and 'shape' in str(info.value).lower()


def test_missing_teacher_checkpoint_names_file_and_key(tmp_path, tiny_data):
    missing = tmp_path / 'no_teacher.pth'
    options = {'train_dataloader.dataset.data_root': str(tiny_data['imagenet']),
               'model.teacher.checkpoint': str(missing)}
    with pytest.raises(FileNotFoundError) as info:
        _train(VQKD, options, tmp_path / 'work')
    assert str(missing) in str(info.value)
    assert 'model.teacher.checkpoint' in str(info.value)


# --------------------------------------------------------------------------- config keys
def test_unknown_cfg_option_suggests_the_closest_key_without_traceback(tmp_path):
    _require(FINETUNE)
    done = subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'train.py'), str(FINETUNE),
         '--work-dir', str(tmp_path / 'work'),
         '--cfg-options', 'model.backbone.drop_path=0.1'],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert done.returncode != 0
    assert 'model.backbone.drop_path' in done.stderr
    assert 'drop_path_rate' in done.stderr  # the suggestion
    assert 'Traceback' not in done.stderr


def test_cfg_option_without_equals_is_a_usage_error(tmp_path):
    """``--cfg-options key value`` (a space for the "="): argparse's usage error naming the
    item, from every tool that takes the option, not mmengine's ValueError traceback."""
    for tool, args in (('train.py', [str(FINETUNE)]), ('test.py', [str(FINETUNE), 'x.pth']),
                       ('run_suite.py', ['--dry-run'])):
        done = subprocess.run(
            [sys.executable, str(REPO / 'tools' / tool), *args,
             '--cfg-options', 'train_cfg.max_iters', '4'],
            capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 2, (tool, done.stderr[-2000:])
        assert ("--cfg-options takes KEY=VALUE items; 'train_cfg.max_iters' has no \"=\" "
                "(write train_cfg.max_iters=VALUE") in done.stderr, (tool, done.stderr[-2000:])
        assert 'Traceback' not in done.stderr


def test_slurm_launcher_outside_slurm_names_what_is_missing(tmp_path, monkeypatch):
    launch = _require(FINETUNE)
    for key in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ValueError, match=r'--launcher slurm: SLURM_PROCID, SLURM_NTASKS, '
                                         r'SLURM_NODELIST not set.*tools/slurm_train\.sh'):
        launch.prepare_train_config(str(FINETUNE), work_dir=str(tmp_path), launcher='slurm',
                                    cuda=False)


def test_num_classes_that_do_not_match_the_data(tmp_path, tiny_data):
    """NumClassesGuardHook on the real fine-tune config (appended here when the config does not
    list it yet): names the data set's class count, the head key and the fix."""
    from beitv2_mm.engine.hooks import NumClassesMismatchError

    def add_guard(cfg):
        hooks = list(cfg.get('custom_hooks') or [])
        if not any(h.get('type') == 'NumClassesGuardHook' for h in hooks):
            hooks.append(dict(type='NumClassesGuardHook'))
        cfg.custom_hooks = hooks

    options = dict(_roots('imagenet', tiny_data['imagenet']))
    options['model.head.num_classes'] = 7
    with pytest.raises(NumClassesMismatchError) as info:
        _train(FINETUNE, options, tmp_path / 'work', edit=add_guard)
    message = str(info.value)
    assert '10 classes' in message and 'model.head.num_classes = 7' in message
