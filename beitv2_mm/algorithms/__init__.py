"""algorithms"""
from . import vqkd  # noqa: F401  (VQKDAlgorithm)
from . import masking, beit  # noqa: E402,F401  (BlockwiseMaskGenerator; BEiTMIM, BEiTV2AggregationNeck)
from . import peco  # noqa: E402,F401  (PeCoVQVAETrainer)
from . import selective_beit  # noqa: E402,F401  (SelectiveBEiTMIM; after .beit, which it extends)
