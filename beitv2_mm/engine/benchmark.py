"""Step benchmarks: timing, FLOPs, peak memory and the workloads ``tools/benchmark.py`` runs.

What is measured, for every workload (MIM step, VQ-KD step, tokenizer inference, ImageNet
fine-tuning step, UperNet step, data pipeline):

* **images/s** from the median of ``steps`` timed steps after ``warmup`` untimed ones. On a
  GPU each step is bracketed by CUDA events and the host synchronises once, after the last
  step, so the timing itself adds no host-device sync; on a CPU ``time.perf_counter``.
* **peak memory**: on a GPU ``torch.cuda.max_memory_allocated`` (reset before each step of a
  variant); on a CPU the process' peak resident set (``VmHWM`` of ``/proc/self/status``,
  reset through ``/proc/self/clear_refs`` where the kernel allows it). Both include every
  model that lives in the process (in ``--compare`` runs: both variants' weights).
* **FLOPs** of one step, counted once outside the timed steps with
  ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, attention; forward and
  backward), hence achieved TFLOP/s and, on a GPU whose peak is known (:data:`PEAK_TFLOPS`),
  the model FLOPs utilisation (MFU).

Comparisons (``--compare``) run the variants **alternately in one process** (A, B, A, B,
...): on a shared or thermally throttled machine both see the same load, and the ratio of
medians is what is reported.

The MIM workload builds the *stock* step from mmpretrain's own BEiT v2 config
(``mmpretrain::beitv2/beitv2_beit-base-p16_8xb256-amp-coslr-300e_in1k.py``: ``BEiT`` with
``BEiTPretrainViT``, ``BEiTV2Neck``, ``BEiTV2Head`` and the ``VQKD`` target generator, its
optimizer wrapper) and the *fast* step from this project's classes (``BEiTMIM``,
``FastBEiTPretrainViT``, ``BEiTV2AggregationNeck``, ``VQKDTokenizer``), with the same
architecture, batch, resolution and precision. Only the architecture, resolution, precision
and download-free initialisation are changed in the stock config.
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import json
import os
import platform
import re
import statistics
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch

from . import compat
from .checkpoint import atomic_write_text

# --------------------------------------------------------------------------- architectures
#: ViT sizes by name; a dict (or its JSON text) with the same keys is accepted too.
ARCHS: Dict[str, dict] = {
    'tiny': dict(embed_dims=192, num_layers=12, num_heads=3, feedforward_channels=768),
    'small': dict(embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536),
    'base': dict(embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072),
    'large': dict(embed_dims=1024, num_layers=24, num_heads=16, feedforward_channels=4096),
}
ARCH_KEYS = ('embed_dims', 'num_layers', 'num_heads', 'feedforward_channels')


def resolve_arch(arch: Union[str, dict]) -> dict:
    """An architecture dict from a name in :data:`ARCHS`, a dict, or a dict's JSON text.

    Args:
        arch (str | dict): ``'tiny'|'small'|'base'|'large'``, or
            ``{"embed_dims": 64, "num_layers": 4, "num_heads": 2, "feedforward_channels": 128}``.

    Returns:
        dict: ``embed_dims``, ``num_layers``, ``num_heads``, ``feedforward_channels``.
    """
    if isinstance(arch, str):
        text = arch.strip()
        if text.startswith('{'):
            try:
                arch = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f'--arch: invalid JSON dict {text!r}: {err}') from err
        elif text.lower() in ARCHS:
            return dict(ARCHS[text.lower()])
        else:
            raise ValueError(f'--arch: unknown architecture {arch!r}; use one of '
                             f'{sorted(ARCHS)} or a JSON dict with keys {ARCH_KEYS}')
    missing = [k for k in ARCH_KEYS if k not in arch]
    if missing:
        raise ValueError(f'--arch: the architecture dict lacks {missing} (needs {ARCH_KEYS})')
    if arch['embed_dims'] % arch['num_heads']:
        raise ValueError(f'--arch: embed_dims {arch["embed_dims"]} is not divisible by '
                         f'num_heads {arch["num_heads"]}')
    return {k: int(arch[k]) for k in ARCH_KEYS}


# --------------------------------------------------------------------------- device peaks
#: Dense peak TFLOP/s by device-name substring (first match wins, so specific names first).
#: Vendor data sheets, without sparsity. 'tf32' applies to fp32 matmuls when TF32 is allowed.
PEAK_TFLOPS: List[tuple] = [
    ('H200', dict(bf16=989.0, fp16=989.0, tf32=494.0, fp32=67.0)),
    ('H100 PCIe', dict(bf16=756.0, fp16=756.0, tf32=378.0, fp32=51.0)),
    ('H100 NVL', dict(bf16=835.0, fp16=835.0, tf32=418.0, fp32=60.0)),
    ('H100', dict(bf16=989.0, fp16=989.0, tf32=494.0, fp32=67.0)),  # SXM (e.g. "80GB HBM3")
    ('H800', dict(bf16=989.0, fp16=989.0, tf32=494.0, fp32=67.0)),
    ('GH200', dict(bf16=989.0, fp16=989.0, tf32=494.0, fp32=67.0)),
    ('B200', dict(bf16=2250.0, fp16=2250.0, tf32=1100.0, fp32=75.0)),
    ('A100', dict(bf16=312.0, fp16=312.0, tf32=156.0, fp32=19.5)),
    ('A800', dict(bf16=312.0, fp16=312.0, tf32=156.0, fp32=19.5)),
    ('L40S', dict(bf16=362.0, fp16=362.0, tf32=183.0, fp32=91.6)),
    ('L4', dict(bf16=121.0, fp16=121.0, tf32=60.0, fp32=30.3)),
    ('A10G', dict(bf16=70.0, fp16=70.0, tf32=35.0, fp32=31.2)),
    ('A10', dict(bf16=125.0, fp16=125.0, tf32=62.5, fp32=31.2)),
    ('RTX 4090', dict(bf16=165.0, fp16=165.0, tf32=82.6, fp32=82.6)),
    ('RTX 3090', dict(bf16=71.0, fp16=71.0, tf32=35.6, fp32=35.6)),
    ('V100', dict(fp16=125.0, fp32=15.7)),
    ('T4', dict(fp16=65.0, fp32=8.1)),
]


def peak_tflops(device_name: str, precision: str, tf32: bool = False) -> Optional[float]:
    """The device's dense peak for ``precision`` from :data:`PEAK_TFLOPS`, or None if unknown.

    Args:
        device_name (str): e.g. ``torch.cuda.get_device_name()``.
        precision (str): ``'fp32'``, ``'bf16'`` or ``'fp16'``.
        tf32 (bool): fp32 matmuls run as TF32 (``torch.backends.cuda.matmul.allow_tf32``).
    """
    key = 'tf32' if (precision == 'fp32' and tf32) else precision
    for pattern, peaks in PEAK_TFLOPS:
        if pattern.lower() in device_name.lower():
            return peaks.get(key)
    return None


# --------------------------------------------------------------------------- environment
def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (falls back to ``platform.processor()``)."""
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def code_version() -> dict:
    """The checkout's commit and whether it had local changes (``None`` outside git): two
    results of one command from different code are then told apart by their files."""
    import subprocess
    root = Path(__file__).resolve().parents[2]

    def git(*args):
        try:
            return subprocess.run(['git', '-C', str(root), *args], capture_output=True,
                                  text=True, timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    commit = git('rev-parse', 'HEAD')
    if commit is None:
        return dict(commit=None, dirty=None)
    changes = git('status', '--porcelain', '--untracked-files=no')
    return dict(commit=commit, dirty=bool(changes) if changes is not None else None)


def environment(device: torch.device) -> dict:
    """Machine and software description stored with every result."""
    versions = {'python': platform.python_version(), 'torch': torch.__version__}
    for name in ('mmengine', 'mmcv', 'mmpretrain', 'mmseg', 'mmdet', 'timm'):
        try:
            module = __import__(name)
            versions[name] = getattr(module, '__version__', '?')
        except Exception:  # noqa: BLE001 - absent or broken: just not listed
            pass
    env = dict(
        date_utc=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S'),
        cpu=cpu_model(), cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
        omp_num_threads=os.environ.get('OMP_NUM_THREADS'), device=str(device),
        versions=versions, code=code_version())
    try:
        env['load_avg_1m'] = os.getloadavg()[0]
    except OSError:
        pass
    if device.type == 'cuda':
        env['gpu'] = torch.cuda.get_device_name(device)
        env['cuda'] = torch.version.cuda
    return env


# --------------------------------------------------------------------------- memory
class PeakMemory:
    """Peak memory of a region: ``max_memory_allocated`` on CUDA, peak RSS on a CPU.

    On a CPU the peak resident set size of the whole process is read from ``VmHWM``; writing
    ``5`` to ``/proc/self/clear_refs`` resets it (Linux >= 4.0). Where that is not allowed,
    the value is the peak since the process started (``resettable`` is then False).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.resettable = True

    def reset(self) -> None:
        if self.device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
        except OSError:
            self.resettable = False

    def read(self) -> Optional[int]:
        """Peak bytes since the last :meth:`reset` (None if unavailable)."""
        if self.device.type == 'cuda':
            return int(torch.cuda.max_memory_allocated(self.device))
        try:
            for line in Path('/proc/self/status').read_text().splitlines():
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            import resource
            return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
        except Exception:  # noqa: BLE001
            return None


# --------------------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


class StepTimer:
    """Times steps without syncing inside them: CUDA events on a GPU, perf_counter on a CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self._pending: List[tuple] = []
        self._seconds: List[float] = []

    @contextlib.contextmanager
    def step(self):
        if self.device.type == 'cuda':
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._pending.append((start, end))
        else:
            t0 = time.perf_counter()
            yield
            self._seconds.append(time.perf_counter() - t0)

    def seconds(self) -> List[float]:
        """All step durations in seconds (synchronises once for pending CUDA events)."""
        if self._pending:
            synchronize(self.device)
            self._seconds += [s.elapsed_time(e) / 1e3 for s, e in self._pending]
            self._pending = []
        return list(self._seconds)


@contextlib.contextmanager
def eager_only():
    """Run ``torch.compile``d code eagerly inside (``torch.compiler.set_stance('force_eager')``).

    For the one-off calls around the timed steps (FLOP counting, the same-weights loss check):
    compiling under ``FlopCounterMode`` left the compiled layers running eagerly for the rest
    of the run (H100, torch 2.11: a ``--compile`` run timed 117.9 ms/step with FLOP counting,
    105.6 ms without, and its profile showed no Triton kernels). The arithmetic, hence the
    FLOP count and the loss, is the same either way.
    """
    set_stance = getattr(getattr(torch, 'compiler', None), 'set_stance', None)
    if set_stance is None:  # torch < 2.6
        yield
        return
    with set_stance('force_eager'):
        yield


def count_flops(fn: Callable[[], Any], math_attention: bool = False) -> Optional[int]:
    """FLOPs of one call of ``fn`` (forward + backward if it does both), or None on failure.

    ``math_attention``: run SDPA through its math backend while counting (for CPU runs): the
    counter has formulas for the CUDA flash / memory-efficient kernels but none for the CPU
    flash kernel, which SDPA takes where no gradient is needed (the tokenizer), so that
    attention would count as zero; the math backend's matmuls are the same products.
    """
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.utils.flop_counter import FlopCounterMode
        counter = FlopCounterMode(display=False)
        backend = (sdpa_kernel([SDPBackend.MATH]) if math_attention
                   else contextlib.nullcontext())
        with eager_only(), backend, counter:
            fn()
        return int(counter.get_total_flops())
    except Exception as err:  # noqa: BLE001 - an op the counter cannot trace: report, go on
        print(f'[benchmark] FLOP counting failed ({type(err).__name__}: {err}); '
              'TFLOP/s and MFU are left out')
        return None


@dataclass
class Variant:
    """One thing to time: a step function and how many images one call processes.

    Attributes:
        name: label in the output (e.g. ``'fast'``, ``'mmpretrain'``).
        step: runs one full step (no argument); its return value is ignored.
        images: images per call (the batch size).
        flops_fn: optional callable counted by :func:`count_flops` instead of ``step``
            (e.g. one that skips the optimizer, whose FLOPs the counter does not see anyway).
        info: free-form description stored in the JSON (config, options).
        rate: how ``images_per_s`` is computed from the timed steps: ``'median'`` (images /
            median step time; compute steps, robust to outliers) or ``'mean'`` (all images /
            total time; a dataloader, whose workers deliver batches in bursts from a prefetch
            queue, so single fetches say nothing and only the average rate does).
    """
    name: str
    step: Callable[[], Any]
    images: int
    flops_fn: Optional[Callable[[], Any]] = None
    info: dict = field(default_factory=dict)
    rate: str = 'median'

    def __post_init__(self):
        # checked here, not after minutes of timed steps
        if self.rate not in ('median', 'mean'):
            raise ValueError(f'Variant {self.name!r}: rate must be median or mean, '
                             f'got {self.rate!r}')


#: ATen ops that are matrix-multiply kernels (every Linear, attention products, fused attention).
MATMUL_OPS = ('aten::mm', 'aten::addmm', 'aten::bmm', 'aten::baddbmm',
              'aten::_scaled_dot_product_flash_attention_for_cpu',
              'aten::_scaled_dot_product_flash_attention',
              'aten::_scaled_dot_product_efficient_attention',
              'aten::_scaled_dot_product_cudnn_attention',
              'aten::_flash_attention_backward', 'aten::_efficient_attention_backward',
              'aten::_scaled_dot_product_flash_attention_for_cpu_backward')


#: GPU kernel categories by name pattern (first match wins): what a kernel-time breakdown groups.
KERNEL_CATEGORIES = (
    ('attention', re.compile(r'fmha|flash|attention|_attn', re.I)),
    ('matmul', re.compile(r'gemm|nvjet|xmma|wgmma|cutlass|cublas|splitk', re.I)),
    ('optimizer', re.compile(r'adam|multi_tensor|foreach', re.I)),
    ('layer_norm', re.compile(r'layer_norm|layernorm', re.I)),
    ('softmax', re.compile(r'softmax', re.I)),
    ('copy/cast', re.compile(r'copy|cat_|CatArray|transpose|index|gather|scatter', re.I)),
    ('reduction', re.compile(r'reduce|norm_kernel|sum', re.I)),
    ('elementwise', re.compile(r'elementwise|vectorized|unrolled|gelu|mul|add|fill', re.I)),
)


def kernel_category(name: str) -> str:
    """The :data:`KERNEL_CATEGORIES` group of a GPU kernel name (``'other'`` if none)."""
    for category, pattern in KERNEL_CATEGORIES:
        if pattern.search(name):
            return category
    return 'other'


def is_annotation(name: str) -> bool:
    """A ``record_function`` range name as the profiler writes it (``Optimizer.step#AdamW.step``,
    ``ProfilerStep#3``), not a kernel (whose names may hold ``{lambda()#3}``)."""
    return re.fullmatch(r'[\w.]+#[\w.]+', name) is not None


def profile_ops(step: Callable[[], Any], device: torch.device, top: int = 12) -> dict:
    """One step under ``torch.profiler``: where the time goes.

    On a CPU by ATen op (self host time); on a GPU by kernel (device time of the kernels
    only: an ATen op's device time is its kernels', so summing both would count them twice).

    Returns:
        dict: ``total_s`` (op self time on a CPU, kernel time on a GPU), ``matmul_s``
        (matmul and attention: the ops in :data:`MATMUL_OPS`, or the kernels of those two
        :data:`KERNEL_CATEGORIES`), ``matmul_share``, ``top`` (the ``top`` ops or kernels by
        time as ``[name, seconds, calls]``) and, on a GPU, ``by_category`` (seconds per
        kernel category). A step that is nearly all matmul time cannot get much faster
        without fewer FLOPs or faster GEMMs; on a GPU the rest is mostly memory-bound.
    """
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU]
    if device.type == 'cuda':
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        step()
        synchronize(device)
    events = prof.key_averages()
    by_category = None
    if device.type == 'cuda':
        from torch.autograd import DeviceType
        # record_function ranges (e.g. "Optimizer.step#AdamW.step") also appear on the GPU
        # timeline and span kernels already counted: leave them out
        annotations = {e.name for e in prof.events() if getattr(e, 'is_user_annotation', False)}
        timed = [(e.key, getattr(e, 'self_device_time_total', 0) / 1e6, e.count)
                 for e in events if getattr(e, 'device_type', None) == DeviceType.CUDA
                 and e.key not in annotations and not is_annotation(e.key)]
        by_category = {}
        for name, seconds, _ in timed:
            category = kernel_category(name)
            by_category[category] = by_category.get(category, 0.0) + seconds
        matmul = by_category.get('matmul', 0.0) + by_category.get('attention', 0.0)
    else:
        timed = [(e.key, e.self_cpu_time_total / 1e6, e.count) for e in events]
        matmul = sum(t for name, t, _ in timed if name in MATMUL_OPS)
    total = sum(t for _, t, _ in timed)
    ranked = sorted(timed, key=lambda item: item[1], reverse=True)[:top]
    return dict(total_s=total, matmul_s=matmul, matmul_share=matmul / total if total else None,
                top=[[name[:200], seconds, count] for name, seconds, count in ranked],
                by_category=by_category)


