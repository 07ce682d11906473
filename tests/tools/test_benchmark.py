"""tools/benchmark.py and beitv2_mm.engine.benchmark on tiny models (no timing assertions)."""
import json
import math
import time
from pathlib import Path

import pytest
import torch

TINY = '{"embed_dims": 32, "num_layers": 4, "num_heads": 2, "feedforward_channels": 64}'
COMMON = ['--arch', TINY, '--batch', '2', '--img-size', '32', '--steps', '2', '--warmup', '1',
          '--device', 'cpu']


@pytest.fixture(scope='module')
def bench_tool():
    from tool_module import load_tool
    return load_tool('benchmark')


@pytest.fixture(scope='module')
def bench():
    import beitv2_mm  # noqa: F401
    from beitv2_mm.engine import benchmark
    return benchmark


def _check_result(out: dict, path: Path, names):
    on_disk = json.loads(path.read_text())
    assert on_disk['workload'] == out['workload']
    assert set(on_disk['results']) == set(names)
    for name in names:
        res = on_disk['results'][name]
        assert len(res['times_s']) == 2
        assert res['images_per_s'] > 0 and math.isfinite(res['images_per_s'])
        assert res['peak_mem_bytes'] > 0
    env = on_disk['environment']
    assert env['versions']['torch'] == torch.__version__ and env['cpu']
    return on_disk


def test_mim_compare_writes_json_and_losses_agree(bench_tool, tmp_path):
    path = tmp_path / 'mim.json'
    out = bench_tool.main(['mim', *COMMON, '--compare', 'mmpretrain', '--profile',
                           '--json', str(path)])
    data = _check_result(out, path, ['fast', 'mmpretrain'])
    for name in ('fast', 'mmpretrain'):  # --profile: op time split, matmul kernels found
        prof = data['results'][name]['profile']
        assert 0 < prof['matmul_s'] < prof['total_s'] and 0 < prof['matmul_share'] < 1
        names = [op for op, _, _ in prof['top']]
        assert len(names) == 12 and any(op in ('aten::mm', 'aten::addmm') for op in names)
    assert set(data['ratios']) == {'fast/mmpretrain'}
    assert len(data['paired_ratios']['fast/mmpretrain']['per_round']) == 2
    assert data['results']['fast']['flops_per_step'] > 0
    assert data['results']['fast']['info']['model'] == 'SelectiveBEiTMIM'
    assert data['results']['mmpretrain']['info']['model'] == 'BEiT'
    losses = data['initial_loss_same_weights']
    assert losses['fast'] == pytest.approx(losses['mmpretrain'], rel=1e-4)


@pytest.mark.parametrize('attn', ['sdpa', 'explicit'])
def test_fast_and_stock_mim_same_loss_and_grads(bench, attn):
    """Same weights, same batch: the same loss and the same student gradients."""
    arch = bench.resolve_arch(TINY)
    device = torch.device('cpu')
    stock_cfg, stock_optim = bench.stock_mim_config(arch, arch, 32)
    fast_cfg, fast_optim = bench.fast_mim_config(arch, arch, 32, attn=attn)
    stock = bench.make_mim_setup('mmpretrain', stock_cfg, stock_optim, 2, 32, 'fp32', device,
                                 False, seed=1)
    fast = bench.make_mim_setup('fast', fast_cfg, fast_optim, 2, 32, 'fp32', device, True,
                                seed=1)
    bench.copy_stock_weights_into_fast(stock.model, fast.model)
    losses = []
    for setup in (stock, fast):
        setup.model.zero_grad()
        loss = bench.mim_loss(setup.model, stock.data)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-5)
    for (name, p_stock), p_fast in zip(stock.model.backbone.named_parameters(),
                                       fast.model.backbone.parameters()):
        if p_stock.grad is None:
            continue
        torch.testing.assert_close(p_fast.grad, p_stock.grad, rtol=1e-4, atol=1e-6, msg=name)
    # the stock tokenizer trains its codebook under MIM; the fast one must not
    assert not any(p.requires_grad for p in fast.model.target_generator.parameters())


