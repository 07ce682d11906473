"""PeCo tokenizer training: a VQ-VAE with pixel, commitment and perceptual losses.

``loss = pixel_loss(x, x_rec) + commit_weight * commitment + perceptual_weight * perceptual``

* pixel loss: mean squared error by default. PeCo's objective extends the VQ-VAE loss, whose
  reconstruction term is the squared L2 error; L1 (what VQGAN's code uses) is an option
  (``pixel_loss='l1'``). The codebook itself is learned by EMA, so there is no codebook term.
* commitment: ``||z - sg(q(z))||^2`` from the quantizer (straight-through estimator).
* perceptual: for each chosen layer ``l`` of a frozen teacher, the per-token features of the
  input and of the reconstruction are l2-normalised over channels (as in LPIPS and PeCo) and
  their squared distance is summed over channels and averaged over tokens; the layer terms are
  summed. Gradients reach the VQ-VAE through the teacher's activations on the reconstruction;
  the teacher's weights get none. Default layers 3/6/9/12 of a self-supervised ViT-B and
  ``perceptual_weight = 1``, as in PeCo.

``perceptual_weight = 0`` (and no teacher) gives a pure pixel VQ-VAE: BEiT v1's idea of
pixel-level visual tokens.

Per-layer teacher features are taken with forward hooks on the teacher's transformer blocks
(the ``nn.ModuleList`` named ``blocks``/``layers``/``resblocks``, or the one at
``teacher_blocks``), so any teacher of :mod:`beitv2_mm.teachers` (which return only their last
layer) or any ViT-like module works unchanged. With a :class:`~beitv2_mm.teachers.base.BaseTeacher`
the algorithm calls ``teacher.extract(teacher.normalize(x, clamp=False))`` instead of
``teacher(x)``, because the teachers' ``forward`` runs under ``no_grad`` and the perceptual term
needs gradients with respect to the reconstruction; the teacher must be built with
``input_range=(-1, 1)``, the tokenizer's input space. The reconstruction is not clamped to that
range (``teacher(x)`` would): pixels it overshoots keep their perceptual gradient, as with
VQGAN's LPIPS on the raw decoder output.

The teacher is kept OUT of the module tree (not a child module): it is never in
``model.parameters()`` (so never in the optimizer, nor wrapped by DDP), never in the saved
state dict, and ``model.train()`` cannot switch it out of eval mode. It follows the inputs'
device on first use.
"""
from __future__ import annotations

from functools import partial
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample


