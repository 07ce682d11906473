"""BEiT v1 / v2 masked image modeling on mmpretrain's ``BEiT`` with a frozen tokenizer.

What this fixes or adds over mmpretrain 1.2.0 (``mmpretrain/models/selfsup/beit.py``,
``necks/beitv2_neck.py``):

* **Frozen tokenizer.** mmpretrain's ``BEiT`` leaves the target generator trainable and in
  train mode once the runner calls ``model.train()``; the VQ-KD ``NormEMAVectorQuantizer``
  then updates (and may k-means re-initialise) its codebook on every MIM step. Here the
  tokenizer has ``requires_grad=False``, is forced back to ``eval()`` by :meth:`BEiTMIM.train`
  and runs under ``torch.inference_mode()``, as in the official code.
* **Tokenizer checkpoint** from ``target_generator.checkpoint`` (the suite's hand-off key): a raw
  state dict, or an mmengine checkpoint of a tokenizer run (``tokenizer.*`` / ``model.*``) or a
  MIM run (``target_generator.*``); missing keys raise, unexpected keys are logged. The loaded
  tokenizer is marked initialised so ``init_weights`` cannot overwrite it (mmpretrain's ViT
  layers re-draw their FFN weights in ``init_weights``).
* **Masked-token gather without host sync.** With ``num_masked_patches`` set (the masks of
  :class:`BlockwiseMaskGenerator` have exactly that count) masked tokens are gathered with a
  stable sort instead of boolean indexing, which needs a device->host sync for the output size.
  The gathered order equals boolean indexing's, so the loss is the same. A tokenizer whose
  token grid is not the student's patch grid raises (boolean indexing raises there; a gather
  would silently read the wrong tokens), and so does a mask with another count (checked on the
  first batch; on a CPU, every batch).
* **Patch-aggregation neck** (:class:`BEiTV2AggregationNeck`): custom (dict) archs work (stock
  reads ``arch['depth']`` but validates ``num_layers``), weights are initialised as the official
  ones (see :meth:`BEiTV2AggregationNeck.init_weights`; stock rescales in ``__init__`` and then
  ``init_weights`` redraws the Linear layers, losing the rescale), and the attention can use
  the SDPA path.

Loss (official ``engine_for_pretraining.py``): ``CE(lm_head(final tokens)) +
CE(lm_head(aggregation tokens))`` over masked positions, one shared ``lm_head`` (the head's
``cls_head``); BEiT v1: only the first term (no neck).
"""
from __future__ import annotations

import inspect
from typing import Dict, List, Optional, Union

import torch
from mmengine.logging import MMLogger
from torch import nn

from mmpretrain.models.necks.beitv2_neck import BEiTV2Neck
from mmpretrain.models.selfsup.beit import BEiT, VQKD
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..backbones.beit_vit import (compile_layers, loads_pretrained, pretrain_trunc_normal_,
                                  rescale_residual_branches, use_fast_attention)
from ..tokenizers.checkpoint import require_tokenizer_checkpoint

# Prefixes a tokenizer's weights can carry inside a training checkpoint, most specific first.
TOKENIZER_PREFIXES = ('target_generator.', 'tokenizer.', 'model.', 'module.')