def _losses_after_steps(bench, setups, steps):
    """Train each MIM setup ``steps`` times, then its loss on the first setup's batch."""
    for _ in range(steps):
        for setup in setups:
            setup.step()
    with torch.no_grad():
        return [bench.mim_loss(setup.model, setups[0].data) for setup in setups]


def test_one_training_step_same_loss_after_update(bench):
    """After one full train_step each (stock AdamW vs fused AdamW) the losses still agree."""
    arch = bench.resolve_arch(TINY)
    device = torch.device('cpu')
    stock = bench.make_mim_setup('mmpretrain', *bench.stock_mim_config(arch, arch, 32), 2, 32,
                                 'fp32', device, False, seed=2)
    fast = bench.make_mim_setup('fast', *bench.fast_mim_config(arch, arch, 32), 2, 32, 'fp32',
                                device, True, seed=2)
    bench.copy_stock_weights_into_fast(stock.model, fast.model)
    after = _losses_after_steps(bench, (stock, fast), steps=1)
    torch.testing.assert_close(after[1], after[0], rtol=1e-4, atol=1e-4)


def test_compiled_fast_step_matches_eager(bench):
    """``--compile`` compiles student, neck and tokenizer layers (dynamo with the eager backend
    here: the same graphs without a C++ toolchain) and trains exactly as the eager step."""
    arch = bench.resolve_arch(TINY)
    device = torch.device('cpu')
    eager = bench.make_mim_setup('fast', *bench.fast_mim_config(arch, arch, 32), 2, 32, 'fp32',
                                 device, True, seed=3, fast=True)
    compiled = bench.make_mim_setup(
        'fast', *bench.fast_mim_config(arch, arch, 32, compile_layers=dict(backend='eager')),
        2, 32, 'fp32', device, True, seed=3, fast=True)
    compiled.model.load_state_dict(eager.model.state_dict())
    model = compiled.model
    for layers in (model.backbone.layers, model.neck.patch_aggregation,
                   model.target_generator.encoder.layers):
        assert all(layer._compiled_call_impl is not None for layer in layers)
    after = _losses_after_steps(bench, (eager, compiled), steps=2)
    torch.testing.assert_close(after[1], after[0], rtol=1e-5, atol=1e-5)


def test_stock_side_keeps_mmengines_grad_norm_sync(bench):
    """The comparison times mmpretrain's step as shipped: mmengine's ``_clip_grad`` with its
    ``float(grad_norm)``; the fast side uses compat fix 5 (no host read in the step)."""
    from mmengine.logging import MessageHub

    from beitv2_mm.engine import compat
    arch = bench.resolve_arch(TINY)
    device = torch.device('cpu')
    stock = bench.make_mim_setup('mmpretrain', *bench.stock_mim_config(arch, arch, 32), 2, 32,
                                 'fp32', device, False, seed=4)
    fast = bench.make_mim_setup('fast', *bench.fast_mim_config(arch, arch, 32), 2, 32, 'fp32',
                                device, True, seed=4, fast=True)
    assert stock.optim_wrapper._clip_grad.__func__ is compat.ORIGINALS['OptimWrapper._clip_grad']
    assert '_clip_grad' not in vars(fast.optim_wrapper)  # the class's: compat fix 5
    hub = MessageHub.get_current_instance()
    before = len(hub.log_scalars['train/grad_norm'].data[0]) \
        if 'train/grad_norm' in hub.log_scalars else 0
    stock.step()
    assert len(hub.log_scalars['train/grad_norm'].data[0]) == before + 1  # logged at once
    fast.step()
    assert len(hub.log_scalars['train/grad_norm'].data[0]) == before + 1  # kept on the device
    assert isinstance(fast.optim_wrapper.pending_grad_norm, torch.Tensor)


