"""Envelope oracles and the linear probe of the codes (tinycodec.eval.information)."""

from __future__ import annotations

import math

import pytest
import torch

from tinycodec.eval.information import (
    code_features,
    griffin_lim,
    log_mel_frames,
    mel_envelope_oracle,
    ridge_r2,
)
from tinycodec.models import TinyStream

SR = 16000


def _chirp(seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(SR * seconds)) / SR
    return 0.3 * torch.sin(2 * math.pi * (200 * t + 900 * t**2)) * (0.6 + 0.4 * torch.sin(2 * math.pi * 3 * t))


def _spectral_error(x: torch.Tensor, y: torch.Tensor) -> float:
    w = torch.hann_window(512)
    a, b = (torch.stft(s, 512, 128, window=w, return_complex=True).abs() for s in (x, y))
    return float((a - b).norm() / a.norm())


def test_griffin_lim_converges_and_is_seeded():
    x = _chirp()
    mag = torch.stft(x, 1024, 256, window=torch.hann_window(1024), return_complex=True).abs()
    few, many = (torch.nn.functional.pad(griffin_lim(mag, 1024, 256, iters=n), (0, 128)) for n in (1, 48))
    assert few.shape == x.shape
    assert _spectral_error(x, many) < 0.5 * _spectral_error(x, few)
    assert torch.equal(many[:-128], griffin_lim(mag, 1024, 256, iters=48))


def test_more_bands_keep_more_of_the_spectrum():
    x = _chirp()
    errs = [_spectral_error(x, mel_envelope_oracle(x, SR, n, iters=16)) for n in (1, 16, 0)]
    assert mel_envelope_oracle(x, SR, 4, iters=2).shape == x.shape
    assert errs[0] > errs[1] > errs[2], errs
    with pytest.raises(ValueError, match="n_mels"):
        mel_envelope_oracle(x, SR, -1)


def test_ridge_r2_tells_an_informative_feature_from_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 5, generator=g)
    y = x @ torch.randn(5, 3, generator=g) + 0.05 * torch.randn(600, 3, generator=g)
    noise = torch.randn(600, 5, generator=g)
    assert ridge_r2(x[:400], y[:400], x[400:], y[400:]) > 0.95
    assert ridge_r2(noise[:400], y[:400], noise[400:], y[400:]) < 0.05


def test_code_features_and_frame_targets_line_up():
    torch.manual_seed(0)
    model = TinyStream.from_preset("ultra_tiny").eval()
    x = _chirp(0.5)
    feats = code_features(model, x, context=1)
    target = log_mel_frames(x, SR, model.hop_length)
    assert feats.shape == (x.numel() // 256, 3 * model.config.D)
    assert target.shape == (x.numel() // 256, 40)
    assert torch.equal(feats[1:, : model.config.D], feats[:-1, model.config.D: 2 * model.config.D])
