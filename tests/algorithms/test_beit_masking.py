"""Block-wise MIM masks: exact count, block structure, edges reachable."""
import numpy as np
import pytest
from scipy import ndimage

import beitv2_mm  # noqa: F401
from mmpretrain.registry import TRANSFORMS


def _generator(**kwargs):
    return TRANSFORMS.build(dict(type='BlockwiseMaskGenerator', **kwargs))


@pytest.mark.parametrize('grid,count,min_block', [(14, 75, 16), (8, 24, 4), (4, 15, 4),
                                                  ((6, 10), 30, 4), (14, 190, 16)])
def test_mask_has_exactly_the_configured_count(grid, count, min_block):
    np.random.seed(0)
    gen = _generator(input_size=grid, num_masking_patches=count, min_num_patches=min_block)
    shape = (grid, grid) if isinstance(grid, int) else grid
    for _ in range(200):
        mask = gen.transform({})['mask']
        assert mask.shape == shape
        assert set(np.unique(mask)) <= {0, 1}
        assert mask.sum() == count


def test_mask_is_made_of_blocks():
    """BEiT v2 setting: 75 of 196 in a few large regions, not scattered patches."""
    np.random.seed(1)
    gen = _generator(input_size=14, num_masking_patches=75, min_num_patches=16)
    components, in_large = [], []
    for _ in range(200):
        mask = gen.generate()
        labels, n = ndimage.label(mask)  # 4-connectivity
        sizes = ndimage.sum(mask, labels, range(1, n + 1))
        components.append(n)
        in_large.append(sizes[sizes >= 8].sum() / 75)
    # blocks of >= 16 patches (overlapping, merging): a handful of regions; a final
    # small block (the official sampler allows it for the last few patches) is rare
    assert np.mean(components) < 5
    assert np.mean(in_large) > 0.95
    # a uniformly random mask of 75 / 196 would have ~10+ regions
    rand = np.zeros(196, int)
    rand[np.random.permutation(196)[:75]] = 1
    assert ndimage.label(rand.reshape(14, 14))[1] > 2 * np.mean(components)


def test_last_row_and_column_are_masked_as_often_as_the_first():
    """mmpretrain's BEiTMaskGenerator never places a block at the bottom/right edge
    (np.random.randint excludes H - h); the official generator (and ours) does."""
    np.random.seed(2)
    ours = _generator(input_size=14, num_masking_patches=75, min_num_patches=16)
    stock = TRANSFORMS.build(dict(type='BEiTMaskGenerator', input_size=(14, 14),
                                  num_masking_patches=75, min_num_patches=16))
    ours_freq = np.mean([ours.generate() for _ in range(400)], axis=0)
    stock_freq = np.mean([stock.transform({})['mask'] for _ in range(400)], axis=0)
    assert ours_freq[-1].mean() > 0.5 * ours_freq[0].mean()
    assert ours_freq[:, -1].mean() > 0.5 * ours_freq[:, 0].mean()
    # the stock generator's edge frequency is far below its first row's (the bug this fixes)
    assert stock_freq[-1].mean() < 0.5 * stock_freq[0].mean()


def test_impossible_count_is_rejected_with_the_setting_named():
    with pytest.raises(ValueError, match='num_masking_patches'):
        _generator(input_size=4, num_masking_patches=17)


def test_top_up_draws_uniformly_from_the_unmasked_patches():
    """When block sampling stalls the official BEiT v2 generator fills the count with patches
    drawn uniformly from the unmasked ones (not, e.g., only next to the blocks)."""
    np.random.seed(3)
    base = np.zeros((14, 14), dtype=int)
    base[:7, :7] = 1  # one block in the top-left quarter
    free = base == 0
    hits = np.zeros((14, 14))
    for _ in range(3000):
        mask = base.copy()
        type(_generator(input_size=14, num_masking_patches=75))._top_up(mask, 26)
        assert mask.sum() == 49 + 26 and (mask >= base).all()
        hits += mask - base
    assert hits[~free].sum() == 0
    freq = hits[free] / 3000
    # each of the 147 free patches is drawn with probability 26 / 147 = 0.177
    assert abs(freq.mean() - 26 / 147) < 1e-9
    assert freq.min() > 0.14 and freq.max() < 0.215
    # patches touching the block are not preferred over the far corner
    assert abs(hits[7, :7].mean() - hits[13, 7:].mean()) / 3000 < 0.03
