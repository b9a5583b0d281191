"""Discriminators: shapes, scales, STFT input, configuration for 16 kHz, gradients."""

from __future__ import annotations

import pytest
import torch

from tinycodec.train.discriminators import (
    Discriminator,
    DiscriminatorConfig,
    MultiScaleWaveDiscriminator,
    STFTDiscriminator,
    WaveDiscriminator,
)


@pytest.fixture
def wav() -> torch.Tensor:
    return torch.randn(2, 1, 4096, generator=torch.Generator().manual_seed(0)) * 0.1


def test_wave_discriminator_downsamples_by_four_per_layer(wav):
    logits, feats = WaveDiscriminator(channels=4, max_channels=32, downsample_layers=3)(wav)
    assert logits.shape == (2, 1, 4096 // 4**3)
    assert [f.shape[1] for f in feats] == [4, 16, 32, 32, 32]  # capped at max_channels


def test_multi_scale_sees_raw_2x_and_4x_pooled(wav):
    msd = MultiScaleWaveDiscriminator(3, channels=4, max_channels=16, downsample_layers=2)
    logits, feats = msd(wav)
    assert [x.shape[-1] for x in logits] == [256, 128, 64]
    assert [f[0].shape[-1] for f in feats] == [4096, 2048, 1024]
    # scale 1 is the average-pooled signal: a constant input stays constant (edges included)
    assert torch.allclose(msd.pool(torch.ones(1, 1, 64)), torch.ones(1, 1, 32))


def test_stft_discriminator_uses_complex_stft(wav):
    d = STFTDiscriminator()  # window 1024 / hop 256 by default
    spec = d.spectrogram(wav)
    assert spec.shape == (2, 2, 512, 4096 // 256 + 1)  # real and imaginary channels
    full = torch.stft(wav[:, 0], 1024, 256, window=torch.hann_window(1024), return_complex=True)
    assert torch.allclose(spec[:, 1], full.imag[:, :-1])
    logits, feats = d(wav)
    assert logits[0].shape[:3] == (2, 1, 1) and len(feats[0]) == 7


def test_stft_discriminator_configurable_for_16k(wav):
    d = STFTDiscriminator(n_fft=512, hop_length=128, channels=4)
    (logits,), _ = d(wav)
    assert logits.shape[:3] == (2, 1, 1) and logits.shape[-1] == 4  # 33 frames -> 16 -> 8 -> 4 (three time strides)
    assert d.spectrogram(wav).shape[2] == 256


def test_combined_discriminator_and_gradients(wav):
    cfg = DiscriminatorConfig(wave_channels=4, wave_max_channels=16, stft_channels=4, stft_n_fft=256, stft_hop_length=64)
    d = Discriminator(cfg)
    x = wav.clone().requires_grad_(True)
    logits, feats = d(x)
    assert len(logits) == len(feats) == 4  # 3 wave scales + 1 STFT
    sum(score.mean() for score in logits).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert len(Discriminator(DiscriminatorConfig(use_wave=False, stft_channels=4))(wav)[0]) == 1
    with pytest.raises(ValueError, match="at least one"):
        Discriminator(DiscriminatorConfig(use_wave=False, use_stft=False))


def test_default_stft_window_follows_the_sample_rate():
    assert Discriminator(sample_rate=24000).stft.n_fft == 1024
    small = Discriminator(sample_rate=16000).stft
    assert (small.n_fft, small.hop_length) == (512, 128)


def test_stft_discriminator_layout_changes_speed_not_values():
    # channels-last is a memory layout: outputs, features and gradients match the NCHW layout
    torch.manual_seed(0)
    disc = STFTDiscriminator(256, 64, 8)
    assert disc.memory_format == torch.channels_last
    wav = torch.randn(2, 1, 4000)
    runs = []
    for fmt in (torch.channels_last, torch.contiguous_format):
        disc.set_memory_format(fmt)
        disc.zero_grad()
        (logits,), (feats,) = disc(wav)
        assert all(f.is_contiguous(memory_format=fmt) for f in feats)
        (logits.sum() + sum(f.abs().mean() for f in feats)).backward()
        runs.append((logits.detach(), [f.detach() for f in feats], disc.stem.parametrizations.weight.original1.grad.clone()))
    (l1, f1, g1), (l2, f2, g2) = runs
    torch.testing.assert_close(l1, l2, rtol=1e-4, atol=1e-5)
    for a, b in zip(f1, f2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(g1, g2, rtol=1e-3, atol=1e-6)
