"""Synthetic data in the real ImageNet / ADE20K / COCO on-disk layouts.

Every image is a procedurally drawn scene: a noisy, cluttered background with one large
*dominant* object and a few smaller distractor objects of the ``K = 10`` synthetic classes.
Classes differ in shape, colour, texture and scale (see :data:`CLASS_SPECS`); per-object colour,
size, rotation and position are jittered, so classification, segmentation and detection are
learnable but not trivial. Objects never overlap, so the polygon of an object is exactly its
visible region (COCO polygons and the ADE label map agree).

The same scenes are written in three layouts::

    <out>/imagenet/{train,val}/<wnid>/<wnid>_<idx>.JPEG     label = dominant object's class
    <out>/imagenet/meta/{train,val}.txt                      "<wnid>/<file> <label>" lines
    <out>/ade20k/ADEChallengeData2016/images/{training,validation}/*.jpg
    <out>/ade20k/ADEChallengeData2016/annotations/{training,validation}/*.png
                                                            uint8, 0 = background/ignore, 1..10
    <out>/coco/annotations/instances_{train,val}2017.json   bbox [x, y, w, h], area, iscrowd=0,
    <out>/coco/{train2017,val2017}/*.jpg                     polygon segmentation, ids 1..10

Generation is deterministic for a seed: every scene has its own ``numpy.random.Generator``
seeded from ``(seed, split, index)``, and only PIL drawing and encoding are used.
"""
import json
import math
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

#: Names of the 10 synthetic classes (metainfo ``classes`` for every layout).
SYNTHETIC_CLASSES: Tuple[str, ...] = ('disc', 'square', 'triangle', 'star', 'diamond', 'hexagon',
                                      'cross', 'ellipse', 'pentagon', 'bar')

#: Per class: polygon shape, base RGB colour, texture and relative scale.
CLASS_SPECS: Tuple[dict, ...] = (
    dict(shape='disc', color=(220, 40, 40), texture='solid', scale=1.0),
    dict(shape='square', color=(40, 180, 60), texture='hstripes', scale=0.9),
    dict(shape='triangle', color=(40, 70, 220), texture='solid', scale=1.15),
    dict(shape='star', color=(230, 210, 40), texture='dots', scale=1.1),
    dict(shape='diamond', color=(210, 50, 200), texture='checker', scale=0.95),
    dict(shape='hexagon', color=(40, 200, 210), texture='vstripes', scale=1.0),
    dict(shape='cross', color=(240, 140, 30), texture='solid', scale=1.05),
    dict(shape='ellipse', color=(120, 50, 170), texture='diagonal', scale=0.85),
    dict(shape='pentagon', color=(235, 235, 235), texture='gradient', scale=0.9),
    dict(shape='bar', color=(130, 80, 40), texture='checker', scale=1.2),
)

#: Segmentation palette (index i -> class i) for the ADE20K-style dataset.
SYNTHETIC_PALETTE: Tuple[Tuple[int, int, int], ...] = tuple(s['color'] for s in CLASS_SPECS)

#: WordNet-id-like folder names of the ImageNet layout, one per class.
SYNTHETIC_WNIDS: Tuple[str, ...] = tuple(f'n{90000000 + i:08d}' for i in range(10))

#: Image size and images per class for each preset. ``demo`` (2100 scenes) is sized so that the
#: iteration-based demo chain trains in minutes on 2 CPU cores (validation included) and
#: generation takes seconds.
SIZES: Dict[str, dict] = {
    'tiny': dict(img_size=64, train_per_class=4, val_per_class=2),
    # 500 validation images: two standard errors of a top-1 difference are ~5-6 points (~9 at 200)
    'demo': dict(img_size=64, train_per_class=160, val_per_class=50),
}

_SPLITS = (('train', 'training', 'train2017'), ('val', 'validation', 'val2017'))


def _shape_polygon(shape: str, size: float, rng: np.random.Generator) -> np.ndarray:
    """Vertices (N, 2) of a class shape centred at 0 with extent ~``size``, randomly rotated."""
    r = size / 2
    if shape == 'disc':
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r
    elif shape == 'ellipse':
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        pts = np.stack([np.cos(t) * r, np.sin(t) * r * 0.55], 1)
    elif shape == 'star':
        t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        radius = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * radius[:, None]
    elif shape == 'cross':
        a, b = r, r * 0.35
        pts = np.array([(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a),
                        (-b, b), (-a, b), (-a, -b), (-b, -b)])
    elif shape == 'bar':
        pts = np.array([(-r, -r * 0.3), (r, -r * 0.3), (r, r * 0.3), (-r, r * 0.3)])
    else:
        n = dict(square=4, triangle=3, diamond=4, hexagon=6, pentagon=5)[shape]
        offset = np.pi / 4 if shape == 'square' else 0.0
        t = np.linspace(0, 2 * np.pi, n, endpoint=False) + offset
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r
        if shape == 'diamond':  # a rhombus: squeezed across one diagonal
            pts[:, 0] *= 0.6
    # Squares and diamonds keep a class-typical orientation (axis-aligned vs. on a tip);
    # everything else rotates freely.
    max_angle = np.pi / 12 if shape in ('square', 'diamond') else np.pi
    angle = rng.uniform(-max_angle, max_angle)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return pts @ rot.T


