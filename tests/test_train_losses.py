"""Losses: mel reconstruction, hinge, feature matching, weights, validation distance."""

from __future__ import annotations

import math

import pytest
import torch

from tinycodec.train.losses import (
    LossWeights,
    MultiScaleMelLoss,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
    mel_distance,
)


@pytest.fixture
def wav() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(4000) / 16000
    return (0.3 * torch.sin(2 * math.pi * 440 * t) + 0.05 * torch.randn(4000, generator=g)).view(1, 1, -1).repeat(2, 1, 1)


def test_default_weights_follow_soundstream():
    w = LossWeights()
    assert (w.adversarial, w.feature, w.reconstruction) == (1.0, 100.0, 1.0)


def test_mel_loss_scales_and_cached_filterbanks():
    loss = MultiScaleMelLoss(16000)
    assert loss.windows == [64, 128, 256, 512, 1024, 2048]
    fb = {name: buf for name, buf in loss.named_buffers() if name.startswith("fb_")}
    assert set(fb) == {f"fb_{s}" for s in loss.windows}
    assert all(buf.shape == (s // 2 + 1, 64) for s, buf in zip(loss.windows, fb.values()))
    assert loss.mel(torch.zeros(1, 1, 4000), 256).shape == (1, 64, 4000 // 64 + 1)  # hop s/4


def test_mel_loss_is_zero_on_identical_and_grows_with_error(wav):
    loss = MultiScaleMelLoss(16000)
    assert float(loss(wav, wav)) == 0.0
    g = torch.Generator().manual_seed(1)
    small = float(loss(wav, wav + 0.01 * torch.randn(wav.shape, generator=g)))
    large = float(loss(wav, wav + 0.1 * torch.randn(wav.shape, generator=g)))
    assert 0 < small < large


def test_mel_loss_log_term_weights_sqrt_half_window(wav):
    # a uniform gain c changes every log-mel bin by log(c): per-frame L2 = sqrt(bands) * |log c|,
    # so the log part of the loss is sum_s sqrt(s / 2) * sqrt(n_nonzero_bands_s) * |log c| (+ the L1 part)
    loss = MultiScaleMelLoss(16000, min_exp=11, max_exp=11, eps=1e-12)
    c = 2.0
    mx, my = loss.mel(wav, 2048), loss.mel(c * wav, 2048)
    l1 = float((mx - my).abs().mean())
    n_bands = int((loss.fb_2048.sum(0) > 0).sum())
    expected = l1 + math.sqrt(1024) * math.sqrt(n_bands) * math.log(c)
    assert float(loss(wav, c * wav)) == pytest.approx(expected, rel=1e-3)


def test_mel_loss_gradient_is_finite_at_zero_error(wav):
    y = wav.clone().requires_grad_(True)
    MultiScaleMelLoss(16000)(wav, y).backward()
    assert torch.isfinite(y.grad).all()


def test_hinge_losses():
    pos, neg, zero = torch.full((2, 1, 5), 2.0), torch.full((2, 1, 5), -2.0), torch.zeros(2, 1, 5)
    assert float(discriminator_hinge_loss([pos], [neg])) == 0.0  # confident and right: no loss
    assert float(discriminator_hinge_loss([zero, zero], [zero, zero])) == 2.0
    assert float(discriminator_hinge_loss([neg], [pos])) == 6.0
    assert float(generator_hinge_loss([pos])) == 0.0
    assert float(generator_hinge_loss([zero, neg])) == pytest.approx((1 + 3) / 2)


def test_feature_matching_is_mean_l1_over_layers_and_discriminators():
    a = [[torch.zeros(2, 3), torch.zeros(4)], [torch.zeros(5)]]
    b = [[torch.ones(2, 3), torch.full((4,), 3.0)], [torch.full((5,), 2.0)]]
    assert float(feature_matching_loss(a, a)) == 0.0
    assert float(feature_matching_loss(a, b)) == pytest.approx(((1 + 3) / 2 + 2) / 2)


def test_mel_distance(wav):
    assert mel_distance(wav, wav, 16000) == 0.0
    assert mel_distance(wav, 0.5 * wav, 16000) == pytest.approx(math.log(2), rel=0.05)


def test_anti_wrapping_distance_treats_angles_modulo_two_pi():
    import math

    from tinycodec.train.spectral_losses import anti_wrap

    a = torch.tensor([0.1, 2 * math.pi + 0.1, -2 * math.pi - 0.1, math.pi - 0.01, 3 * math.pi])
    assert torch.allclose(anti_wrap(a), torch.tensor([0.1, 0.1, 0.1, math.pi - 0.01, math.pi]), atol=1e-5)


def test_phase_loss_is_zero_for_the_same_phase_and_pi_for_the_inverted_signal():
    import math

    from tinycodec.train.spectral_losses import PhaseLoss

    torch.manual_seed(0)
    x = torch.randn(2, 1, 4000) * 0.1
    loss = PhaseLoss()
    assert float(loss(x, x)) == pytest.approx(0.0, abs=1e-5)
    assert float(loss(x, 2.5 * x)) == pytest.approx(0.0, abs=1e-5)  # phase ignores the level
    # -x: every bin off by pi (instantaneous phase), but the same differences along time and frequency
    assert float(loss(x, -x)) == pytest.approx(math.pi, abs=1e-3)


def test_spectral_loss_is_zero_only_for_the_same_signal_and_finite_at_silence():
    from tinycodec.train.spectral_losses import MultiResolutionSTFTLoss

    torch.manual_seed(0)
    x = torch.randn(2, 1, 4000) * 0.1
    loss = MultiResolutionSTFTLoss()
    assert float(loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(x, 0.5 * x)) > 0.1
    y = torch.zeros_like(x, requires_grad=True)
    loss(x, y).backward()
    assert torch.isfinite(y.grad).all()
