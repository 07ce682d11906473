"""Run c7: what the per-layer relative position index costs the ViT-B Mask R-CNN at 1024 px.

Builds ``configs/mask_rcnn_coco.py``'s model on the CPU with the backbone type given (mmpretrain
``BEiTViT``: an int64 index buffer per layer; ``FastBEiTViT``: one shared, unsaved index) and
prints, as JSON: the bytes of its state dict as ``torch.save`` writes it (the ``state_dict`` of
every checkpoint the runner saves), the parameter bytes, the bytes of its buffers (distinct
storages, what a ``.cuda()`` copy of the model takes), and the process' resident memory after the
build. One backbone per process (the RSS would mix otherwise):

    python benchmarks/cpu-2026-11-24/c7_detector_index_memory.py mmpretrain.BEiTViT
    python benchmarks/cpu-2026-11-24/c7_detector_index_memory.py mmpretrain.FastBEiTViT
"""
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def rss_bytes() -> int:
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) * 1024
    return -1


def main(backbone_type: str) -> dict:
    import beitv2_mm  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS

    cfg = Config.fromfile(str(REPO / 'configs/mask_rcnn_coco.py'))
    cfg.model.backbone.type = backbone_type
    # the config's backbone became WindowedBEiTViT after c7 (run c8); c7 measured global
    # attention in every block, which these two classes give without the window settings
    for key in ('window_size', 'window_block_indexes'):
        cfg.model.backbone.pop(key, None)
    init_default_scope('mmdet')
    rss_before = rss_bytes()
    model = MODELS.build(cfg.model)
    rss_after = rss_bytes()
    index = getattr(model.backbone.layers[0].attn, 'relative_position_index')
    storages, buffer_bytes = set(), 0
    for _, buf in model.named_buffers():
        ptr = buf.untyped_storage().data_ptr()
        if ptr not in storages:
            storages.add(ptr)
            buffer_bytes += buf.untyped_storage().nbytes()
    for layer in model.backbone.layers:  # non-buffer tensors the attention layers hold
        t = layer.attn.__dict__.get('relative_position_index')
        if t is not None and t.untyped_storage().data_ptr() not in storages:
            storages.add(t.untyped_storage().data_ptr())
            buffer_bytes += t.untyped_storage().nbytes()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'state_dict.pth')
        torch.save(model.state_dict(), path)
        saved = os.path.getsize(path)
    return dict(
        backbone=backbone_type,
        state_dict_file_bytes=saved,
        state_dict_index_keys=sum(k.endswith('relative_position_index')
                                  for k in model.state_dict()),
        parameter_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        buffer_and_index_bytes=buffer_bytes,
        index_shape=list(index.shape),
        rss_growth_bytes_of_the_build=rss_after - rss_before,
        torch=torch.__version__,
    )


if __name__ == '__main__':
    print(json.dumps(main(sys.argv[1]), indent=1))