def _texture(kind: str, color: np.ndarray, img_size: int, rng: np.random.Generator) -> Image.Image:
    """An RGB image of the whole canvas filled with a class texture in ``color``."""
    yy, xx = np.mgrid[0:img_size, 0:img_size]
    period = int(rng.integers(4, 7))
    phase = int(rng.integers(0, period))
    dark = np.clip(color * 0.45, 0, 255)
    if kind == 'hstripes':
        on = ((yy + phase) // (period // 2 + 1)) % 2 == 0
    elif kind == 'vstripes':
        on = ((xx + phase) // (period // 2 + 1)) % 2 == 0
    elif kind == 'diagonal':
        on = ((xx + yy + phase) // (period // 2 + 1)) % 2 == 0
    elif kind == 'checker':
        on = (((xx + phase) // period) + ((yy + phase) // period)) % 2 == 0
    elif kind == 'dots':
        on = ~((((xx + phase) % period) < 2) & (((yy + phase) % period) < 2))
    else:
        on = np.ones_like(xx, dtype=bool)
    tex = np.where(on[..., None], color, dark)
    if kind == 'gradient':
        ramp = (0.55 + 0.45 * xx / max(img_size - 1, 1))[..., None]
        tex = color * ramp
    return Image.fromarray(np.clip(tex, 0, 255).astype(np.uint8), 'RGB')


def _background(img_size: int, rng: np.random.Generator) -> Image.Image:
    """A low-saturation noisy background with clutter (lines, specks) that belongs to no class."""
    base = rng.uniform(60, 170) + rng.uniform(-15, 15, size=3)
    noise = rng.normal(0, 12, size=(img_size, img_size, 3))
    arr = np.clip(base + noise, 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, 'RGB')
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 6))):
        grey = int(rng.integers(30, 220))
        xy = [tuple(float(v) for v in rng.uniform(0, img_size, 2)) for _ in range(2)]
        draw.line(xy, fill=(grey, grey, grey), width=int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(3, 10))):
        grey = int(rng.integers(30, 220))
        x, y = rng.uniform(0, img_size, 2)
        s = rng.uniform(1, 3)
        draw.ellipse([x - s, y - s, x + s, y + s], fill=(grey, grey, grey))
    return img


def _place(size: float, placed: List[Tuple[float, float, float, float]], img_size: int,
           rng: np.random.Generator, tries: int = 30):
    """A centre for an object of extent ``size`` whose box fits the image and overlaps no box in
    ``placed`` (with a 2 px margin); ``None`` if none was found in ``tries`` attempts."""
    half = size / 2 + 1
    for _ in range(tries):
        cx, cy = rng.uniform(half, img_size - half, 2)
        box = (cx - half - 1, cy - half - 1, cx + half + 1, cy + half + 1)
        if all(box[2] <= b[0] or box[0] >= b[2] or box[3] <= b[1] or box[1] >= b[3]
               for b in placed):
            placed.append(box)
            return cx, cy
    return None


def draw_scene(label: int, img_size: int, rng: np.random.Generator):
    """Draw one scene whose dominant (largest) object is of class ``label``.

    Args:
        label (int): 0-based class of the dominant object.
        img_size (int): Side of the square image in pixels.
        rng (np.random.Generator): Source of all randomness of the scene.

    Returns:
        tuple: ``(image, label_map, objects)``: an RGB ``PIL.Image``, a uint8 array (H, W) with
        0 = background and ``c + 1`` for class ``c``, and a list of dicts ``(label, polygon)``
        with 0-based ``label`` and ``polygon`` an (N, 2) float array in pixel coordinates.
    """
    img = _background(img_size, rng)
    label_img = Image.new('L', (img_size, img_size), 0)
    n_distractors = int(rng.integers(1, 4))
    classes = [label] + [int(c) for c in rng.integers(0, len(SYNTHETIC_CLASSES), n_distractors)]
    placed, objects = [], []
    for i, cls in enumerate(classes):
        spec = CLASS_SPECS[cls]
        # The dominant object is always larger than every distractor: 0.31..0.69 vs 0.14..0.28
        # of the image side, so the image-level label is well defined.
        rel = rng.uniform(0.38, 0.5) if i == 0 else rng.uniform(0.16, 0.2)
        size = rel * spec['scale'] * img_size
        centre = _place(size, placed, img_size, rng)
        if centre is None:
            continue
        poly = _shape_polygon(spec['shape'], size, rng) + np.array(centre)
        poly = np.clip(poly, 0, img_size - 1)
        color = np.clip(np.array(spec['color'], float) + rng.uniform(-25, 25, 3), 0, 255)
        mask = Image.new('L', (img_size, img_size), 0)
        xy = [tuple(float(v) for v in p) for p in poly]
        ImageDraw.Draw(mask).polygon(xy, fill=255)
        img.paste(_texture(spec['texture'], color, img_size, rng), (0, 0), mask)
        ImageDraw.Draw(label_img).polygon(xy, fill=cls + 1)
        objects.append(dict(label=cls, polygon=poly))
    return img, np.asarray(label_img, dtype=np.uint8), objects


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _coco_categories() -> List[dict]:
    return [dict(id=i + 1, name=name, supercategory='shape')
            for i, name in enumerate(SYNTHETIC_CLASSES)]


def make_synthetic_dataset(out_dir: Union[str, Path], size: str = 'tiny',
                           seed: int = 0) -> Dict[str, Path]:
    """Write the synthetic data set in the ImageNet, ADE20K and COCO layouts.

    The three layouts hold the same scenes. Existing files under ``out_dir`` are overwritten;
    refusing a non-empty directory is the job of ``tools/make_synthetic_data.py``.

    Args:
        out_dir (str | Path): Output root; created if missing.
        size (str): ``'tiny'`` (64 px, 4 train / 2 val images per class; for tests) or
            ``'demo'`` (64 px, 160 train / 50 val per class; for the demo chain).
        seed (int): Seed; the same seed gives byte-identical files.

    Returns:
        dict: ``dict(imagenet=Path, ade20k=Path, coco=Path)``, the roots to use as
        ``data_root`` (for ADE20K: the ``ADEChallengeData2016`` folder).
    """
    if size not in SIZES:
        raise ValueError(f'make_synthetic_dataset: unknown size {size!r}; use one of '
                         f'{sorted(SIZES)}')
    preset = SIZES[size]
    img_size = preset['img_size']
    out = Path(out_dir)
    imagenet = out / 'imagenet'
    ade = out / 'ade20k' / 'ADEChallengeData2016'
    coco = out / 'coco'
    (imagenet / 'meta').mkdir(parents=True, exist_ok=True)
    (coco / 'annotations').mkdir(parents=True, exist_ok=True)

    for split_idx, (split, ade_split, coco_split) in enumerate(_SPLITS):
        per_class = preset[f'{split}_per_class']
        for wnid in SYNTHETIC_WNIDS:
            (imagenet / split / wnid).mkdir(parents=True, exist_ok=True)
        for sub in ('images', 'annotations'):
            (ade / sub / ade_split).mkdir(parents=True, exist_ok=True)
        (coco / coco_split).mkdir(parents=True, exist_ok=True)

        meta_lines, images, annotations = [], [], []
        ann_id = 1
        n_total = per_class * len(SYNTHETIC_CLASSES)
        for idx in range(n_total):
            label = idx % len(SYNTHETIC_CLASSES)
            rng = np.random.default_rng([seed, split_idx, idx])
            img, label_map, objects = draw_scene(label, img_size, rng)

            wnid = SYNTHETIC_WNIDS[label]
            in_name = f'{wnid}_{idx:05d}.JPEG'
            img.save(imagenet / split / wnid / in_name, format='JPEG', quality=95)
            meta_lines.append(f'{wnid}/{in_name} {label}')

            stem = f'ADE_{"train" if split == "train" else "val"}_{idx:08d}'
            img.save(ade / 'images' / ade_split / f'{stem}.jpg', format='JPEG', quality=95)
            Image.fromarray(label_map, 'L').save(ade / 'annotations' / ade_split / f'{stem}.png')

            image_id = idx + 1
            coco_name = f'{image_id:012d}.jpg'
            img.save(coco / coco_split / coco_name, format='JPEG', quality=95)
            images.append(dict(id=image_id, file_name=coco_name, width=img_size,
                               height=img_size))
            for obj in objects:
                poly = obj['polygon']
                x0, y0 = poly.min(0)
                x1, y1 = poly.max(0)
                annotations.append(dict(
                    id=ann_id, image_id=image_id, category_id=obj['label'] + 1,
                    bbox=[round(float(x0), 2), round(float(y0), 2),
                          round(float(x1 - x0), 2), round(float(y1 - y0), 2)],
                    area=round(_polygon_area(poly), 2), iscrowd=0,
                    segmentation=[[round(float(v), 2) for v in poly.reshape(-1)]]))
                ann_id += 1

        (imagenet / 'meta' / f'{split}.txt').write_text('\n'.join(meta_lines) + '\n')
        coco_json = dict(
            info=dict(description=f'beitv2_mm synthetic {size} set, seed {seed}', version='1.0'),
            licenses=[], images=images, annotations=annotations,
            categories=_coco_categories())
        (coco / 'annotations' / f'instances_{coco_split}.json').write_text(
            json.dumps(coco_json))

    return dict(imagenet=imagenet, ade20k=ade, coco=coco)
