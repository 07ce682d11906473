"""VQ-KD tokenizer training (BEiT v2) as an mmpretrain self-supervised algorithm."""
from __future__ import annotations

from typing import Dict, List, Optional, Union

import torch
import torch.nn.functional as F

from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

TEACHER_ATTR = 'teacher'


def cosine_distillation_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean(1 - cos(features, target)) over all tokens (official ``calculate_rec_loss``)."""
    features = F.normalize(features.float(), p=2, dim=-1)
    target = F.normalize(target.float(), p=2, dim=-1)
    return (1.0 - (features * target).sum(-1)).mean()


def _drop_teacher_from_state_dict(module, state_dict, prefix, local_metadata):
    """State-dict hook: the frozen teacher is rebuilt from its own checkpoint, not saved."""
    for key in [k for k in state_dict if k.startswith(prefix + TEACHER_ATTR + '.')]:
        del state_dict[key]
    return state_dict


def _ignore_missing_teacher(module, incompatible_keys) -> None:
    """Load post-hook: teacher keys are absent from our checkpoints by design."""
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing
                  if not (k.startswith(TEACHER_ATTR + '.') or f'.{TEACHER_ATTR}.' in k)]


@MODELS.register_module()
class VQKDAlgorithm(BaseSelfSupervisor):
    """Train a :class:`VQKDTokenizer` to regress a frozen teacher's patch features.

    loss = ``loss_cos`` (mean over tokens of 1 - cos(decoder output, teacher target)) +
    ``loss_commit`` (commitment MSE between l2-normalised encoder outputs and their codes),
    with the straight-through estimator through the quantizer, as the official
    ``VQKD.forward``. The codebook is learnt by EMA inside the quantizer (all-reduced across
    ranks), not by the optimizer.

    The teacher is built from its own config (loading its own local checkpoint), has
    ``requires_grad=False``, stays in eval mode when the runner calls ``train()``, and is
    left out of this module's state dict: checkpoints hold ``tokenizer.*`` only (plus the
    optimizer etc.), so they are small and resume works by rebuilding the teacher from its
    file. Loading a checkpoint does not report the teacher keys as missing.

    The images reach both the tokenizer and the teacher unnormalised (the data preprocessor
    has no mean/std, only BGR->RGB): each applies its own official normalisation.

    Args:
        tokenizer (dict): Config of the tokenizer (e.g. ``VQKDTokenizer``).
        teacher (dict): Config of the teacher (``OpenCLIPTeacher``, ``TimmTeacher``,
            ``MMPretrainTeacher``); its ``out_dim`` must equal the tokenizer's
            ``target_dim``.
        data_preprocessor (dict, optional): Defaults to ``SelfSupDataPreprocessor`` without
            normalisation (0..255 RGB floats).
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self,
                 tokenizer: dict,
                 teacher: dict,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='SelfSupDataPreprocessor', to_rgb=True)
        # BaseSelfSupervisor needs a ``backbone``: the tokenizer is built through it, then
        # kept under the name checkpoints use (``tokenizer.*``).
        super().__init__(backbone=tokenizer, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        tokenizer_module = self.backbone
        del self.backbone
        self.tokenizer = tokenizer_module
        if getattr(self.tokenizer, 'decoder', None) is None:
            raise ValueError('VQKDAlgorithm: model.tokenizer has decoder=None; training needs '
                             'a decoder config')
        self.teacher = MODELS.build(teacher)
        if self.teacher.out_dim != self.tokenizer.target_dim:
            raise ValueError(
                f'VQKDAlgorithm: teacher {type(self.teacher).__name__} gives {self.teacher.out_dim}'
                f'-d features but model.tokenizer.target_dim={self.tokenizer.target_dim}; '
                f'set model.tokenizer.target_dim={self.teacher.out_dim}')
        if tuple(self.teacher.input_range) != tuple(self.tokenizer.input_range):
            raise ValueError(f'VQKDAlgorithm: model.teacher.input_range '
                             f'{self.teacher.input_range} differs from model.tokenizer.'
                             f'input_range {self.tokenizer.input_range}; they see the same '
                             f'images')
        self._register_state_dict_hook(_drop_teacher_from_state_dict)
        self.register_load_state_dict_post_hook(_ignore_missing_teacher)

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # also enforced by BaseTeacher.train
        return self

    def extract_feat(self, inputs: torch.Tensor):
        """Code indices (B, H/P, W/P) of the images (``mode='tensor'``)."""
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return self.tokenizer.encode(inputs)

    def loss(self, inputs: Union[torch.Tensor, List[torch.Tensor]],
             data_samples: List[DataSample], **kwargs) -> Dict[str, torch.Tensor]:
        """Cosine distillation + commitment losses on a batch of images."""
        images = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        with torch.no_grad():
            target = self.teacher(images)
        out = self.tokenizer.reconstruct(images)
        if target.shape[:2] != out.features.shape[:2]:
            raise RuntimeError(
                f'VQKDAlgorithm: teacher gives {target.shape[1]} patch tokens, the tokenizer '
                f'{out.features.shape[1]}; the teacher and tokenizer must see the same patch '
                f'grid (same patch size and input size)')
        return dict(loss_cos=cosine_distillation_loss(out.features, target),
                    loss_commit=out.commit_loss)
