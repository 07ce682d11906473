"""Run g6 of BENCHMARKS.md (one-off GPU experiment, kept to reproduce it; not part of the suite):
attention kernels for the BEiT student, whose relative position bias needs a gradient.

    PYTHONPATH=<mmengine/mmcv-lite/mmpretrain wheels> python3 \
        benchmarks/h100-2026-11-23/g6_attention_kernels.py     # from the repository root

Variants on one fast MIM model (ViT-B/16, batch 128, bf16), stepped alternately:
  sdpa      the committed path (SDPA, float mask -> mem-efficient kernel)
  cudnn     SDPA restricted to the cuDNN backend
  flex      FlexAttention (compiled), bias through score_mod
Also checks flex vs sdpa loss/grad on the same weights.
"""
import sys, json, os, statistics
import torch
import torch.nn.functional as F
sys.path.insert(0, '.')
import beitv2_mm  # noqa
from beitv2_mm.engine import benchmark as bm
from beitv2_mm.backbones import beit_vit as bv
from torch.nn.attention import sdpa_kernel, SDPBackend
from torch.nn.attention.flex_attention import flex_attention

flex = torch.compile(flex_attention, dynamic=False)
MODE = {'m': 'sdpa'}
orig = bv.FastBEiTAttention.forward


def forward(self, x, rel_pos_bias=None):
    if MODE['m'] != 'flex' or self.attn_impl != 'sdpa':
        return orig(self, x, rel_pos_bias)
    B, N, C = x.shape
    qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
    qkv = F.linear(x, self.qkv.weight, qkv_bias)
    q, k, v = qkv.reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    bias = self._layer_rel_pos_bias()
    if rel_pos_bias is not None:
        bias = rel_pos_bias if bias is None else bias + rel_pos_bias
    if bias is None:
        out = flex(q, k, v, scale=self.scale)
    else:
        bias = bias.to(q.dtype)
        def score_mod(score, b, h, qi, ki):
            return score + bias[h, qi, ki]
        out = flex(q, k, v, score_mod=score_mod, scale=self.scale)
    out = out.transpose(1, 2).reshape(B, N, C)
    return self.proj_drop(self.proj(out))


bv.FastBEiTAttention.forward = forward
device = torch.device('cuda')
arch = bm.resolve_arch('base')
cfg, optim = bm.fast_mim_config(arch, arch, 224)
setup = bm.make_mim_setup('fast', cfg, optim, 128, 224, 'bf16', device, True, 0, fast=True)
model = setup.model

def loss_and_grad(mode):
    MODE['m'] = mode
    model.zero_grad(set_to_none=True)
    with bm.autocast_context(device, 'bf16'):
        loss = bm.mim_loss(model, setup.data)
    loss.backward()
    g = model.backbone.rel_pos_bias.relative_position_bias_table.grad.float().clone()
    gq = model.backbone.layers[0].attn.qkv.weight.grad.float().clone()
    model.zero_grad(set_to_none=True)
    return float(loss), g, gq

res = {}
try:
    l0, g0, q0 = loss_and_grad('sdpa')
    l1, g1, q1 = loss_and_grad('flex')
    res['check'] = dict(loss_sdpa=l0, loss_flex=l1,
                        bias_grad_rel=float((g0 - g1).norm() / g0.norm()),
                        qkv_grad_rel=float((q0 - q1).norm() / q0.norm()))
    print('check', res['check'], flush=True)
except Exception as e:
    print('flex check failed', type(e).__name__, str(e)[:500], flush=True)

def step_for(mode):
    def step():
        MODE['m'] = 'flex' if mode == 'flex' else 'sdpa'
        if mode == 'cudnn':
            with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
                return setup.step()
        return setup.step()
    return step

variants = []
for mode in ('sdpa', 'cudnn', 'flex'):
    try:
        s = step_for(mode); s(); torch.cuda.synchronize()
        variants.append(bm.Variant(mode, s, 128))
    except Exception as e:
        print(mode, 'failed:', type(e).__name__, str(e)[:400], flush=True)
out = bm.run_alternating(variants, steps=20, warmup=3, device=device, count_flops_too=False,
                         precision='bf16', with_profile=True)
for k, v in out.items():
    p = v['profile']
    print(f"{k}: {v['images_per_s']:.1f} img/s median {1e3*v['median_s']:.1f} ms; kernels "
          + ' '.join(f'{c} {1e3*t:.1f}' for c, t in sorted(p['by_category'].items(), key=lambda kv: -kv[1])), flush=True)
res['results'] = {k: dict(images_per_s=v['images_per_s'], median_s=v['median_s'], profile=v['profile']) for k, v in out.items()}
json.dump(res, open(os.path.join(os.environ.get('OUT', '/tmp'), 'g6_attention_kernels.json'), 'w'), indent=1, default=str)
