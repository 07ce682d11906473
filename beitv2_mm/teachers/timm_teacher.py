"""timm ViT teacher (e.g. DINO ViT-B/16): final-norm patch tokens."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from mmpretrain.registry import MODELS

from ..tokenizers.checkpoint import load_tokenizer_checkpoint
from .base import IMAGENET_MEAN, IMAGENET_STD, BaseTeacher


@MODELS.register_module()
class TimmTeacher(BaseTeacher):
    """A timm ViT as teacher; target = ``forward_features`` patch tokens (after the final norm).

    The official DINO teacher of BEiT v2 is DINO's ViT-B/16 with ImageNet mean/std; its
    released ``dino_vitbase16_pretrain.pth`` uses timm's key layout. The model is built with
    random weights (``pretrained=False``, ``num_classes=0``), then the local checkpoint is
    loaded with a per-key report.

    Args:
        model_name (str): timm model name. Defaults to 'vit_base_patch16_224' (DINO ViT-B/16).
        model_kwargs (dict, optional): Extra ``timm.create_model`` arguments (e.g.
            ``img_size``).
        checkpoint (str): Local weights file (config key ``model.teacher.checkpoint``).
        mean (tuple): Input mean in [0, 1] units. Defaults to ImageNet's.
        std (tuple): Input std in [0, 1] units. Defaults to ImageNet's.
        **kwargs: ``input_range``, ``allow_random_weights`` of :class:`BaseTeacher`.
    """

    WEIGHTS_SOURCE = ('DINO ViT-B/16: https://dl.fbaipublicfiles.com/dino/'
                      'dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth')

    def __init__(self,
                 model_name: str = 'vit_base_patch16_224',
                 model_kwargs: Optional[dict] = None,
                 checkpoint: Optional[str] = None,
                 mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD,
                 input_range: Sequence[float] = (0, 255),
                 allow_random_weights: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(checkpoint=checkpoint, input_range=input_range, mean=mean, std=std,
                         allow_random_weights=allow_random_weights, init_cfg=init_cfg)
        path = self._check_checkpoint()
        import timm

        kwargs = dict(model_kwargs or {})
        kwargs.setdefault('num_classes', 0)
        self.model_name = model_name
        self.model = timm.create_model(model_name, pretrained=False, **kwargs)
        self.num_prefix_tokens = int(getattr(self.model, 'num_prefix_tokens', 1))
        self.out_dim = int(self.model.num_features)
        if path is not None:
            load_tokenizer_checkpoint(self.model, path,
                                      prefix_candidates=('', 'teacher.model.', 'module.',
                                                         'backbone.', 'teacher.'))
        self._finish_init()

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.model.forward_features(images)
        return tokens[:, self.num_prefix_tokens:]
