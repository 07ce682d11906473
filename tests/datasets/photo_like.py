"""A photo-like test image for the colour and resize tests (imported by the test modules here)."""
import numpy as np


def photo_like(rng, h: int = 60, w: int = 80) -> np.ndarray:
    """Smooth colour gradients plus noise and a saturated patch: uint8 ``(h, w, 3)`` (the same
    values read as BGR or RGB)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([200 * xx + 30, 160 * yy + 40, 120 * (1 - xx * yy) + 60], -1)
    img = img + rng.normal(0, 12, (h, w, 3))
    img[: h // 5, : w // 4] = (255, 250, 10)
    return np.clip(img, 0, 255).astype(np.uint8)
