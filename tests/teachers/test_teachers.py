"""Teachers: load from a local file written here, fail clearly without it, stay frozen."""
import pytest
import torch

import beitv2_mm  # noqa: F401
from beitv2_mm.teachers import MissingTeacherWeightsError
from mmpretrain.registry import MODELS

TINY_CLIP = dict(embed_dim=24, vision_cfg=dict(image_size=32, layers=2, width=32,
                                               head_width=16, patch_size=8))


def images(size=32):
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0)) * 255


def assert_frozen(teacher):
    teacher.train()
    assert not teacher.training
    assert all(not m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())


def test_open_clip_teacher_target_is_ln_post_tokens_times_proj(tmp_path):
    pytest.importorskip('open_clip')
    from open_clip.model import _build_vision_tower

    torch.manual_seed(0)
    visual = _build_vision_tower(TINY_CLIP['embed_dim'], TINY_CLIP['vision_cfg'])
    path = tmp_path / 'clip.pt'
    # a full CLIP state dict: image tower under visual.*, plus text keys to ignore
    sd = {'visual.' + k: v for k, v in visual.state_dict().items()}
    sd['text_projection'] = torch.zeros(4, 24)
    torch.save(sd, path)
    teacher = MODELS.build(dict(type='OpenCLIPTeacher', model_cfg=TINY_CLIP,
                                checkpoint=str(path)))
    assert_frozen(teacher)
    assert teacher.out_dim == 24
    x = images()
    out = teacher(x)
    assert out.shape == (2, 16, 24)
    # reference: the same computation by hand on the source module
    visual.eval()
    xn = (x / 255 - teacher.mean) / teacher.std
    tok = visual.conv1(xn).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.view(1, 1, -1).expand(2, 1, -1)
    tok = torch.cat([cls, tok], 1) + visual.positional_embedding
    tok = visual.ln_pre(tok)
    if not getattr(visual.transformer, 'batch_first', True):
        tok = visual.transformer(tok.transpose(0, 1)).transpose(0, 1)
    else:
        tok = visual.transformer(tok)
    ref = visual.ln_post(tok)[:, 1:] @ visual.proj
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_open_clip_teacher_missing_file_message(tmp_path):
    pytest.importorskip('open_clip')
    missing = tmp_path / 'ViT-B-16.pt'
    with pytest.raises(MissingTeacherWeightsError) as err:
        MODELS.build(dict(type='OpenCLIPTeacher', model_cfg=TINY_CLIP, checkpoint=str(missing)))
    msg = str(err.value)
    assert str(missing) in msg and 'model.teacher.checkpoint' in msg
    assert 'openaipublic' in msg  # where the official weights come from
    with pytest.raises(MissingTeacherWeightsError, match='model.teacher.checkpoint'):
        MODELS.build(dict(type='OpenCLIPTeacher', model_cfg=TINY_CLIP))


def test_timm_teacher_loads_local_file_and_returns_final_norm_patch_tokens(tmp_path):
    timm = pytest.importorskip('timm')
    kwargs = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    torch.manual_seed(0)
    src = timm.create_model('vit_tiny_patch16_224', pretrained=False, num_classes=0, **kwargs)
    path = tmp_path / 'dino.pth'
    torch.save(src.state_dict(), path)
    teacher = MODELS.build(dict(type='TimmTeacher', model_name='vit_tiny_patch16_224',
                                model_kwargs=kwargs, checkpoint=str(path)))
    assert_frozen(teacher)
    x = images()
    out = teacher(x)
    assert out.shape == (2, 16, 32) and teacher.out_dim == 32
    src.eval()
    ref = src.forward_features((x / 255 - teacher.mean) / teacher.std)[:, 1:]
    torch.testing.assert_close(out, ref)
    # pixels outside the input range are clamped first, as the official ScalingLayerForIM
    over = x * 1.4 - 40.0
    assert over.min() < 0 and over.max() > 255
    torch.testing.assert_close(teacher(over), teacher(over.clamp(0, 255)))
    assert not torch.allclose(teacher.extract(teacher.normalize(over, clamp=False)),
                              teacher(over))
    with pytest.raises(MissingTeacherWeightsError, match='dino_vitbase16_pretrain'):
        MODELS.build(dict(type='TimmTeacher', model_name='vit_tiny_patch16_224',
                          model_kwargs=kwargs, checkpoint=str(tmp_path / 'absent.pth')))
    # a checkpoint of another architecture is reported per key
    other = timm.create_model('vit_tiny_patch16_224', pretrained=False, num_classes=0,
                              **dict(kwargs, embed_dim=48, num_heads=2))
    torch.save(other.state_dict(), tmp_path / 'other.pth')
    with pytest.raises(RuntimeError, match='shape mismatch for cls_token'):
        MODELS.build(dict(type='TimmTeacher', model_name='vit_tiny_patch16_224',
                          model_kwargs=kwargs, checkpoint=str(tmp_path / 'other.pth')))


