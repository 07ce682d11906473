"""Load a tokenizer (or teacher) checkpoint into a module, reporting every key that differs.

A checkpoint may be a raw state dict of the module, or an mmengine checkpoint written by a
training run, in which the module's keys carry the attribute name inside the algorithm as a
prefix (``tokenizer.*`` in a VQ-KD run, ``target_generator.*`` in a MIM run). The loader picks
the prefix that matches the module best, strips it, and loads. Missing keys and shape
mismatches are errors (listed per key, with the file name); unexpected keys (e.g. the VQ-KD
decoder when only the encoder is built) are reported, never dropped silently.
"""
from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from torch import nn

from ..convert import extract_state_dict

DEFAULT_PREFIXES = ('tokenizer.', 'target_generator.', '')


class CheckpointLoadError(RuntimeError):
    """A checkpoint file that cannot be read, or does not fit the module (the message says
    which file, which keys and what to do)."""


@dataclass
class CheckpointLoadReport:
    """What :func:`load_tokenizer_checkpoint` did.

    Attributes:
        path: the file read.
        prefix: the key prefix stripped ('' for a raw state dict).
        loaded: number of tensors copied into the module.
        missing: module keys the file lacks.
        unexpected: file keys (after prefix stripping) the module lacks.
        mismatched: (key, shape in file, shape in module) for keys of different shape.
    """
    path: str
    prefix: str = ''
    loaded: int = 0
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, tuple, tuple]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.mismatched

    def format(self) -> str:
        lines = [f'checkpoint {self.path}: loaded {self.loaded} tensors '
                 f'(prefix {self.prefix!r} stripped)']
        if self.missing:
            shown = self.missing[:10]
            more = len(self.missing) - len(shown)
            lines.append(f'missing keys ({len(self.missing)}): ' + ', '.join(shown)
                         + (f', ... ({more} more)' if more else ''))
        if self.unexpected:
            lines.append(f'unexpected keys, not loaded ({len(self.unexpected)}): '
                         + _summarize(self.unexpected))
        for key, src, dst in self.mismatched:
            lines.append(f'shape mismatch for {key}: checkpoint {tuple(src)} vs module '
                         f'{tuple(dst)}')
        return '\n'.join(lines)


def _summarize(keys: List[str], limit: int = 10) -> str:
    """All keys when few; else a count per top-level module (e.g. a decoder not built)."""
    if len(keys) <= limit:
        return ', '.join(keys)
    groups: Dict[str, int] = {}
    for key in keys:
        head = key.split('.', 1)[0]
        groups[head] = groups.get(head, 0) + 1
    return ', '.join(f'{head}.* ({n})' for head, n in groups.items())


def require_tokenizer_checkpoint(path: str, how_to_get: str) -> None:
    """Raise a FileNotFoundError that names the config key and how to obtain the file when a
    MIM tokenizer's ``model.target_generator.checkpoint`` does not exist.

    Args:
        path (str): The configured file.
        how_to_get (str): Where such a file comes from (training config, official release).
    """
    if not os.path.isfile(os.fspath(path)):
        raise FileNotFoundError(
            f'tokenizer checkpoint {os.fspath(path)!r} (model.target_generator.checkpoint) does '
            f'not exist; {how_to_get}; then set that key, e.g. --cfg-options '
            'model.target_generator.checkpoint=PATH')


#: What torch.load raises for a damaged file (a broken zip raises OSError in some torch
#: versions; a missing file is reported before these apply).
UNREADABLE_ERRORS = (RuntimeError, EOFError, ValueError, pickle.UnpicklingError, OSError)


def unreadable_checkpoint(path: str, err: BaseException) -> CheckpointLoadError:
    """The error for a checkpoint file that ``torch.load`` cannot read: names the file, its
    size and what to do (used by every loader of user-given checkpoints)."""
    path = os.fspath(path)
    size = os.path.getsize(path) if os.path.isfile(path) else 0
    return CheckpointLoadError(
        f'cannot read checkpoint {path} ({size} bytes): {type(err).__name__}: {err}. The file '
        'is truncated (an interrupted download or copy) or not a PyTorch checkpoint; download '
        'or copy it again.')


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint file (``state_dict``/``model``/``module`` or itself).

    TorchScript archives (e.g. OpenAI's CLIP ``ViT-B-16.pt``) are read with ``torch.jit.load``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')

    try:
        # trusted files named by the user; mmengine checkpoints hold non-tensor objects
        ckpt = torch.load(path, map_location='cpu', weights_only=False)
    except RuntimeError as err:
        if 'TorchScript' not in str(err) and 'zip' not in str(err).lower():
            raise unreadable_checkpoint(path, err) from err
        try:  # OpenAI's CLIP releases are TorchScript archives
            ckpt = torch.jit.load(path, map_location='cpu').state_dict()
        except Exception:  # the zip itself is broken: say so, with torch.load's error
            raise unreadable_checkpoint(path, err) from err
    except (EOFError, ValueError, pickle.UnpicklingError, OSError) as err:
        raise unreadable_checkpoint(path, err) from err
    if isinstance(ckpt, torch.jit.ScriptModule):
        ckpt = ckpt.state_dict()
    if not isinstance(ckpt, dict):
        raise TypeError(f'{path}: expected a dict checkpoint, got {type(ckpt).__name__}')
    return extract_state_dict(ckpt)


