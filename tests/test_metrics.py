"""Tests for tinycodec.metrics on known signals and a seeded speech-like signal."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from tinycodec import metrics

SR = 16000
_VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (640, 1190, 2390)]


def speech_like(seconds: float = 3.0, sample_rate: int = SR, seed: int = 0) -> torch.Tensor:
    """Source-filter 'speech': a jittered 100-140 Hz pulse train through vowel formants, in
    syllables of ~180 ms with pauses, plus short noise bursts for fricatives. Returns [T]."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = 120 + 15 * np.sin(2 * np.pi * 0.7 * t) + 2 * rng.standard_normal(n).cumsum() / np.sqrt(n)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    source = sum(np.sin(k * phase) / k for k in range(1, 40))
    out = np.zeros(n)
    pos = int(0.2 * sample_rate)
    while pos < n - sample_rate // 10:
        length = int(rng.uniform(0.12, 0.25) * sample_rate)
        seg = source[pos : pos + length]
        for formant, bw in zip(_VOWELS[rng.integers(len(_VOWELS))], (80, 100, 120)):
            r = np.exp(-np.pi * bw / sample_rate)
            seg = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * formant / sample_rate), r * r], seg)
        env = np.hanning(len(seg))
        out[pos : pos + len(seg)] += seg * env
        if rng.random() < 0.3:  # a fricative after the vowel
            burst = lfilter([1, -0.9], [1], rng.standard_normal(sample_rate // 12)) * 0.05
            end = min(n, pos + len(seg) + burst.size)
            out[pos + len(seg) : end] += burst[: end - pos - len(seg)]
        pos += len(seg) + int(rng.uniform(0.03, 0.08) * sample_rate)
        if rng.random() < 0.15:
            pos += int(0.3 * sample_rate)  # a pause between phrases
    return torch.from_numpy((0.5 * out / np.abs(out).max()).astype(np.float32))


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


def test_spectral_distances_zero_for_identity_and_grow_with_noise():
    x = speech_like(1.0)
    noisy = x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    noisier = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    for fn in (lambda a, b: metrics.log_mel_distance(a, b, SR), metrics.multi_resolution_stft_distance):
        assert fn(x, x) == pytest.approx(0.0, abs=1e-6)
        assert 0 < fn(x, noisy) < fn(x, noisier)
    # codec outputs are a few samples longer: the metrics trim to the common length
    assert metrics.log_mel_distance(x, torch.cat([x, torch.zeros(100)]), SR) == pytest.approx(0.0, abs=1e-6)


def test_pesq_and_stoi_rank_identical_above_degraded():
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


def test_stoi_of_a_clip_too_short_to_score_is_nan_not_zero():
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
