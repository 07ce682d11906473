"""ViT backbones with the fast attention path (SDPA + relative position bias), and ViTDet's
window attention for the detector."""
from .beit_vit import (FastBEiTAttention, FastBEiTPretrainViT, FastBEiTViT,  # noqa: F401
                       use_fast_attention)
from .windowed_beit import WindowedBEiTAttention, WindowedBEiTViT  # noqa: F401
