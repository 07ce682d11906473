"""EMA vector quantizer with an (optionally) l2-normalised codebook, as in BEiT v2's VQ-KD.

Numerics follow the official ``beit2/norm_ema_quantizer.py``:

* inputs and codes are l2-normalised; the nearest code is the one with the smallest
  euclidean distance (== the largest cosine similarity);
* in training, per-code counts ``bins`` and sums ``embed_sum`` of the assigned inputs are
  all-reduced across ranks, the mean of each hit code is l2-normalised and the codebook moves
  towards it by EMA (``decay``), then it is re-normalised; codes not hit keep their value;
* loss = ``beta * mse(z_q.detach(), z)`` (commitment), straight-through estimator
  ``z + (z_q - z).detach()``;
* optional k-means init (cosine k-means, 10 iterations) on the first batch.

Two deliberate differences from the official code:

* k-means runs once, on rank 0, on the first batches of all ranks gathered, and the codebook
  is broadcast; the official ``EmbeddingEMA`` runs it on each rank's own batch (its codebook is
  a non-trainable parameter, which DDP does not synchronise), so official ranks start from
  different codebooks, which the all-reduced EMA updates bring together only gradually (by the
  decay, each step a code is hit). On one process both are the same k-means (bit for bit with
  the same seed).
* Distances, the nearest code and the EMA sums are computed in fp32 even under autocast. The
  official code runs its distance ``einsum`` and ``z^T @ onehot`` in fp16 under AMP, where
  codes whose distances differ by less than fp16 resolution (~1e-3 relative) tie arbitrarily;
  fp32 picks the nearest one. Tokens can therefore differ from an fp16 run of the official code
  at such near-ties (fp32 runs agree).

Why not mmpretrain's ``NormEMAVectorQuantizer`` (same numerics otherwise):

* its k-means init runs on each rank's own batch, as the official one (see above);
* it EMA-updates ``cluster_size`` and all-reduces in *eval* mode too (a tokenizer used as a
  frozen MIM target generator would drift and issue collectives); here eval mode changes no
  state;
* it builds a (N, K) one-hot matrix (3 GB for batch 512 at 224 px with 8192 codes); here
  ``bincount``/``index_add_`` compute the same counts and sums;
* it has no per-code usage counters for logging and prints on every init.

With ``l2_normalize=False`` the quantizer is the classic EMA VQ-VAE codebook (van den Oord
et al. 2017, Razavi et al. 2019): euclidean nearest code, EMA of counts and sums with Laplace
smoothing; PeCo's VQ-VAE uses that mode.
"""
from __future__ import annotations

import warnings
from typing import Dict, NamedTuple

import torch
import torch.nn.functional as F
from mmengine import dist
from torch import nn

from mmpretrain.registry import MODELS


class QuantizerOutput(NamedTuple):
    """What :meth:`NormEMAQuantizer.forward` returns.

    Attributes:
        quantized: codes of the inputs with straight-through gradients, shape of the input.
        indices: code index per vector, LongTensor of the input shape without the last dim.
        commit_loss: scalar commitment loss ``beta * mse(z_q.detach(), z)``.
    """
    quantized: torch.Tensor
    indices: torch.Tensor
    commit_loss: torch.Tensor


