"""PeCo VQ-VAE training algorithm: loss terms, perceptual term, frozen teacher, pixel mode."""
import numpy as np
import pytest
import torch
from torch import nn

from beitv2_mm.algorithms.peco import (PeCoVQVAETrainer, find_transformer_blocks,
                                       perceptual_distance)
from mmpretrain.registry import MODELS

TOKENIZER = dict(type='PeCoVQVAE', patch_size=8, base_channels=8, ch_mult=(1, 2, 2, 2),
                 num_res_blocks=1, z_channels=16, norm_groups=4, num_embed=64, embed_dims=8,
                 quantizer=dict(decay=0.9))
PREPROCESSOR = dict(type='SelfSupDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3,
                    to_rgb=True)


class TinyViTTeacher(nn.Module):
    """A small frozen ViT-like stand-in: patch embedding + 4 residual MLP blocks."""

    def __init__(self, dim=16, depth=4):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, 8, stride=8)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU()) for _ in range(depth))

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        for block in self.blocks:
            x = x + block(x)
        return x


def build_trainer(perceptual_weight=1.0, layers=(1, 2, 4), teacher=None, **kwargs):
    torch.manual_seed(0)
    if perceptual_weight > 0 and teacher is None:
        teacher = TinyViTTeacher()
    model = PeCoVQVAETrainer(tokenizer=dict(TOKENIZER), teacher=teacher,
                             perceptual_weight=perceptual_weight, perceptual_layers=layers,
                             data_preprocessor=dict(PREPROCESSOR), **kwargs)
    model.init_weights()
    return model


def synthetic_batch(data_root, n=8):
    """n synthetic 64 px scenes as a batch in [-1, 1]."""
    from PIL import Image
    files = sorted((data_root / 'train').rglob('*.JPEG'))[:n]
    arrays = [np.asarray(Image.open(f).convert('RGB'), dtype=np.float32) for f in files]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return x / 127.5 - 1.0


@pytest.fixture(scope='module')
def scenes(tmp_path_factory, request):
    try:
        data = request.getfixturevalue('tiny_data')
    except pytest.FixtureLookupError:
        from beitv2_mm.datasets import make_synthetic_dataset
        data = make_synthetic_dataset(tmp_path_factory.mktemp('synthetic'), size='tiny')
    return synthetic_batch(data['imagenet'])


def test_perceptual_distance_zero_iff_identical():
    a = [torch.randn(2, 5, 16), torch.randn(2, 16, 3, 3)]
    assert float(perceptual_distance(a, a)) == 0.0
    b = [a[0] * 3.0, a[1] * 0.5]  # channel normalisation removes the scale
    assert float(perceptual_distance(a, b)) < 1e-10
    c = [torch.randn(2, 5, 16), torch.randn(2, 16, 3, 3)]
    assert float(perceptual_distance(a, c)) > 0.1


def test_perceptual_distance_sums_channels_and_averages_tokens():
    """Per layer: mean over tokens of the squared distance of the channel-normalised features,
    summed over channels (PeCo / LPIPS); layers add up. Hand-made values: orthogonal
    directions are 2 apart, one direction at two scales 0."""
    tokens_a = torch.tensor([[[3.0, 0.0], [0.0, 2.0]]])  # (B=1, N=2, C=2)
    tokens_b = torch.tensor([[[0.0, 1.0], [0.0, 5.0]]])
    assert float(perceptual_distance([tokens_a], [tokens_b])) == pytest.approx(1.0)
    # the same tokens as a channels-first (1, C, 1, 2) feature map: normalised over C
    maps_a, maps_b = (t.transpose(1, 2).reshape(1, 2, 1, 2) for t in (tokens_a, tokens_b))
    assert float(perceptual_distance([maps_a], [maps_b])) == pytest.approx(1.0)
    assert float(perceptual_distance([tokens_a, maps_a], [tokens_b, maps_b])) == \
        pytest.approx(2.0)


def test_loss_terms_carry_their_weights_and_the_chosen_pixel_loss(scenes):
    """loss_perceptual = perceptual_weight * distance, loss_commit = commit_weight * the
    quantizer's commitment, loss_pixel the configured one: the other tests run at weights 1
    and with the MSE, where a dropped weight or a swapped pixel loss passes."""
    x = torch.nn.functional.avg_pool2d(scenes[:2], 2)
    model = build_trainer(perceptual_weight=0.5, commit_weight=0.25, pixel_loss='l1')
    model.train()
    model.loss(x)  # first training batch: k-means init of the codebook
    model.eval()  # no EMA update: the same reconstruction twice
    with torch.no_grad():
        losses = model.loss(x)
        recon, commit, _ = model.tokenizer.reconstruct(x)
        perceptual = model.perceptual_loss(x, recon)
    # relative tolerances only: the terms are small (the codebook was fit to this batch)
    close = dict(rtol=1e-5, atol=0)
    torch.testing.assert_close(losses['loss_pixel'], (recon - x).abs().mean(), **close)
    assert float(commit) > 0
    torch.testing.assert_close(losses['loss_commit'], 0.25 * commit, **close)
    assert float(perceptual) > 0
    torch.testing.assert_close(losses['loss_perceptual'], 0.5 * perceptual, **close)


