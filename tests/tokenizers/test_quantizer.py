"""NormEMAQuantizer: unit-norm codes after EMA, k-means init, usage statistics, gloo all-reduce."""
import socket

import pytest
import torch
import torch.nn.functional as F

from beitv2_mm.tokenizers.quantizer import NormEMAQuantizer, cosine_kmeans


def test_codes_stay_unit_norm_after_ema_updates():
    torch.manual_seed(0)
    q = NormEMAQuantizer(num_codes=16, code_dim=8, decay=0.9, kmeans_init=False).train()
    before = q.codebook.clone()
    for _ in range(5):
        out = q(torch.randn(4, 10, 8) * 3.0)
    assert not torch.equal(before, q.codebook), 'EMA must move the codebook in training'
    torch.testing.assert_close(q.codebook.norm(dim=-1), torch.ones(16), atol=1e-5, rtol=0)
    assert out.quantized.shape == (4, 10, 8)
    assert out.indices.shape == (4, 10) and out.indices.dtype == torch.long
    torch.testing.assert_close(out.quantized.norm(dim=-1), torch.ones(4, 10), atol=1e-5,
                               rtol=0)


def test_ema_update_matches_official_formula():
    torch.manual_seed(1)
    q = NormEMAQuantizer(num_codes=4, code_dim=3, decay=0.5, kmeans_init=False).train()
    codebook0 = q.codebook.clone()
    z = torch.randn(6, 3)
    out = q(z)
    zn = F.normalize(z, dim=-1)
    idx = (zn @ codebook0.t()).argmax(-1)  # nearest unit code == max cosine
    assert torch.equal(out.indices, idx)
    expected = codebook0.clone()
    for k in range(4):
        hit = idx == k
        if hit.any():
            mean = F.normalize(zn[hit].mean(0), dim=-1)
            expected[k] = F.normalize(0.5 * codebook0[k] + 0.5 * mean, dim=-1)
    torch.testing.assert_close(q.codebook, expected, atol=1e-6, rtol=0)
    counts = torch.bincount(idx, minlength=4).float()
    torch.testing.assert_close(q.cluster_size, 0.5 * counts)


def test_ema_step_weighs_the_old_code_by_decay():
    """``decay`` weighs the old code and its count, ``1 - decay`` the batch (official
    ``EmbeddingEMA``); at decay 0.5 (the test above) the two are indistinguishable."""
    q = NormEMAQuantizer(num_codes=2, code_dim=2, decay=0.9, kmeans_init=False).train()
    q.codebook.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    z = torch.tensor([[0.8, 0.6], [1.6, 1.2]])  # one direction, nearest to code 0
    out = q(z)
    assert out.indices.tolist() == [0, 0]
    expected0 = F.normalize(torch.tensor([0.9 + 0.1 * 0.8, 0.1 * 0.6]), dim=0)
    torch.testing.assert_close(q.codebook[0], expected0)
    torch.testing.assert_close(q.codebook[1], torch.tensor([0.0, 1.0]))  # not hit: unchanged
    torch.testing.assert_close(q.cluster_size, torch.tensor([0.1 * 2, 0.0]))
    q(z)
    torch.testing.assert_close(q.cluster_size, torch.tensor([0.9 * 0.2 + 0.1 * 2, 0.0]))


def test_euclidean_ema_update_matches_the_vqvae_formula():
    """``l2_normalize=False`` (PeCo): EMA of counts and sums, code = sum / Laplace-smoothed
    count (van den Oord et al. 2017); codes not hit keep their value."""
    eps = 1e-5
    q = NormEMAQuantizer(num_codes=2, code_dim=2, decay=0.5, kmeans_init=False,
                         l2_normalize=False, eps=eps).train()
    q.codebook.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    q.embed_avg.copy_(q.codebook)  # counts start at 1: embed_avg == codebook
    out = q(torch.tensor([[2.0, 0.0], [4.0, 0.0]]))
    assert out.indices.tolist() == [0, 0]
    counts = torch.tensor([0.5 * 1 + 0.5 * 2, 0.5 * 1])
    sums = torch.tensor([[0.5 * 1 + 0.5 * 6, 0.0], [0.0, 0.5 * 1]])
    torch.testing.assert_close(q.cluster_size, counts)
    torch.testing.assert_close(q.embed_avg, sums)
    smoothed = (counts + eps) / (counts.sum() + 2 * eps) * counts.sum()
    torch.testing.assert_close(q.codebook, sums / smoothed.unsqueeze(1))
    torch.testing.assert_close(q.codebook[0], torch.tensor([3.5 / 1.5, 0.0]), rtol=1e-4, atol=0)


