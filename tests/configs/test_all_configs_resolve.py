"""Every config under configs/ (but _base_) loads, imports the project, and names only
registered types: a typo in any `type=` fails here, without building the (large) models.
The per-stage config tests build and run the models themselves."""
import importlib
from pathlib import Path

import pytest
from mmengine.config import Config, ConfigDict
from mmengine.registry import Registry, init_default_scope

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p for p in (REPO / 'configs').rglob('*.py') if '_base_' not in p.parts)


def _types(node, path='cfg'):
    """(dotted path, type name) of every string ``type`` in a config tree."""
    if isinstance(node, (dict, ConfigDict)):
        if isinstance(node.get('type'), str):
            yield path, node['type']
        for key, value in node.items():
            yield from _types(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _types(value, f'{path}[{i}]')


def _registries(scope):
    """The scope's registries, then mmengine's roots (the runner falls back to them)."""
    found = []
    for name in (f'{scope}.registry', 'mmengine.registry'):
        module = importlib.import_module(name)
        found += [obj for obj in vars(module).values() if isinstance(obj, Registry)]
    return found


def test_every_config_is_found():
    names = {p.relative_to(REPO / 'configs').as_posix() for p in CONFIGS}
    assert {'beitv2_vitb_mim.py', 'upernet_ade20k.py', 'demo/beitv2_vit-tiny_synthetic.py',
            'vqkd/vqkd_vitb_clip-b16_in1k.py', 'peco/peco_vitb_mim.py'} <= names


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_config_names_only_registered_types(path):
    cfg = Config.fromfile(str(path))
    assert cfg.get('custom_imports', {}).get('imports') == ['beitv2_mm'], \
        f'{path}: custom_imports must import beitv2_mm'
    scope = cfg.get('default_scope')
    assert scope in ('mmpretrain', 'mmseg', 'mmdet'), f'{path}: default_scope is {scope!r}'
    importlib.import_module(scope + ('.models' if scope != 'mmpretrain' else ''))
    init_default_scope(scope)
    registries = _registries(scope)
    import mmcv.ops  # mmdet looks up RoI layers and NMS by name in mmcv.ops, not a registry
    unknown = [f'{where}: {name}' for where, name in _types(cfg.to_dict())
               if not any(reg.get(name) is not None for reg in registries)
               and not hasattr(mmcv.ops, name)]
    assert not unknown, f'{path} names unregistered types:\n' + '\n'.join(unknown)


def _base_files(path: Path) -> list:
    """The ``_base_`` files ``path`` names (resolved), read without loading the config."""
    import ast
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == '_base_'
                                                for t in node.targets):
            names = ast.literal_eval(node.value)
            names = [names] if isinstance(names, str) else names
            return [(path.parent / name).resolve() for name in names]
    return []


def test_every_base_piece_is_inherited():
    """A ``_base_`` piece nothing inherits is a twin that drifts: edits to it change no run.
    ``runtime_reliability.py`` is the one piece for users to add themselves (its docstring)."""
    pieces = {p for p in (REPO / 'configs').rglob('*.py') if '_base_' in p.parts}
    used = {base for path in (REPO / 'configs').rglob('*.py') for base in _base_files(path)}
    missing = used - pieces - set(CONFIGS)
    assert not missing, f'configs name _base_ files that do not exist: {sorted(missing)}'
    opt_in = {REPO / 'configs' / '_base_' / 'runtime_reliability.py'}
    unused = sorted(p.relative_to(REPO).as_posix() for p in pieces - used - opt_in)
    assert not unused, f'_base_ pieces no config inherits: {unused}'


FULL_CONFIGS = [p for p in CONFIGS if 'demo' not in p.parts]


@pytest.mark.parametrize('path', FULL_CONFIGS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_adamw_of_the_full_configs_is_fused(path):
    """Every full-size recipe that trains with AdamW asks for the fused kernel (BENCHMARKS.md:
    the optimizer step was the fine-tuning step's whole CPU gain, c13 against c14); the
    fine-tuning and UperNet demos inherit it."""
    optimizer = Config.fromfile(str(path)).get('optim_wrapper', {}).get('optimizer', {})
    if optimizer.get('type') == 'AdamW':
        assert optimizer.get('fused') is True, f'{path.name}: optim_wrapper.optimizer.fused'
