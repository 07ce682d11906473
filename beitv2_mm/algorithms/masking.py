"""Block-wise masking for BEiT-style MIM that masks exactly the configured number of patches.

Two problems with mmpretrain 1.2.0's ``BEiTMaskGenerator``:

1. It draws block corners with ``np.random.randint(0, H - h)`` (exclusive upper bound), where
   the official generator (unilm ``beit2/masking_generator.py``) uses Python's inclusive
   ``random.randint(0, H - h)``: with mmpretrain the last patch row and column are never the
   bottom/right edge of a block, so they are masked far less often than in the official code.
2. It loops ``while mask_count != num_masking_patches`` with no exit: when no block fits the
   few remaining patches it spins.

:class:`BlockwiseMaskGenerator` is the BEiT v2 generator (unilm ``beit2/masking_generator.py``):
blocks sampled as there (same area/aspect distributions, inclusive corners, a round of 10 tries),
block sampling stops at the first round without progress, and the mask is then topped up to
exactly ``num_masking_patches`` with patches drawn uniformly at random, without replacement,
from the unmasked ones (75 of 196, min block 16: 34% of 3000 masks needed a top-up, of 1.6
patches on average and 9 at most). The exact count also lets the MIM loss gather masked tokens
without a host-device sync. BEiT v1's generator (unilm ``beit/masking_generator.py``) instead
returns the fewer patches it has when it stalls; the v1 and PeCo configs here use the v2
generator (exact count), so their masks hold those few extra random patches.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform

from mmpretrain.registry import TRANSFORMS


@TRANSFORMS.register_module()
class BlockwiseMaskGenerator(BaseTransform):
    """Block-wise random mask with an exact masked-patch count (BEiT v1/v2, PeCo).

    **Added Keys**: ``mask`` (np.ndarray of int, shape ``(H, W)``, 1 = masked).

    Args:
        input_size (int | tuple[int, int]): Patch grid size, e.g. 14 for 224 px / 16 px.
        num_masking_patches (int): Exactly this many patches are masked (75 of 196 in BEiT v2).
        min_num_patches (int): Minimum area of one block (16 in BEiT v2). Defaults to 4.
        max_num_patches (int, optional): Maximum area of one block. Defaults to
            ``num_masking_patches``.
        min_aspect (float): Minimum block aspect ratio. Defaults to 0.3.
        max_aspect (float, optional): Maximum aspect ratio. Defaults to ``1 / min_aspect``.
        max_stalled_rounds (int): Block rounds (each of 10 tries, as official) without
            progress before topping up at random. Defaults to 1 (the official code stops at
            the first such round).
    """

    def __init__(self,
                 input_size: Union[int, Tuple[int, int]],
                 num_masking_patches: int,
                 min_num_patches: int = 4,
                 max_num_patches: Optional[int] = None,
                 min_aspect: float = 0.3,
                 max_aspect: Optional[float] = None,
                 max_stalled_rounds: int = 1) -> None:
        if not isinstance(input_size, (tuple, list)):
            input_size = (input_size, input_size)
        self.height, self.width = int(input_size[0]), int(input_size[1])
        self.num_patches = self.height * self.width
        if not 0 < num_masking_patches <= self.num_patches:
            raise ValueError(
                f'BlockwiseMaskGenerator: num_masking_patches={num_masking_patches} must be in '
                f'[1, {self.num_patches}] for a {self.height}x{self.width} patch grid '
                '(fix the mask generator settings in the data pipeline)')
        self.num_masking_patches = int(num_masking_patches)
        self.min_num_patches = min_num_patches
        self.max_num_patches = (num_masking_patches
                                if max_num_patches is None else max_num_patches)
        max_aspect = max_aspect or 1 / min_aspect
        self.log_aspect_ratio = (math.log(min_aspect), math.log(max_aspect))
        self.max_stalled_rounds = max_stalled_rounds

    def _mask_block(self, mask: np.ndarray, max_mask_patches: int) -> int:
        """One official round: up to 10 tries to add a block; returns patches added."""
        for _ in range(10):
            target_area = np.random.uniform(self.min_num_patches, max_mask_patches)
            aspect_ratio = math.exp(np.random.uniform(*self.log_aspect_ratio))
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < self.width and h < self.height:
                # inclusive upper bound, as Python's random.randint in the official code
                top = np.random.randint(0, self.height - h + 1)
                left = np.random.randint(0, self.width - w + 1)
                block = mask[top:top + h, left:left + w]
                new = h * w - int(block.sum())
                if 0 < new <= max_mask_patches:
                    block[...] = 1
                    return new
        return 0

    @staticmethod
    def _top_up(mask: np.ndarray, missing: int) -> None:
        """Mask ``missing`` more patches drawn uniformly from the unmasked ones (official)."""
        unmasked = np.flatnonzero(mask == 0)
        mask.flat[np.random.choice(unmasked, missing, replace=False)] = 1

    def generate(self) -> np.ndarray:
        """A new mask of shape ``(H, W)`` with exactly ``num_masking_patches`` ones."""
        mask = np.zeros((self.height, self.width), dtype=int)
        count, stalled = 0, 0
        while count < self.num_masking_patches and stalled < self.max_stalled_rounds:
            max_mask_patches = min(self.num_masking_patches - count, self.max_num_patches)
            delta = self._mask_block(mask, max_mask_patches)
            count += delta
            stalled = 0 if delta else stalled + 1
        if count < self.num_masking_patches:
            self._top_up(mask, self.num_masking_patches - count)
        return mask

    def transform(self, results: dict) -> dict:
        results['mask'] = self.generate()
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(input_size=({self.height}, {self.width}), '
                f'num_masking_patches={self.num_masking_patches}, '
                f'min_num_patches={self.min_num_patches}, '
                f'max_num_patches={self.max_num_patches}, '
                f'log_aspect_ratio={self.log_aspect_ratio})')