def perceptual_distance(feats_a: Sequence[torch.Tensor],
                        feats_b: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over layers of the mean over tokens of ``||n(a) - n(b)||^2`` (n: l2 over channels).

    Args:
        feats_a (Sequence[Tensor]): Per-layer features, each (B, N, C) tokens-last or
            (B, C, H, W) channels-first feature maps.
        feats_b (Sequence[Tensor]): The same layers for the other images.

    Returns:
        Tensor: scalar, 0 for identical features, at most 4 per layer.
    """
    if len(feats_a) != len(feats_b) or not feats_a:
        raise ValueError(f'perceptual_distance: got {len(feats_a)} and {len(feats_b)} layers')
    total = feats_a[0].new_zeros((), dtype=torch.float32)
    for a, b in zip(feats_a, feats_b):
        channel_dim = 1 if a.dim() == 4 else -1
        a = F.normalize(a.float(), dim=channel_dim, eps=1e-10)
        b = F.normalize(b.float(), dim=channel_dim, eps=1e-10)
        total = total + (a - b).pow(2).sum(dim=channel_dim).mean()
    return total


def find_transformer_blocks(teacher: nn.Module,
                            path: Optional[str] = None) -> Union[nn.ModuleList, nn.Sequential]:
    """The teacher's list of transformer blocks.

    Args:
        teacher (nn.Module): The teacher.
        path (str, optional): Dotted attribute path of the list (e.g. ``'model.blocks'``).
            If None, the ``nn.ModuleList``/``nn.Sequential`` named ``blocks``, ``layers`` or
            ``resblocks`` (timm, mmpretrain, open_clip) nearest to the root is taken (the
            longest one among equals), so an FFN's inner ``layers`` is never chosen.

    Returns:
        nn.ModuleList | nn.Sequential: The blocks, in depth order.
    """
    containers = (nn.ModuleList, nn.Sequential)
    if path is not None:
        module = teacher
        for name in path.split('.'):
            if not hasattr(module, name):
                raise AttributeError(f'PeCoVQVAETrainer: teacher has no {path!r} '
                                     f'(model.teacher_blocks); missing {name!r}')
            module = getattr(module, name)
        if not isinstance(module, containers):
            raise TypeError(f'PeCoVQVAETrainer: teacher.{path} is a {type(module).__name__}, '
                            f'not an nn.ModuleList/nn.Sequential of blocks (model.teacher_blocks)')
        return module
    candidates = [(name.count('.'), -len(m), name, m) for name, m in teacher.named_modules()
                  if isinstance(m, containers)
                  and name.rsplit('.', 1)[-1] in ('blocks', 'layers', 'resblocks')]
    if not candidates:
        raise ValueError(f'PeCoVQVAETrainer: found no ModuleList named blocks/layers/resblocks '
                         f'in the teacher {type(teacher).__name__}; set model.teacher_blocks')
    return min(candidates, key=lambda c: c[:3])[3]


@MODELS.register_module()
class PeCoVQVAETrainer(BaseSelfSupervisor):
    """Trains a :class:`~beitv2_mm.tokenizers.peco.PeCoVQVAE` (PeCo, or BEiT v1-style pixels).

    The tokenizer is the attribute ``tokenizer``, so checkpoints hold ``tokenizer.*`` keys,
    which :class:`PeCoVQVAE` (``checkpoint=``) reads back for MIM.

    Args:
        tokenizer (dict): Config of the VQ-VAE (``type='PeCoVQVAE'``).
        teacher (dict, optional): Config of a frozen teacher from the teachers registry, with
            ``input_range=(-1, 1)`` (e.g. ``MMPretrainTeacher``, ``TimmTeacher``). Required when
            ``perceptual_weight > 0``, forbidden when it is 0.
        perceptual_weight (float): lambda. Defaults to 1.0 (PeCo).
        perceptual_layers (Sequence[int]): 1-based teacher blocks whose outputs are compared.
            Defaults to (3, 6, 9, 12).
        teacher_blocks (str, optional): Dotted path of the teacher's block ``ModuleList``
            (e.g. ``'model.blocks'``). Defaults to None: found by name.
        pixel_loss (str): ``'mse'`` (default) or ``'l1'``.
        commit_weight (float): Weight of the commitment loss. Defaults to 1.0.
        data_preprocessor (dict, optional): Must map pixels to [-1, 1] (mean = std = 127.5),
            the tokenizer's input space.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self,
                 tokenizer: dict,
                 teacher: Optional[dict] = None,
                 perceptual_weight: float = 1.0,
                 perceptual_layers: Sequence[int] = (3, 6, 9, 12),
                 teacher_blocks: Optional[str] = None,
                 pixel_loss: str = 'mse',
                 commit_weight: float = 1.0,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None):
        # The tokenizer replaces the backbone; an empty Identity keeps the base class happy
        # and adds no keys to the state dict.
        super().__init__(backbone=nn.Identity(), data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        if pixel_loss not in ('mse', 'l1'):
            raise ValueError(f"PeCoVQVAETrainer: pixel_loss must be 'mse' or 'l1', got "
                             f'{pixel_loss!r}')
        if perceptual_weight < 0:
            raise ValueError(f'PeCoVQVAETrainer: perceptual_weight must be >= 0, got '
                             f'{perceptual_weight}')
        if perceptual_weight > 0 and teacher is None:
            raise ValueError(
                'PeCoVQVAETrainer: perceptual_weight > 0 needs a teacher; set model.teacher '
                '(e.g. dict(type=\'MMPretrainTeacher\', config=..., checkpoint=...)) or set '
                'model.perceptual_weight=0 for a pure pixel VQ-VAE')
        if perceptual_weight == 0 and teacher is not None:
            raise ValueError(
                'PeCoVQVAETrainer: perceptual_weight=0 (pixel VQ-VAE) but model.teacher is set; '
                'remove model.teacher (it would be built and never used)')
        self.tokenizer = tokenizer if isinstance(tokenizer, nn.Module) else MODELS.build(tokenizer)
        self.pixel_loss = pixel_loss
        self.commit_weight = commit_weight
        self.perceptual_weight = perceptual_weight
        self.perceptual_layers = tuple(int(layer) for layer in perceptual_layers)
        # plain lists keep the teacher and its blocks outside the module tree (module docstring)
        self._teacher_holder: List[nn.Module] = []
        self._teacher_blocks: List[nn.ModuleList] = []
        if teacher is not None:
            if isinstance(teacher, dict):
                teacher = MODELS.build(teacher)
            input_range = getattr(teacher, 'input_range', None)
            if input_range is not None and tuple(map(float, input_range)) != (-1.0, 1.0):
                raise ValueError(
                    f'PeCoVQVAETrainer: the teacher takes images in {tuple(input_range)}, but the '
                    f'VQ-VAE works in [-1, 1]; set model.teacher.input_range=(-1, 1)')
            teacher.requires_grad_(False)
            teacher.eval()
            blocks = find_transformer_blocks(teacher, teacher_blocks)
            if not self.perceptual_layers or min(self.perceptual_layers) < 1 or \
                    max(self.perceptual_layers) > len(blocks):
                raise ValueError(
                    f'PeCoVQVAETrainer: perceptual_layers={self.perceptual_layers} must be '
                    f'1-based indices of the teacher\'s {len(blocks)} blocks; fix '
                    f'model.perceptual_layers')
            self._teacher_holder.append(teacher)
            self._teacher_blocks.append(blocks)

    @property
    def teacher(self) -> Optional[nn.Module]:
        """The frozen teacher (None for a pixel VQ-VAE)."""
        return self._teacher_holder[0] if self._teacher_holder else None

    def extract_feat(self, inputs: Union[torch.Tensor, List[torch.Tensor]]) -> torch.Tensor:
        """Code indices (B, h, w) of the images (of the first view for a list)."""
        images = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        return self.tokenizer.encode(images)

    def teacher_features(self, images: torch.Tensor) -> List[torch.Tensor]:
        """Per-layer teacher features of images in the tokenizer's [-1, 1] space.

        Gradients flow to ``images`` (not to the teacher's weights) when grad mode is on.
        """
        teacher = self.teacher
        if teacher is None:
            raise RuntimeError('PeCoVQVAETrainer has no teacher (perceptual_weight=0)')
        first = next(teacher.parameters(), None)
        if first is not None and first.device != images.device:
            teacher.to(images.device)
        if teacher.training:  # someone called teacher.train(): frozen teachers stay in eval
            teacher.eval()
        captured: Dict[int, torch.Tensor] = {}

        def keep(layer: int, module: nn.Module, args, output) -> None:
            captured[layer] = output[0] if isinstance(output, (tuple, list)) else output

        blocks = self._teacher_blocks[0]
        handles = [blocks[layer - 1].register_forward_hook(partial(keep, layer))
                   for layer in self.perceptual_layers]
        try:
            if hasattr(teacher, 'extract') and hasattr(teacher, 'normalize'):
                # BaseTeacher: forward is no_grad. No clamp: a reconstruction that overshoots
                # [-1, 1] keeps its perceptual gradient (as VQGAN's LPIPS on the raw output)
                teacher.extract(teacher.normalize(images, clamp=False))
            else:
                teacher(images)
        finally:
            for handle in handles:
                handle.remove()
        return [captured[layer] for layer in self.perceptual_layers]

    def perceptual_loss(self, images: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """Perceptual distance between ``images`` (no grad) and ``recon`` (with grad)."""
        with torch.no_grad():
            target = [f.detach() for f in self.teacher_features(images)]
        return perceptual_distance(self.teacher_features(recon), target)

    def loss(self, inputs: Union[torch.Tensor, List[torch.Tensor]],
             data_samples: Optional[List[DataSample]] = None,
             **kwargs) -> Dict[str, torch.Tensor]:
        """Losses of one batch.

        Args:
            inputs (Tensor | list[Tensor]): Images (B, 3, H, W) in [-1, 1]; of a list (as
                ``SelfSupDataPreprocessor`` gives) the first view is used.
            data_samples (list[DataSample], optional): Unused.

        Returns:
            dict[str, Tensor]: ``loss_pixel``, ``loss_commit``, ``loss_perceptual`` (only when
            ``perceptual_weight > 0``) and, logged only, ``codebook_usage``: the fraction of
            the K codes hit in this batch.
        """
        images = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        recon, commit_loss, indices = self.tokenizer.reconstruct(images)
        recon_f, images_f = recon.float(), images.float()
        if self.pixel_loss == 'mse':
            pixel = F.mse_loss(recon_f, images_f)
        else:
            pixel = F.l1_loss(recon_f, images_f)
        losses = dict(loss_pixel=pixel, loss_commit=self.commit_weight * commit_loss)
        if self.perceptual_weight > 0:
            losses['loss_perceptual'] = self.perceptual_weight * self.perceptual_loss(
                images, recon)
        with torch.no_grad():
            used = torch.zeros(self.tokenizer.num_embed, device=indices.device)
            used[indices.flatten()] = 1.0
            losses['codebook_usage'] = used.mean()
        return losses