def test_perceptual_layers_are_the_outputs_of_those_blocks():
    """``perceptual_layers`` are 1-based: layer l is the output of ``blocks[l - 1]``, here
    checked against a forward written out by hand."""
    model = build_trainer(layers=(1, 2, 4))
    teacher = model.teacher
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        h = teacher.patch_embed(x).flatten(2).transpose(1, 2)
        outputs = []
        for block in teacher.blocks:
            outputs.append(block(h))
            h = h + outputs[-1]
        got = model.teacher_features(x)
    assert len(got) == 3
    for feats, layer in zip(got, (1, 2, 4)):
        torch.testing.assert_close(feats, outputs[layer - 1])


def test_perceptual_term_and_frozen_teacher(scenes):
    model = build_trainer()
    teacher = model.teacher
    x = scenes[:4]
    assert float(model.perceptual_loss(x, x.clone())) == 0.0
    assert float(model.perceptual_loss(x, x.flip(-1))) > 0.0

    # teacher: not in the parameters (optimizer), not in the state dict, always in eval
    own = {id(p) for p in model.parameters()}
    assert not any(id(p) in own for p in teacher.parameters())
    assert all(k.startswith('tokenizer.') for k in model.state_dict())
    model.train()
    assert not teacher.training

    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = model.loss(x)
    assert set(losses) == {'loss_pixel', 'loss_commit', 'loss_perceptual', 'codebook_usage'}
    assert float(losses['loss_perceptual']) > 0
    losses['loss_perceptual'].backward()
    # the perceptual term alone reaches the decoder (through the teacher's activations)
    grads = [p.grad for p in model.tokenizer.decoder.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None for p in teacher.parameters())
    optim.step()
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_pixel_mode_has_no_teacher_and_config_errors():
    model = build_trainer(perceptual_weight=0.0)
    assert model.teacher is None
    losses = model.loss(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert 'loss_perceptual' not in losses and 'loss_pixel' in losses
    with pytest.raises(ValueError, match='needs a teacher'):
        PeCoVQVAETrainer(tokenizer=dict(TOKENIZER), perceptual_weight=1.0)
    with pytest.raises(ValueError, match='remove model.teacher'):
        PeCoVQVAETrainer(tokenizer=dict(TOKENIZER), teacher=TinyViTTeacher(),
                         perceptual_weight=0.0)
    with pytest.raises(ValueError, match='perceptual_layers'):
        build_trainer(layers=(3, 6, 9, 12))  # the tiny teacher has 4 blocks
    with pytest.raises(ValueError, match="'mse' or 'l1'"):
        PeCoVQVAETrainer(tokenizer=dict(TOKENIZER), perceptual_weight=0.0, pixel_loss='l2')


def test_find_transformer_blocks():
    teacher = TinyViTTeacher(depth=3)
    assert find_transformer_blocks(teacher) is teacher.blocks
    assert find_transformer_blocks(teacher, 'blocks') is teacher.blocks
    with pytest.raises(AttributeError, match='model.teacher_blocks'):
        find_transformer_blocks(teacher, 'model.blocks')


@pytest.mark.parametrize('perceptual_weight', [0.0, 1.0])
def test_reconstruction_loss_decreases(scenes, perceptual_weight):
    model = build_trainer(perceptual_weight=perceptual_weight)
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x = torch.nn.functional.avg_pool2d(scenes, 2)  # 32 px (4 x 4 codes) keeps the test fast
    history = []
    for _ in range(25):
        losses = model.loss(x)
        total = sum(v for k, v in losses.items() if k.startswith('loss'))
        optim.zero_grad()
        total.backward()
        optim.step()
        history.append(float(losses['loss_pixel']))
    assert np.mean(history[-5:]) < 0.7 * np.mean(history[:3]), history


def test_registered_and_built_from_config():
    model = MODELS.build(dict(type='PeCoVQVAETrainer', tokenizer=dict(TOKENIZER),
                              perceptual_weight=0.0, data_preprocessor=dict(PREPROCESSOR)))
    assert isinstance(model, PeCoVQVAETrainer)
    # what default_collate gives: stacked uint8 images
    batch = dict(inputs=torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8),
                 data_samples=[None, None])
    data = model.data_preprocessor(batch, training=True)
    assert float(data['inputs'].min()) >= -1.0 and float(data['inputs'].max()) <= 1.0
    losses = model(data['inputs'], data['data_samples'], mode='loss')
    assert losses['loss_pixel'] > 0
    assert model(data['inputs'], mode='tensor').shape == (2, 8, 8)


def test_reconstruction_outside_the_input_range_keeps_its_perceptual_gradient(tmp_path):
    """With a BaseTeacher the reconstruction is normalised without the clamp to [-1, 1] that
    ``teacher(x)`` applies: overshooting pixels get a gradient, as with VQGAN's LPIPS."""
    timm = pytest.importorskip('timm')
    kwargs = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    torch.manual_seed(0)
    src = timm.create_model('vit_tiny_patch16_224', pretrained=False, num_classes=0, **kwargs)
    torch.save(src.state_dict(), tmp_path / 'teacher.pth')
    teacher = MODELS.build(dict(type='TimmTeacher', model_name='vit_tiny_patch16_224',
                                model_kwargs=kwargs, checkpoint=str(tmp_path / 'teacher.pth'),
                                input_range=(-1, 1)))
    model = build_trainer(layers=(1, 2), teacher=teacher)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    recon = (images * 1.6).requires_grad_()
    model.perceptual_loss(images, recon).backward()
    outside = recon.detach().abs() > 1
    assert 0.1 < outside.float().mean() < 0.6
    assert (recon.grad[outside] != 0).float().mean() > 0.99
    # in range, the unclamped normalisation is the teacher's own
    torch.testing.assert_close(teacher.normalize(images, clamp=False), teacher.normalize(images))