def test_tokenize_compare_same_tokens(bench, bench_tool, tmp_path):
    path = tmp_path / 'tok.json'
    out = bench_tool.main(['tokenize', *COMMON, '--compare', 'mmpretrain', '--json', str(path)])
    data = _check_result(out, path, ['fast', 'mmpretrain'])
    # the same products counted both ways: SDPA's CPU flash kernel (no formula in the counter)
    # is counted through the math backend, as the stock explicit matmuls are
    flops = {name: res['flops_per_step'] for name, res in data['results'].items()}
    assert flops['fast'] == flops['mmpretrain'] > 0
    variants = bench.tokenize_variants(bench.resolve_arch(TINY), 3, 32, torch.device('cpu'),
                                       'fp32', 'sdpa', 'mmpretrain', seed=3)
    fast_tokens, stock_tokens = (v.step() for v in variants)
    assert fast_tokens.shape == (3, 4)
    assert torch.equal(fast_tokens, stock_tokens)


def test_vqkd_compare_explicit(bench_tool, tmp_path):
    path = tmp_path / 'vqkd.json'
    out = bench_tool.main(['vqkd', *COMMON, '--compare', 'explicit', '--teacher-dim', '16',
                           '--json', str(path)])
    data = _check_result(out, path, ['fast', 'explicit'])
    assert data['results']['explicit']['info']['attn'] == 'explicit'


def test_upernet_compare_stock_backbone(bench_tool, tmp_path):
    path = tmp_path / 'uper.json'
    out = bench_tool.main(['upernet', *COMMON, '--compare', 'mmpretrain', '--no-flops',
                           '--channels-last', '--json', str(path)])
    data = _check_result(out, path, ['fast', 'mmpretrain'])
    assert data['results']['mmpretrain']['info']['backbone'] == 'mmpretrain.BEiTViT'
    assert data['results']['fast']['info']['channels_last'] is True
    assert data['results']['mmpretrain']['info']['channels_last'] is False
    assert data['settings']['channels_last'] is True


def test_upernet_compare_explicit_is_the_fast_backbone_with_explicit_attention(bench_tool,
                                                                              tmp_path):
    """``--compare explicit`` means this project's model on the explicit attention path, as
    for tokenize and vqkd (it ran mmpretrain's stock backbone under that name)."""
    path = tmp_path / 'uper_explicit.json'
    out = bench_tool.main(['upernet', *COMMON, '--compare', 'explicit', '--no-flops',
                           '--json', str(path)])
    data = _check_result(out, path, ['fast', 'explicit'])
    explicit = data['results']['explicit']['info']
    assert explicit['backbone'] == 'mmpretrain.FastBEiTViT'
    assert explicit['fused_adamw'] == data['results']['fast']['info']['fused_adamw']


def test_argument_errors_are_one_line_and_data_refuses_model_settings(bench_tool, tmp_path,
                                                                      capsys):
    """Bad values fail before anything is built, naming the option; data refuses the model
    workloads' settings (it recorded them as if they applied); a config the mim workload
    cannot time is named with what it lacks."""
    def error(*args):
        with pytest.raises(SystemExit) as info:
            bench_tool.main(list(args))
        return str(info.value.code) + capsys.readouterr().err
    assert 'argument --steps: 0 is below 1' in error('mim', '--steps', '0')
    assert 'argument --batch: 0 is below 1' in error('upernet', '--batch', '0')
    assert 'argument --warmup: -3 is below 0' in error('vqkd', '--warmup', '-3')
    assert "unknown architecture 'huge'" in error('mim', '--arch', 'huge', '--device', 'cpu')
    assert f'--config {tmp_path / "no.py"}: no such file' in error(
        'data', '--config', str(tmp_path / 'no.py'))
    assert '--arch, --precision: for the model workloads only' in error(
        'data', '--config', 'configs/beitv2_vitb_mim.py', '--precision', 'bf16', '--arch',
        'large')
    assert 'unrecognized arguments: --compare' in error(
        'data', '--config', 'configs/beitv2_vitb_mim.py', '--compare', 'mmpretrain')
    message = error('mim', '--config', 'configs/upernet_ade20k.py', *COMMON)
    assert 'no MIM head (model.head)' in message and 'not a VQKDTokenizer' in message


