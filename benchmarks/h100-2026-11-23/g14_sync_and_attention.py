"""One-off GPU experiment (run g14, H100): what the grad-norm sync, compiling every layer and
the attention kernel choices cost in the BEiT v2 MIM step. Not part of the suite; its output
is quoted in BENCHMARKS.md.

    PYTHONPATH=/tmp/site:$PWD python3 benchmarks/h100-2026-11-23/g14_sync_and_attention.py OUT.json

1. Attention alone (ViT-B/16 at 224 px, batch 128: B=128, heads 12, N=197, d=64, bf16),
   forward + backward with a relative position bias that needs a gradient, per kernel choice.
2. The fast MIM step (``tools/benchmark.py mim`` fast side, batch 128, bf16) run back to back
   (no other variant in between): host time to enqueue a step vs the step's wall time, with
   mmengine's stock ``_clip_grad`` (``float(grad_norm)`` each step) and with this project's
   sync-free one, eager and with every layer compiled.
"""
import json
import statistics
import sys
import time
import types
import warnings

import torch
import torch.nn.functional as F

import beitv2_mm  # noqa: F401
from beitv2_mm.engine import benchmark as bench
from beitv2_mm.engine import compat

DEV = torch.device('cuda')
RESULTS = {}


def cuda_median_ms(fn, iters=20, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        times.append((start, end))
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in times)


# ----------------------------------------------------------------------------- 1. attention
def attention():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    B, H, N, D = 128, 12, 197, 64
    g = torch.Generator(device='cuda').manual_seed(0)
    q, k, v = (torch.randn(B, H, N, D, device=DEV, dtype=torch.bfloat16, generator=g)
               .requires_grad_() for _ in range(3))
    table = (0.1 * torch.randn(H, N, N, device=DEV, generator=g)).requires_grad_()
    grad_out = torch.randn(B, H, N, D, device=DEV, dtype=torch.bfloat16, generator=g)
    scale = D ** -0.5

    def sdpa(bias_fn, backends=None):
        def fn():
            bias = bias_fn()
            ctx = sdpa_kernel(backends) if backends else torch.enable_grad()
            with ctx:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
            out.backward(grad_out)
        return fn

    def explicit():
        attn = (q * scale) @ k.transpose(-2, -1) + table.to(torch.bfloat16)
        out = attn.softmax(-1) @ v
        out.backward(grad_out)

    def padded_bias():
        pad = (-N) % 8  # last-dim stride a multiple of 16 bytes
        return F.pad(table, (0, pad)).to(torch.bfloat16)[..., :N].unsqueeze(0)

    variants = {
        'sdpa default, bias as the model passes it': sdpa(
            lambda: table.to(torch.bfloat16).unsqueeze(0)),
        'sdpa default, bias with a 16-byte aligned row stride': sdpa(padded_bias),
        'sdpa cuDNN only, bias needs grad': sdpa(
            lambda: table.to(torch.bfloat16).unsqueeze(0), [SDPBackend.CUDNN_ATTENTION]),
        'sdpa cuDNN only, aligned bias needs grad': sdpa(padded_bias,
                                                         [SDPBackend.CUDNN_ATTENTION]),
        'sdpa cuDNN only, bias without grad (lower bound)': sdpa(
            lambda: table.detach().to(torch.bfloat16).unsqueeze(0),
            [SDPBackend.CUDNN_ATTENTION]),
        'sdpa flash, no bias (lower bound)': sdpa(lambda: None, [SDPBackend.FLASH_ATTENTION]),
        'explicit bf16 (matmul + softmax)': explicit,
    }
    out = {}
    for name, fn in variants.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            try:
                ms = cuda_median_ms(fn)
                out[name] = dict(ms=ms)
            except Exception as err:  # noqa: BLE001 - report and go on
                out[name] = dict(error=f'{type(err).__name__}: {str(err)[:300]}')
        notes = sorted({str(w.message)[:300] for w in caught})
        if notes:
            out[name]['warnings'] = notes
        q.grad = k.grad = v.grad = table.grad = None
        print(f'[attention] {name}: {out[name]}', flush=True)
    RESULTS['attention'] = out


# ----------------------------------------------------------------------------- 2. the step
def step_variants(steps=15, warmup=4):
    arch = bench.resolve_arch('base')
    out = {}
    flops = None
    for compiled in (False, True):
        model_cfg, optim_cfg = bench.fast_mim_config(arch, arch, 224, compile_layers=compiled)
        t0 = time.perf_counter()
        setup = bench.make_mim_setup('fast', model_cfg, optim_cfg, 128, 224, 'bf16', DEV,
                                     fused=True, fast=True)
        for _ in range(warmup):
            setup.step()
        torch.cuda.synchronize()
        build_s = time.perf_counter() - t0
        if flops is None:
            flops = bench.count_flops(setup.forward_backward)
        wrapper = setup.optim_wrapper
        for clip in ('stock', 'sync-free'):
            if clip == 'stock':
                wrapper._clip_grad = types.MethodType(
                    compat.ORIGINALS['OptimWrapper._clip_grad'], wrapper)
            else:
                del wrapper._clip_grad  # back to the class's (this project's compat fix 5)
            for _ in range(2):
                setup.step()
            rounds = []
            for _ in range(3):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(steps):
                    setup.step()
                host = time.perf_counter() - t0
                torch.cuda.synchronize()
                wall = time.perf_counter() - t0
                rounds.append(dict(host_ms=1e3 * host / steps, wall_ms=1e3 * wall / steps))
            wall = statistics.median(r['wall_ms'] for r in rounds)
            name = f'{"compiled" if compiled else "eager"}, {clip} clip'
            out[name] = dict(rounds=rounds, wall_ms=wall, images_per_s=128e3 / wall,
                             mfu=flops / (wall / 1e3) / 989e12 if flops else None,
                             build_and_warmup_s=build_s)
            print(f'[step] {name}: {out[name]}', flush=True)
        if compiled:
            out['compiled profile'] = bench.profile_ops(setup.step, DEV, top=25)
            print('[step] compiled profile by category:',
                  out['compiled profile']['by_category'], flush=True)
        del setup, wrapper
        torch.cuda.empty_cache()
    RESULTS['step'] = out
    RESULTS['flops_per_step'] = flops


if __name__ == '__main__':
    RESULTS['environment'] = bench.environment(DEV)
    try:
        attention()
        step_variants()
    finally:
        with open(sys.argv[1], 'w') as f:
            json.dump(RESULTS, f, indent=1, default=str)
