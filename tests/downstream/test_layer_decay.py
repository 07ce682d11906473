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
    # weight decay as the official code of each task: none on 1-D parameters and biases; the
    # relative position bias tables are decayed (fine-tune: --disable_weight_decay_on_rel_pos_bias
    # is off; segmentation: only 1-D and .bias are exempt, so cls_token is decayed too)
    wd = cfg.optim_wrapper.optimizer.weight_decay
    if 'mask_rcnn' not in config:
        assert groups['backbone.layers.0.attn.q_bias']['weight_decay'] == 0.0
        assert groups['backbone.layers.0.ln1.weight']['weight_decay'] == 0.0
        assert groups['backbone.layers.0.gamma_1']['weight_decay'] == 0.0
        assert groups['backbone.layers.0.attn.proj.bias']['weight_decay'] == 0.0
        assert groups['backbone.layers.0.attn.qkv.weight']['weight_decay'] == wd
        assert groups['backbone.layers.0.attn.relative_position_bias_table'][
            'weight_decay'] == wd
        assert groups['backbone.cls_token']['weight_decay'] == (
            wd if 'upernet' in config else 0.0)
    else:  # the detector's no-decay set (configs/mask_rcnn_coco.py, which the demo shrinks)
        full = load_config('configs/mask_rcnn_coco.py').optim_wrapper.paramwise_cfg
        assert cfg.optim_wrapper.paramwise_cfg == full
        for name in ('backbone.layers.0.attn.q_bias', 'backbone.layers.0.ln1.weight',
                     'backbone.layers.0.gamma_1', 'backbone.layers.0.attn.proj.bias'):
            assert groups[name]['weight_decay'] == 0.0, name
        assert 'backbone.cls_token' not in groups  # ViTDet's windowed ViT has no [CLS] token
        assert groups['backbone.layers.0.attn.qkv.weight']['weight_decay'] == wd
        # decayed in BEiT's fine-tuning and (as rel_pos_h/w) in ViTDet; windowed and global
        for layer in (0, 1):  # the tiny demo's block 0 is windowed, block 1 global
            name = f'backbone.layers.{layer}.attn.relative_position_bias_table'
            assert groups[name]['weight_decay'] == wd, name
    if 'upernet' in config:  # norms of the neck and heads are 1-D: no decay either
        norm_weights = [n for n in groups if not n.startswith('backbone.')
                        and groups[n]['params'][0].dim() == 1]
        assert norm_weights and all(groups[n]['weight_decay'] == 0.0 for n in norm_weights)


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
