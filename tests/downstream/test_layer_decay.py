"""Layer-wise lr decay inside the classifier, the segmentor and the detector."""
import pytest

from downstream_helpers import build_model, load_config

DEMOS = {
    'configs/demo/finetune_vit-tiny_synthetic.py': 0.65,
    'configs/demo/upernet_vit-tiny_synthetic.py': 0.75,
    'configs/demo/mask_rcnn_vit-tiny_synthetic.py': 0.7,
}


def _groups(cfg, model):
    from mmengine.optim import build_optim_wrapper
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    return {g['param_name']: g for g in wrapper.optimizer.param_groups}, wrapper


@pytest.mark.parametrize('config,decay', list(DEMOS.items()))
def test_per_layer_lr_scales(config, decay):
    cfg = load_config(config)
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == decay
    model = build_model(cfg)
    groups, wrapper = _groups(cfg, model)
    base_lr = cfg.optim_wrapper.optimizer.lr
    num_layers = 4  # tiny demo ViT; depths 0 (embeddings) .. 5 (everything after the ViT)
    seen_layers = set()
    for name, group in groups.items():
        if name.startswith('backbone.layers.'):
            layer = int(name.split('.')[2])
            seen_layers.add(layer)
            expected = decay ** (num_layers - layer)
        elif name.startswith('backbone.patch_embed') or name == 'backbone.cls_token':
            expected = decay ** (num_layers + 1)
        elif name.startswith('backbone.'):
            expected = 1.0  # final norms
        else:
            expected = 1.0  # neck / heads
        assert group['lr_scale'] == pytest.approx(expected), name
        assert group['lr'] == pytest.approx(base_lr * expected), name
    assert seen_layers == set(range(num_layers))
    # heads and neck are in the optimizer at full lr
    assert any(not n.startswith('backbone.') for n in groups)
    # no-decay keys (fine-tune / segmentation configs)
    if 'custom_keys' in cfg.optim_wrapper.paramwise_cfg:
        assert groups['backbone.layers.0.attn.q_bias']['weight_decay'] == 0.0
        assert groups['backbone.layers.0.attn.qkv.weight']['weight_decay'] == \
            cfg.optim_wrapper.optimizer.weight_decay


@pytest.mark.parametrize('config', ['configs/demo/upernet_vit-tiny_synthetic.py',
                                    'configs/demo/mask_rcnn_vit-tiny_synthetic.py'])
def test_stock_constructor_fails_inside_segmentor_and_detector(config):
    """Why the extension exists: mmpretrain's constructor needs model.get_layer_depth."""
    from mmengine.optim import build_optim_wrapper
    cfg = load_config(config)
    model = build_model(cfg)
    assert not hasattr(model, 'get_layer_depth')
    stock = dict(cfg.optim_wrapper,
                 constructor='mmpretrain.LearningRateDecayOptimWrapperConstructor')
    with pytest.raises(NotImplementedError):
        build_optim_wrapper(model, stock)
