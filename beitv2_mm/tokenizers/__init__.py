"""Visual tokenizers: VQ-KD (BEiT v2) and its EMA quantizer, plus the checkpoint loader."""
from .checkpoint import (CheckpointLoadReport, load_tokenizer_checkpoint,  # noqa: F401
                         read_state_dict)
from .quantizer import NormEMAQuantizer, QuantizerOutput  # noqa: F401
from .vqkd import VQKDOutput, VQKDTokenizer, tiny_vqkd_tokenizer_cfg, vqkd_vit_cfg  # noqa: F401
from . import dalle  # noqa: E402,F401  (DALLETokenizer)
from . import peco  # noqa: E402,F401  (PeCoVQVAE)
