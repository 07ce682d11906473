#!/usr/bin/env python
"""Visualise a VQ-KD tokenizer's codebook on an image folder (BEiT v2 paper, codebook figure).

    python tools/visualize_codebook.py CONFIG CHECKPOINT IMAGE_DIR [--out-dir DIR]

CONFIG is any config holding the tokenizer: a VQ-KD training config (``model.tokenizer``),
a MIM config (``model.target_generator``) or a config whose ``model`` is the tokenizer.
CHECKPOINT is a tokenizer checkpoint (raw or from a training run). Writes:

* ``codebook_patches.png``: one row per code (the most used ones), showing image patches
  the tokenizer assigned to that code; semantically meaningful codes gather similar parts;
* ``code_usage.png``: histogram of code usage over the folder (codes sorted by frequency),
  with the fraction of codes used and the perplexity.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


def tokenizer_cfg_from(cfg) -> dict:
    """The VQ-KD tokenizer of a tokenizer-training or MIM config (``model.tokenizer``,
    ``model.target_generator`` or the model itself)."""
    model = cfg.model
    where, found = next(((f'model.{key}', model[key]) for key in ('tokenizer', 'target_generator')
                         if model.get(key) is not None), ('model', model))
    if found.get('type') != 'VQKDTokenizer':
        raise KeyError(f'{cfg.filename}: {where} is a {found.get("type")}; this tool shows the '
                       'codebook of a VQKDTokenizer (model.tokenizer, model.target_generator or '
                       'the model itself); an mmpretrain VQKD checkpoint converts with '
                       '`tools/convert_ckpt.py vqkd_mmpretrain`')
    return found.copy()


def list_images(image_dir: Path, limit: int) -> List[Path]:
    if not image_dir.is_dir():
        raise FileNotFoundError(f'image folder not found: {image_dir}')
    files = sorted(p for p in image_dir.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_SUFFIXES)}) under {image_dir}')
    return files[:limit]


def load_images(files: List[Path], size: int) -> np.ndarray:
    """(N, size, size, 3) uint8 RGB images, resized (bicubic) to the tokenizer input.

    Raises:
        OSError: An image cannot be read, naming it.
    """
    images = []
    for f in files:
        try:
            with Image.open(f) as image:
                images.append(np.asarray(image.convert('RGB').resize((size, size),
                                                                     Image.BICUBIC)))
        except (OSError, ValueError) as err:
            raise OSError(f'cannot read image {f} ({type(err).__name__}: {err}); replace or '
                          'remove it') from err
    return np.stack(images)


def to_input_range(images: torch.Tensor, input_range) -> torch.Tensor:
    low, high = input_range
    return images / 255.0 * (high - low) + low


def patch_grid(images: np.ndarray, codes: np.ndarray, patch: int, rows: int, cols: int,
               scale: int = 4) -> Image.Image:
    """Rows = the ``rows`` most used codes, columns = up to ``cols`` of their patches."""
    counts = np.bincount(codes.ravel(), minlength=int(codes.max()) + 1)
    top = np.argsort(-counts)[:rows]
    top = top[counts[top] > 0]
    cell = patch * scale + 2
    canvas = Image.new('RGB', (cols * cell, max(len(top), 1) * cell), (255, 255, 255))
    for r, code in enumerate(top):
        where = np.argwhere(codes == code)[:cols]
        for c, (n, i, j) in enumerate(where):
            tile = images[n, i * patch:(i + 1) * patch, j * patch:(j + 1) * patch]
            tile = Image.fromarray(tile).resize((patch * scale, patch * scale), Image.NEAREST)
            canvas.paste(tile, (c * cell + 1, r * cell + 1))
    return canvas


def usage_histogram(codes: np.ndarray, num_codes: int, out: Path) -> dict:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    counts = np.bincount(codes.ravel(), minlength=num_codes)
    probs = counts / max(counts.sum(), 1)
    nz = probs[probs > 0]
    stats = dict(usage=float((counts > 0).mean()), used_codes=int((counts > 0).sum()),
                 perplexity=float(np.exp(-(nz * np.log(nz)).sum())))
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    ax.bar(np.arange(num_codes), np.sort(counts)[::-1], width=1.0, color='tab:blue')
    ax.set_yscale('symlog')
    ax.set_xlabel('code (sorted by frequency)')
    ax.set_ylabel('patches')
    ax.set_title(f'code usage: {stats["used_codes"]}/{num_codes} codes '
                 f'({stats["usage"]:.1%}), perplexity {stats["perplexity"]:.1f}')
    fig.tight_layout()
    fig.savefig(out, format='png')
    plt.close(fig)
    return stats


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('image_dir')
    parser.add_argument('--out-dir', default='work_dirs/codebook_vis')
    parser.add_argument('--max-images', type=int, default=512)
    parser.add_argument('--codes', type=int, default=16, help='rows: most used codes shown')
    parser.add_argument('--patches', type=int, default=12, help='patches shown per code')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)

    from mmengine.config import Config

    import beitv2_mm  # noqa: F401  (registers the tokenizer)
    from beitv2_mm.tokenizers.checkpoint import CheckpointLoadError
    from mmpretrain.registry import MODELS

    try:  # the messages name the file and what was expected: no traceback on top
        for what, path in (('config', args.config), ('checkpoint', args.checkpoint)):
            if not Path(path).is_file():
                raise FileNotFoundError(f'{what} not found: {path}')
        files = list_images(Path(args.image_dir), args.max_images)  # before the slow build
        cfg = Config.fromfile(args.config)
        tok_cfg = tokenizer_cfg_from(cfg)
        tok_cfg['checkpoint'] = args.checkpoint
        tok_cfg['kmeans_init'] = False  # the codebook comes from the checkpoint
        tok_cfg['decoder'] = None  # only encode() is used: a MIM checkpoint has no decoder
        tokenizer = MODELS.build(tok_cfg).to(args.device).eval()
        patch = tokenizer.patch_size
        size = int(tokenizer.encoder.patch_resolution[0]) * patch
        images = load_images(files, size)
    except (OSError, KeyError, CheckpointLoadError) as err:
        # KeyError's str() adds quotes; an OSError's first arg can be its errno
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        parser.exit(1, f'tools/visualize_codebook.py: error: {message}\n')
    codes = []
    with torch.no_grad():
        for start in range(0, len(images), args.batch_size):
            batch = torch.from_numpy(images[start:start + args.batch_size]).permute(0, 3, 1, 2)
            batch = to_input_range(batch.float().to(args.device), tokenizer.input_range)
            codes.append(tokenizer.encode(batch).cpu().numpy())
    codes = np.concatenate(codes)

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    grid_path, hist_path = out_dir / 'codebook_patches.png', out_dir / 'code_usage.png'
    patch_grid(images, codes, patch, args.codes, args.patches).save(grid_path, format='PNG')
    stats = usage_histogram(codes, tokenizer.num_codes, hist_path)
    print(f'{len(files)} images, {codes.size} patches: {stats["used_codes"]}/'
          f'{tokenizer.num_codes} codes used, perplexity {stats["perplexity"]:.1f}')
    print(f'wrote {grid_path} and {hist_path}')
    return dict(grid=grid_path, histogram=hist_path, **stats)


if __name__ == '__main__':
    main()