def test_commitment_loss_is_weighted_by_beta():
    torch.manual_seed(0)
    z = torch.randn(2, 5, 4)
    full = NormEMAQuantizer(num_codes=8, code_dim=4, kmeans_init=False, beta=1.0).eval()
    weighted = NormEMAQuantizer(num_codes=8, code_dim=4, kmeans_init=False, beta=0.25).eval()
    weighted.codebook.copy_(full.codebook)
    loss = full(z).commit_loss
    assert loss > 0
    torch.testing.assert_close(weighted(z).commit_loss, 0.25 * loss)


def test_straight_through_and_commitment_loss():
    q = NormEMAQuantizer(num_codes=8, code_dim=4, kmeans_init=False, beta=1.0).eval()
    z = torch.randn(2, 5, 4, requires_grad=True)
    out = q(z)
    zn = F.normalize(z.detach(), dim=-1)
    codes = q.codebook[out.indices]
    torch.testing.assert_close(out.commit_loss, F.mse_loss(codes, zn))
    torch.testing.assert_close(out.quantized.detach(), codes)
    out.quantized.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0, 'straight-through gradient missing'


def test_commitment_gradient_pulls_the_input_towards_its_code():
    """d(commit_loss)/dz is that of beta * mse(sg(code), normalize(z)): the commitment term
    trains the encoder (the codes move by EMA only). With the stop-gradient on the other
    side the term has no gradient at all and the values above stay the same."""
    q = NormEMAQuantizer(num_codes=8, code_dim=4, kmeans_init=False, beta=0.5).eval()
    z = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(3)).requires_grad_()
    out = q(z)
    out.commit_loss.backward()
    ref_z = z.detach().clone().requires_grad_()
    (0.5 * F.mse_loss(F.normalize(ref_z, dim=-1), q.codebook[out.indices])).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    torch.testing.assert_close(z.grad, ref_z.grad)


def test_eval_mode_changes_no_state():
    q = NormEMAQuantizer(num_codes=8, code_dim=4, kmeans_init=False).eval()
    state = {k: v.clone() for k, v in q.state_dict().items()}
    q(torch.randn(3, 7, 4))
    for k, v in q.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert q.pop_usage_stats()['steps'] == 0


def test_kmeans_init_on_first_training_batch():
    torch.manual_seed(0)
    centres = F.normalize(torch.randn(4, 8), dim=-1)
    data = F.normalize(centres.repeat_interleave(50, 0) + 0.01 * torch.randn(200, 8), dim=-1)
    q = NormEMAQuantizer(num_codes=16, code_dim=8, kmeans_init=True, decay=0.99).train()
    assert q.initted.item() == 0 and q.codebook.abs().sum() == 0
    out = q(data[torch.randperm(200)])
    assert q.initted.item() == 1
    torch.testing.assert_close(q.codebook.norm(dim=-1), torch.ones(16), atol=1e-5, rtol=0)
    # every true centre has a code on it, so the quantization error is tiny
    sims = centres @ q.codebook.t()
    assert (sims.max(dim=1).values > 0.99).all()
    assert out.commit_loss.item() < 1e-3
    random_codes = NormEMAQuantizer(num_codes=16, code_dim=8, kmeans_init=False).eval()
    assert random_codes(data).commit_loss.item() > 10 * out.commit_loss.item()
    # as the official quantizer, also in eval mode (a frozen never-trained tokenizer), said
    frozen = NormEMAQuantizer(num_codes=16, code_dim=8, kmeans_init=True).eval()
    with pytest.warns(UserWarning, match='never initialised'):
        frozen(data)
    assert frozen.initted.item() == 1


def test_kmeans_init_gives_unit_codes_on_spread_data():
    """Cosine k-means (official): the centres are l2-normalised means. On unit vectors spread
    over the sphere, plain k-means means lie well inside it, and a frozen (eval) quantizer
    keeps them: the tight clusters above hide the difference."""
    torch.manual_seed(0)
    q = NormEMAQuantizer(num_codes=4, code_dim=3, kmeans_init=True).eval()
    with pytest.warns(UserWarning, match='never initialised'):
        q(torch.randn(256, 3))
    torch.testing.assert_close(q.codebook.norm(dim=-1), torch.ones(4))


