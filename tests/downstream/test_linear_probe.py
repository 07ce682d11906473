"""Linear probe: the backbone stays frozen, in eval mode, bitwise unchanged by training."""
import torch

from downstream_helpers import TINY_ARCH


def _frozen(**kwargs):
    from mmpretrain.registry import MODELS
    torch.manual_seed(0)
    cfg = dict(type='FrozenBEiTViT', arch=TINY_ARCH, img_size=64, patch_size=8, final_norm=True,
               drop_path_rate=0.1, drop_rate=0.1)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def test_frozen_backbone_stays_in_eval_and_has_no_grad():
    vit = _frozen()
    vit.train()
    assert not vit.training and not any(m.training for m in vit.modules())
    assert not any(p.requires_grad for p in vit.parameters())
    x = torch.randn(2, 3, 64, 64)
    a, b = vit(x)[0], vit(x)[0]
    assert torch.equal(a, b)  # dropout / drop path inactive
    assert a.shape == (2, 64) and not a.requires_grad


def test_feature_options():
    from mmpretrain.registry import MODELS
    x = torch.randn(2, 3, 64, 64)
    cls_last = _frozen()
    ref = MODELS.build(dict(type='BEiTViT', arch=TINY_ARCH, img_size=64, patch_size=8,
                            final_norm=True, out_type='raw', out_indices=[1, 3]))
    # the frozen backbone is a FastBEiTViT (SDPA attention), which stores no per-layer index
    result = ref.load_state_dict(cls_last.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert all(k.endswith('attn.relative_position_index') for k in result.missing_keys)
    ref.eval()
    with torch.no_grad():
        raw1, raw3 = ref(x)
    torch.testing.assert_close(cls_last(x)[0], raw3[:, 0], atol=1e-5, rtol=1e-4)
    mean_early = _frozen(feature='mean_patch', feature_layer=1)
    mean_early.load_state_dict(cls_last.state_dict())
    torch.testing.assert_close(mean_early(x)[0], raw1[:, 1:].mean(1), atol=1e-5, rtol=1e-4)


def test_probe_training_leaves_backbone_bitwise_unchanged(tiny_data, tiny_mim_checkpoint,
                                                          tmp_path):
    from mmengine.runner import Runner

    from downstream_helpers import load_config, set_data_roots
    path, _ = tiny_mim_checkpoint
    cfg = load_config('configs/demo/linear_probe_vit-tiny_synthetic.py')
    set_data_roots(cfg, tiny_data['imagenet'])
    cfg.model.backbone.init_cfg.checkpoint = path
    cfg.train_dataloader.batch_size = 8
    cfg.train_cfg.max_iters = 3
    cfg.train_cfg.val_interval = 100
    cfg.param_scheduler = []
    cfg.work_dir = str(tmp_path)
    cfg.default_hooks.checkpoint.interval = 100
    cfg.custom_hooks = []
    runner = Runner.from_cfg(cfg)
    model = runner.model
    model.init_weights()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = model.head.fc.weight.detach().clone()
    runner.train()
    after = model.backbone.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert not torch.equal(head_before, model.head.fc.weight)  # the probe did train
    assert not model.backbone.training


def _mae_lars_step(param, grad, buf, lr, momentum, trust_coefficient=0.001):
    """One step of MAE's LARS (facebookresearch/mae util/lars.py) with weight decay 0: the
    trust ratio only for ndim > 1."""
    update = grad
    if param.ndim > 1:
        p_norm, u_norm = param.norm(), update.norm()
        if p_norm > 0 and u_norm > 0:
            update = update * (trust_coefficient * p_norm / u_norm)
    buf = update if buf is None else buf * momentum + update
    return param - lr * buf, buf


def test_probe_recipe_optimizer_is_maes_lars():
    """configs/linear_probe_in1k.py's optimizer updates the classifier as MAE's LARS does:
    weight with the trust ratio, bias without (mmpretrain's LARS alone scales the bias too)."""
    from mmengine.optim import build_optim_wrapper

    from downstream_helpers import build_model, load_config
    cfg = load_config('configs/linear_probe_in1k.py')
    cfg.model.backbone.update(arch=TINY_ARCH, img_size=64, patch_size=8)
    cfg.model.neck.input_features = TINY_ARCH['embed_dims']
    cfg.model.head.update(in_channels=TINY_ARCH['embed_dims'], num_classes=10)
    cfg.model.backbone.init_cfg.required = False  # random weights on purpose
    torch.manual_seed(0)
    model = build_model(cfg)
    model.init_weights()
    optim_cfg = dict(cfg.optim_wrapper, type='OptimWrapper')  # AMP needs a GPU; same optimizer
    wrapper = build_optim_wrapper(model, optim_cfg)
    fc = model.head.fc
    lr, momentum = cfg.optim_wrapper.optimizer.lr, cfg.optim_wrapper.optimizer.momentum
    ref = {name: (p.detach().clone(), None) for name, p in fc.named_parameters()}
    x, y = torch.randn(16, 3, 64, 64), torch.randint(0, 10, (16,))
    for _ in range(3):  # the bias is zero before the first step: the ratio matters after it
        wrapper.backward(torch.nn.functional.cross_entropy(model(x), y))
        for name, p in fc.named_parameters():
            ref_p, buf = ref[name]
            # the model's gradient (the reference parameters differ from it only by rounding)
            ref[name] = _mae_lars_step(ref_p, p.grad.clone(), buf, lr, momentum)
        wrapper.step()
        wrapper.zero_grad()
    for name, p in fc.named_parameters():
        assert torch.allclose(p, ref[name][0], rtol=1e-5, atol=1e-7), name
    assert fc.bias.abs().max() > 1e-3  # the bias did move at the full lr