def cosine_kmeans(samples: torch.Tensor, num_clusters: int, num_iters: int = 10,
                  use_cosine: bool = True, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """K-means on (N, D) samples; returns (num_clusters, D) centres.

    Initial centres are random samples (with replacement when N < num_clusters). With
    ``use_cosine`` the assignment maximises the dot product and centres are l2-normalised
    (the official VQ-KD init); otherwise it is plain euclidean k-means. Empty clusters keep
    their previous centre.
    """
    num_samples, dim = samples.shape
    if num_samples >= num_clusters:
        idx = torch.randperm(num_samples, generator=generator)[:num_clusters]
    else:
        idx = torch.randint(0, num_samples, (num_clusters, ), generator=generator)
    means = samples[idx.to(samples.device)].clone()
    for _ in range(num_iters):
        if use_cosine:
            assign = (samples @ means.t()).argmax(dim=-1)
        else:
            assign = torch.cdist(samples, means).argmin(dim=-1)
        counts = torch.bincount(assign, minlength=num_clusters)
        sums = torch.zeros_like(means).index_add_(0, assign, samples)
        new_means = sums / counts.clamp(min=1).unsqueeze(1).to(sums.dtype)
        if use_cosine:
            new_means = F.normalize(new_means, p=2, dim=-1)
        means = torch.where((counts == 0).unsqueeze(1), means, new_means)
    return means


@MODELS.register_module()
class NormEMAQuantizer(nn.Module):
    """Vector quantizer whose codebook is learnt by EMA (no gradient), l2-normalised by default.

    State (all buffers, so the optimizer never sees the codebook):

    * ``codebook`` (num_codes, code_dim): the codes;
    * ``initted`` (1,): 1 once the codebook holds real codes (k-means ran or random init);
    * ``cluster_size`` (num_codes,): EMA of per-code counts (the official statistic);
    * ``embed_avg`` (num_codes, code_dim): EMA of per-code sums, only with
      ``l2_normalize=False``;
    * ``usage_counts`` (num_codes,), not saved: per-code hits (summed over ranks) since the
      last :meth:`pop_usage_stats`; kept on the device so logging needs no per-step sync.

    Args:
        num_codes (int): Number of codes K. Defaults to 8192.
        code_dim (int): Dimension of each code. Defaults to 32.
        decay (float): EMA decay. Defaults to 0.99.
        kmeans_init (bool): Initialise the codebook by k-means on the first training batch
            (gathered from all ranks). If False, codes are random unit vectors. Defaults to True.
        l2_normalize (bool): l2-normalise inputs and codes (VQ-KD). False gives the classic
            euclidean EMA VQ-VAE codebook. Defaults to True.
        beta (float): Weight of the commitment loss. Defaults to 1.0 (official).
        kmeans_iters (int): K-means iterations. Defaults to 10 (official).
        eps (float): Laplace smoothing of counts for ``l2_normalize=False``. Defaults to 1e-5.
    """

    def __init__(self,
                 num_codes: int = 8192,
                 code_dim: int = 32,
                 decay: float = 0.99,
                 kmeans_init: bool = True,
                 l2_normalize: bool = True,
                 beta: float = 1.0,
                 kmeans_iters: int = 10,
                 eps: float = 1e-5) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f'NormEMAQuantizer: decay must be in [0, 1), got {decay}')
        self.num_codes = num_codes
        self.code_dim = code_dim
        self.decay = decay
        self.l2_normalize = l2_normalize
        self.beta = beta
        self.kmeans_iters = kmeans_iters
        self.eps = eps
        # False freezes the codebook in training mode too (e.g. a tokenizer being fine-tuned).
        self.update_codebook = True
        self._ready_cache = False

        if kmeans_init:
            codebook = torch.zeros(num_codes, code_dim)
        else:
            codebook = torch.randn(num_codes, code_dim)
            if l2_normalize:
                codebook = F.normalize(codebook, p=2, dim=-1)
        self.register_buffer('codebook', codebook)
        self.register_buffer('initted', torch.tensor([0.0 if kmeans_init else 1.0]))
        # The euclidean codebook is embed_avg / smoothed cluster_size: counts of 1 make the
        # random start the codebook itself (k-means sets them to 1 too). Counts of 0 would divide
        # the first EMA update by ~0.01 x hits (1e-5 for codes not hit) and blow the codes up.
        # The l2 codebook does not divide by them: there they start at 0, as the official ones.
        self.register_buffer('cluster_size', torch.zeros(num_codes) if l2_normalize
                             else torch.ones(num_codes))
        if not l2_normalize:
            self.register_buffer('embed_avg', codebook.clone())
        self.register_buffer('usage_counts', torch.zeros(num_codes, dtype=torch.float64),
                             persistent=False)
        self.register_buffer('usage_steps', torch.zeros((), dtype=torch.long), persistent=False)

    def extra_repr(self) -> str:
        return (f'num_codes={self.num_codes}, code_dim={self.code_dim}, decay={self.decay}, '
                f'l2_normalize={self.l2_normalize}, beta={self.beta}')

    # ------------------------------------------------------------------ init
    def _codebook_ready(self) -> bool:
        # ``initted`` is read from the device once (after construction or a load), not
        # every step: a per-step ``.item()`` would be a host-device sync.
        if not self._ready_cache:
            self._ready_cache = bool(self.initted.item() > 0)
        return self._ready_cache

    def _load_from_state_dict(self, *args, **kwargs):
        self._ready_cache = False
        return super()._load_from_state_dict(*args, **kwargs)

    @torch.no_grad()
    def _kmeans_init(self, flat: torch.Tensor) -> None:
        """Run k-means once on the batches of all ranks, on rank 0, and broadcast the result.

        Also in eval mode, as the official quantizer does; there it is said: a frozen tokenizer
        with a codebook never initialised (e.g. a MIM target generator whose checkpoint never
        trained) takes codes from the first batch it sees, not a trained tokenizer's.
        """
        if not self.training and dist.get_rank() == 0:
            warnings.warn('NormEMAQuantizer: the codebook was never initialised (initted=0, as '
                          'in a tokenizer that never trained) and is set now by k-means on the '
                          'first batch seen in eval mode; a trained tokenizer checkpoint holds '
                          'its codes: is the tokenizer checkpoint the trained one?')
        world_size = dist.get_world_size()
        if world_size > 1:
            # every rank sees the same number of vectors per step in practice; pad otherwise
            sizes = dist.all_gather(torch.tensor([flat.shape[0]], device=flat.device))
            max_size = int(torch.stack(sizes).max())
            padded = flat.new_zeros(max_size, flat.shape[1])
            padded[:flat.shape[0]] = flat
            gathered = dist.all_gather(padded)
            samples = torch.cat([g[:int(s)] for g, s in zip(gathered, sizes)])
        else:
            samples = flat
        if dist.get_rank() == 0:
            means = cosine_kmeans(samples.float(), self.num_codes, self.kmeans_iters,
                                  use_cosine=self.l2_normalize)
        else:
            means = torch.empty_like(self.codebook)
        if world_size > 1:
            dist.broadcast(means, src=0)
        self.codebook.copy_(means)
        if not self.l2_normalize:
            self.embed_avg.copy_(means)
            self.cluster_size.fill_(1.0)
        self.initted.fill_(1.0)
        self._ready_cache = True

    # ------------------------------------------------------------------ forward
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize vectors along the last dimension.

        Args:
            z (Tensor): Inputs of shape (..., code_dim), e.g. (B, N, C). Convolutional
                feature maps (B, C, H, W) must be permuted to channel-last first.

        Returns:
            QuantizerOutput: quantized (same shape, straight-through gradients; l2-normalised
            when ``l2_normalize``), indices (LongTensor of shape ``z.shape[:-1]``) and the
            commitment loss.
        """
        if z.shape[-1] != self.code_dim:
            raise ValueError(f'NormEMAQuantizer expects inputs with last dim code_dim='
                             f'{self.code_dim}, got shape {tuple(z.shape)}')
        # Codebook statistics are accumulated in fp32 whatever the autocast context.
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            if self.l2_normalize:
                z = F.normalize(z, p=2, dim=-1)
            flat = z.reshape(-1, self.code_dim)

            if not self._codebook_ready():
                self._kmeans_init(flat.detach())

            codebook = self.codebook
            # ||z||^2 + ||e||^2 - 2 z.e, as the official code (argmax cosine when normalised)
            dists = (flat.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1)
                     - 2.0 * flat @ codebook.t())
            indices = dists.argmin(dim=1)
            z_q = F.embedding(indices, codebook).view_as(z)

            if self.training and self.update_codebook:
                self._ema_update(flat.detach(), indices)

            commit_loss = self.beta * F.mse_loss(z_q.detach(), z)
            quantized = z + (z_q - z).detach()
        return QuantizerOutput(quantized, indices.view(z.shape[:-1]), commit_loss)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        # index_add_ rather than bincount: bincount syncs with the host on CUDA
        bins = flat.new_zeros(self.num_codes).index_add_(0, indices,
                                                          flat.new_ones(indices.shape[0]))
        embed_sum = torch.zeros_like(self.codebook).index_add_(0, indices, flat)
        if dist.get_world_size() > 1:
            # one collective for both statistics
            packed = torch.cat([bins.unsqueeze(1), embed_sum], dim=1)
            dist.all_reduce(packed)
            bins, embed_sum = packed[:, 0].contiguous(), packed[:, 1:].contiguous()
        self.usage_counts.add_(bins.to(self.usage_counts.dtype))
        self.usage_steps.add_(1)
        self.cluster_size.mul_(self.decay).add_(bins, alpha=1 - self.decay)

        if self.l2_normalize:
            hit = bins > 0
            means = F.normalize(embed_sum / bins.clamp(min=1.0).unsqueeze(1), p=2, dim=-1)
            means = torch.where(hit.unsqueeze(1), means, self.codebook)
            updated = self.codebook * self.decay + means * (1 - self.decay)
            self.codebook.copy_(F.normalize(updated, p=2, dim=-1))
        else:
            self.embed_avg.mul_(self.decay).add_(embed_sum, alpha=1 - self.decay)
            total = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (total + self.num_codes * self.eps) * total
            self.codebook.copy_(self.embed_avg / smoothed.unsqueeze(1))

    # ------------------------------------------------------------------ usage
    @torch.no_grad()
    def pop_usage_stats(self, reset: bool = True) -> Dict[str, float]:
        """Codebook usage since the last call (one host-device sync; call at log interval).

        Returns:
            dict: ``usage`` (fraction of codes hit at least once), ``used_codes`` (their
            number), ``perplexity`` (exp of the entropy of the hit distribution; K for
            uniform use, 1 when one code takes everything) and ``steps`` (training forwards
            counted). All zero when nothing was counted.
        """
        counts = self.usage_counts
        total = counts.sum()
        used = (counts > 0).sum()
        probs = counts / total.clamp(min=1.0)
        entropy = -(probs * torch.log(probs.clamp(min=1e-30))).sum()
        stats = torch.stack([used.to(torch.float64), total, entropy,
                             self.usage_steps.to(torch.float64)]).cpu()
        if reset:
            counts.zero_()
            self.usage_steps.zero_()
        used_codes, total_hits, ent, steps = (float(v) for v in stats)
        if total_hits == 0:
            return dict(usage=0.0, used_codes=0.0, perplexity=0.0, steps=steps)
        return dict(usage=used_codes / self.num_codes, used_codes=used_codes,
                    perplexity=float(torch.exp(torch.tensor(ent))), steps=steps)
