"""Frozen feature teachers for tokenizer training: CLIP (open_clip), timm ViTs, mmpretrain models.

Each returns per-patch features (B, N, C) of images given in its ``input_range`` and never
trains. See :class:`BaseTeacher`.
"""
from .base import BaseTeacher, MissingTeacherWeightsError  # noqa: F401
from .mmpretrain_teacher import MMPretrainTeacher  # noqa: F401
from .open_clip_teacher import OpenCLIPTeacher  # noqa: F401
from .timm_teacher import TimmTeacher  # noqa: F401
