"""ViT backbones with the fast attention path (SDPA + relative position bias)."""
from .beit_vit import (FastBEiTAttention, FastBEiTPretrainViT, FastBEiTViT,  # noqa: F401
                       use_fast_attention)
