"""Common base of the frozen feature teachers used to train tokenizers (VQ-KD, PeCo)."""
from __future__ import annotations

import os
from typing import Optional, Sequence

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
INPUT_RANGES = ((0, 255), (0, 1), (-1, 1))


class MissingTeacherWeightsError(FileNotFoundError):
    """A teacher's weights file is absent: the message says what to fetch and where to set it."""


class BaseTeacher(BaseModule):
    """A frozen feature extractor: images -> per-patch features (B, N, C).

    Subclasses build their network in ``__init__`` (random weights, nothing downloaded), then
    call :meth:`_finish_init` which loads the local checkpoint, freezes every parameter and
    switches to eval mode. ``train()`` never leaves eval mode. ``forward`` runs under
    ``torch.no_grad()`` and inside whatever autocast context the caller set.

    Input normalisation is done here: images arrive in ``input_range`` and are mapped to
    [0, 1], clamped (as the official ``ScalingLayerForClip``/``ScalingLayerForIM``), then
    normalised with the teacher's own ``mean``/``std``.

    Args:
        checkpoint (str, optional): Local weights file.
        input_range (tuple): Range of the input images: (0, 255), (0, 1) or (-1, 1).
            Defaults to (0, 255).
        mean (tuple): Per-channel mean in [0, 1] units.
        std (tuple): Per-channel std in [0, 1] units.
        allow_random_weights (bool): Accept ``checkpoint=None`` and keep random weights (for
            smoke tests of full-size configs only). Defaults to False.
        init_cfg (dict, optional): Unused; teachers are never re-initialised.
    """

    #: where the official weights come from (subclasses fill it for the error message)
    WEIGHTS_SOURCE = ''

    def __init__(self,
                 checkpoint: Optional[str] = None,
                 input_range: Sequence[float] = (0, 255),
                 mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD,
                 allow_random_weights: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        rng = tuple(float(v) for v in input_range)
        if rng not in [tuple(map(float, r)) for r in INPUT_RANGES]:
            raise ValueError(f'{type(self).__name__}: input_range must be one of '
                             f'{INPUT_RANGES}, got {input_range}')
        self.input_range = rng
        self.checkpoint = checkpoint
        self.allow_random_weights = allow_random_weights
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.out_dim: int = 0

    # ------------------------------------------------------------------ checkpoint
    def _check_checkpoint(self) -> Optional[str]:
        """The checkpoint path, or None when random weights were explicitly allowed."""
        if self.checkpoint is None:
            if self.allow_random_weights:
                print_log(f'{type(self).__name__}: no checkpoint, RANDOM teacher weights '
                          f'(allow_random_weights=True): for smoke tests only',
                          logger='current', level=30)
                return None
            raise MissingTeacherWeightsError(self._missing_message('<not set>'))
        if not os.path.isfile(self.checkpoint):
            raise MissingTeacherWeightsError(self._missing_message(self.checkpoint))
        return self.checkpoint

    def _missing_message(self, path: str) -> str:
        return (f'{type(self).__name__}: teacher weights file {path} does not exist. '
                f'Nothing is downloaded at run time: fetch the weights yourself '
                f'({self.WEIGHTS_SOURCE}) and set the config key `model.teacher.checkpoint` '
                f'(e.g. --cfg-options model.teacher.checkpoint=/path/to/file).')

    def _finish_init(self) -> None:
        """Freeze, switch to eval and mark initialised (``init_weights`` must not touch it)."""
        self.requires_grad_(False)
        self.eval()
        self._is_init = True

    def init_weights(self) -> None:
        """Teachers keep the weights loaded at construction."""

    def train(self, mode: bool = True):
        """Teachers stay in eval mode (dropout off, norm statistics frozen)."""
        return super().train(False)

    # ------------------------------------------------------------------ forward
    def normalize(self, images: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Images in ``input_range`` -> the teacher's normalised input. ``clamp=False`` keeps
        values outside the range (a reconstruction whose overshoot must get a gradient)."""
        low, high = self.input_range
        unit = (images.float() - low) / (high - low)
        if clamp:
            unit = unit.clamp(0.0, 1.0)
        return (unit - self.mean) / self.std

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        """Per-patch features (B, N, C) of normalised images; implemented by subclasses."""
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Per-patch target features (B, N, out_dim) of ``images`` given in ``input_range``."""
        return self.extract(self.normalize(images))
