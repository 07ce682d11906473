# ImageNet-sized JPEGs in the ImageNet layout (as /tmp/s4/mk_inet.py), in parallel.
import os, sys
from multiprocessing import Pool
import numpy as np
from PIL import Image
root = sys.argv[1]; classes = 16; per = 128
sizes = [(500, 375), (375, 500), (500, 333), (500, 400)]
def make(c):
    rng = np.random.default_rng(c)
    d = f'{root}/train/n{c:08d}'; os.makedirs(d, exist_ok=True)
    lines = []
    for i in range(per):
        w, h = sizes[(c + i) % 4]
        base = rng.random((h // 16 + 1, w // 16 + 1, 3)) * 255
        img = np.kron(base, np.ones((16, 16, 1)))[:h, :w] + rng.normal(0, 25, (h, w, 3))
        f = f'n{c:08d}/n{c:08d}_{i:05d}.JPEG'
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(f'{root}/train/{f}', quality=90)
        lines.append(f'{f} {c}')
    return lines
with Pool(16) as p:
    lines = [l for ls in p.map(make, range(classes)) for l in ls]
os.makedirs(f'{root}/meta', exist_ok=True)
open(f'{root}/meta/train.txt', 'w').write('\n'.join(lines) + '\n')
print('images', len(lines))