@MODELS.register_module()
class BEiTV2AggregationNeck(BEiTV2Neck):
    """BEiT v2 patch-aggregation neck ([CLS] of the last layer + early patch tokens).

    Same modules and keys as mmpretrain's ``BEiTV2Neck`` (``patch_aggregation.*``, ``norm.*``).

    Args:
        backbone_arch (str | dict): ``'base'``/``'large'`` or a dict with ``embed_dims``,
            ``num_layers`` (or ``depth``), ``num_heads``, ``feedforward_channels``.
        attn_impl (str): ``'sdpa'`` or ``'explicit'`` (see :mod:`beitv2_mm.backbones`).
        compile (bool | dict): ``torch.compile`` each aggregation layer
            (see :func:`beitv2_mm.backbones.beit_vit.compile_layers`).
        **kwargs: The other :class:`BEiTV2Neck` arguments (``num_layers``, ``early_layers``,
            ``drop_path_rate``, ``layer_scale_init_value``, ...).
    """

    def __init__(self, backbone_arch: Union[str, dict] = 'base', attn_impl: str = 'sdpa',
                 compile=False, **kwargs) -> None:
        if isinstance(backbone_arch, dict):
            backbone_arch = dict(backbone_arch)
            depth = backbone_arch.get('depth', backbone_arch.get('num_layers'))
            if depth is None:
                raise KeyError('BEiTV2AggregationNeck: backbone_arch dict needs num_layers '
                               '(the backbone depth)')
            backbone_arch.update(depth=depth, num_layers=depth)
        super().__init__(backbone_arch=backbone_arch, **kwargs)
        self.attn_impl = attn_impl
        use_fast_attention(self, attn_impl)
        compile_layers(self.patch_aggregation, compile)

    def init_weights(self) -> None:
        """The official init of the aggregation layers (``cls_pt_layers``).

        unilm ``beit2/modeling_pretrain.py`` builds ``cls_pt_layers`` after the model's
        ``self.apply(self._init_weights)``, so they keep PyTorch's default ``nn.Linear`` init
        (Kaiming-uniform weights, uniform biases), LayerNorm (1, 0), zero q/v biases and the
        layer-scale value; only ``fix_init_cls_pt_weight`` divides the residual-branch outputs
        by ``sqrt(2 * (early_layers + i + 1))``. The same here (mmpretrain draws them
        trunc-normal(0.02) and loses the rescale).
        """
        super().init_weights()
        if loads_pretrained(self.init_cfg):
            return
        for m in self.patch_aggregation.modules():
            if isinstance(m, (nn.Linear, nn.LayerNorm)):
                m.reset_parameters()
        rescale_residual_branches(self.patch_aggregation, self.early_layers + 1)


def _extract_tokenizer_state(checkpoint, module: nn.Module) -> Dict[str, torch.Tensor]:
    """The tokenizer's own keys inside ``checkpoint`` (raw or prefixed state dict)."""
    state = checkpoint
    for key in ('state_dict', 'model', 'module'):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise TypeError(f'tokenizer checkpoint holds a {type(state).__name__}, not a dict')
    own = set(module.state_dict())
    if own & set(state):
        return state
    for prefix in TOKENIZER_PREFIXES:
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if own & set(sub):
            return sub
    return state


def load_tokenizer_checkpoint(module: nn.Module, path: str) -> None:
    """Load tokenizer weights from ``path`` into ``module``; missing keys raise.

    Args:
        module (nn.Module): The built target generator.
        path (str): File set at ``model.target_generator.checkpoint``.
    """
    from beitv2_mm.engine.compat import trusted_torch_load

    require_tokenizer_checkpoint(
        path, 'train one (configs/vqkd/*, configs/demo/vqkd_vit-tiny_synthetic.py) or convert '
        'an official one with tools/convert_ckpt.py')
    checkpoint = trusted_torch_load(path, map_location='cpu')
    state = _extract_tokenizer_state(checkpoint, module)
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise KeyError(
            f'tokenizer checkpoint {path!r} lacks {len(result.missing_keys)} keys of '
            f'{type(module).__name__}: {result.missing_keys[:8]}... -- is it a checkpoint of '
            'this tokenizer type (model.target_generator.type)? Official releases must be '
            'converted first with tools/convert_ckpt.py')
    if result.unexpected_keys:
        MMLogger.get_current_instance().warning(
            f'tokenizer checkpoint {path!r}: {len(result.unexpected_keys)} keys not used by '
            f'{type(module).__name__} (e.g. a decoder): {result.unexpected_keys[:8]}')


def vqkd_codebook_indices(vqkd: VQKD, images: torch.Tensor) -> torch.Tensor:
    """Token ids ``(B, h*w)`` of mmpretrain's ``VQKD`` without touching its state.

    ``VQKD.forward`` runs ``NormEMAVectorQuantizer.forward``, which even in eval mode updates
    the ``cluster_size`` EMA buffer, all-reduces it across ranks (a collective per MIM step)
    and may k-means re-initialise an un-initialised codebook (reading ``initted`` on the host).
    This computes the same nearest code (same distance formula as the quantizer) with none
    of that. The task layer and distances run in float32 with autocast off (the official code
    only disables CUDA autocast around the task layer and computes distances in fp16 under
    AMP; float32 avoids near-tie flips).
    """
    feats = vqkd.encoder(images)[0]  # (B, C, h, w)
    feats = feats.flatten(2).transpose(1, 2)
    with torch.autocast(images.device.type, enabled=False):
        task_layer = vqkd.encode_task_layer
        z = task_layer(feats.to(task_layer[-1].weight.dtype))
        z = torch.nn.functional.normalize(z.float(), p=2, dim=-1)
        codebook = vqkd.quantize.embedding.weight.float()
        dist = (z.pow(2).sum(-1, keepdim=True) + codebook.pow(2).sum(-1)
                - 2 * torch.einsum('bnd,kd->bnk', z, codebook))
    return dist.argmin(dim=-1)


