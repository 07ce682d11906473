"""CLIP teacher through open_clip: last-layer patch tokens after ``ln_post`` times ``visual.proj``."""
from __future__ import annotations

import copy
from typing import Optional, Sequence

import torch

from mmpretrain.registry import MODELS

from ..tokenizers.checkpoint import load_tokenizer_checkpoint, read_state_dict
from .base import CLIP_MEAN, CLIP_STD, BaseTeacher


@MODELS.register_module()
class OpenCLIPTeacher(BaseTeacher):
    """CLIP image tower (open_clip) as VQ-KD teacher, as the official BEiT v2 CLIP teacher.

    Target = ``ln_post(tokens)[:, 1:] @ visual.proj`` of the last layer (512-d for
    ViT-B/16), inputs normalised with CLIP's mean/std. Only the image tower is built, with
    random weights from the open_clip model name or config (nothing is downloaded), then the
    local checkpoint is loaded: a full open_clip/OpenAI CLIP state dict (``visual.*`` keys;
    OpenAI's TorchScript ``ViT-B-16.pt`` works) or the image tower's own state dict.

    Args:
        model_name (str): open_clip model name. The official teacher is OpenAI's ViT-B/16,
            which uses QuickGELU: ``'ViT-B-16-quickgelu'`` (``'ViT-B-16'`` has plain GELU).
            Defaults to 'ViT-B-16-quickgelu'.
        model_cfg (dict, optional): An open_clip model config (``embed_dim``, ``vision_cfg``,
            optionally ``quick_gelu``) used instead of ``model_name`` (tiny test models).
        checkpoint (str): Local weights file (config key ``model.teacher.checkpoint``).
        **kwargs: ``input_range``, ``allow_random_weights`` of :class:`BaseTeacher`.
    """

    WEIGHTS_SOURCE = ('OpenAI CLIP ViT-B/16: https://openaipublic.azureedge.net/clip/models/'
                      '5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/'
                      'ViT-B-16.pt, or open_clip `openai` weights via '
                      'open_clip.create_model_and_transforms(..., pretrained="openai") on a '
                      'machine with network, saved with torch.save(model.state_dict())')

    def __init__(self,
                 model_name: str = 'ViT-B-16-quickgelu',
                 model_cfg: Optional[dict] = None,
                 checkpoint: Optional[str] = None,
                 input_range: Sequence[float] = (0, 255),
                 allow_random_weights: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(checkpoint=checkpoint, input_range=input_range, mean=CLIP_MEAN,
                         std=CLIP_STD, allow_random_weights=allow_random_weights,
                         init_cfg=init_cfg)
        path = self._check_checkpoint()  # fail before building a big model
        import open_clip
        from open_clip.model import _build_vision_tower

        if model_cfg is None:
            model_cfg = open_clip.get_model_config(model_name)
            if model_cfg is None:
                raise KeyError(f'OpenCLIPTeacher: unknown open_clip model {model_name!r}; '
                               f'known: {open_clip.list_models()}')
            quick_gelu = model_name.endswith('-quickgelu') or model_cfg.get('quick_gelu', False)
        else:
            model_cfg = copy.deepcopy(dict(model_cfg))
            quick_gelu = model_cfg.get('quick_gelu', False)
        self.model_name = model_name
        self.visual = _build_vision_tower(model_cfg['embed_dim'], model_cfg['vision_cfg'],
                                          quick_gelu=quick_gelu)
        if getattr(self.visual, 'attn_pool', None) is not None or \
                getattr(self.visual, 'final_ln_after_pool', False) or \
                getattr(self.visual, 'proj', None) is None:
            raise NotImplementedError(
                f'OpenCLIPTeacher: {model_name} has attentional pooling, ln after pool or '
                f'no projection; the BEiT v2 target (ln_post tokens @ proj) is undefined')
        self.visual.output_tokens = True
        self.out_dim = int(self.visual.proj.shape[1])
        if path is not None:
            sd = read_state_dict(path)
            load_tokenizer_checkpoint(self.visual, path,
                                      prefix_candidates=('visual.', 'teacher.visual.',
                                                         'module.visual.', ''),
                                      state_dict=sd)
        self._finish_init()

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        _, tokens = self.visual(images)  # ln_post(x)[:, 1:]
        return tokens @ self.visual.proj
