"""Vector quantization against hand-computed expectations: EMA, k-means, dead codes, dropout."""

from __future__ import annotations

import math
import os
import tempfile

import pytest
import torch
import torch.multiprocessing as mp

from tinycodec.quantization import (
    EMAVectorQuantizer,
    ResidualVectorQuantizer,
    code_statistics,
    kmeans,
    squared_distances,
)


def _toy_vq(embed, cluster_size, decay=0.9, threshold=0.0, eps=1e-5):
    vq = EMAVectorQuantizer(embed.shape[1], embed.shape[0], decay=decay, epsilon=eps, kmeans_init=False,
                            threshold_ema_dead_code=threshold)
    vq.embed.copy_(embed)
    vq.cluster_size.copy_(cluster_size)
    vq.usage.copy_(cluster_size)  # uses within the window: the dead-code rule reads these
    vq.embed_avg.copy_(embed * cluster_size[:, None])
    return vq.train()


def _frames_to_x(frames):
    return frames.t()[None]  # [N, D] -> [1, D, N]


def test_ema_update_matches_hand_computation():
    vq = _toy_vq(torch.tensor([[0.0, 0.0], [10.0, 10.0]]), torch.tensor([1.0, 1.0]))
    frames = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 10.0]])
    _, idx, commit = vq(_frames_to_x(frames))
    assert idx.tolist() == [[0, 0, 1]]
    # n = 0.9 * [1, 1] + 0.1 * [2, 1];  m0 = 0.1 * [1, 1];  m1 = 0.9 * [10, 10] + 0.1 * [9, 10]
    assert torch.allclose(vq.cluster_size, torch.tensor([1.1, 1.0]))
    assert torch.allclose(vq.embed_avg, torch.tensor([[0.1, 0.1], [9.9, 10.0]]))
    # Laplace: n~ = (n + eps) / (2.1 + 2 eps) * 2.1
    eps = 1e-5
    n_s = torch.tensor([(1.1 + eps) / (2.1 + 2 * eps) * 2.1, (1.0 + eps) / (2.1 + 2 * eps) * 2.1])
    expected = torch.tensor([[0.1, 0.1], [9.9, 10.0]]) / n_s[:, None]
    assert torch.allclose(vq.embed, expected, atol=1e-6)
    assert abs(float(vq.embed[0, 0]) - 0.1 / 1.1) < 1e-5
    # commitment = mean over all 6 coordinates of (x - e)^2 with the *old* codebook
    assert abs(float(commit) - (1 + 1 + 1) / 6) < 1e-6


def test_eval_mode_does_not_touch_the_codebook():
    vq = _toy_vq(torch.tensor([[0.0, 0.0], [10.0, 10.0]]), torch.tensor([1.0, 1.0])).eval()
    before = {k: v.clone() for k, v in vq.state_dict().items()}
    vq(_frames_to_x(torch.randn(5, 2)))
    assert all(torch.equal(before[k], v) for k, v in vq.state_dict().items())


def test_kmeans_recovers_well_separated_centres():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[10.0, 0, 0, 0], [-10.0, 0, 0, 0], [0, 10.0, 0, 0], [0, 0, 0, -10.0]])
    x = (centres[:, None, :] + 0.1 * torch.randn(4, 200, 4, generator=gen)).reshape(-1, 4)
    x = x[torch.randperm(800, generator=gen)]
    for seed in range(5):
        torch.manual_seed(seed)
        found, counts = kmeans(x, 4, num_iters=10)
        match = squared_distances(centres, found).argmin(1)
        assert sorted(match.tolist()) == [0, 1, 2, 3]
        assert (found[match] - centres).abs().max() < 0.05
        assert sorted(counts.tolist()) == [200.0] * 4


def test_first_training_batch_initialises_by_kmeans():
    torch.manual_seed(0)
    vq = EMAVectorQuantizer(3, 2, threshold_ema_dead_code=0.0).train()
    assert not bool(vq.initialized)
    frames = torch.cat([torch.full((50, 3), 5.0), torch.full((30, 3), -5.0)]) + 0.01 * torch.randn(80, 3)
    vq(_frames_to_x(frames))
    assert bool(vq.initialized)
    order = vq.embed[:, 0].argsort()
    assert torch.allclose(vq.embed[order], torch.tensor([[-5.0] * 3, [5.0] * 3]), atol=0.02)
    # one EMA step after init with the same batch: counts stay [30, 50]
    assert torch.allclose(vq.cluster_size[order], torch.tensor([30.0, 50.0]), atol=1e-4)