def run_alternating(variants: Sequence[Variant], steps: int, warmup: int,
                    device: torch.device, count_flops_too: bool = True,
                    precision: str = 'fp32', with_profile: bool = False) -> Dict[str, dict]:
    """Warm each variant up, then time them alternately, one step each per round.

    Args:
        variants (Sequence[Variant]): The workloads (one or more).
        steps (int): Timed steps per variant.
        warmup (int): Untimed steps per variant first (allocator, autotuning, compile).
        device (torch.device): Where the steps run.
        count_flops_too (bool): Count FLOPs of one step per variant.
        precision (str): For the MFU look-up.
        with_profile (bool): After timing, profile one more step of each variant
            (:func:`profile_ops`) into ``profile``.

    Returns:
        dict: per variant name: ``median_s``, ``images_per_s`` (by the variant's ``rate``),
        ``mean_images_per_s`` (all images / total time), ``times_s``, ``peak_mem_bytes``,
        ``flops_per_step``, ``tflops_per_s``, ``mfu`` (None where not applicable), ``profile``
        (None unless ``with_profile``).
    """
    if steps < 1:
        raise ValueError(f'--steps must be >= 1, got {steps}')
    for variant in variants:
        for _ in range(warmup):
            variant.step()
    synchronize(device)
    flops = {}
    for variant in variants:
        flops[variant.name] = (count_flops(variant.flops_fn or variant.step,
                                           math_attention=device.type == 'cpu')
                               if count_flops_too else None)
    synchronize(device)
    timers = {v.name: StepTimer(device) for v in variants}
    peaks = {v.name: 0 for v in variants}
    memory = PeakMemory(device)
    for _ in range(steps):
        for variant in variants:
            memory.reset()
            with timers[variant.name].step():
                variant.step()
            peak = memory.read()
            if peak is not None:
                peaks[variant.name] = max(peaks[variant.name], peak)
    synchronize(device)
    profiles = {v.name: profile_ops(v.step, device) if with_profile else None
                for v in variants}
    peak_ref = None
    tf32 = bool(device.type == 'cuda' and torch.backends.cuda.matmul.allow_tf32)
    if device.type == 'cuda':
        peak_ref = peak_tflops(torch.cuda.get_device_name(device), precision, tf32)
    results = {}
    for variant in variants:
        times = timers[variant.name].seconds()
        median = statistics.median(times)
        mean_rate = variant.images * len(times) / sum(times)
        n_flops = flops[variant.name]
        tflops = n_flops / median / 1e12 if n_flops else None
        results[variant.name] = dict(
            images_per_s=variant.images / median if variant.rate == 'median' else mean_rate,
            rate=variant.rate, mean_images_per_s=mean_rate, median_s=median, times_s=times,
            min_s=min(times), max_s=max(times), batch=variant.images,
            peak_mem_bytes=peaks[variant.name] or None,
            peak_mem_kind=('cuda max_memory_allocated' if device.type == 'cuda' else
                           'process peak RSS (VmHWM)' + ('' if memory.resettable else
                                                         ', not resettable: since start')),
            flops_per_step=n_flops, tflops_per_s=tflops,
            peak_tflops=peak_ref, mfu=(tflops / peak_ref if tflops and peak_ref else None),
            profile=profiles[variant.name], info=variant.info)
    return results


