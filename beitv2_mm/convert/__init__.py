"""Checkpoint converters: other layouts -> this project's / mmpretrain's layout.

Each converter is a function ``convert(state_dict) -> (new_state_dict, report)`` registered
under a format name with :func:`register_converter`; ``tools/convert_ckpt.py`` lists and runs
them. Modules that define converters are imported at the bottom of this file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

import torch


@dataclass
class ConversionReport:
    """What a conversion did, printed by ``tools/convert_ckpt.py``.

    Attributes:
        renamed: number of keys mapped to a new name.
        dropped: source keys deliberately left out (with the reason in ``notes``).
        unmatched: source keys no rule knew: kept out, listed so nothing is lost silently.
        notes: free-form remarks (e.g. "split qkv into q/k/v").
    """
    renamed: int = 0
    dropped: List[str] = field(default_factory=list)
    unmatched: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def format(self) -> str:
        lines = [f'renamed keys: {self.renamed}']
        if self.dropped:
            lines.append(f'dropped on purpose ({len(self.dropped)}): ' + ', '.join(self.dropped))
        if self.unmatched:
            lines.append(f'UNMATCHED, not converted ({len(self.unmatched)}): '
                         + ', '.join(self.unmatched))
        lines += [f'note: {n}' for n in self.notes]
        return '\n'.join(lines)


Converter = Callable[[Dict[str, torch.Tensor]], Tuple[Dict[str, torch.Tensor], ConversionReport]]
CONVERTERS: Dict[str, Tuple[Converter, str]] = {}


def register_converter(name: str, description: str):
    """Register ``fn`` as the converter for source format ``name``."""

    def wrap(fn: Converter) -> Converter:
        if name in CONVERTERS:
            raise KeyError(f'converter {name!r} is registered twice')
        CONVERTERS[name] = (fn, description)
        return fn

    return wrap


def extract_state_dict(checkpoint) -> Dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint: ``state_dict``, ``model``, ``module`` or the dict itself."""
    if not isinstance(checkpoint, dict):
        fix = (' (a pickled model: save its state_dict() instead)'
               if isinstance(checkpoint, torch.nn.Module) else '')
        raise TypeError(f'expected a checkpoint dict of tensors, got a '
                        f'{type(checkpoint).__name__}{fix}')
    for key in ('state_dict', 'model', 'module'):
        if key in checkpoint and isinstance(checkpoint[key], dict):
            return checkpoint[key]
    return checkpoint


def convert(name: str, checkpoint) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    if name not in CONVERTERS:
        raise KeyError(f'unknown source format {name!r}; known: {sorted(CONVERTERS)}')
    return CONVERTERS[name][0](extract_state_dict(checkpoint))


from . import vqkd  # noqa: E402,F401  (vqkd_official, vqkd_mmpretrain)
from . import beit  # noqa: E402,F401  (beit-official, beit-timm)
