"""Build models / runners from this project's configs in the right OpenMMLab scope."""
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]


def load_config(rel_path: str, **overrides):
    """``Config.fromfile`` of ``configs/...`` with dotted-key overrides (like --cfg-options)."""
    import beitv2_mm  # noqa: F401
    from mmengine.config import Config

    cfg = Config.fromfile(str(REPO_ROOT / rel_path))
    if overrides:
        cfg.merge_from_dict(overrides)
    return cfg


def scope_registry(scope: str):
    """The MODELS registry of ``scope``, with the default scope set to it."""
    from mmengine.registry import init_default_scope

    init_default_scope(scope)
    if scope == 'mmpretrain':
        from mmpretrain.registry import MODELS
    elif scope == 'mmseg':
        from mmseg.registry import MODELS
    elif scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        raise ValueError(scope)
    return MODELS


def build_model(cfg):
    """The model of ``cfg``, built in its default scope (no weights initialised)."""
    return scope_registry(cfg.default_scope).build(cfg.model)


def set_data_roots(cfg, root):
    """Point every dataloader of ``cfg`` at ``root``."""
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(key) is not None:
            cfg[key]['dataset']['data_root'] = str(root)


TINY_ARCH = dict(embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=128)

# as mmpretrain's BEiT v2 config: its VQKD tokenizer loads its weights through init_cfg
BEITV2_CFG_TEXT = ("model = dict(type='BEiT', backbone=dict(type='BEiTPretrainViT'), "
                   "neck=dict(type='BEiTV2Neck'), head=dict(type='BEiTV2Head'), "
                   "target_generator=dict(type='VQKD', init_cfg=dict(type='Pretrained', "
                   "checkpoint='vqkd_encoder.pth')))")


def build_tiny_mim_algorithm(seed: int = 0):
    """mmpretrain's BEiT v2 algorithm at the demo's tiny size (random weights, seeded)."""
    import beitv2_mm  # noqa: F401
    from mmpretrain.registry import MODELS

    torch.manual_seed(seed)
    model = MODELS.build(dict(
        type='BEiT',
        backbone=dict(type='BEiTPretrainViT', arch=TINY_ARCH, img_size=64, patch_size=8,
                      out_indices=[-2, -1], final_norm=False, out_type='raw',
                      use_shared_rel_pos_bias=True, layer_scale_init_value=0.1),
        neck=dict(type='BEiTV2Neck', num_layers=1, early_layers=3,
                  backbone_arch=dict(TINY_ARCH, depth=4),  # the neck also wants 'depth'
                  layer_scale_init_value=0.1),
        head=dict(type='BEiTV2Head', embed_dims=64, num_embed=32,
                  loss=dict(type='CrossEntropyLoss')),
        target_generator=dict(
            type='VQKD',
            encoder_config=dict(arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                                          feedforward_channels=64),
                                img_size=64, patch_size=8, out_indices=-1, final_norm=True,
                                out_type='featmap', use_abs_pos_emb=True, use_rel_pos_bias=False,
                                use_shared_rel_pos_bias=False, layer_scale_init_value=0.),
            num_embed=32, embed_dims=8, quantize_kmeans_init=False),
    ))
    model.init_weights()
    # Non-trivial values everywhere, so a wrong mapping cannot pass by coincidence.
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model