def test_mim_config_gives_the_architecture(bench_tool, tmp_path):
    """``mim --config`` without ``--arch`` times the config's ViT (it timed ViT-B whatever
    the config said); the config and the code version are in the results."""
    config = tmp_path / 'tiny_mim.py'
    config.write_text(f"_base_ = [{str(Path('configs/beitv2_vitb_mim.py').resolve())!r}]\n"
                      f"model = dict(backbone=dict(arch=dict(_delete_=True, "
                      f"**{json.loads(TINY)!r})))\n")
    path = tmp_path / 'mim_cfg.json'
    bench_tool.main(['mim', '--config', str(config), *COMMON[2:], '--no-flops',
                     '--json', str(path)])
    data = json.loads(path.read_text())
    assert data['settings']['arch'] == json.loads(TINY)
    assert data['settings']['config'] == str(config)
    assert set(data['environment']['code']) == {'commit', 'dirty'}


def test_upernet_windowed_backbone_against_stock(bench_tool, tmp_path):
    """``--window-size``: the fast side is the detector's WindowedBEiTViT (ViTDet layout), the
    stock side keeps global attention; both share every weight that has the same shape."""
    path = tmp_path / 'uper_windows.json'
    eight_layers = TINY.replace('"num_layers": 4', '"num_layers": 8')
    out = bench_tool.main(['upernet', '--arch', eight_layers, *COMMON[2:4], '--img-size', '64',
                           *COMMON[6:], '--window-size', '2', '--compare', 'mmpretrain',
                           '--no-flops', '--json', str(path)])
    data = _check_result(out, path, ['fast', 'mmpretrain'])
    fast, stock = data['results']['fast']['info'], data['results']['mmpretrain']['info']
    assert fast['backbone'] == 'mmpretrain.WindowedBEiTViT' and fast['window_size'] == 2
    assert fast['window_blocks'] == [0, 2, 4, 6]  # 2x2 windows on the 4x4 grid; 1, 3, 5, 7 global
    assert stock['backbone'] == 'mmpretrain.BEiTViT' and stock['window_blocks'] == []