def _loads_own_checkpoint(cfg: dict) -> bool:
    """Whether the tokenizer class takes ``checkpoint=`` itself (VQKDTokenizer, PeCoVQVAE)."""
    cls = cfg.get('type')
    cls = MODELS.get(cls) if isinstance(cls, str) else cls
    if cls is None:
        return False
    return 'checkpoint' in inspect.signature(cls.__init__).parameters


def _tokenizer_weights(cfg) -> Optional[str]:
    """The file a tokenizer config takes its weights from (``checkpoint``, DALL-E's ``weights``,
    a ``Pretrained`` init_cfg); None: random weights. A built module counts as loaded."""
    if not isinstance(cfg, dict):
        return 'a built module'
    init_cfg = cfg.get('init_cfg')
    return (cfg.get('checkpoint') or cfg.get('weights')
            or (init_cfg.get('checkpoint') if isinstance(init_cfg, dict) else None))


# where the tokenizers keep their vocabulary size: VQKDTokenizer, DALLETokenizer, PeCoVQVAE,
# mmpretrain's VQKD (its quantizer); a tokenizer without any of these is not checked
VOCAB_ATTRS = ('num_codes', 'vocab_size', 'num_embed', 'quantize.num_tokens',
               'quantize.num_codes', 'quantizer.num_codes')


