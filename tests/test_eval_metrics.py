"""Tests for tinycodec.eval.metrics on known signals and a seeded speech-like signal."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from tinycodec.eval import metrics

SR = 16000
def test_si_sdr_known_values():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16000, generator=g)
    assert metrics.si_sdr(x, x) > 70
    assert metrics.si_sdr(x, 0.3 * x) > 70  # scale-invariant
    noise = torch.randn(2, 16000, generator=g)
    noise = noise - noise.mean(-1, keepdim=True)
    noise = noise - (noise * (x - x.mean(-1, keepdim=True))).sum(-1, keepdim=True) / (
        (x - x.mean(-1, keepdim=True)).pow(2).sum(-1, keepdim=True)) * (x - x.mean(-1, keepdim=True))
    noise = noise * (x - x.mean(-1, keepdim=True)).norm(dim=-1, keepdim=True) / noise.norm(dim=-1, keepdim=True)
    # noise orthogonal to x at equal energy, scaled to -10 dB: SI-SDR is exactly 10 dB
    assert metrics.si_sdr(x, x + noise * 10 ** (-10 / 20)) == pytest.approx(10.0, abs=1e-3)


def test_spectral_distances_zero_for_identity_and_grow_with_noise(speech_like):
    x = speech_like(1.0)
    noisy = x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    noisier = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    for fn in (lambda a, b: metrics.log_mel_distance(a, b, SR), metrics.multi_resolution_stft_distance):
        assert fn(x, x) == pytest.approx(0.0, abs=1e-6)
        assert 0 < fn(x, noisy) < fn(x, noisier)
    # codec outputs are a few samples longer: the metrics trim to the common length
    assert metrics.log_mel_distance(x, torch.cat([x, torch.zeros(100)]), SR) == pytest.approx(0.0, abs=1e-6)


def test_pesq_and_stoi_rank_identical_above_degraded(speech_like):
    x = speech_like(3.0)
    degraded = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    p_same, p_deg = metrics.pesq_wb(x, x, SR), metrics.pesq_wb(x, degraded, SR)
    s_same, s_deg = metrics.stoi(x, x, SR), metrics.stoi(x, degraded, SR)
    assert p_same > 4.5 and p_deg < p_same - 1.0
    assert s_same > 0.99 and s_deg < s_same - 0.05
    # 24 kHz input is resampled to 16 kHz for PESQ: identical audio still scores at the top
    from tinycodec.audio import resample

    x24 = resample(x, SR, 24000)
    assert metrics.pesq_wb(x24, x24, 24000) > 4.5


def test_stoi_of_a_clip_too_short_to_score_is_nan_not_zero(speech_like):
    import math
    import warnings

    x = speech_like(0.3)  # under pystoi's 30 frames of 384 ms: it would return 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no warning escapes to the user
        assert math.isnan(metrics.stoi(x, x, SR))
    assert metrics.stoi(speech_like(1.5), speech_like(1.5), SR) > 0.99


def test_missing_package_error_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pesq", None)  # makes `import pesq` raise ImportError
    with pytest.raises(RuntimeError, match=r"'pesq' package.*tinycodec\[eval\]"):
        metrics.pesq_wb(torch.zeros(16000), torch.zeros(16000), SR)


def test_codebook_usage_and_perplexity():
    codes = torch.tensor([[[0, 1, 2, 3, 0, 1, 2, 3], [5, 5, 5, 5, 5, 5, 5, 5]]])  # [1, 2, 8]
    stats = metrics.codebook_usage(codes, 8)
    np.testing.assert_allclose(stats["usage"], [0.5, 0.125])
    np.testing.assert_allclose(stats["perplexity"], [4.0, 1.0])
    np.testing.assert_allclose(stats["entropy_bits"], [2.0, 0.0])
