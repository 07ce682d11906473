"""Any mmpretrain model's ViT backbone as teacher, at a chosen layer."""
from __future__ import annotations

import os
from typing import Optional, Sequence

import torch

from mmpretrain.registry import MODELS

from ..tokenizers.checkpoint import load_tokenizer_checkpoint
from .base import IMAGENET_MEAN, IMAGENET_STD, BaseTeacher


def _preprocessor(cfg) -> dict:
    return cfg.model.get('data_preprocessor', None) or cfg.get('data_preprocessor', None) or {}


def _trained_on_bgr(cfg) -> bool:
    """Whether the model saw BGR images: mmpretrain loads images as BGR (OpenCV) and its data
    preprocessors keep that order unless ``to_rgb`` (``bgr_to_rgb``) is set."""
    pre = _preprocessor(cfg)
    return bool(pre) and not (pre.get('to_rgb') or pre.get('bgr_to_rgb'))


def _preprocessor_mean_std(cfg):
    """Mean/std (in [0, 1] units) from the config's data preprocessor, else ImageNet's."""
    pre = _preprocessor(cfg)
    mean, std = pre.get('mean'), pre.get('std')
    if mean is None or std is None:
        return IMAGENET_MEAN, IMAGENET_STD
    scale = 255.0 if max(mean) > 1.0 else 1.0
    return tuple(m / scale for m in mean), tuple(s / scale for s in std)


@MODELS.register_module()
class MMPretrainTeacher(BaseTeacher):
    """The backbone of an mmpretrain model (config + checkpoint) as feature teacher.

    The model is built from its config without its head and loaded from ``checkpoint`` (an
    mmengine checkpoint with ``backbone.*``/``head.*`` keys, or a raw backbone state dict);
    only the backbone is kept. Its ``out_indices`` is set to ``layer`` and its output to
    ``featmap``, so the target is the patch tokens of that layer (after the final norm when
    ``layer`` is the last one and the backbone has ``final_norm``). Input mean/std and channel
    order come from the config's data preprocessor: the teacher gets RGB images (the VQ-KD
    data preprocessor converts), and reverses them when that preprocessor has no ``to_rgb``
    (a model trained on mmpretrain's BGR loading).

    Args:
        config (str): Path of the mmpretrain config (config key ``model.teacher.config``).
        checkpoint (str): Weights file (config key ``model.teacher.checkpoint``).
        layer (int): Backbone layer whose patch tokens are the target; -1 = last.
            Defaults to -1.
        **kwargs: ``input_range``, ``allow_random_weights`` of :class:`BaseTeacher`.
    """

    WEIGHTS_SOURCE = ('a checkpoint of the model in `model.teacher.config`, e.g. the demo '
                      'teacher written by `python tools/train.py '
                      'configs/demo/teacher_vit-tiny_synthetic.py`')

    def __init__(self,
                 config: Optional[str] = None,
                 checkpoint: Optional[str] = None,
                 layer: int = -1,
                 input_range: Sequence[float] = (0, 255),
                 allow_random_weights: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        from mmengine.config import Config

        if config is None or not os.path.isfile(config):
            raise FileNotFoundError(
                f'MMPretrainTeacher: teacher config {config} does not exist; set '
                f'`model.teacher.config` to an mmpretrain config file (e.g. '
                f'configs/demo/teacher_vit-tiny_synthetic.py)')
        cfg = Config.fromfile(config)
        mean, std = _preprocessor_mean_std(cfg)
        super().__init__(checkpoint=checkpoint, input_range=input_range, mean=mean, std=std,
                         allow_random_weights=allow_random_weights, init_cfg=init_cfg)
        path = self._check_checkpoint()
        model_cfg = cfg.model.copy()
        model_cfg.pop('data_preprocessor', None)
        model_cfg.pop('init_cfg', None)
        # Only the backbone teaches: the classifier head (and its batch augments) is not
        # built, so a checkpoint trained for another class count than the config file says
        # (e.g. the suite's teacher on a real root, its heads set by --cfg-options) loads; the
        # checkpoint's head.* keys are reported as not loaded.
        if 'head' in model_cfg:
            model_cfg['head'] = None
        model_cfg.pop('train_cfg', None)
        model_cfg.get('backbone', {}).pop('init_cfg', None)
        model = MODELS.build(model_cfg)
        if path is not None:
            load_tokenizer_checkpoint(model, path,
                                      prefix_candidates=('', 'teacher.model.', 'module.'))
        backbone = model.backbone if hasattr(model, 'backbone') else model
        if not hasattr(backbone, 'layers') or not hasattr(backbone, 'out_indices'):
            raise TypeError(f'MMPretrainTeacher: {type(backbone).__name__} from {config} is '
                            f'not a ViT with `layers`/`out_indices`')
        num_layers = len(backbone.layers)
        index = layer if layer >= 0 else num_layers + layer
        if not 0 <= index < num_layers:
            raise ValueError(f'MMPretrainTeacher: layer {layer} out of range for a '
                             f'{num_layers}-layer backbone ({config})')
        backbone.out_indices = [index]
        backbone.out_type = 'featmap'
        self.config = config
        self.bgr = _trained_on_bgr(cfg)
        self.layer = index
        self.backbone = backbone
        self.out_dim = int(backbone.embed_dims)
        self._finish_init()

    def normalize(self, images: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        # RGB in; the channel order the teacher was trained on out (mean/std are in that order)
        return super().normalize(images.flip(1) if self.bgr else images, clamp=clamp)

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        feat = self.backbone(images)[-1]  # (B, C, h, w)
        return feat.flatten(2).transpose(1, 2)