def tokenizer_vocab_size(tokenizer: nn.Module) -> Optional[int]:
    """The number of token ids ``tokenizer`` emits, or None when it does not say."""
    for path in VOCAB_ATTRS:
        value = tokenizer
        for part in path.split('.'):
            value = getattr(value, part, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def check_head_fits_tokenizer(head: nn.Module, tokenizer: nn.Module) -> None:
    """The MIM head predicts one logit per token id: raise when its size is not the tokenizer's
    vocabulary (a smaller head fails at the first step with an index error, a larger one trains
    logits no target ever names)."""
    lm_head = getattr(head, 'cls_head', None)
    vocab = tokenizer_vocab_size(tokenizer)
    if not isinstance(lm_head, nn.Linear) or vocab is None or lm_head.out_features == vocab:
        return
    raise ValueError(
        f'model.head.num_embed = {lm_head.out_features}, but the tokenizer '
        f'(model.target_generator, {type(tokenizer).__name__}) has {vocab} token ids: the MIM '
        f'head predicts one logit per token. Set model.head.num_embed={vocab} (e.g. '
        f'--cfg-options model.head.num_embed={vocab}), or use a tokenizer with '
        f'{lm_head.out_features} codes.')


def check_neck_reads_its_early_layer(backbone: nn.Module, neck: Optional[nn.Module]) -> None:
    """The aggregation neck reads the backbone's first output (``backbone.out_indices[0]``) as
    the early layer; ``neck.early_layers`` only sets its init rescale. Raise when they name
    different layers (the neck would aggregate one layer while initialised for another)."""
    early = getattr(neck, 'early_layers', None)
    out_indices = list(getattr(backbone, 'out_indices', None) or [])
    if early is None or len(out_indices) < 2 or int(out_indices[0]) + 1 == early:
        return
    raise ValueError(
        f'model.neck.early_layers = {early}, but the backbone hands the neck layer '
        f'{int(out_indices[0]) + 1} (model.backbone.out_indices[0] = {int(out_indices[0])}, '
        f'0-based): set model.backbone.out_indices=[{early - 1}, -1] or '
        f'model.neck.early_layers={int(out_indices[0]) + 1}, so that both name one layer.')


@MODELS.register_module()
class BEiTMIM(BEiT):
    """BEiT v1 / v2 masked image modeling with a frozen tokenizer.

    BEiT v2 when ``neck`` is given (patch aggregation, two CE terms), BEiT v1 otherwise.
    The tokenizer (``target_generator``) may be this project's ``VQKDTokenizer``,
    mmpretrain's ``VQKD``, :class:`DALLETokenizer`, mmpretrain's ``DALL-E`` or any module
    with ``get_codebook_indices(images) -> (B, h, w) | (B, h*w)`` or whose forward returns
    token ids or per-token logits ``(B, K, h, w)``.

    Args:
        backbone (dict): The student, e.g. ``FastBEiTPretrainViT``/``BEiTPretrainViT``.
        neck (dict, optional): ``BEiTV2AggregationNeck`` (BEiT v2) or None (BEiT v1).
        head (dict): ``BEiTV2Head`` / ``BEiTV1Head``: its ``cls_head`` is the shared lm head
            and its ``loss_module`` the CE. :meth:`init_weights` draws the lm head as the
            official pretraining model does.
        target_generator (dict): The tokenizer config. Its ``checkpoint`` key (the suite's
            hand-off key ``model.target_generator.checkpoint``) is passed on to tokenizers that
            take it (``VQKDTokenizer``, ``PeCoVQVAE``); for the others (mmpretrain ``VQKD``,
            :class:`DALLETokenizer`) it is popped and loaded here, through the tokenizer's
            ``load_weights(path)`` if it has one, else :func:`load_tokenizer_checkpoint`.
        num_masked_patches (int, optional): The exact number of masked patches per image
            (the mask generator's ``num_masking_patches``). Enables the sync-free gather; if
            None, masked tokens are selected by boolean indexing.
        data_preprocessor (dict, optional): Usually ``TwoNormDataPreprocessor``.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 target_generator: dict,
                 neck: Optional[dict] = None,
                 num_masked_patches: Optional[int] = None,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if not _tokenizer_weights(target_generator):
            # legitimate for demos and tests, a wasted run otherwise: say it where the log starts
            MMLogger.get_current_instance().warning(
                f'{type(self).__name__}: model.target_generator has no weights (checkpoint '
                'None): the MIM targets come from a frozen, randomly initialised tokenizer, a '
                'pipeline check rather than BEiT pretraining. Set '
                'model.target_generator.checkpoint to a trained tokenizer (configs/vqkd/*.py, '
                'configs/peco/peco_vqvae_in1k.py, or an official one converted with '
                'tools/convert_ckpt.py).')
        checkpoint = None
        if isinstance(target_generator, dict) and not _loads_own_checkpoint(target_generator):
            target_generator = dict(target_generator)
            checkpoint = target_generator.pop('checkpoint', None)
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            target_generator=target_generator,
            pretrained=pretrained,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        check_head_fits_tokenizer(self.head, self.target_generator)
        check_neck_reads_its_early_layer(self.backbone, getattr(self, 'neck', None))
        self.num_masked_patches = num_masked_patches
        self._mask_count_checked = False
        self.tokenizer_checkpoint = checkpoint
        if checkpoint:
            if hasattr(self.target_generator, 'load_weights'):  # e.g. DALLETokenizer
                self.target_generator.load_weights(checkpoint)
            else:
                load_tokenizer_checkpoint(self.target_generator, checkpoint)
            # keep BaseModule.init_weights from re-drawing the loaded weights
            self.target_generator.is_init = True
        self.target_generator.requires_grad_(False)
        self.target_generator.eval()

    def init_weights(self) -> None:
        """mmengine's init, then the official lm head init (unless the head is pretrained).

        unilm ``beit2/modeling_pretrain.py`` (BEiT v1's too) draws ``lm_head`` trunc-normal(0.02)
        truncated at +-0.02 with zero bias (:func:`pretrain_trunc_normal_`); mmpretrain's
        heads use bounds +-2 (twice the effective std).
        """
        super().init_weights()
        lm_head = getattr(self.head, 'cls_head', None)
        if not isinstance(lm_head, nn.Linear) or loads_pretrained(getattr(self.head, 'init_cfg', None)):
            return
        pretrain_trunc_normal_(lm_head.weight)
        if lm_head.bias is not None:
            nn.init.zeros_(lm_head.bias)

    def train(self, mode: bool = True) -> 'BEiTMIM':
        """Set train mode for the student; the tokenizer always stays in eval mode."""
        super().train(mode)
        self.target_generator.eval()
        return self

    @torch.inference_mode()
    def _tokenize_inference(self, images: torch.Tensor) -> torch.Tensor:
        generator = self.target_generator
        if isinstance(generator, VQKD):
            ids = vqkd_codebook_indices(generator, images)
        elif hasattr(generator, 'get_codebook_indices'):
            ids = generator.get_codebook_indices(images)
        else:
            ids = generator(images)
        if ids.is_floating_point():  # per-token logits (B, K, h, w), e.g. mmpretrain DALL-E
            ids = ids.argmax(dim=1)
        return ids.flatten(1)

    def tokenize(self, images: torch.Tensor) -> torch.Tensor:
        """Visual token ids ``(B, h*w)`` of the tokenizer's view, no graph, no grads.

        ``inference_mode`` tensors cannot be saved for backward (the CE saves its target),
        so the result is cloned outside inference mode; it is B*h*w integers.
        """
        return self._tokenize_inference(images).clone()

    def _masked(self, tokens: torch.Tensor, mask: torch.Tensor,
                index: Optional[torch.Tensor]) -> torch.Tensor:
        """Rows of ``tokens`` (B, N, ...) at masked positions, flattened to (B*M, ...)."""
        if index is None:
            return tokens[mask]
        if tokens.dim() == 2:
            return tokens.gather(1, index).flatten(0, 1)
        index = index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])
        return tokens.gather(1, index).flatten(0, 1)

    def masked_positions(self, data_samples: List[DataSample]):
        """The ``(B, N)`` bool mask of the batch and, with ``num_masked_patches``, the
        ``(B, M)`` indices of the masked positions in position order (else None).

        The gather takes exactly ``num_masked_patches`` positions per image, so a mask with
        another count would silently put visible patches into the loss or drop masked ones
        (boolean indexing, the official code, would follow the mask). The count is checked on
        a CPU for every batch and elsewhere on the first batch only (one host sync per run).
        """
        mask = torch.stack([sample.mask for sample in data_samples]).flatten(1).bool()
        if not self.num_masked_patches:
            return mask, None
        if mask.device.type == 'cpu' or not self._mask_count_checked:
            counts = mask.sum(1)
            if bool((counts != self.num_masked_patches).any()):
                raise ValueError(
                    f'{type(self).__name__}: num_masked_patches={self.num_masked_patches} but '
                    f'the batch\'s masks cover {sorted(set(counts.tolist()))} patches; set the '
                    'model\'s num_masked_patches to the mask generator\'s num_masking_patches '
                    '(BlockwiseMaskGenerator masks exactly that many), or to None for a '
                    'generator whose count varies (boolean indexing, one host sync per step)')
            self._mask_count_checked = True
        # stable sort puts the masked positions first, in position order
        index = torch.argsort(mask.to(torch.uint8), dim=1, descending=True,
                              stable=True)[:, :self.num_masked_patches]
        return mask, index

    def masked_targets(self, images: torch.Tensor, mask: torch.Tensor,
                       index: Optional[torch.Tensor]) -> torch.Tensor:
        """The tokenizer's ids of ``images`` at the masked positions, flattened ``(B*M,)``."""
        tokens = self.tokenize(images)
        if tokens.shape[1] != mask.shape[1]:
            # boolean indexing (the official code) raises here; the gather would not
            raise ValueError(
                f'{type(self).__name__}: the tokenizer gives {tokens.shape[1]} tokens per image '
                f'(view {tuple(images.shape[-2:])}) but the mask covers {mask.shape[1]} '
                'student patches; size the tokenizer view (second_size of '
                'TwoViewRandomResizedCrop) so that its token grid is the student\'s patch grid '
                '(e.g. DALL-E: 112 px for a 224 px, patch-16 student)')
        return self._masked(tokens, mask, index)

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        """MIM losses: ``loss_mim`` (final layer) and, for BEiT v2, ``loss_agg``.

        Args:
            inputs (list[Tensor]): ``[student view, tokenizer view]``.
            data_samples (list[DataSample]): Each with a ``mask`` of shape (h, w).

        Returns:
            dict[str, Tensor]: The loss terms (summed by the runner).
        """
        mask, index = self.masked_positions(data_samples)
        target = self.masked_targets(inputs[1], mask, index)
        latent = self.backbone(inputs[0], mask)
        lm_head, criterion = self.head.cls_head, self.head.loss_module

        if self.with_neck:
            feats, feats_agg = self.neck(latent, rel_pos_bias=self.backbone.shared_rel_pos_bias)
            return dict(
                loss_mim=criterion(lm_head(self._masked(feats, mask, index)), target),
                loss_agg=criterion(lm_head(self._masked(feats_agg, mask, index)), target))
        feats = latent[-1][:, 1:]  # drop [CLS]
        return dict(loss_mim=criterion(lm_head(self._masked(feats, mask, index)), target))