# --------------------------------------------------------------------------- precision
PRECISIONS = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def autocast_context(device: torch.device, precision: str):
    """``torch.autocast`` for bf16/fp16, a null context for fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f'--precision must be one of {sorted(PRECISIONS)}, got {precision!r}')
    if precision == 'fp32':
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=PRECISIONS[precision])


def optim_wrapper_cfg(base: dict, precision: str, device: torch.device, fused: bool,
                      bf16_without_scaler: bool = False) -> dict:
    """An mmengine optim-wrapper config for ``precision`` on ``device``.

    fp32: ``OptimWrapper``. bf16/fp16 on a GPU: ``AmpOptimWrapper`` with that dtype (what
    mmpretrain's config uses). On a CPU, mmengine's ``AmpOptimWrapper`` refuses to run, so the
    caller wraps the step in :func:`autocast_context` and a plain ``OptimWrapper`` is used.

    Args:
        base (dict): The config's ``optim_wrapper`` (optimizer, clip_grad, paramwise_cfg...).
        precision (str): fp32 | bf16 | fp16.
        device (torch.device): Where the model runs.
        fused (bool): Ask for ``fused=True`` AdamW (one kernel for every parameter); False
            takes ``fused`` out of a config that sets it (``--no-fused``).
        bf16_without_scaler (bool): bf16 on a GPU with a plain ``OptimWrapper`` (the caller
            autocasts): bf16 has fp32's exponent range, so the loss scaler's unscale and
            inf checks are pure overhead.
    """
    cfg = copy.deepcopy(dict(base))
    cfg.pop('loss_scale', None)
    cfg.pop('dtype', None)
    if precision == 'bf16' and bf16_without_scaler:
        cfg['type'] = 'OptimWrapper'
    elif precision != 'fp32' and device.type == 'cuda':
        cfg['type'] = 'AmpOptimWrapper'
        cfg['dtype'] = {'bf16': 'bfloat16', 'fp16': 'float16'}[precision]
        cfg['loss_scale'] = 'dynamic'
    else:
        cfg['type'] = 'OptimWrapper'
    optimizer = dict(cfg['optimizer'])
    if fused:
        optimizer['fused'] = True
        optimizer.pop('foreach', None)
    else:
        optimizer.pop('fused', None)
    cfg['optimizer'] = optimizer
    return cfg


# --------------------------------------------------------------------------- inputs
def synthetic_images(batch: int, img_size: int, generator: torch.Generator) -> torch.Tensor:
    """uint8 images (B, 3, H, W), as a dataloader hands them to a data preprocessor."""
    return torch.randint(0, 256, (batch, 3, img_size, img_size), dtype=torch.uint8,
                         generator=generator)


def random_masks(batch: int, grid: int, num_masked: int,
                 generator: torch.Generator) -> torch.Tensor:
    """Masks (B, grid, grid) with exactly ``num_masked`` True each (the cost is the same as
    block-wise masks with that count; the block shape does not change the step's work)."""
    masks = torch.zeros(batch, grid * grid, dtype=torch.bool)
    for i in range(batch):
        masks[i, torch.randperm(grid * grid, generator=generator)[:num_masked]] = True
    return masks.view(batch, grid, grid)


def num_masked_patches(grid: int) -> int:
    """75 of 196 patches at 224 px (the BEiT v2 recipe), the same fraction elsewhere."""
    return max(1, round(grid * grid * 75 / 196))


def mim_batch(batch: int, img_size: int, patch_size: int = 16, seed: int = 0) -> dict:
    """A MIM batch in the format ``model.train_step`` takes: two uint8 views + masks."""
    from mmpretrain.structures import DataSample

    if img_size % patch_size:
        raise ValueError(f'--img-size {img_size} is not a multiple of the patch size '
                         f'{patch_size}')
    gen = torch.Generator().manual_seed(seed)
    grid = img_size // patch_size
    masks = random_masks(batch, grid, num_masked_patches(grid), gen)
    samples = []
    for i in range(batch):
        sample = DataSample()
        sample.set_mask(masks[i])
        samples.append(sample)
    return dict(inputs=[synthetic_images(batch, img_size, gen),
                        synthetic_images(batch, img_size, gen)],
                data_samples=samples)


def to_device(data: Any, device: torch.device) -> Any:
    """Move a batch (nested lists/dicts of tensors and DataSamples) to ``device`` once."""
    if isinstance(data, torch.Tensor):
        return data.to(device)
    if isinstance(data, dict):
        return {k: to_device(v, device) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(to_device(v, device) for v in data)
    if hasattr(data, 'to'):
        return data.to(device)
    return data


def write_json(result: dict, path: Union[str, Path]) -> Path:
    """Write ``result`` as JSON atomically (see :func:`.checkpoint.atomic_write`)."""
    path = Path(path)
    atomic_write_text(json.dumps(result, indent=2, default=str) + '\n', path)
    return path


def format_summary(workload: str, results: Dict[str, dict], baseline: Optional[str] = None) -> str:
    """Human-readable lines: one per variant, then the speed-up over ``baseline``."""
    lines = []
    for name, res in results.items():
        mem = res.get('peak_mem_bytes')
        rate = ('mean over ' if res.get('rate') == 'mean' else 'median ') + 'steps'
        parts = [f'{workload} [{name}]: {res["images_per_s"]:.3f} img/s ({rate})',
                 f'median {res["median_s"] * 1e3:.1f} ms/step (batch {res["batch"]}, '
                 f'{len(res["times_s"])} steps)']
        if mem:
            parts.append(f'peak mem {mem / 2**20:.0f} MiB')
        if res.get('tflops_per_s'):
            parts.append(f'{res["tflops_per_s"]:.3f} TFLOP/s')
        if res.get('mfu'):
            parts.append(f'MFU {100 * res["mfu"]:.1f}%')
        prof = res.get('profile')
        if prof and prof.get('matmul_share') is not None:
            parts.append(f'profiled step: {prof["total_s"]:.3f} s op time, '
                         f'{100 * prof["matmul_share"]:.0f}% in matmul kernels '
                         f'({prof["matmul_s"]:.3f} s)')
            if prof.get('by_category'):
                parts.append('kernel ms: ' + ' '.join(
                    f'{k} {1e3 * v:.1f}' for k, v in sorted(prof['by_category'].items(),
                                                            key=lambda kv: -kv[1])))
        lines.append(', '.join(parts))
    if baseline and baseline in results:
        for name, res in results.items():
            if name != baseline:
                ratio = res['images_per_s'] / results[baseline]['images_per_s']
                lines.append(f'{workload}: {name} / {baseline} = {ratio:.3f}x')
    return '\n'.join(lines)


# =========================================================================== workloads
STOCK_MIM_CONFIG = 'beitv2/beitv2_beit-base-p16_8xb256-amp-coslr-300e_in1k.py'
PROJECT_MIM_CONFIG = 'configs/beitv2_vitb_mim.py'


def stock_config_path(relative: str = STOCK_MIM_CONFIG) -> Path:
    """A config shipped inside the installed mmpretrain package (``.mim/configs``)."""
    import mmpretrain

    path = Path(mmpretrain.__file__).parent / '.mim' / 'configs' / relative
    if not path.is_file():
        raise FileNotFoundError(f'mmpretrain config {relative} not found at {path}; is '
                                'mmpretrain 1.2.0 installed with its configs?')
    return path


def _default_scope(scope: str = 'mmpretrain') -> None:
    from mmengine.registry import init_default_scope
    init_default_scope(scope)


def _build_model(model_cfg: dict, device: torch.device, registry=None) -> torch.nn.Module:
    if registry is None:
        from mmpretrain.registry import MODELS as registry
    model = registry.build(copy.deepcopy(model_cfg))
    model.init_weights()
    return model.to(device)


def _build_optim_wrapper(model: torch.nn.Module, cfg: dict):
    from mmengine.optim import build_optim_wrapper
    return build_optim_wrapper(model, copy.deepcopy(cfg))


def _cfg_to_dict(cfg) -> dict:
    return cfg.to_dict() if hasattr(cfg, 'to_dict') else copy.deepcopy(dict(cfg))


def _model_cfg(cfg) -> dict:
    """``cfg.model`` as a dict, with the config's top-level ``data_preprocessor`` where the
    model has none (mmengine's runner merges it the same way)."""
    model = _cfg_to_dict(cfg.model)
    if 'data_preprocessor' not in model and 'data_preprocessor' in cfg:
        model['data_preprocessor'] = _cfg_to_dict(cfg.data_preprocessor)
    return model


def stock_mim_config(arch: dict, tokenizer_arch: dict, img_size: int) -> tuple:
    """mmpretrain's own BEiT v2 model and optim-wrapper configs at ``arch``/``img_size``.

    Changed from the stock file: the architecture of student, neck, head and tokenizer
    encoder, the image size, and the tokenizer's ``init_cfg`` (a download) is dropped. The
    stock ``BEiTV2Neck`` validates ``num_layers`` but reads ``depth`` from a dict arch, so
    both are given; the early layer is the 4th from last, as ``out_indices=[-4, -1]``.

    Returns:
        tuple: ``(model_cfg, optim_wrapper_cfg)`` as plain dicts.
    """
    from mmengine.config import Config

    cfg = Config.fromfile(str(stock_config_path()))
    model = _model_cfg(cfg)
    depth = arch['num_layers']
    model['backbone'].update(arch=dict(arch), img_size=img_size)
    model['neck'].update(backbone_arch=dict(arch, depth=depth), early_layers=depth - 3)
    model['head']['embed_dims'] = arch['embed_dims']
    encoder = model['target_generator']['encoder_config']
    encoder.update(arch=dict(tokenizer_arch), img_size=img_size)
    model['target_generator']['init_cfg'] = None
    return model, _cfg_to_dict(cfg.optim_wrapper)


def fast_mim_config(arch: dict, tokenizer_arch: dict, img_size: int, attn: str = 'sdpa',
                    compile_layers=False, config: Optional[str] = None,
                    num_codes: int = 8192, select_rows: bool = True,
                    student_attn: Optional[str] = None) -> tuple:
    """This project's BEiT v2 model and optim-wrapper configs at ``arch``/``img_size``.

    From ``config`` (default: ``configs/beitv2_vitb_mim.py`` when it exists) or, without one,
    from mmpretrain's stock config with this project's classes swapped in: ``BEiTMIM``
    (frozen tokenizer under ``inference_mode``, sync-free masked gather),
    ``FastBEiTPretrainViT`` and ``BEiTV2AggregationNeck`` (SDPA attention), ``VQKDTokenizer``
    (encoder only: MIM never runs the decoder).

    Args:
        attn (str): Attention of the tokenizer (and of the student unless ``student_attn``).
        compile_layers (bool | dict): ``torch.compile`` every transformer layer: student,
            aggregation neck and tokenizer encoder (the two row-selective last layers stay
            eager); a dict gives ``torch.compile`` options (see
            :func:`beitv2_mm.backbones.beit_vit.compile_layers`).
        select_rows (bool): Use :class:`beitv2_mm.algorithms.selective_beit.SelectiveBEiTMIM` (the
            two last layers only for the rows the loss reads) instead of ``BEiTMIM``.
        student_attn (str, optional): Attention of the student and the neck.

    Returns:
        tuple: ``(model_cfg, optim_wrapper_cfg)`` as plain dicts.
    """
    from mmengine.config import Config

    from ..algorithms import selective_beit  # noqa: F401 - registers SelectiveBEiTMIM

    student_attn = student_attn or attn
    stock_model, stock_optim = stock_mim_config(arch, tokenizer_arch, img_size)
    path = config or (PROJECT_MIM_CONFIG if Path(PROJECT_MIM_CONFIG).is_file() else None)
    if path:
        cfg = Config.fromfile(path)
        model = _model_cfg(cfg)
        optim = _cfg_to_dict(cfg.optim_wrapper)
        target = (model.get('target_generator') or {}).get('type')
        unsupported = [what for what, ok in (
            ('no patch-aggregation neck (model.neck)', isinstance(model.get('neck'), dict)),
            ('no MIM head (model.head)', isinstance(model.get('head'), dict)),
            (f'target generator {target!r}, not a VQKDTokenizer', target == 'VQKDTokenizer'),
            (f'patch size {model["backbone"].get("patch_size")} (the benchmark makes views for '
             '16-px patches)', model['backbone'].get('patch_size', 16) == 16))
            if not ok]
        if unsupported:
            raise ValueError(f'benchmark mim --config {path}: {"; ".join(unsupported)}. The mim '
                             'workload times BEiT v2 MIM configs (configs/beitv2_vitb_mim*.py, '
                             'configs/beitv2_vitl_mim.py)')
    else:
        model = copy.deepcopy(stock_model)
        model['type'] = 'BEiTMIM'
        model['backbone']['type'] = 'FastBEiTPretrainViT'
        model['neck']['type'] = 'BEiTV2AggregationNeck'
        model['target_generator'] = dict(type='VQKDTokenizer', decoder=None,
                                         input_range=(-1, 1), frozen=True, kmeans_init=False)
        optim = copy.deepcopy(stock_optim)
    grid = img_size // 16
    depth = arch['num_layers']
    if select_rows and model['type'] == 'BEiTMIM':
        model['type'] = 'SelectiveBEiTMIM'
    elif not select_rows and model['type'] == 'SelectiveBEiTMIM':
        model['type'] = 'BEiTMIM'
    model['num_masked_patches'] = num_masked_patches(grid)
    model['backbone'].update(arch=dict(arch), img_size=img_size, attn_impl=student_attn,
                             compile=compile_layers or False)
    model['neck'].update(backbone_arch=dict(arch), early_layers=depth - 3,
                         attn_impl=student_attn, compile=compile_layers or False)
    model['head']['embed_dims'] = arch['embed_dims']
    model['head']['num_embed'] = num_codes
    tokenizer = model['target_generator']
    tokenizer.pop('checkpoint', None)
    tokenizer.update(decoder=None, num_codes=num_codes)
    encoder = dict(tokenizer.get('encoder') or {})
    from beitv2_mm.tokenizers.vqkd import vqkd_vit_cfg
    base_encoder = vqkd_vit_cfg(arch=dict(tokenizer_arch), img_size=img_size)
    base_encoder.update({k: v for k, v in encoder.items() if k not in ('arch', 'img_size')})
    base_encoder['type'] = 'FastBEiTViT'
    base_encoder['attn_impl'] = attn
    base_encoder['compile'] = compile_layers or False
    tokenizer['encoder'] = base_encoder
    return model, optim


def stock_vqkd_to_project(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """mmpretrain ``VQKD`` state dict -> this project's ``VQKDTokenizer`` (encoder only).

    Encoder and task layer keys are the same; the codebook moves from
    ``quantize.embedding.weight`` to ``quantizer.codebook``, the k-means flag from
    ``quantize.embedding.initted`` to ``quantizer.initted``, the counts from
    ``quantize.cluster_size`` to ``quantizer.cluster_size``. Other quantizer keys (EMA
    accumulators) are dropped: inference does not read them.
    """
    rename = {'quantize.embedding.weight': 'quantizer.codebook',
              'quantize.embedding.initted': 'quantizer.initted',
              'quantize.cluster_size': 'quantizer.cluster_size'}
    out = {}
    for key, value in state.items():
        if key in rename:
            out[rename[key]] = value
        elif not key.startswith('quantize.'):
            out[key] = value
    return out


def copy_stock_weights_into_fast(stock: torch.nn.Module, fast: torch.nn.Module) -> None:
    """Give the fast MIM model exactly the stock model's weights (student and tokenizer).

    Student, neck and head keys are the same in both; the tokenizer goes through
    :func:`stock_vqkd_to_project`. Every key of the fast model must be filled (strict), and
    no stock key may be left unused except the quantizer's EMA accumulators.
    """
    state = {}
    for key, value in stock.state_dict().items():
        if key.startswith('target_generator.'):
            continue
        state[key] = value
    tokenizer = stock_vqkd_to_project(
        {k[len('target_generator.'):]: v for k, v in stock.state_dict().items()
         if k.startswith('target_generator.')})
    state.update({f'target_generator.{k}': v for k, v in tokenizer.items()})
    own = fast.state_dict()
    # the fast tokenizer may hold extra non-persistent/statistics buffers: keep its own
    for key in own:
        if key not in state and key.startswith('target_generator.quantizer.'):
            state[key] = own[key]
    result = fast.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise KeyError(f'stock -> fast weight copy: missing {result.missing_keys}, '
                       f'unexpected {result.unexpected_keys}')


def mark_stock_codebook_ready(stock: torch.nn.Module) -> None:
    """Skip mmpretrain's on-the-fly k-means of the codebook (its first training step would
    overwrite the codebook from the batch, as it does in a real stock MIM run); a codebook
    still all zeros (k-means pending) gets unit-norm random codes, as a trained one has."""
    embedding = getattr(getattr(stock.target_generator, 'quantize', None), 'embedding', None)
    if embedding is not None and hasattr(embedding, 'initted'):
        with torch.no_grad():
            if not embedding.initted.bool().all() and not embedding.weight.any():
                # k-means init leaves zeros until it runs: give unit-norm random codes
                codes = torch.randn(embedding.weight.shape, generator=torch.Generator()
                                    .manual_seed(0)).to(embedding.weight.device)
                embedding.weight.copy_(torch.nn.functional.normalize(codes, dim=-1))
            embedding.initted.fill_(1.0)


@dataclass
class MIMSetup:
    """A built MIM model with its optimizer wrapper, batch and step function."""
    name: str
    model: torch.nn.Module
    optim_wrapper: Any
    data: dict
    step: Callable[[], Any]
    forward_backward: Callable[[], Any]
    model_cfg: dict
    optim_cfg: dict


def make_mim_setup(name: str, model_cfg: dict, optim_cfg: dict, batch: int, img_size: int,
                   precision: str, device: torch.device, fused: bool, seed: int = 0,
                   model: Optional[torch.nn.Module] = None, fast: bool = False) -> MIMSetup:
    """Build ``model_cfg`` and a step = ``model.train_step(batch, optim_wrapper)``.

    ``train_step`` is what mmengine's loop calls: data preprocessor, forward, loss, backward,
    gradient clipping, optimizer step, zero grad. On a CPU, bf16/fp16 autocast wraps it
    (mmengine's ``AmpOptimWrapper`` is GPU-only); on a GPU, ``AmpOptimWrapper`` does it,
    except for the ``fast`` path in bf16 (autocast without a loss scaler). The stock side
    (``fast=False``) clips gradients with mmengine's own ``_clip_grad`` (a host sync).
    """
    _default_scope('mmpretrain')
    torch.manual_seed(seed)
    if model is None:
        model = _build_model(model_cfg, device)
    mark_stock_codebook_ready(model)
    model.train()
    optim_cfg = optim_wrapper_cfg(optim_cfg, precision, device, fused,
                                  bf16_without_scaler=fast)
    optim_wrapper = _build_optim_wrapper(model, optim_cfg)
    if not fast:
        # the stock step as mmengine ships it: float(grad_norm) after backward (compat fix 5
        # removes that sync for every OptimWrapper once beitv2_mm is imported)
        stock_clip = compat.ORIGINALS.get('OptimWrapper._clip_grad')
        if stock_clip is not None:
            optim_wrapper._clip_grad = types.MethodType(stock_clip, optim_wrapper)
    data = to_device(mim_batch(batch, img_size, seed=seed), device)
    # autocast here unless mmengine's AmpOptimWrapper does it (GPU, stock / fp16)
    outer = (contextlib.nullcontext() if optim_cfg['type'] == 'AmpOptimWrapper'
             else autocast_context(device, precision))

    def step():
        with outer:
            return model.train_step(data, optim_wrapper)

    def forward_backward():
        with outer, optim_wrapper.optim_context(model):
            processed = model.data_preprocessor(data, True)
            losses = model._run_forward(processed, mode='loss')
            loss, _ = model.parse_losses(losses)
        loss.backward()
        optim_wrapper.zero_grad()

    return MIMSetup(name, model, optim_wrapper, data, step, forward_backward, model_cfg,
                    optim_cfg)


def mim_loss(model: torch.nn.Module, data: dict) -> torch.Tensor:
    """The total training loss of ``model`` on ``data`` (train mode, no parameter update): a
    MIM model's, or a classifier's (:func:`classifier_loss` seeds its random draws first)."""
    model.train()
    processed = model.data_preprocessor(data, True)
    losses = model._run_forward(processed, mode='loss')
    loss, _ = model.parse_losses(losses)
    return loss


# --------------------------------------------------------------------------- tokenizer
def stock_vqkd_config(tokenizer_arch: dict, img_size: int) -> dict:
    """mmpretrain's ``VQKD`` target generator from its BEiT v2 config (no download)."""
    model, _ = stock_mim_config(dict(tokenizer_arch), dict(tokenizer_arch), img_size)
    return model['target_generator']


def fast_tokenizer_config(tokenizer_arch: dict, img_size: int, attn: str = 'sdpa',
                          decoder: Optional[dict] = None, teacher_dim: int = 512,
                          num_codes: int = 8192, frozen: bool = True,
                          compile_layers=False) -> dict:
    """This project's ``VQKDTokenizer`` with a ``FastBEiTViT`` encoder (and decoder), their
    layers ``torch.compile``d with ``compile_layers`` (bool or options dict)."""
    from beitv2_mm.tokenizers.vqkd import vqkd_vit_cfg

    encoder = vqkd_vit_cfg(arch=dict(tokenizer_arch), img_size=img_size)
    encoder.update(type='FastBEiTViT', attn_impl=attn, compile=compile_layers or False)
    cfg = dict(type='VQKDTokenizer', encoder=encoder, decoder=None, input_range=(-1, 1),
               frozen=frozen, kmeans_init=False, num_codes=num_codes, target_dim=teacher_dim)
    if decoder is not None:
        cfg['decoder'] = dict(decoder, type='FastBEiTViT', attn_impl=attn,
                              compile=compile_layers or False)
    return cfg


def tokenizer_inputs(batch: int, img_size: int, device: torch.device, seed: int = 0):
    """Tokenizer-view images in [-1, 1] (what ``TwoNormDataPreprocessor`` gives)."""
    gen = torch.Generator().manual_seed(seed)
    images = synthetic_images(batch, img_size, gen).float() / 127.5 - 1.0
    return images.to(device)


def tokenize_variants(tokenizer_arch: dict, batch: int, img_size: int, device: torch.device,
                      precision: str, attn: str, compare: Optional[str],
                      seed: int = 0, compile_layers=False) -> List[Variant]:
    """Tokenizer inference: ``get_codebook_indices`` under ``inference_mode``.

    ``compare='mmpretrain'`` adds mmpretrain's ``VQKD`` (eval mode, ``no_grad``, as its
    ``BEiT`` calls it), holding the same weights; ``compare='explicit'`` adds this project's
    tokenizer with the explicit attention arithmetic.
    """
    _default_scope('mmpretrain')
    torch.manual_seed(seed)
    fast = _build_model(fast_tokenizer_config(tokenizer_arch, img_size, attn,
                                              compile_layers=compile_layers), device).eval()
    images = tokenizer_inputs(batch, img_size, device, seed)
    cast = autocast_context(device, precision)
    variants = []

    def fast_step():
        with torch.inference_mode(), cast:
            return fast.get_codebook_indices(images)

    variants.append(Variant('fast', fast_step, batch,
                            info=dict(attn=attn, compile=compile_layers or False)))
    if compare == 'mmpretrain':
        stock = _build_model(stock_vqkd_config(tokenizer_arch, img_size), device).eval()
        mark_stock_codebook_ready(_Holder(stock))
        fast.load_state_dict(_tokenizer_state_from_stock(stock, fast), strict=True)

        def stock_step():
            with torch.no_grad(), cast:
                return stock.get_tokens(images)['token']

        variants.append(Variant('mmpretrain', stock_step, batch, info=dict(type='VQKD')))
    elif compare == 'explicit':
        explicit_cfg = fast_tokenizer_config(tokenizer_arch, img_size, 'explicit')
        explicit = _build_model(explicit_cfg, device).eval()
        explicit.load_state_dict(fast.state_dict())

        def explicit_step():
            with torch.inference_mode(), cast:
                return explicit.get_codebook_indices(images)

        variants.append(Variant('explicit', explicit_step, batch, info=dict(attn='explicit')))
    elif compare:
        raise ValueError(f'tokenize --compare: use mmpretrain or explicit, got {compare!r}')
    return variants


class _Holder:
    """Lets :func:`mark_stock_codebook_ready` reach a bare tokenizer."""

    def __init__(self, tokenizer):
        self.target_generator = tokenizer


def _tokenizer_state_from_stock(stock: torch.nn.Module, fast: torch.nn.Module) -> dict:
    state = stock_vqkd_to_project(stock.state_dict())
    own = fast.state_dict()
    for key in own:  # statistics buffers the stock quantizer does not have
        if key not in state and key.startswith('quantizer.'):
            state[key] = own[key]
    return state


# --------------------------------------------------------------------------- VQ-KD training
class RandomTeacher(torch.nn.Module):
    """A frozen ViT with random weights standing in for CLIP/DINO in the VQ-KD benchmark.

    Same cost as the real teacher of that size (ViT encoder + projection), no weights
    needed; runs under ``inference_mode`` like the project's teachers.
    """

    def __init__(self, arch: dict, img_size: int, out_dims: int, attn: str):
        super().__init__()
        from mmpretrain.registry import MODELS
        from beitv2_mm.tokenizers.vqkd import vqkd_vit_cfg

        cfg = vqkd_vit_cfg(arch=dict(arch), img_size=img_size)
        cfg.update(type='FastBEiTViT', attn_impl=attn, out_type='raw')
        self.vit = MODELS.build(cfg)
        self.proj = torch.nn.Linear(arch['embed_dims'], out_dims, bias=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.vit(images)[-1][:, 1:]
        return self.proj(tokens)


def vqkd_step_fn(tokenizer: torch.nn.Module, teacher: torch.nn.Module, optimizer,
                 images: torch.Tensor, device: torch.device, precision: str):
    """One VQ-KD step as the official recipe: loss = mean(1 - cos(decoded, teacher)) + commit."""
    cast = autocast_context(device, precision)
    scaler = (torch.amp.GradScaler(device.type) if precision == 'fp16' and device.type == 'cuda'
              else None)

    def forward_backward(update: bool = True):
        with cast:
            target = teacher(images).clone()
            out = tokenizer.reconstruct(images)
            cos = torch.nn.functional.cosine_similarity(out.features.float(), target.float(),
                                                        dim=-1)
            loss = (1.0 - cos).mean() + out.commit_loss
        if scaler is not None:
            scaler.scale(loss).backward()
        else:
            loss.backward()
        if update:
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return forward_backward


def vqkd_variants(tokenizer_arch: dict, batch: int, img_size: int, device: torch.device,
                  precision: str, attn: str, compare: Optional[str], fused: bool = True,
                  teacher_dim: int = 512, seed: int = 0,
                  compile_layers=False) -> List[Variant]:
    """VQ-KD training step: teacher forward + tokenizer encode/quantize/decode + backward +
    AdamW (official hyper-parameters). No stock trainer exists (mmpretrain's ``VQKD`` is
    inference-only), so ``compare='explicit'`` compares against the explicit attention path
    with the same weights."""
    if compare not in (None, 'explicit'):
        raise ValueError(f'vqkd --compare: only explicit exists (mmpretrain cannot train '
                         f'VQ-KD), got {compare!r}')
    _default_scope('mmpretrain')
    decoder_arch = dict(tokenizer_arch, num_layers=min(3, tokenizer_arch['num_layers']))
    from beitv2_mm.tokenizers.vqkd import vqkd_vit_cfg
    grid = img_size // 16
    decoder = vqkd_vit_cfg(arch=decoder_arch, img_size=grid, patch_size=1)
    images = tokenizer_inputs(batch, img_size, device, seed)
    variants = []
    built = {}
    for name, impl in [('fast', attn)] + ([('explicit', 'explicit')] if compare else []):
        torch.manual_seed(seed)
        compiled = (compile_layers or False) if name == 'fast' else False
        cfg = fast_tokenizer_config(tokenizer_arch, img_size, impl, decoder=decoder,
                                    teacher_dim=teacher_dim, frozen=False,
                                    compile_layers=compiled)
        tokenizer = _build_model(cfg, device).train()
        teacher = RandomTeacher(tokenizer_arch, img_size, teacher_dim, impl).to(device)
        if built:
            first_tok, first_teacher = built['fast']
            tokenizer.load_state_dict(first_tok.state_dict())
            teacher.load_state_dict(first_teacher.state_dict())
        built[name] = (tokenizer, teacher)
        params = [p for p in tokenizer.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=2e-4, betas=(0.9, 0.99), weight_decay=1e-4,
                                      **({'fused': True} if fused else {}))
        fb = vqkd_step_fn(tokenizer, teacher, optimizer, images, device, precision)
        variants.append(Variant(name, fb, batch, flops_fn=lambda fb=fb: fb(update=False),
                                info=dict(attn=impl, fused_adamw=fused, compile=compiled)))
    return variants


def load_fast_weights(model: torch.nn.Module, source: Dict[str, torch.Tensor], name: str,
                      may_miss: Callable[[str], bool] = lambda key: False) -> None:
    """Load the fast model's weights ``source`` into ``model`` (the ``name`` side of a
    comparison); every key must be filled except the per-layer ``relative_position_index``
    buffers (the fast backbones derive them from the window size and do not store them; a stock
    backbone keeps its own) and the keys ``may_miss`` allows.

    Raises:
        KeyError: naming the keys left missing or unexpected.
    """
    result = model.load_state_dict(source, strict=False)
    missing = [k for k in result.missing_keys
               if not k.endswith('attn.relative_position_index') and not may_miss(k)]
    if missing or result.unexpected_keys:
        raise KeyError(f'fast -> {name} weight copy: missing {missing}, unexpected '
                       f'{result.unexpected_keys}')


# --------------------------------------------------------------------------- UperNet
def upernet_model_config(arch: dict, img_size: int, backbone_type: str, attn: str,
                         num_classes: int = 150, compile_layers=False,
                         window_size: int = 0) -> dict:
    """mmseg UperNet + FCN auxiliary head on a BEiT ViT (the ADE20K recipe's structure).

    ``backbone_type`` ``'mmpretrain.BEiTViT'`` is the stock backbone, ``'FastBEiTViT'``
    this project's (SDPA attention; its layers ``torch.compile``d with ``compile_layers``,
    bool or options dict), ``'WindowedBEiTViT'`` the detector's (ViTDet's layout with windows of
    ``window_size`` patches). Four features from evenly spaced layers (3/5/7/11 for
    12 layers), a ViT-to-pyramid neck (x4, x2, x1, x0.5), channels min(768, 4*embed_dims).
    """
    depth, dims = arch['num_layers'], arch['embed_dims']
    out_indices = sorted({max(0, round(depth * f) - 1) for f in (4 / 12, 6 / 12, 8 / 12, 1.0)})
    while len(out_indices) < 4:
        out_indices.append(out_indices[-1])
    backbone = dict(type=backbone_type, arch=dict(arch), img_size=img_size, patch_size=16,
                    out_indices=out_indices, out_type='featmap', final_norm=False,
                    use_abs_pos_emb=False, use_rel_pos_bias=True,
                    use_shared_rel_pos_bias=False, layer_scale_init_value=0.1,
                    drop_path_rate=0.15)
    if backbone_type != 'mmpretrain.BEiTViT':
        backbone.update(attn_impl=attn, compile=compile_layers or False)
    if backbone_type.endswith('WindowedBEiTViT'):
        backbone.update(window_size=window_size)  # ViTDet's global blocks by default
    channels = min(768, 4 * dims)
    norm = dict(type='SyncBN' if torch.distributed.is_initialized() else 'BN',
                requires_grad=True)
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0,
                               seg_pad_val=255, size=(img_size, img_size)),
        backbone=backbone,
        neck=dict(type='Feature2Pyramid', embed_dim=dims, rescales=[4, 2, 1, 0.5]),
        decode_head=dict(type='UPerHead', in_channels=[dims] * 4, in_index=[0, 1, 2, 3],
                         pool_scales=(1, 2, 3, 6), channels=channels, dropout_ratio=0.1,
                         num_classes=num_classes, norm_cfg=norm, align_corners=False,
                         loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False,
                                          loss_weight=1.0)),
        auxiliary_head=dict(type='FCNHead', in_channels=dims, in_index=2,
                            channels=min(256, channels), num_convs=1, concat_input=False,
                            dropout_ratio=0.1, num_classes=num_classes, norm_cfg=norm,
                            align_corners=False,
                            loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False,
                                             loss_weight=0.4)),
        train_cfg=dict(), test_cfg=dict(mode='whole'))


def upernet_batch(batch: int, img_size: int, num_classes: int, seed: int = 0) -> dict:
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    gen = torch.Generator().manual_seed(seed)
    images = synthetic_images(batch, img_size, gen)
    samples = []
    for _ in range(batch):
        sample = SegDataSample()
        label = torch.randint(0, num_classes, (1, img_size, img_size), generator=gen)
        sample.gt_sem_seg = PixelData(data=label)
        sample.set_metainfo(dict(img_shape=(img_size, img_size),
                                 ori_shape=(img_size, img_size),
                                 pad_shape=(img_size, img_size)))
        samples.append(sample)
    return dict(inputs=list(images), data_samples=samples)


def upernet_variants(arch: dict, batch: int, img_size: int, device: torch.device,
                     precision: str, attn: str, compare: Optional[str], fused: bool = True,
                     seed: int = 0, compile_layers=False,
                     channels_last: bool = False, window_size: int = 0) -> List[Variant]:
    """UperNet training step (ADE20K recipe's optimizer: AdamW lr 5e-5 wd 0.05); the fast
    side's backbone layers are compiled with ``compile_layers``, and with ``channels_last``
    its convolution weights (neck and heads) are in ``torch.channels_last`` memory format
    (the ViT's feature maps already come out channels-last: (B, N, C) tokens viewed as
    (B, C, h, w)). ``window_size`` > 0: the fast side's backbone is the detector's
    ``WindowedBEiTViT`` (ViTDet's window attention, windows of that many patches), the way to
    time the Mask R-CNN backbone at 1024 px without mmdet's compiled ops.

    ``compare='mmpretrain'`` adds the same model on the stock ``mmpretrain.BEiTViT`` backbone
    with the same weights (with windows: all but the windowed blocks' relative position
    tables, which have the window's size) and mmengine's default AdamW; ``'explicit'`` the
    fast side's model with the explicit attention path instead of SDPA (as for ``tokenize``
    and ``vqkd``).
    """
    import beitv2_mm  # noqa: F401 - registers FastBEiTViT
    from mmseg.registry import MODELS as SEG_MODELS
    from mmengine.registry import init_default_scope
    if compare not in (None, 'mmpretrain', 'explicit'):
        raise ValueError(f'upernet --compare: use mmpretrain or explicit, got {compare!r}')
    init_default_scope('mmseg')
    num_classes = 150
    variants = []
    first = None
    fast_type = 'mmpretrain.WindowedBEiTViT' if window_size else 'mmpretrain.FastBEiTViT'
    entries = [('fast', fast_type, fused, attn)]
    if compare == 'mmpretrain':
        entries.append((compare, 'mmpretrain.BEiTViT', False, attn))
    elif compare == 'explicit':  # this project's backbone with the explicit attention path
        entries.append((compare, fast_type, fused, 'explicit'))
    for name, backbone_type, use_fused, variant_attn in entries:
        torch.manual_seed(seed)
        compiled = (compile_layers or False) if name == 'fast' else False
        model = _build_model(upernet_model_config(arch, img_size, backbone_type, variant_attn,
                                                  num_classes, compile_layers=compiled,
                                                  window_size=window_size),
                             device, SEG_MODELS).train()
        if first is not None:
            # with windows, the windowed blocks' tables (their window's size) and the [CLS]
            # token the windowed backbone does not have stay the stock model's own
            source, own = first.state_dict(), model.state_dict()
            if window_size:
                source = {k: v for k, v in source.items() if v.shape == own[k].shape}
            load_fast_weights(model, source, name, may_miss=lambda k: bool(window_size) and (
                k.endswith('relative_position_bias_table') or k == 'backbone.cls_token'))
        first = first or model
        if channels_last and name == 'fast':
            model.to(memory_format=torch.channels_last)
        optim_cfg = optim_wrapper_cfg(
            dict(optimizer=dict(type='AdamW', lr=5e-5, betas=(0.9, 0.999), weight_decay=0.05)),
            precision, device, use_fused, bf16_without_scaler=(name == 'fast'))
        optim = _build_optim_wrapper(model, optim_cfg)
        data = to_device(upernet_batch(batch, img_size, num_classes, seed), device)
        outer = (contextlib.nullcontext() if optim_cfg['type'] == 'AmpOptimWrapper'
                 else autocast_context(device, precision))

        def step(model=model, optim=optim, data=data, outer=outer):
            with outer:
                return model.train_step(data, optim)

        variants.append(Variant(name, step, batch, info=dict(
            backbone=backbone_type, fused_adamw=use_fused, compile=compiled,
            window_size=window_size if name == 'fast' else 0,
            window_blocks=list(getattr(model.backbone, 'window_block_indexes', [])),
            channels_last=bool(channels_last and name == 'fast'))))
    init_default_scope('mmpretrain')
    return variants


# --------------------------------------------------------------------------- fine-tuning
STOCK_FINETUNE_CONFIG = 'beitv2/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py'
PROJECT_FINETUNE_CONFIG = 'configs/finetune_in1k.py'


def _finetune_model(cfg, arch: dict, img_size: int) -> dict:
    """``cfg.model`` (an ``ImageClassifier``) at ``arch``/``img_size``, with the config's
    top-level data preprocessor (its ``num_classes`` one-hot encodes for Mixup/CutMix) and no
    pretrained-weights ``init_cfg`` (a checkpoint the benchmark does not need)."""
    model = _model_cfg(cfg)
    model['backbone'].update(arch=dict(arch), img_size=img_size)
    model['backbone']['init_cfg'] = None
    model['head']['in_channels'] = arch['embed_dims']
    return model


def stock_finetune_config(arch: dict, img_size: int) -> tuple:
    """mmpretrain's own BEiT v2 ImageNet fine-tuning model and optim-wrapper configs
    (``mmpretrain::beitv2/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py``: ``BEiTViT``,
    mean pooling, Mixup/CutMix, label smoothing, ``LearningRateDecayOptimWrapperConstructor``
    with layer decay 0.65) at ``arch``/``img_size``; nothing else is changed.

    Returns:
        tuple: ``(model_cfg, optim_wrapper_cfg)`` as plain dicts.
    """
    from mmengine.config import Config

    cfg = Config.fromfile(str(stock_config_path(STOCK_FINETUNE_CONFIG)))
    return _finetune_model(cfg, arch, img_size), _cfg_to_dict(cfg.optim_wrapper)


def fast_finetune_config(arch: dict, img_size: int, attn: str = 'sdpa', compile_layers=False,
                         config: Optional[str] = None) -> tuple:
    """This project's fine-tuning model and optim-wrapper configs at ``arch``/``img_size``:
    ``config`` (default ``configs/finetune_in1k.py``): ``FastBEiTViT`` (SDPA attention with the
    relative position bias; its layers ``torch.compile``d with ``compile_layers``) and
    ``BEiTLayerDecayOptimWrapperConstructor``.

    Raises:
        ValueError: ``config`` is not an image classifier on a ``FastBEiTViT`` backbone.
    """
    from mmengine.config import Config

    path = config or PROJECT_FINETUNE_CONFIG
    if not Path(path).is_file():
        raise ValueError(f'benchmark finetune: config {path} not found (run from the '
                         'repository root, or give --config)')
    cfg = Config.fromfile(path)
    model = _finetune_model(cfg, arch, img_size)
    backbone = model['backbone']['type']
    if model.get('type') != 'ImageClassifier' or backbone not in ('FastBEiTViT',
                                                                  'mmpretrain.FastBEiTViT'):
        raise ValueError(f'benchmark finetune --config {path}: model {model.get("type")!r} on '
                         f'backbone {backbone!r}; the finetune workload times an '
                         'ImageClassifier on FastBEiTViT (configs/finetune_in1k*.py)')
    model['backbone'].update(attn_impl=attn, compile=compile_layers or False)
    return model, _cfg_to_dict(cfg.optim_wrapper)


def cls_batch(batch: int, img_size: int, num_classes: int, seed: int = 0) -> dict:
    """A classification batch in the format ``model.train_step`` takes: uint8 images and
    ``DataSample`` s with a class label each."""
    from mmpretrain.structures import DataSample

    gen = torch.Generator().manual_seed(seed)
    images = synthetic_images(batch, img_size, gen)
    labels = torch.randint(0, num_classes, (batch,), generator=gen)
    return dict(inputs=list(images),
                data_samples=[DataSample().set_gt_label(int(label)) for label in labels])


def unmixed(data: dict) -> dict:
    """``data`` as :func:`cls_batch` made it: mmpretrain's ``ClsDataPreprocessor`` writes the
    mixed ``gt_score`` into the samples it is given, and on a later call mixes those scores
    again instead of the one-hot labels; each step (as from a dataloader) must start from the
    labels alone. The field is deleted in place (copying the samples would add host time to
    every step that a real step does not have)."""
    for sample in data['data_samples']:
        if 'gt_score' in sample:
            del sample.gt_score
    return data


def classifier_loss(model: torch.nn.Module, data: dict, seed: int = 0) -> torch.Tensor:
    """The training loss of an image classifier on ``data`` (train mode: Mixup/CutMix and
    drop path on), with the random draws of both seeded by ``seed``, so that two models with
    the same structure and weights see the same mixing and the same dropped paths."""
    import numpy as np

    torch.manual_seed(seed)
    np.random.seed(seed)  # mmpretrain's Mixup/CutMix draw lambda and the choice from numpy
    return mim_loss(model, unmixed(data))


def finetune_models(arch: dict, img_size: int, device: torch.device, attn: str,
                    compare: Optional[str], seed: int = 0, compile_layers=False,
                    config: Optional[str] = None) -> List[tuple]:
    """The fine-tuning models to time, holding the same weights.

    ``fast``: this project's config (:func:`fast_finetune_config`). ``compare='mmpretrain'``
    adds mmpretrain's own config (:func:`stock_finetune_config`: stock ``BEiTViT``, its layer
    decay constructor); ``'explicit'`` the fast side's model on the explicit attention path.

    Returns:
        list: ``(name, model, model_cfg, optim_wrapper_cfg)`` per side, ``fast`` first.
    """
    _default_scope('mmpretrain')
    if compare not in (None, 'mmpretrain', 'explicit'):
        raise ValueError(f'finetune --compare: use mmpretrain or explicit, got {compare!r}')
    entries = [('fast', fast_finetune_config(arch, img_size, attn, compile_layers, config))]
    if compare == 'mmpretrain':
        entries.append((compare, stock_finetune_config(arch, img_size)))
    elif compare == 'explicit':
        entries.append((compare, fast_finetune_config(arch, img_size, 'explicit', False,
                                                      config)))
    built = []
    for name, (model_cfg, optim_cfg) in entries:
        torch.manual_seed(seed)
        model = _build_model(model_cfg, device).train()
        if built:
            load_fast_weights(model, built[0][1].state_dict(), name)
        else:
            # the project's head starts near zero (the official init_scale 0.001), where any
            # backbone gives the loss ln(num_classes): mmpretrain's std 0.02 instead, so that
            # the loss check sees the backbone (the values do not change the step's cost)
            with torch.no_grad():
                torch.nn.init.trunc_normal_(model.head.fc.weight, std=0.02)
        built.append((name, model, model_cfg, optim_cfg))
    return built


def finetune_variants(arch: dict, batch: int, img_size: int, device: torch.device,
                      precision: str, attn: str, compare: Optional[str], fused: bool = True,
                      seed: int = 0, compile_layers=False, config: Optional[str] = None,
                      loss_check: bool = True, built: Optional[List[tuple]] = None) -> tuple:
    """ImageNet fine-tuning step: data preprocessor with Mixup/CutMix, forward, label-smoothed
    loss, backward and the layer-decayed AdamW step (``model.train_step``), for the models of
    :func:`finetune_models` (or ``built``, its output); fused AdamW on the fast side (and
    ``explicit``) unless ``fused`` is False, mmengine's default AdamW on the ``mmpretrain``
    side. With ``loss_check`` and a comparison, both sides' loss on the same batch and weights,
    with the same Mixup/CutMix and drop-path draws, is computed first.

    Returns:
        tuple: ``(variants, extra)``; ``extra`` holds ``initial_loss_same_weights`` when
        compared with ``loss_check``.
    """
    if built is None:
        built = finetune_models(arch, img_size, device, attn, compare, seed, compile_layers,
                                config)
    num_classes = built[0][2]['head']['num_classes']
    data = to_device(cls_batch(batch, img_size, num_classes, seed), device)
    variants = []
    for name, model, model_cfg, base_optim in built:
        use_fused = fused and name != 'mmpretrain'
        optim_cfg = optim_wrapper_cfg(base_optim, precision, device, use_fused,
                                      bf16_without_scaler=(name == 'fast'))
        optim = _build_optim_wrapper(model, optim_cfg)
        outer = (contextlib.nullcontext() if optim_cfg['type'] == 'AmpOptimWrapper'
                 else autocast_context(device, precision))

        def step(model=model, optim=optim, outer=outer):
            with outer:
                return model.train_step(unmixed(data), optim)

        variants.append(Variant(name, step, batch, info=dict(
            model=model_cfg['type'], backbone=model_cfg['backbone']['type'],
            attn=model_cfg['backbone'].get('attn_impl', 'explicit'), fused_adamw=use_fused,
            compile=model_cfg['backbone'].get('compile', False),
            constructor=optim_cfg.get('constructor'), optim_wrapper=optim_cfg)))
    extra = {}
    if loss_check and len(built) > 1:
        with torch.no_grad(), eager_only(), autocast_context(device, precision):
            extra['initial_loss_same_weights'] = {
                name: float(classifier_loss(model, data, seed)) for name, model, _, _ in built}
    return variants, extra


# --------------------------------------------------------------------------- data pipeline
def profile_pipeline(dataset, collate_fn: Callable, images: int, batch: int) -> dict:
    """Where one data worker's time goes: each transform of ``dataset.pipeline`` and the
    collate, per image, run here in one thread as a worker runs them (PyTorch gives each worker
    one thread) on the first ``images`` samples. Run before the workers start, so that they do
    not share the cores.

    Returns:
        dict: ``images``, ``transforms`` (``[name, ms per image]`` in pipeline order),
        ``collate_ms`` (per image, in batches of ``batch``) and ``total_ms`` (their sum).
    """
    transforms = list(getattr(dataset.pipeline, 'transforms', []))
    if not transforms:
        raise ValueError('benchmark data --profile: the dataset has no pipeline transforms '
                         f'({type(dataset).__name__}.pipeline)')
    images = min(images, len(dataset))
    if images < 1:
        raise ValueError(f'benchmark data --profile: --profile-images must be at least 1 (got '
                         f'{images}; the dataset holds {len(dataset)} samples)')
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seconds = [0.0] * len(transforms)
        packed = []
        for index in range(images):
            results = dataset.get_data_info(index)
            for k, transform in enumerate(transforms):
                start = time.perf_counter()
                results = transform(results)
                seconds[k] += time.perf_counter() - start
                if results is None:  # filtered out, as Compose does
                    break
            else:
                packed.append(results)
        collate_s = 0.0
        for first in range(0, len(packed), batch):
            start = time.perf_counter()
            collate_fn(packed[first:first + batch])
            collate_s += time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    rows = [[type(t).__name__, 1e3 * s / images] for t, s in zip(transforms, seconds)]
    collate_ms = 1e3 * collate_s / max(len(packed), 1)
    return dict(images=images, transforms=rows, collate_ms=collate_ms,
                total_ms=sum(ms for _, ms in rows) + collate_ms)


def format_pipeline_profile(profile: dict) -> str:
    """:func:`profile_pipeline`'s result as a table, slowest first."""
    rows = sorted(profile['transforms'] + [['(collate)', profile['collate_ms']]],
                  key=lambda row: row[1], reverse=True)
    width = max(len(name) for name, _ in rows)
    lines = [f'data: one worker\'s time per image ({profile["images"]} images, one thread)']
    lines += [f'  {name:<{width}}  {ms:7.2f} ms' for name, ms in rows]
    lines.append(f'  {"total":<{width}}  {profile["total_ms"]:7.2f} ms')
    return '\n'.join(lines)


def data_variant(config: str, batch: Optional[int], num_workers: Optional[int],
                 data_root: Optional[str], seed: int = 0,
                 profile_images: Optional[int] = None,
                 preprocess_on: Optional[torch.device] = None) -> tuple:
    """The config's real training dataloader; one 'step' = fetching one batch.

    The workers keep ``num_workers * prefetch_factor`` batches ready (``info['prefetch_batches']``):
    fetching those takes microseconds, so the caller warms up with at least that many fetches and
    the variant's images/s is the mean rate (``rate='mean'``), not the median fetch.
    With ``profile_images``, ``info['pipeline_profile']`` is :func:`profile_pipeline` on that
    many images, measured before the workers start. With ``preprocess_on``, each fetched batch
    also goes through the config's ``model.data_preprocessor`` on that device (where
    ``configs/beitv2_vitb_mim_device_views.py`` decodes and augments), and a second variant,
    ``data_preprocessor``, times that preprocessor alone on one fixed batch.

    Returns:
        tuple: ``(variants, info)``; the iterator restarts when the dataset is exhausted.
    """
    from mmengine.config import Config
    from mmengine.runner import Runner

    cfg = Config.fromfile(config)
    if cfg.get('custom_imports'):
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    loader_cfg = copy.deepcopy(cfg.train_dataloader)
    if batch:
        loader_cfg['batch_size'] = batch
    if num_workers is not None:
        loader_cfg['num_workers'] = num_workers
        if num_workers == 0:
            loader_cfg['persistent_workers'] = False
    if data_root:
        loader_cfg['dataset']['data_root'] = data_root
    # what the runner's setup_env does before it builds the loader: above all
    # cv2.setNumThreads(0), without which every worker's OpenCV calls start a thread per core
    from mmengine.utils.dl_utils import set_multi_processing
    mp_cfg = dict(cfg.get('env_cfg', {}).get('mp_cfg') or {})
    set_multi_processing(**mp_cfg, distributed=False)
    loader = Runner.build_dataloader(loader_cfg, seed=seed)
    profile = (None if profile_images is None else profile_pipeline(
        loader.dataset, loader.collate_fn, profile_images, loader_cfg['batch_size']))
    preprocessor = None
    if preprocess_on is not None:
        from mmpretrain.registry import MODELS
        if not cfg.get('model', {}).get('data_preprocessor'):
            raise ValueError(f'benchmark data --preprocess: {config} has no '
                             'model.data_preprocessor')
        preprocessor = MODELS.build(copy.deepcopy(cfg.model.data_preprocessor)).to(preprocess_on)
    state = {'it': iter(loader)}  # starts the workers

    def fetch():
        try:
            return next(state['it'])
        except StopIteration:
            state['it'] = iter(loader)
            return next(state['it'])

    def step():
        data = fetch()
        return data if preprocessor is None else preprocessor(data, training=True)

    workers = loader.num_workers
    import cv2
    # what is in effect (set_multi_processing may be patched or skipped), not only asked for
    applied = dict(opencv_num_threads=cv2.getNumThreads(),
                   mp_start_method=torch.multiprocessing.get_start_method(allow_none=True))
    info = dict(config=config, batch_size=loader_cfg['batch_size'], num_workers=workers,
                mp_cfg=mp_cfg, mp_applied=applied, data_root=loader_cfg['dataset'].get(
                    'data_root'),
                prefetch_batches=workers * (loader.prefetch_factor or 0),
                dataset_size=len(loader.dataset))
    if profile is not None:
        info['pipeline_profile'] = profile
    variants = [Variant('dataloader', step, loader_cfg['batch_size'], info=info, rate='mean')]
    if preprocessor is not None:
        info['preprocessor'] = dict(type=type(preprocessor).__name__, device=str(preprocess_on))
        fixed = fetch()  # one batch, preprocessed again and again: the device's share alone
        variants.append(Variant('data_preprocessor',
                                lambda: preprocessor(fixed, training=True),
                                loader_cfg['batch_size'], info=info['preprocessor']))
    return variants, info
