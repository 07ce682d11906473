"""beitv2_mm: BEiT v2 tokenizers, masked image modeling and downstream benchmarks on OpenMMLab.

Importing the package applies the stack fixes in :mod:`beitv2_mm.engine.compat` and registers
every module into the registry of the OpenMMLab package that runs it (mmpretrain for
tokenizers, teachers, MIM and classification; mmseg and mmdet for downstream heads). Configs
reach it with ``custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)``.
"""
from .engine import compat as _compat

_compat.apply_all()

from . import engine  # noqa: E402,F401  (hooks)
from . import backbones  # noqa: E402,F401
from . import convert  # noqa: E402,F401
from . import datasets  # noqa: E402,F401
from . import tokenizers  # noqa: E402,F401
from . import teachers  # noqa: E402,F401
from . import algorithms  # noqa: E402,F401
from . import downstream  # noqa: E402,F401

__version__ = '0.1.0'