def test_mmpretrain_teacher_from_demo_config(tmp_path, repo_root):
    from mmengine.config import Config

    from beitv2_mm.datasets.synthetic import SYNTHETIC_CLASSES

    cfg_path = repo_root / 'configs/demo/teacher_vit-tiny_synthetic.py'
    cfg = Config.fromfile(cfg_path)
    assert tuple(cfg.classes) == tuple(SYNTHETIC_CLASSES)
    torch.manual_seed(0)
    classifier = MODELS.build(cfg.model)
    path = tmp_path / 'teacher.pth'
    torch.save(dict(meta={}, state_dict=classifier.state_dict()), path)
    teacher = MODELS.build(dict(type='MMPretrainTeacher', config=str(cfg_path),
                                checkpoint=str(path), layer=-1))
    assert_frozen(teacher)
    x = images(64)
    out = teacher(x)
    assert out.shape == (2, 64, 64) and teacher.out_dim == 64
    # same weights as the classifier: its last-layer featmap equals the teacher output
    backbone = classifier.backbone
    backbone.eval()
    backbone.out_type = 'featmap'
    pre = cfg.model.data_preprocessor
    xn = (x - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)
    ref = backbone(xn)[-1].flatten(2).transpose(1, 2)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    mid = MODELS.build(dict(type='MMPretrainTeacher', config=str(cfg_path),
                            checkpoint=str(path), layer=1))
    assert mid.layer == 1 and not torch.allclose(mid(x), out)
    # a model trained without to_rgb saw BGR images (mmpretrain's loading): RGB in, reversed
    bgr_cfg = Config.fromfile(cfg_path)
    bgr_cfg.model.data_preprocessor.to_rgb = False
    bgr_path = tmp_path / 'teacher_bgr.py'
    bgr_cfg.dump(str(bgr_path))
    bgr = MODELS.build(dict(type='MMPretrainTeacher', config=str(bgr_path),
                            checkpoint=str(path), layer=-1))
    assert bgr.bgr and not teacher.bgr
    ref = backbone(((x.flip(1) - torch.tensor(pre.mean).view(1, 3, 1, 1))
                    / torch.tensor(pre.std).view(1, 3, 1, 1)))[-1].flatten(2).transpose(1, 2)
    torch.testing.assert_close(bgr(x), ref, atol=1e-4, rtol=1e-4)
    # trained for another class count than the config file says (the suite's teacher on a
    # real root: its head set by --cfg-options): the head is not the teacher, the rest loads
    cfg_231 = Config.fromfile(cfg_path)
    cfg_231.model.head.num_classes = 231
    cfg_231.model.data_preprocessor.num_classes = 231
    other = MODELS.build(cfg_231.model)
    other.backbone.load_state_dict(classifier.backbone.state_dict())
    path_231 = tmp_path / 'teacher_231.pth'
    torch.save(dict(meta={}, state_dict=other.state_dict()), path_231)
    teacher_231 = MODELS.build(dict(type='MMPretrainTeacher', config=str(cfg_path),
                                    checkpoint=str(path_231), layer=-1))
    assert not hasattr(teacher_231, 'head')
    torch.testing.assert_close(teacher_231(x), out)
    with pytest.raises(MissingTeacherWeightsError, match='teacher_vit-tiny_synthetic'):
        MODELS.build(dict(type='MMPretrainTeacher', config=str(cfg_path),
                          checkpoint=str(tmp_path / 'absent.pth')))
    with pytest.raises(FileNotFoundError, match='model.teacher.config'):
        MODELS.build(dict(type='MMPretrainTeacher', config=str(tmp_path / 'no_cfg.py'),
                          checkpoint=str(path)))