def test_dead_code_replacement_replaces_exactly_the_codes_below_threshold():
    torch.manual_seed(0)
    embed = torch.tensor([[0.0, 0.0], [10.0, 10.0], [50.0, 50.0], [-50.0, 50.0]])
    vq = _toy_vq(embed, torch.tensor([5.0, 5.0, 0.5, 1.0]), decay=0.99, threshold=2.0)
    frames = torch.cat([0.1 * torch.randn(3, 2), 10 + 0.1 * torch.randn(3, 2)])
    vq(_frames_to_x(frames))
    # usage over the window (W = 32 * 4 frames): u = exp(-6 / 128) * [5, 5, 0.5, 1] + [3, 3, 0, 0]
    # -> codes 2 and 3 (u < 2) are dead and become frames of this batch, 0 and 1 follow the EMA:
    # n = 0.99 * [5, 5, 0.5, 1] + 0.01 * [3, 3, 0, 0] = [4.98, 4.98, ...]
    for k in (2, 3):
        assert ((frames - vq.embed[k]).abs().sum(1) == 0).any()
        assert float(vq.cluster_size[k]) == 2.0
        assert torch.allclose(vq.embed_avg[k], 2.0 * vq.embed[k])
    assert torch.allclose(vq.cluster_size[:2], torch.tensor([4.98, 4.98]))
    m0 = 0.99 * 5 * embed[0] + 0.01 * frames[:3].sum(0)
    assert torch.allclose(vq.embed_avg[0], m0, atol=1e-5)
    assert not ((frames - vq.embed[0]).abs().sum(1) == 0).any()
    assert vq.last_replaced == 2
    assert vq.usage[2:].tolist() == [4.0, 4.0]  # 2 x threshold of grace


def test_straight_through_gradient_and_commitment():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(4, 3, 8, kmeans_init=False).eval()
    z = torch.randn(2, 4, 5, requires_grad=True)
    quantized, codes, commit = rvq(z)
    assert torch.allclose(quantized, rvq.decode(codes), atol=1e-6)
    quantized.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))  # identity, not n_q x identity
    # commitment: sum over levels of mean ||residual_i - code_i||^2
    residual, expected = z.detach(), 0.0
    for i, layer in enumerate(rvq.layers):
        q = layer.decode(codes[:, i])
        expected += float(((residual - q) ** 2).mean())
        residual = residual - q
    assert abs(float(commit.detach()) - expected) < 1e-5


def test_code_statistics():
    usage, perplexity = code_statistics(torch.tensor([0, 0, 1, 1, -1]), 4)
    assert usage == 0.5 and abs(perplexity - 2.0) < 1e-6
    usage, perplexity = code_statistics(torch.arange(8), 8)
    assert usage == 1.0 and abs(perplexity - 8.0) < 1e-4


def test_dropout_n_q_is_uniform():
    torch.manual_seed(0)
    n_q, draws = 8, 16000
    rvq = ResidualVectorQuantizer(4, n_q, 4, quantizer_dropout=True)
    counts = torch.bincount(rvq.sample_n_q(draws), minlength=n_q + 1)
    assert counts[0] == 0 and counts.sum() == draws
    expected = draws / n_q
    chi2 = float(((counts[1:] - expected) ** 2 / expected).sum())
    assert chi2 < 24.3  # chi-square, 7 degrees of freedom, p = 0.001


def test_dropout_forward_masks_levels_per_example():
    torch.manual_seed(1)
    rvq = ResidualVectorQuantizer(4, 4, 16, quantizer_dropout=True, kmeans_init=False).train()
    z = torch.randn(64, 4, 6)
    before = [layer.embed.clone() for layer in rvq.layers]
    quantized, codes, _ = rvq(z)
    for layer, embed in zip(rvq.layers, before):
        layer.embed.copy_(embed)  # compare with the codebooks the forward pass used
    n_q = rvq.last_stats.n_q
    assert set(n_q.tolist()) == {1, 2, 3, 4}
    for b in range(64):
        n = int(n_q[b])
        assert (codes[b, :n] >= 0).all() and (codes[b, n:] == -1).all()
        assert torch.allclose(quantized[b:b + 1], rvq.decode(codes[b:b + 1, :n]), atol=1e-6)


def test_fixed_quantizers_without_dropout():
    torch.manual_seed(2)
    rvq = ResidualVectorQuantizer(4, 4, 16, quantizer_dropout=False).train()
    for _ in range(5):
        _, codes, _ = rvq(torch.randn(16, 4, 3))
        assert (rvq.last_stats.n_q == 4).all() and (codes >= 0).all()


def test_fewer_levels_decode_and_refine():
    torch.manual_seed(3)
    rvq = ResidualVectorQuantizer(8, 6, 64, quantizer_dropout=True).train()
    z = torch.randn(32, 8, 20)
    for _ in range(3):
        rvq(z)  # k-means init + a few EMA steps
    rvq.eval()
    codes = rvq.encode(z)
    errors = []
    for n in range(1, 7):
        zq = rvq.decode(codes[:, :n])
        assert torch.allclose(zq, rvq.decode(rvq.encode(z, n_q=n)))
        errors.append(float(((z - zq) ** 2).mean()))
    assert all(b < a for a, b in zip(errors, errors[1:]))
    with pytest.raises(ValueError):
        rvq.decode(torch.zeros(1, 7, 2, dtype=torch.long))


