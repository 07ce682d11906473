"""DALL-E dVAE encoder as the BEiT v1 tokenizer (8192 visual tokens per 8x8 pixel cell).

Reuses mmpretrain's ``DALL-E`` encoder (``mmpretrain/models/selfsup/cae.py``, same module tree
and key names as OpenAI's ``dall_e.encoder.Encoder``) and adds what BEiT v1 needs:

* weights from a local file: OpenAI's ``encoder.pkl`` (a whole pickled module of the
  ``dall_e`` package; read with ``weights_only=False`` and, when ``dall_e`` is not installed,
  with stand-in classes, see :func:`load_dalle_encoder_state`) or mmpretrain's converted
  ``dalle_encoder.pth`` (a state dict); never downloaded;
* ``map_pixels`` (``(1 - 2 * 0.1) * x + 0.1`` on [0, 1] pixels, as ``dall_e.utils``);
  usually done by ``TwoNormDataPreprocessor`` with ``DALLE_SECOND_MEAN``/``DALLE_SECOND_STD``,
  which is exactly map_pixels on 0..255 inputs;
* ``get_codebook_indices``: token ids ``(B, h*w)``, the interface :class:`BEiTMIM` reads.

BEiT v1 feeds the tokenizer a second view of 112 px (the 224 px view has 14x14 patches of
16 px; the dVAE downsamples by 8, so 112 px gives the same 14x14 token grid).
"""
from __future__ import annotations

import pickle
import types
from collections import OrderedDict
from typing import Dict, Optional

import torch
from mmengine.model import BaseModule

from mmpretrain.models.selfsup.cae import DALLEEncoder
from mmpretrain.registry import MODELS

from .checkpoint import UNREADABLE_ERRORS, unreadable_checkpoint

LOGIT_LAPLACE_EPS = 0.1
# TwoNormDataPreprocessor (x - mean) / std on 0..255 pixels == map_pixels(x / 255)
DALLE_SECOND_MEAN = [-255 * LOGIT_LAPLACE_EPS / (1 - 2 * LOGIT_LAPLACE_EPS)] * 3  # -31.875
DALLE_SECOND_STD = [255 / (1 - 2 * LOGIT_LAPLACE_EPS)] * 3  # 318.75


def map_pixels(x: torch.Tensor, eps: float = LOGIT_LAPLACE_EPS) -> torch.Tensor:
    """``dall_e.utils.map_pixels``: squeeze [0, 1] pixels into [eps, 1 - eps]."""
    if x.dtype != torch.float:
        raise ValueError(f'map_pixels expects float32 pixels in [0, 1], got {x.dtype}')
    return (1 - 2 * eps) * x + eps


class _StandIn:
    """Takes the place of a ``dall_e`` class while unpickling: keeps the pickled state."""

    def __init__(self, *args, **kwargs):
        self.__dict__['_stand_in_args'] = args

    def __setstate__(self, state):
        if isinstance(state, tuple):  # (dict, slots)
            state = state[0]
        self.__dict__.update(state or {})


def _stand_in_pickle_module() -> types.ModuleType:
    """A ``pickle``-like module whose Unpickler swaps ``dall_e.*`` classes for stand-ins."""

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if module == 'dall_e' or module.startswith('dall_e.'):
                return type(name, (_StandIn, ), {'__module__': module})
            return super().find_class(module, name)

    module = types.ModuleType('dalle_stand_in_pickle')
    module.__dict__.update({k: getattr(pickle, k) for k in dir(pickle) if not k.startswith('__')})
    module.Unpickler = Unpickler
    module.load = lambda f, **kw: Unpickler(f, **kw).load()
    return module


def _module_tree_state(obj, prefix: str = '') -> Dict[str, torch.Tensor]:
    """State dict of an unpickled module tree whose nodes may be stand-ins.

    Real ``nn.Module`` nodes and stand-ins both keep ``_parameters``, ``_buffers`` and
    ``_modules`` in their ``__dict__``; walking those gives ``state_dict()``'s keys.
    """
    attrs = obj.__dict__
    state = OrderedDict()
    for kind in ('_parameters', '_buffers'):
        for name, tensor in (attrs.get(kind) or {}).items():
            if tensor is not None and name not in attrs.get('_non_persistent_buffers_set', ()):
                state[prefix + name] = tensor.detach()
    for name, child in (attrs.get('_modules') or {}).items():
        if child is not None:
            state.update(_module_tree_state(child, f'{prefix}{name}.'))
    return state


