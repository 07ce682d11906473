"""Engine pieces shared by every stage: stack fixes (compat), hooks, checkpoint I/O, launching."""
from . import compat  # noqa: F401
from . import hooks  # noqa: F401  (NaNGuardHook, NumClassesGuardHook: mmengine root HOOKS)
from . import codebook_hooks  # noqa: F401  (CodebookUsageHook: mmpretrain HOOKS)
from . import launch  # noqa: F401  (CPUAutocastOptimWrapper: mmengine root OPTIM_WRAPPERS)