def _ddp_worker(rank, world, init_file, x, out_file):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    vq = _toy_vq(torch.tensor([[0.0, 0.0], [10.0, 10.0]]), torch.tensor([1.0, 1.0]))
    half = x.shape[2] // world
    vq(x[:, :, rank * half:(rank + 1) * half])
    centres, counts = kmeans(x[0].t()[rank * half:(rank + 1) * half], 2, 5)
    if rank == 0:
        torch.save({"embed": vq.embed, "cluster_size": vq.cluster_size, "centres": centres,
                    "counts": counts}, out_file)
    torch.distributed.destroy_process_group()


def test_ema_and_kmeans_are_all_reduced_across_ranks():
    torch.manual_seed(4)
    x = torch.cat([torch.randn(2, 20), 10 + torch.randn(2, 20)], 1)[:, torch.randperm(40)][None]
    single = _toy_vq(torch.tensor([[0.0, 0.0], [10.0, 10.0]]), torch.tensor([1.0, 1.0]))
    single(x)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.pt")
        mp.spawn(_ddp_worker, args=(2, os.path.join(tmp, "init"), x, out), nprocs=2)
        got = torch.load(out, weights_only=True)
    assert torch.allclose(got["embed"], single.embed, atol=1e-5)
    assert torch.allclose(got["cluster_size"], single.cluster_size)
    assert sorted(got["counts"].tolist()) == [20.0, 20.0]  # counted over both ranks' frames
    assert math.isclose(float(got["centres"].sum()), float(x.sum() / 20), rel_tol=1e-4)


def test_usage_counts_frames_over_a_window_not_per_step():
    """Two codes used at 0.5 frames per step each (what 256 frames over 512 codes look like) are
    alive under the windowed rule; EnCodec's per-step EMA count would call them dead (0.5 < 2)."""
    vq = _toy_vq(torch.tensor([[0.0, 0.0], [10.0, 10.0]]), torch.tensor([16.0, 16.0]), decay=0.99, threshold=2.0)
    for step in range(400):
        frames = torch.tensor([[0.0, 0.1]]) if step % 2 else torch.tensor([[10.0, 10.1]])
        vq(_frames_to_x(frames))
        assert vq.last_replaced == 0, step
    assert float(vq.cluster_size.max()) < 2.0  # the per-step count the old rule compared
    # steady state of u = exp(-1/64) u + 1 every other step: about p * W = 0.5 * 64 = 32 uses
    assert 25 < float(vq.usage.min()) < 40


def test_a_code_that_is_never_used_is_still_replaced():
    torch.manual_seed(0)
    vq = _toy_vq(torch.tensor([[0.0, 0.0], [1000.0, 1000.0]]), torch.tensor([32.0, 32.0]), threshold=2.0)
    replaced_at = None
    for step in range(200):
        vq(_frames_to_x(torch.randn(4, 2)))  # every frame is nearest to code 0
        if vq.last_replaced:
            replaced_at = step
            break
    # u_1 = 32 exp(-4 n / 64) < 2 after n > 44 steps
    assert replaced_at is not None and 40 <= replaced_at <= 50, replaced_at
    assert float(vq.embed[1].abs().max()) < 10  # re-seeded from a frame of the batch


def test_reseeding_settles_on_real_audio_at_default_settings():
    """The shipped tiny encoder's embeddings of real speech, 256 frames per step (batch 8 x 0.5 s),
    into a fresh 4 x 512 RVQ with the default dead-code settings: after warm-up almost no code is
    re-seeded per step, and every level still uses most of its codes."""
    from tinycodec.export.calibration import default_calib_wavs, load_pcm
    from tinycodec.pretrained import load_pretrained

    model = load_pretrained("tiny")
    torch.manual_seed(0)  # after loading: building a model draws random numbers
    pcm = torch.cat([torch.from_numpy(load_pcm(f, 16000, 30.0)).float() / 32768 for f in default_calib_wavs()])
    with torch.no_grad():
        z = model.encoder(pcm.reshape(1, 1, -1))[0].T  # [N, 128] frames
    rvq = ResidualVectorQuantizer(128, 4, 512).train()
    replaced = []
    for _ in range(160):
        batch = z[torch.randint(0, z.shape[0], (256,))].T[None]  # [1, D, 256]
        rvq(batch)
        replaced.append(rvq.last_stats.replaced.clone())
    replaced = torch.stack(replaced).float()  # [steps, levels]
    late = replaced[-40:].mean(0)
    assert float(late.max()) <= 10.0, late  # 2 % of 512 codes (seeds give 5.0-5.5); the per-step rule re-seeded 430-511
    assert float(replaced[:10].sum()) > 0  # k-means leaves some codes empty at first: they are re-seeded