def _expected_keys(module: nn.Module) -> Dict[str, torch.Size]:
    # state_dict() holds persistent buffers only, which is what a checkpoint should hold
    return {k: v.shape for k, v in module.state_dict().items()}


def choose_prefix(keys: Sequence[str], expected: Sequence[str],
                  prefix_candidates: Sequence[str] = DEFAULT_PREFIXES) -> str:
    """The candidate prefix under which most of ``expected`` appear in ``keys``."""
    keyset = set(keys)
    best, best_hits = '', -1
    for prefix in prefix_candidates:
        hits = sum((prefix + k) in keyset for k in expected)
        if hits > best_hits:
            best, best_hits = prefix, hits
    return best


def load_tokenizer_checkpoint(module: nn.Module,
                              path: str,
                              prefix_candidates: Sequence[str] = DEFAULT_PREFIXES,
                              strict: bool = True,
                              state_dict: Optional[Dict[str, torch.Tensor]] = None,
                              logger: str = 'current') -> CheckpointLoadReport:
    """Load ``path`` into ``module`` and report missing / unexpected / mismatched keys.

    Args:
        module (nn.Module): The tokenizer (or any module) to fill.
        path (str): Checkpoint file: a raw state dict, or an mmengine checkpoint whose keys
            carry one of ``prefix_candidates``.
        prefix_candidates (Sequence[str]): Prefixes to try; the one matching most module
            keys is stripped. Defaults to ``('tokenizer.', 'target_generator.', '')``.
        strict (bool): Raise if keys are missing or shapes differ. Unexpected keys are only
            reported. Defaults to True.
        state_dict (dict, optional): Already-read tensors (``path`` is then only used in
            messages).
        logger (str): mmengine logger for the report. Defaults to 'current'.

    Returns:
        CheckpointLoadReport: the prefix used and every key that differed.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointLoadError: the file cannot be read, or (``strict``) keys are missing or of
            another shape; the message lists them and names the file.
    """
    if state_dict is None:
        state_dict = read_state_dict(path)
    expected = _expected_keys(module)
    prefix = choose_prefix(list(state_dict), list(expected), prefix_candidates)
    if prefix:
        stripped = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    else:
        stripped = dict(state_dict)

    report = CheckpointLoadReport(path=str(path), prefix=prefix)
    loadable = {}
    for key, value in stripped.items():
        if key not in expected:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(expected[key]):
            report.mismatched.append((key, tuple(value.shape), tuple(expected[key])))
        else:
            loadable[key] = value
    report.missing = [k for k in expected if k not in stripped]
    report.loaded = len(loadable)

    if strict and not report.ok:
        hint = ''
        keys = list(stripped) or list(state_dict)  # no key under the chosen prefix: all
        if any(k.startswith(('quant_conv.', 'post_quant_conv.', 'encoder.down.'))
               for k in keys):
            hint = ('\nThe keys are those of a PeCoVQVAE (this project\'s PeCo or pixel '
                    'VQ-VAE tokenizer): use it with model.target_generator.type=\'PeCoVQVAE\' '
                    '(configs/peco/peco_vitb_mim.py), not this target generator.')
        elif any(re.match(r'(encoder\.)?blocks\.\d+\.', k) for k in keys) or \
                'quantize.embedding.weight' in keys:  # keys of those layouts only
            hint = ('\nThe keys look like the official unilm beit2 or mmpretrain layout: '
                    'convert first with `python tools/convert_ckpt.py vqkd_official SRC DST` '
                    '(or `vqkd_mmpretrain`).')
        else:
            codebook = next((m for m in report.mismatched if m[0] == 'quantizer.codebook'), None)
            if codebook is not None:
                codes, dims = codebook[1][0], codebook[1][1]
                hint = (f'\nThe checkpoint\'s codebook holds {codes} codes of {dims} dims, '
                        f'the config\'s {codebook[2][0]} of {codebook[2][1]}: set the '
                        f'tokenizer\'s num_codes={codes} and code_dim={dims} (they must match '
                        f'the trained tokenizer; in a MIM config '
                        f'model.target_generator.num_codes={codes} and '
                        f'model.target_generator.code_dim={dims}, and the head\'s vocabulary '
                        f'with them: model.head.num_embed={codes}).')
        cls = type(module)
        raise CheckpointLoadError(f'cannot load {cls.__module__}.{cls.__qualname__} from {path}: '
                           f'the checkpoint does not match the model built from the config.\n'
                           + report.format() + hint)
    module.load_state_dict(loadable, strict=False)
    print_log(report.format(), logger=logger)
    return report
