"""Shared by the backbone tests."""
import torch


def randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial values everywhere (relative position tables start at zero): normal(0, 0.2),
    around 1 for LayerNorm weights."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = 1.0 if 'ln' in name and name.endswith('weight') else 0.0
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2 + base)
