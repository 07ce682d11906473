"""Layer-wise learning-rate decay for a BEiT ViT inside a classifier, a segmentor or a detector.

mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` asks the *top-level* model for
``get_layer_depth``. mmpretrain's ``ImageClassifier`` has it; mmseg's ``EncoderDecoder`` and
mmdet's ``MaskRCNN`` do not, so the stock constructor raises ``NotImplementedError`` there (and
mmdet's ViTDet decay, not in the wheel anyway, looks for ``.blocks.`` names while mmpretrain's ViT
uses ``layers.``). :class:`BEiTLayerDecayOptimWrapperConstructor` is the one extension: when the
model has no ``get_layer_depth`` it asks ``model.backbone.get_layer_depth(name, 'backbone.')``
(``BEiTViT`` has it), so every model built around a BEiT ViT gets the official depth rule:

- ``backbone.cls_token``, ``backbone.pos_embed``, ``backbone.patch_embed.*`` -> depth 0;
- ``backbone.layers.N.*`` -> depth N + 1;
- everything else (neck, decode/auxiliary heads, RPN/RoI heads, classifier) -> depth L + 1,

with ``lr = base_lr * decay ** (L + 1 - depth)``: the heads train at the base lr and the patch
embedding at ``decay ** (L + 1)`` of it, as in the official BEiT fine-tuning code.

It is registered in mmengine's root ``OPTIM_WRAPPER_CONSTRUCTORS``, so mmpretrain, mmseg and
mmdet configs all find it as ``constructor='BEiTLayerDecayOptimWrapperConstructor'``.
"""
from __future__ import annotations

from typing import Callable, List, Optional

from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor
from torch import nn


def backbone_layer_depth_fn(model: nn.Module) -> Callable[[str], tuple]:
    """The ``get_layer_depth(param_name)`` function for ``model``.

    Args:
        model (nn.Module): A classifier, segmentor or detector with a ``backbone`` attribute.

    Returns:
        callable: ``param_name -> (layer_depth, num_depths)``.

    Raises:
        NotImplementedError: naming the model when neither it nor its backbone defines depths.
    """
    if hasattr(model, 'get_layer_depth'):
        return model.get_layer_depth
    backbone = getattr(model, 'backbone', None)
    if backbone is not None and hasattr(backbone, 'get_layer_depth'):
        return lambda name: backbone.get_layer_depth(name, prefix='backbone.')
    raise NotImplementedError(
        f'layer-wise lr decay needs a model with get_layer_depth or a backbone with '
        f'get_layer_depth(name, prefix) (mmpretrain BEiTViT/VisionTransformer have it); '
        f'{type(model).__name__} with backbone {type(backbone).__name__} has neither')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class BEiTLayerDecayOptimWrapperConstructor(LearningRateDecayOptimWrapperConstructor):
    """``LearningRateDecayOptimWrapperConstructor`` that also works inside mmseg/mmdet models.

    Same ``paramwise_cfg`` as the parent (``layer_decay_rate``, ``norm_decay_mult``,
    ``bias_decay_mult``, ``flat_decay_mult``, ``custom_keys`` with ``decay_mult``).
    """

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   get_layer_depth: Optional[Callable] = None, **kwargs) -> None:
        if prefix == '' and get_layer_depth is None:
            get_layer_depth = backbone_layer_depth_fn(module)
        super().add_params(params, module, prefix=prefix, get_layer_depth=get_layer_depth,
                           **kwargs)