def test_cosine_kmeans_keeps_empty_clusters():
    samples = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1]]), dim=-1)
    means = cosine_kmeans(samples, 5, num_iters=3)
    assert means.shape == (5, 2) and torch.isfinite(means).all()
    # 5 centres drawn from 2 samples: at least 3 clusters stay empty and keep their (unit)
    # start; one reset to the empty mean would be a dead code at the origin
    torch.testing.assert_close(means.norm(dim=-1), torch.ones(5))
    for use_cosine in (True, False):
        means = cosine_kmeans(samples, 5, num_iters=3, use_cosine=use_cosine,
                              generator=torch.Generator().manual_seed(0))
        assert (means.norm(dim=-1) > 0.99).all(), (use_cosine, means)


def test_usage_statistics_on_hand_made_batch():
    q = NormEMAQuantizer(num_codes=4, code_dim=2, kmeans_init=False, decay=0.99).train()
    q.codebook.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
    q.update_codebook = True
    # 3 vectors near code 0, 1 near code 1; codes 2 and 3 unused
    z = torch.tensor([[1.0, 0.01], [2.0, -0.01], [1.0, 0.0], [0.01, 1.0]])
    out = q(z)
    assert out.indices.tolist() == [0, 0, 0, 1]
    stats = q.pop_usage_stats()
    assert stats['usage'] == pytest.approx(0.5)
    assert stats['used_codes'] == 2
    p = torch.tensor([0.75, 0.25])
    assert stats['perplexity'] == pytest.approx(float(torch.exp(-(p * p.log()).sum())), rel=1e-6)
    assert stats['steps'] == 1
    assert q.pop_usage_stats()['usage'] == 0.0, 'pop must reset the counters'


def test_euclidean_mode_for_vqvae():
    torch.manual_seed(0)
    q = NormEMAQuantizer(num_codes=8, code_dim=4, kmeans_init=True, l2_normalize=False).train()
    z = torch.randn(64, 4) * 5
    for _ in range(3):
        out = q(z)
    assert hasattr(q, 'embed_avg') and 'embed_avg' in q.state_dict()
    # codes are not normalised and track the data scale
    assert q.codebook.norm(dim=-1).max() > 2.0
    assert out.commit_loss.item() < z.pow(2).mean().item()


def test_euclidean_mode_without_kmeans_keeps_its_codes():
    """Random start (kmeans_init=False): EMA updates move the codes towards the data; they
    neither blow up (counts starting at 0 divided the first update by ~0.01 x hits) nor
    collapse onto a few codes."""
    torch.manual_seed(0)
    q = NormEMAQuantizer(num_codes=64, code_dim=8, kmeans_init=False,
                         l2_normalize=False).train()
    start = q.codebook.clone()
    used = []
    for _ in range(5):
        z = torch.randn(256, 8)
        out = q(z)
        used.append(out.indices.unique().numel())
    norms = q.codebook.norm(dim=-1)
    assert norms.max() < 2 * start.norm(dim=-1).max()
    assert min(used) > 32, used
    assert not torch.equal(q.codebook, start)
    assert out.commit_loss.item() < 2.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _dist_worker(rank, world_size, port, result_dir):
    from datetime import timedelta

    import torch.distributed as tdist

    # forked from a process whose OpenMP pool is running: a parallel region here can deadlock
    torch.set_num_threads(1)
    # bounded: a missing peer fails the collective instead of hanging the test
    tdist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                             world_size=world_size, timeout=timedelta(seconds=60))
    torch.manual_seed(100 + rank)  # different data and different k-means seeds per rank
    q = NormEMAQuantizer(num_codes=32, code_dim=8, kmeans_init=True, decay=0.9).train()
    for _ in range(3):
        q(torch.randn(2, 16, 8) + rank)
    stats = q.pop_usage_stats()
    torch.save(dict(codebook=q.codebook, cluster_size=q.cluster_size, steps=stats['steps'],
                    used=stats['used_codes']), f'{result_dir}/rank{rank}.pt')
    tdist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.timeout(120)
def test_ema_all_reduce_gives_same_codebook_on_two_gloo_ranks(tmp_path):
    import torch.multiprocessing as mp

    # fork: the children reuse the imported modules instead of re-importing the stack
    mp.start_processes(_dist_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2,
                       join=True, start_method='fork')
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pt') for r in (0, 1))
    assert torch.equal(r0['codebook'], r1['codebook']), 'ranks hold different codebooks'
    assert torch.equal(r0['cluster_size'], r1['cluster_size'])
    # counts are summed over ranks: 3 steps x 2 ranks x 32 vectors
    torch.testing.assert_close(r0['cluster_size'].sum(),
                               torch.tensor(64.0 * (1 - 0.9 ** 3)), rtol=1e-5, atol=1e-5)
    assert r0['steps'] == 3
