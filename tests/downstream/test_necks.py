"""SimpleFeaturePyramid (the ViTDet neck): which ViT map it reads and how each level is made."""
import pytest
import torch
import torch.nn.functional as F


def _neck(num_outs=5):
    pytest.importorskip('mmcv._ext')
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope

    import beitv2_mm  # noqa: F401
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        neck = MODELS.build(dict(type='SimpleFeaturePyramid', backbone_channel=16,
                                 in_channels=[4, 8, 16, 16], out_channels=8, num_outs=num_outs))
    return neck.eval()


def test_reads_the_last_backbone_map_only():
    """ViTDet builds every level from the *last* ViT feature map: a backbone that returns
    earlier maps as well (out_indices=[3, 5, 7, 11]) must give the same pyramid."""
    neck = _neck()
    early, last = torch.randn(1, 16, 8, 8), torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        alone, both = neck((last, )), neck((early, last))
    assert len(both) == 5
    for a, b in zip(alone, both):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_levels_are_vitdets_scales_in_stride_order():
    """Levels 4x, 2x, 1x, 0.5x of the stride-16 map (strides 4, 8, 16, 32), the 0.5x one by
    2x2 max pooling, then stride 64 by ``max_pool2d(kernel_size=1, stride=2)`` of the stride-32
    output (detectron2's LastLevelMaxPool, what the RPN of Mask R-CNN expects)."""
    neck = _neck()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        outs = neck((x, ))
        assert [tuple(o.shape[-2:]) for o in outs] == [(32, 32), (16, 16), (8, 8), (4, 4),
                                                      (2, 2)]
        assert all(o.shape[:2] == (2, 8) for o in outs)
        # the stride-16 level is the map itself and the stride-32 level its max pooling,
        # each through its own lateral 1x1 and output 3x3 conv
        identity = neck.fpn_convs[2](neck.lateral_convs[2](x))
        pooled = neck.fpn_convs[3](neck.lateral_convs[3](F.max_pool2d(x, 2)))
        torch.testing.assert_close(outs[2], identity)
        torch.testing.assert_close(outs[3], pooled)
        torch.testing.assert_close(outs[4], outs[3][..., ::2, ::2])
    assert len(_neck(num_outs=4)((x, ))) == 4
