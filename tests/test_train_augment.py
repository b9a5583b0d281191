"""Training-time augmentation: reproducible, bounded, and each effect does what it says."""

from __future__ import annotations

import math

import pytest
import torch

from tinycodec.train.augment import AugmentRanges, augment, step_generator


def speechlike(b: int = 8, t: int = 8000, sr: int = 16000) -> torch.Tensor:
    """Harmonics of a 150 Hz voice under a 4 Hz syllable envelope, peak 0.5: [B, 1, T]."""
    time = torch.arange(t) / sr
    f0 = 150.0 * (1 + 0.1 * torch.arange(b))[:, None]
    x = sum(torch.sin(2 * math.pi * k * f0 * time) / k for k in range(1, 8))
    x = x * (0.6 + 0.4 * torch.sin(2 * math.pi * 4 * time))
    return (0.5 * x / x.abs().amax(-1, keepdim=True))[:, None].float()


def test_same_seed_and_step_same_batch_another_step_another():
    x = speechlike()
    a = augment(x, 0.5, step_generator(0, 7))
    assert torch.equal(a, augment(x, 0.5, step_generator(0, 7)))
    assert not torch.equal(a, augment(x, 0.5, step_generator(0, 8)))
    assert not torch.equal(a, augment(x, 0.5, step_generator(1, 7)))


def test_off_is_identity_and_bad_probability_is_refused():
    x = speechlike()
    assert augment(x, 0.0, step_generator(0, 0)) is x
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        augment(x, 1.5, step_generator(0, 0))


def test_output_is_finite_bounded_and_keeps_shape_and_dtype():
    x = speechlike() * 1.9  # peaks of 0.95: a +6 dB gain would clip without the limiter
    for step in range(5):
        y = augment(x, 1.0, step_generator(3, step))
        assert y.shape == x.shape and y.dtype == x.dtype
        assert torch.isfinite(y).all() and y.abs().max() <= AugmentRanges().peak_limit + 1e-6


def test_each_effect_alone():
    x = speechlike(b=4)
    silent = AugmentRanges(gain_db=(0, 0), tilt_db_per_octave=(0, 0), peak_db=(0, 0), wet=(0, 0), snr_db=(200, 200))
    # every effect off by its range: the batch comes back (float64 FFTs, round-off only)
    assert torch.allclose(augment(x, 1.0, step_generator(0, 0), ranges=silent), x, atol=1e-6)
    # level: exactly the drawn gain in dB
    y = augment(x, 1.0, step_generator(0, 0), ranges=AugmentRanges(gain_db=(-6, -6), tilt_db_per_octave=(0, 0),
                                                                   peak_db=(0, 0), wet=(0, 0), snr_db=(200, 200)))
    assert torch.allclose(y, x * 10 ** (-6 / 20), atol=1e-6)
    # noise: the drawn SNR, measured
    y = augment(x, 1.0, step_generator(0, 0), ranges=AugmentRanges(gain_db=(0, 0), tilt_db_per_octave=(0, 0),
                                                                   peak_db=(0, 0), wet=(0, 0), snr_db=(20, 20)))
    snr = 10 * torch.log10(x.double().pow(2).mean(-1) / (y - x).double().pow(2).mean(-1))
    assert torch.allclose(snr, torch.full_like(snr, 20.0), atol=0.05)
    # room: the energy is kept, the waveform is not
    y = augment(x, 1.0, step_generator(0, 0), ranges=AugmentRanges(gain_db=(0, 0), tilt_db_per_octave=(0, 0),
                                                                   peak_db=(0, 0), wet=(0.5, 0.5), snr_db=(200, 200)))
    assert torch.allclose(y.pow(2).sum(-1), x.pow(2).sum(-1), rtol=1e-3)
    assert (y - x).abs().max() > 0.05
    # EQ: a +9 dB bell at 1 kHz lifts the 1050 Hz harmonic of the 150 Hz voice by about 9 dB
    y = augment(x[:1], 1.0, step_generator(0, 0), ranges=AugmentRanges(
        gain_db=(0, 0), tilt_db_per_octave=(0, 0), peak_db=(9, 9), peak_hz=(1050, 1050), wet=(0, 0), snr_db=(200, 200)))
    bin_1050 = round(1050 * x.shape[-1] / 16000)
    lift = 20 * torch.log10(torch.fft.rfft(y[0, 0].double()).abs()[bin_1050] /
                            torch.fft.rfft(x[0, 0].double()).abs()[bin_1050])
    assert abs(float(lift) - 9.0) < 0.3


def test_train_config_checks_the_probability():
    from tinycodec.train.config import TrainConfig

    with pytest.raises(ValueError, match="augment"):
        TrainConfig(augment=2.0)


def test_a_run_trains_on_the_augmented_clips(corpus, tmp_path, tiny_config):
    from tinycodec.train import train

    plain = train(tiny_config(corpus, tmp_path / "a", max_steps=2))
    augmented = train(tiny_config(corpus, tmp_path / "b", max_steps=2, augment=1.0))
    assert plain.history["reconstruction"] != augmented.history["reconstruction"]