def _write_imagenet_layout(root: Path, per_class: int = 4):
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for cls in ('n0001', 'n0002'):
        (root / 'train' / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = torch.randint(0, 256, (40, 40, 3), dtype=torch.uint8, generator=gen)
            Image.fromarray(pixels.numpy()).save(root / 'train' / cls / f'{i}.JPEG')


def _write_data_config(tmp_path: Path, loader: str, augment: str = '') -> tuple:
    """An ImageNet-layout folder of 8 JPEGs and a config whose train_dataloader reads it:
    ``loader`` are the loader's keyword arguments, ``augment`` transforms before the crop."""
    root = tmp_path / 'imagenet'
    _write_imagenet_layout(root)
    config = tmp_path / 'data_cfg.py'
    config.write_text(
        "custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)\n"
        "default_scope = 'mmpretrain'\n"
        f"train_dataloader = dict({loader},\n"
        "    collate_fn=dict(type='default_collate'),\n"
        "    dataset=dict(type='CustomDataset', data_root='unset', data_prefix='train',\n"
        f"        pipeline=[dict(type='LoadImageFromFile'), {augment}\n"
        "                  dict(type='RandomResizedCrop', scale=32),\n"
        "                  dict(type='PackInputs')]))\n")
    return config, root


def test_data_pipeline_with_workers(bench_tool, tmp_path):
    config, root = _write_data_config(
        tmp_path, "batch_size=2, num_workers=1, persistent_workers=True, "
                  "sampler=dict(type='DefaultSampler', shuffle=True)")
    path = tmp_path / 'data.json'
    out = bench_tool.main(['data', '--config', str(config), '--data-root', str(root),
                           '--steps', '2', '--warmup', '1', '--device', 'cpu',
                           '--json', str(path)])
    data = _check_result(out, path, ['dataloader'])
    assert data['dataloader']['num_workers'] == 1 and data['dataloader']['dataset_size'] == 8
    # the worker's prefetched batches are drained before timing, and the rate is the mean one
    assert data['dataloader']['prefetch_batches'] == 2
    assert data['settings']['warmup'] == 2
    res = data['results']['dataloader']
    assert res['rate'] == 'mean'
    assert res['images_per_s'] == pytest.approx(2 * 2 / sum(res['times_s']))


def test_data_pipeline_profile_per_transform(bench_tool, tmp_path, capsys):
    """--profile on the data workload times each transform of the config's pipeline (and the
    collate) per image in one process, instead of profiling a fetch from the prefetch queue."""
    config, root = _write_data_config(
        tmp_path, "batch_size=3, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False)",
        augment="dict(type='PILColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, "
                "hue=0.),")
    path = tmp_path / 'data.json'
    out = bench_tool.main(['data', '--config', str(config), '--data-root', str(root),
                           '--steps', '2', '--warmup', '1', '--device', 'cpu', '--profile',
                           '--profile-images', '5', '--json', str(path)])
    data = _check_result(out, path, ['dataloader'])
    prof = data['dataloader']['pipeline_profile']
    assert prof['images'] == 5
    assert [name for name, _ in prof['transforms']] == [
        'LoadImageFromFile', 'PILColorJitter', 'RandomResizedCrop', 'PackInputs']
    assert all(ms > 0 for _, ms in prof['transforms']) and prof['collate_ms'] > 0
    assert prof['total_ms'] == pytest.approx(
        sum(ms for _, ms in prof['transforms']) + prof['collate_ms'])
    assert data['results']['dataloader']['profile'] is None  # no profile of a queue fetch
    printed = capsys.readouterr().out
    assert "one worker's time per image (5 images, one thread)" in printed
    assert 'PILColorJitter' in printed and '(collate)' in printed


def test_data_preprocess_times_the_device_views_config(bench_tool, tmp_path, tiny_data):
    """--preprocess: the shipped device-views config's workers plus its data preprocessor, and
    the preprocessor alone, timed one after the other (not alternately)."""
    config = Path(__file__).resolve().parents[2] / 'configs/beitv2_vitb_mim_device_views.py'
    path = tmp_path / 'data.json'
    out = bench_tool.main(['data', '--config', str(config),
                           '--data-root', str(tiny_data['imagenet']), '--batch', '2',
                           '--workers', '0', '--steps', '2', '--warmup', '1', '--device', 'cpu',
                           '--preprocess', '--profile', '--profile-images', '3',
                           '--json', str(path)])
    data = _check_result(out, path, ['dataloader', 'data_preprocessor'])
    assert data['dataloader']['preprocessor'] == dict(type='DeviceMIMDataPreprocessor',
                                                      device='cpu')
    assert [name for name, _ in data['dataloader']['pipeline_profile']['transforms']] == [
        'LoadEncodedImage', 'DrawMIMViews', 'BlockwiseMaskGenerator', 'PackInputs']
    assert data['results']['data_preprocessor']['rate'] == 'median'

    config, root = _write_data_config(tmp_path, "batch_size=2, num_workers=0, "
                                                "sampler=dict(type='DefaultSampler')")
    with pytest.raises(ValueError, match='no model.data_preprocessor'):
        bench_tool.main(['data', '--config', str(config), '--data-root', str(root),
                         '--steps', '1', '--device', 'cpu', '--preprocess'])


def test_data_root_that_does_not_exist_points_to_data_root_flag(bench_tool, tmp_path,
                                                               monkeypatch):
    """A --data-root that is not a folder fails at once; a config whose own root is missing
    gets the layout error with the fix that applies here (--data-root), not a traceback."""
    config, _ = _write_data_config(tmp_path, "batch_size=2, num_workers=0, "
                                             "sampler=dict(type='DefaultSampler')")
    missing = tmp_path / 'no_such_root'
    with pytest.raises(SystemExit) as err:
        bench_tool.main(['data', '--config', str(config), '--data-root', str(missing),
                         '--steps', '1', '--device', 'cpu'])
    assert str(err.value.code).startswith(
        f'tools/benchmark.py data: error: --data-root {missing} is not a folder')

    demo = str(Path(bench_tool.__file__).resolve().parents[1] / 'configs' / 'demo' /
               'teacher_vit-tiny_synthetic.py')
    monkeypatch.chdir(tmp_path)  # its data/synthetic/imagenet does not exist here
    with pytest.raises(SystemExit) as err:
        bench_tool.main(['data', '--config', demo, '--steps', '1', '--device', 'cpu'])
    message = str(err.value.code)
    assert message.startswith('tools/benchmark.py data: error: ImageNet: data root '
                              'data/synthetic/imagenet does not exist'), message
    assert message.endswith(f'Here: --data-root DIR sets train_dataloader.dataset.data_root '
                            f'of {demo}.')


def test_pipeline_profile_skips_filtered_samples_and_restores_threads(bench):
    from mmengine.dataset import Compose

    class Samples:
        pipeline = Compose([lambda r: dict(r, x=r['i'] * 2),
                            lambda r: None if r['i'] % 2 else r])  # drops odd samples

        def __len__(self):
            return 7

        def get_data_info(self, index):
            return dict(i=index)

    batches = []
    threads = torch.get_num_threads()
    prof = bench.profile_pipeline(Samples(), batches.append, images=100, batch=2)
    assert prof['images'] == 7 and len(prof['transforms']) == 2
    # the four kept samples (0, 2, 4, 6) reach the collate, in batches of 2
    assert [[r['x'] for r in b] for b in batches] == [[0, 4], [8, 12]]
    assert torch.get_num_threads() == threads
    with pytest.raises(ValueError, match='--profile-images must be at least 1'):
        bench.profile_pipeline(Samples(), batches.append, images=0, batch=1)
    Samples.pipeline = Compose([])
    with pytest.raises(ValueError, match='no pipeline transforms'):
        bench.profile_pipeline(Samples(), batches.append, images=1, batch=1)


def test_mean_rate_is_total_images_over_total_time(bench):
    """A prefetching loader returns most batches at once and some after a long wait: the median
    fetch would say 'infinitely fast'; the mean rate is what training sees."""
    delays = iter([0.0, 0.0, 0.0, 0.03] * 3)

    def fetch():
        time.sleep(next(delays))

    variant = bench.Variant('loader', fetch, 8, rate='mean')
    res = bench.run_alternating([variant], steps=12, warmup=0, device=torch.device('cpu'),
                                count_flops_too=False)['loader']
    assert res['images_per_s'] == pytest.approx(8 * 12 / sum(res['times_s']))
    assert res['images_per_s'] < 8 * 12 / 0.09 * 1.01  # ~1000 img/s, not 8 / ~0 s
    assert res['median_s'] < 0.01
    with pytest.raises(ValueError, match='rate must be median or mean'):
        bench.Variant('loader', fetch, 8, rate='mode')  # at construction, before any timing


def test_resolve_arch_and_peaks(bench):
    assert bench.resolve_arch('base')['embed_dims'] == 768
    with pytest.raises(ValueError, match='unknown architecture'):
        bench.resolve_arch('huge')
    with pytest.raises(ValueError, match='lacks'):
        bench.resolve_arch('{"embed_dims": 32}')
    assert bench.peak_tflops('NVIDIA H100 80GB HBM3', 'bf16') == 989.0
    assert bench.peak_tflops('NVIDIA H100 PCIe', 'bf16') == 756.0
    assert bench.peak_tflops('NVIDIA H100 80GB HBM3', 'fp32', tf32=True) == 494.0
    assert bench.peak_tflops('Some Unknown GPU', 'bf16') is None


def test_step_timer_and_memory_on_cpu(bench):
    timer = bench.StepTimer(torch.device('cpu'))
    memory = bench.PeakMemory(torch.device('cpu'))
    memory.reset()
    with timer.step():
        block = torch.ones(2**22)  # 16 MiB
        block.add_(1)
    assert len(timer.seconds()) == 1 and timer.seconds()[0] > 0
    assert memory.read() >= block.numel() * 4


def test_gpu_kernel_categories(bench):
    """The GPU profile groups kernels by name (names as torch 2.11 on an H100 reports them)."""
    cat = bench.kernel_category
    assert cat('nvjet_sm90_tst_192x192_64x4_2x1_v_bz_coopB_bias_TNN') == 'matmul'
    assert cat('sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64') == 'matmul'
    assert cat('fmha_cutlassB_bf16_aligned_64x64_k64_sm80(PyTorchMemEffAttention::'
               'AttentionBackwardKernel<cutlass::arch::Sm80>)') == 'attention'
    assert cat('void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float>') \
        == 'layer_norm'
    assert cat('void at::native::vectorized_elementwise_kernel<8, at::native::'
               'bfloat16_copy_kernel_cuda(at::TensorIteratorBase&)>') == 'copy/cast'
    assert cat('void at::native::vectorized_elementwise_kernel<4, at::native::'
               'CUDAFunctor_add<float>, std::array<char*, 3ul> >') == 'elementwise'
    assert cat('void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float>>') \
        == 'reduction'
    assert cat('void at::native::(anonymous namespace)::fused_adam_kernel') == 'optimizer'
    assert cat('some_custom_kernel') == 'other'


def test_profile_annotations_are_not_kernels(bench):
    """record_function ranges span kernels counted already; kernel names may hold '#'."""
    assert bench.is_annotation('Optimizer.step#AdamW.step')
    assert bench.is_annotation('ProfilerStep#3')
    assert not bench.is_annotation('void at::native::elementwise_kernel<128, 4, at::native::'
                                   'direct_copy_kernel_cuda(at::TensorIteratorBase&)::'
                                   '{lambda()#3}::operator()() const>')
    assert not bench.is_annotation('nvjet_sm90_tst_192x192_64x4_2x1_v_bz_coopB_bias_TNN')


def test_compile_flag(bench_tool, bench):
    """``--compile [MODE]`` -> the models' ``compile`` option; the data workload refuses it."""
    assert bench_tool.parse_args(['mim']).compile is None
    assert bench_tool.compile_cfg(bench_tool.parse_args(['mim', '--compile']).compile) is True
    mode = bench_tool.parse_args(['upernet', '--compile', 'reduce-overhead']).compile
    assert bench_tool.compile_cfg(mode) == dict(mode='reduce-overhead')
    assert bench_tool.compile_cfg(None) is False
    with pytest.raises(SystemExit):
        bench_tool.parse_args(['mim', '--compile', 'fastest'])
    with pytest.raises(SystemExit):  # for the model workloads only
        bench_tool.main(['data', '--config', 'configs/beitv2_vitb_mim.py', '--compile'])
    arch = bench.resolve_arch(TINY)
    cfg = bench.upernet_model_config(arch, 64, 'mmpretrain.FastBEiTViT', 'sdpa',
                                     compile_layers=dict(mode='max-autotune'))
    assert cfg['backbone']['compile'] == dict(mode='max-autotune')
    stock = bench.upernet_model_config(arch, 64, 'mmpretrain.BEiTViT', 'sdpa',
                                       compile_layers=True)
    assert 'compile' not in stock['backbone']


def test_finetune_compare_writes_json_and_losses_agree(bench_tool, tmp_path):
    """The fine-tuning step: this project's config against mmpretrain's own BEiT v2 fine-tuning
    config, same weights, the same loss (Mixup/CutMix and drop path drawn alike)."""
    path = tmp_path / 'finetune.json'
    out = bench_tool.main(['finetune', *COMMON, '--compare', 'mmpretrain', '--json', str(path)])
    data = _check_result(out, path, ['fast', 'mmpretrain'])
    fast, stock = (data['results'][name]['info'] for name in ('fast', 'mmpretrain'))
    assert (fast['backbone'], fast['attn'], fast['fused_adamw']) == ('FastBEiTViT', 'sdpa', True)
    assert (stock['backbone'], stock['fused_adamw']) == ('BEiTViT', False)
    assert fast['constructor'] == 'BEiTLayerDecayOptimWrapperConstructor'
    assert stock['constructor'] == 'LearningRateDecayOptimWrapperConstructor'
    assert data['results']['fast']['flops_per_step'] > 0
    assert set(data['ratios']) == {'fast/mmpretrain'}
    losses = data['initial_loss_same_weights']
    assert losses['fast'] == pytest.approx(losses['mmpretrain'], rel=1e-5)
    # the head is redrawn so that the loss depends on the backbone: not ln(1000)
    assert abs(losses['fast'] - math.log(1000)) > 1e-3


def _finetune_setup(bench, compare='mmpretrain', seed=5, **kwargs):
    arch = bench.resolve_arch(TINY)
    return bench.finetune_models(arch, 32, torch.device('cpu'), 'sdpa', compare, seed=seed,
                                 **kwargs)


def test_finetune_fast_and_stock_same_loss_and_gradients(bench):
    """Same weights, batch, Mixup/CutMix and drop-path draws: the same loss and gradients; a
    changed backbone weight changes the loss (the check can fail)."""
    (_, fast, fast_cfg, _), (_, stock, _, _) = _finetune_setup(bench)
    assert type(fast.backbone).__name__ == 'FastBEiTViT'
    assert type(stock.backbone).__name__ == 'BEiTViT'
    assert fast.data_preprocessor.batch_augments is not None  # Mixup/CutMix in the step
    data = bench.cls_batch(2, 32, fast_cfg['head']['num_classes'], seed=5)
    losses = []
    for model in (fast, stock):
        model.zero_grad()
        loss = bench.classifier_loss(model, data, seed=5)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    stock_params = dict(stock.named_parameters())
    for name, param in fast.named_parameters():
        torch.testing.assert_close(param.grad, stock_params[name].grad, rtol=1e-4, atol=1e-6,
                                   msg=name)
    with torch.no_grad():
        weight = stock.backbone.patch_embed.projection.weight
        weight.add_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
        changed = bench.classifier_loss(stock, data, seed=5)
    assert abs(float(changed) - float(losses[0])) > 1e-4


def test_finetune_one_step_fused_and_stock_adamw_agree(bench):
    """One ``train_step`` each (fused AdamW with this project's layer-decay constructor against
    mmengine's AdamW with mmpretrain's): the weights moved, and alike."""
    arch = bench.resolve_arch(TINY)
    built = _finetune_setup(bench, seed=6)
    (_, fast, _, _), (_, stock, _, _) = built
    start = fast.backbone.layers[0].ffn.layers[1].weight.detach().clone()
    variants, extra = bench.finetune_variants(arch, 2, 32, torch.device('cpu'), 'fp32', 'sdpa',
                                              'mmpretrain', seed=6, built=built)
    losses = extra['initial_loss_same_weights']
    assert losses['fast'] == pytest.approx(losses['mmpretrain'], rel=1e-5)
    import numpy as np
    for variant in variants:  # the same Mixup/CutMix and drop-path draws on both sides
        torch.manual_seed(8)
        np.random.seed(8)
        variant.step()
    moved = fast.backbone.layers[0].ffn.layers[1].weight
    assert not torch.equal(moved, start)
    torch.testing.assert_close(moved, stock.backbone.layers[0].ffn.layers[1].weight,
                               rtol=1e-4, atol=1e-6)
    data = bench.cls_batch(2, 32, 1000, seed=7)
    with torch.no_grad():
        after = [float(bench.classifier_loss(model, data, seed=7)) for model in (fast, stock)]
    assert after[0] == pytest.approx(after[1], rel=1e-5)


def test_finetune_config_must_be_a_fast_classifier(bench_tool, capsys):
    with pytest.raises(SystemExit) as err:
        bench_tool.main(['finetune', *COMMON, '--config', 'configs/beitv2_vitb_mim.py'])
    assert 'configs/beitv2_vitb_mim.py' in str(err.value)
    assert 'ImageClassifier on FastBEiTViT' in str(err.value)


def test_no_fused_takes_fused_out_of_a_config_that_sets_it(bench):
    """``--no-fused`` on a config with ``fused=True`` (the MIM and fine-tuning recipes) gives
    the for-loop AdamW, as the JSON's ``fused_adamw: false`` says."""
    base = dict(optimizer=dict(type='AdamW', lr=1e-3, fused=True))
    cpu = torch.device('cpu')
    assert 'fused' not in bench.optim_wrapper_cfg(base, 'fp32', cpu, False)['optimizer']
    assert bench.optim_wrapper_cfg(base, 'fp32', cpu, True)['optimizer']['fused'] is True
    assert base['optimizer']['fused'] is True  # the config itself is not changed
    arch = bench.resolve_arch(TINY)
    variants, _ = bench.finetune_variants(arch, 2, 32, cpu, 'fp32', 'sdpa', None, fused=False)
    assert 'fused' not in variants[0].info['optim_wrapper']['optimizer']
