"""Discriminators: shapes, scales, periods, STFT input, configuration for 16 kHz, gradients, and the
trainer's two discriminator paths (one forward on [real; fake], or two) giving the same step."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tinycodec.train.discriminators import (
    Discriminator,
    DiscriminatorConfig,
    MultiPeriodDiscriminator,
    MultiScaleWaveDiscriminator,
    PeriodDiscriminator,
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


@pytest.mark.parametrize("period", [2, 3, 5])
def test_period_discriminator_folds_every_period_samples(period):
    d = PeriodDiscriminator(period, channels=4, max_channels=8, layers=2)
    wav = torch.randn(2, 1, 4001, generator=torch.Generator().manual_seed(period)) * 0.1
    rows = math.ceil(4001 / period)  # the tail is padded to a whole row
    logits, feats = d(wav)
    # two stride-3 layers along time (kernel 5, padding 2: n -> ceil(n / 3)), then a stride-1 layer;
    # the period axis is kept
    after = [math.ceil(rows / 3), math.ceil(math.ceil(rows / 3) / 3)]
    assert [f.shape for f in feats] == [(2, 4, after[0], period), (2, 8, after[1], period), (2, 8, after[1], period)]
    assert logits.shape == (2, 1, after[1], period)
    # column j holds samples j, j + p, j + 2p...: a signal that repeats every p samples is the same in
    # every row, so the first layer's output is constant along time away from the edges
    periodic = torch.randn(1, 1, period).repeat(1, 1, 300)
    first = F.leaky_relu(d.convs[0](periodic.view(1, 1, 300, period)), 0.2)
    torch.testing.assert_close(first[:, :, 2:-2], first[:, :, 2:3].expand_as(first[:, :, 2:-2]))


def test_period_discriminator_pads_the_tail_by_reflection():
    d = PeriodDiscriminator(3, channels=4, max_channels=8, layers=1)
    seen = []
    d.convs[0].register_forward_hook(lambda m, args, out: seen.append(args[0]))
    wav = torch.arange(1.0, 8.0).view(1, 1, 7)  # 7 samples -> 3 rows of 3: two samples of padding
    d(wav)
    assert seen[0].shape == (1, 1, 3, 3)
    assert seen[0].flatten().tolist() == [1, 2, 3, 4, 5, 6, 7, 6, 5]  # reflected, not zeros
    d(torch.ones(1, 1, 1))  # shorter than a period: reflection cannot pad it, replication does
    assert seen[1].flatten().tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="period must be >= 1"):
        PeriodDiscriminator(0)


def test_multi_period_discriminator_in_the_combined_one(wav):
    cfg = DiscriminatorConfig(use_wave=False, use_stft=False, periods=[2, 3], period_channels=4, period_max_channels=8)
    d = Discriminator(cfg)
    assert isinstance(d.period, MultiPeriodDiscriminator) and d.wave is None and d.stft is None
    logits, feats = d(wav)
    assert [x.shape[-1] for x in logits] == [2, 3] and len(feats) == 2


# -- the trainer's discriminator paths --------------------------------------------------
# One discriminator forward on [real; fake] serves both players when the process runs alone and eagerly;
# under DDP or torch.compile the step takes two (Trainer.one_disc_forward). The same batch through both
# gives the same losses and gradients up to float rounding: the discriminators have no batch statistics,
# so a batch of 2B computes what two batches of B compute. Tolerance: rtol 1e-4, atol 1e-6 (float32).
DISC_PATHS = {
    "wave+stft": dict(wave_channels=4, wave_max_channels=16, wave_downsample_layers=2, stft_channels=4,
                      stft_n_fft=256, stft_hop_length=64),
    "multi_stft+periods": dict(use_wave=False, stft_n_ffts=[128, 256], stft_channels=4, periods=[2, 3],
                               period_channels=4, period_max_channels=8),
}


def _one_step(trainer, wav: torch.Tensor) -> tuple[dict, dict]:
    trainer.model.train()
    torch.manual_seed(1)  # the same random window (disc_window) and quantizer draws in both trainers
    out = trainer.train_step(wav)
    grads = {f"generator.{n}": p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    grads |= {f"discriminator.{n}": p.grad.clone() for n, p in trainer.disc.named_parameters()}
    return out, grads


@pytest.mark.parametrize("window", [0.0, 0.1], ids=["whole", "window"])
@pytest.mark.parametrize("disc", list(DISC_PATHS))
def test_one_and_two_discriminator_forwards_give_the_same_step(corpus, tmp_path, tiny_config, disc, window):
    from tinycodec.train import Trainer

    class TwoForwards(Trainer):  # the path DDP and torch.compile take
        one_disc_forward = False

    cfg = dict(disc=DiscriminatorConfig(**DISC_PATHS[disc]), disc_warmup_steps=0, disc_window=window)
    one, two = Trainer(tiny_config(corpus, tmp_path / "one", **cfg)), TwoForwards(tiny_config(corpus, tmp_path / "two", **cfg))
    assert one.one_disc_forward and not two.one_disc_forward
    for a, b in ((one.model, two.model), (one.disc, two.disc)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    wav = torch.randn(4, 1, 4000, generator=torch.Generator().manual_seed(0)) * 0.1
    (out1, grads1), (out2, grads2) = _one_step(one, wav), _one_step(two, wav)
    assert set(out1) == set(out2) >= {"adversarial", "feature", "discriminator", "total_g", "reconstruction"}
    for key in out1:
        assert out1[key] == pytest.approx(out2[key], rel=1e-4, abs=1e-6), key
    assert set(grads1) == set(grads2)
    assert any(k.startswith("discriminator.") and g.abs().sum() > 0 for k, g in grads1.items())
    for name in grads1:
        torch.testing.assert_close(grads1[name], grads2[name], rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