def load_dalle_encoder_state(path: str) -> Dict[str, torch.Tensor]:
    """Encoder weights from OpenAI's ``encoder.pkl`` or mmpretrain's ``dalle_encoder.pth``.

    ``encoder.pkl`` pickles a whole ``dall_e.encoder.Encoder``; it is read with
    ``weights_only=False`` (trusted file the user chose) and ``dall_e`` classes replaced by
    stand-ins, so the ``dall_e`` package need not be installed. Keys come out as
    ``blocks.input.w``, ``blocks.group_1.block_1.res_path.conv_1.w``, ... which is the
    layout of mmpretrain's ``DALL-E`` encoder. Prefixes (``target_generator.``, ``encoder.``)
    of converted files are stripped.

    Args:
        path (str): The local file.

    Returns:
        dict[str, Tensor]: The state dict.
    """
    try:
        obj = torch.load(path, map_location='cpu', weights_only=False,
                         pickle_module=_stand_in_pickle_module())
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f'DALL-E encoder weights {path!r} not found. Get OpenAI\'s encoder.pkl '
            '(https://cdn.openai.com/dall-e/encoder.pkl) or mmpretrain\'s dalle_encoder.pth '
            'and set model.target_generator.checkpoint (or DALLETokenizer.weights) to it') from err
    except UNREADABLE_ERRORS as err:
        raise unreadable_checkpoint(path, err) from err
    if isinstance(obj, dict):
        for key in ('state_dict', 'model'):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
        state = dict(obj)
    else:
        state = _module_tree_state(obj)
    if any(k.startswith('target_generator.') for k in state):  # a MIM run's checkpoint
        state = {k[len('target_generator.'):]: v for k, v in state.items()
                 if k.startswith('target_generator.')}
    for prefix in ('module.', 'encoder.'):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


@MODELS.register_module()
class DALLETokenizer(BaseModule):
    """Frozen DALL-E dVAE encoder producing BEiT v1 visual tokens.

    Args:
        weights (str, optional): Local ``encoder.pkl`` or ``dalle_encoder.pth``. None: random
            weights (tests, demos). :class:`BEiTMIM` can also load a state dict through
            ``model.target_generator.checkpoint``.
        apply_map_pixels (bool): Apply :func:`map_pixels` to the input (inputs in [0, 1]).
            False (default) when ``TwoNormDataPreprocessor`` already maps the second view
            with ``DALLE_SECOND_MEAN``/``DALLE_SECOND_STD``.
        group_count (int): Group count of the residual gain (4 official). mmpretrain's
            encoder always has 4 groups (8x downsampling, widths n_hid x 1/2/4/8); this only
            sets the residual gain ``1 / (group_count * n_blk_per_group) ** 2``.
        n_hid (int): Hidden width (256 official).
        n_blk_per_group (int): Residual blocks per group (2 official).
        vocab_size (int): Number of visual tokens (8192 official).
        use_float16 (bool): Run the hidden convolutions in float16 on CUDA, as OpenAI's
            encoder does (the output conv stays float32). Defaults to True.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 weights: Optional[str] = None,
                 apply_map_pixels: bool = False,
                 group_count: int = 4,
                 n_hid: int = 256,
                 n_blk_per_group: int = 2,
                 vocab_size: int = 8192,
                 use_float16: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.encoder = DALLEEncoder(
            group_count=group_count,
            n_hid=n_hid,
            n_blk_per_group=n_blk_per_group,
            vocab_size=vocab_size)
        if not use_float16:
            for m in self.encoder.modules():
                if hasattr(m, 'use_float16'):
                    m.use_float16 = False
        self.apply_map_pixels = apply_map_pixels
        self.vocab_size = vocab_size
        self.downsample = 8
        # frozen on its own too (mmpretrain's DALL-E convolutions make trainable parameters)
        self.requires_grad_(False)
        if weights:
            self.load_weights(weights)

    def load_weights(self, path: str) -> None:
        """Load the encoder from ``path``; missing or unexpected keys raise."""
        state = load_dalle_encoder_state(path)
        own = self.encoder.state_dict()
        resized = [f'{k} {tuple(v.shape)} vs {tuple(own[k].shape)}' for k, v in state.items()
                   if k in own and tuple(v.shape) != tuple(own[k].shape)]
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected or resized:  # load_state_dict would raise without the path
            raise KeyError(
                f'DALL-E weights {path!r} do not fit DALLETokenizer(group_count, n_hid, '
                f'n_blk_per_group, vocab_size): missing {missing[:6]}, unexpected '
                f'{unexpected[:6]}, other shapes (file vs model) {resized[:4]}')
        self.encoder.load_state_dict(state)
        self.is_init = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Token logits ``(B, vocab_size, H/8, W/8)``."""
        if self.apply_map_pixels:
            x = map_pixels(x.float())
        with torch.autocast(x.device.type, enabled=False):
            return self.encoder(x.float())

    @torch.no_grad()
    def get_codebook_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids ``(B, H/8 * W/8)``: argmax of the logits, as BEiT v1."""
        return self.forward(x).argmax(dim=1).flatten(1)
