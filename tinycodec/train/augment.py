"""Training-time augmentation: level, equalisation, room and noise, so the codec meets more than one studio.

A codec's target is its input, so an augmented clip is both what the encoder sees and what the
decoder must give back: augmentation widens the range of voices, rooms and microphones the codec
is trained on without any label. Each effect is applied to each clip independently with
probability ``p``; the random draws come from a generator seeded by the run's seed and the step,
so a resumed run augments exactly as an uninterrupted one.

    wav [B, 1, T] -> level (gain, dB)          quiet and loud talkers
                  -> EQ (tilt + one peak, dB)  microphones and small speakers
                  -> room (decaying noise IR)  reverberant rooms, RT60 0.1-0.6 s
                  -> noise (white / pink, SNR) background hiss
                  -> peak limit to 0.99        never clipped

Notebook: book/04_training.md
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["AugmentRanges", "augment", "step_generator"]


@dataclass(frozen=True)
class AugmentRanges:
    """The ranges each effect draws from (uniform)."""

    gain_db: tuple[float, float] = (-20.0, 6.0)
    tilt_db_per_octave: tuple[float, float] = (-3.0, 3.0)  # around 1 kHz
    peak_db: tuple[float, float] = (-9.0, 9.0)  # one bell of an octave's width
    peak_hz: tuple[float, float] = (200.0, 5000.0)
    rt60_s: tuple[float, float] = (0.1, 0.6)
    wet: tuple[float, float] = (0.2, 0.8)  # reverberant share of the energy
    snr_db: tuple[float, float] = (10.0, 40.0)
    peak_limit: float = 0.99


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of step ``step``: a function of the run's seed and the step alone (resume-safe)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % 2**63)


def _uniform(lo_hi: tuple[float, float], n: int, g: torch.Generator) -> Tensor:
    lo, hi = lo_hi
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def _eq(wav: Tensor, sample_rate: int, r: AugmentRanges, g: torch.Generator) -> Tensor:
    """A zero-phase equaliser per clip: a spectral tilt around 1 kHz and one bell, applied by FFT."""
    b, _, t = wav.shape
    freqs = torch.fft.rfftfreq(t, 1.0 / sample_rate, dtype=torch.float64).clamp_min(20.0)  # [T/2+1]
    octaves = torch.log2(freqs / 1000.0)  # [T/2+1]
    tilt = _uniform(r.tilt_db_per_octave, b, g)[:, None]  # [B, 1]
    peak = _uniform(r.peak_db, b, g)[:, None]
    centre = _uniform(tuple(math.log2(hz / 1000.0) for hz in r.peak_hz), b, g)[:, None]  # octaves: log-uniform in Hz
    gain_db = tilt * octaves + peak * torch.exp(-0.5 * ((octaves - centre) / 0.5) ** 2)  # [B, T/2+1]
    spec = torch.fft.rfft(wav[:, 0].double(), dim=-1) * 10 ** (gain_db / 20)
    return torch.fft.irfft(spec, n=t, dim=-1)[:, None].to(wav.dtype)


def _room(wav: Tensor, sample_rate: int, r: AugmentRanges, g: torch.Generator) -> Tensor:
    """Convolve with a synthetic room: the direct sound plus exponentially decaying noise (RT60),
    mixed to the drawn reverberant share and brought back to the clip's energy."""
    b, _, t = wav.shape
    rt60 = _uniform(r.rt60_s, b, g)  # [B]
    n = int(r.rt60_s[1] * sample_rate)
    time = torch.arange(1, n + 1, dtype=torch.float64) / sample_rate  # [n] (the tail after the direct sound)
    tail = torch.randn(b, n, generator=g, dtype=torch.float64) * torch.exp(-6.908 * time / rt60[:, None])  # -60 dB
    tail = tail / tail.pow(2).sum(-1, keepdim=True).sqrt().clamp_min(1e-12)
    wet = _uniform(r.wet, b, g)[:, None]
    ir = torch.cat([(1 - wet).sqrt(), wet.sqrt() * tail], dim=-1)  # [B, n + 1]: unit energy
    size = t + n
    out = torch.fft.irfft(torch.fft.rfft(wav[:, 0].double(), size) * torch.fft.rfft(ir, size), size)[:, :t]
    energy = wav[:, 0].double().pow(2).sum(-1, keepdim=True)
    out = out * (energy / out.pow(2).sum(-1, keepdim=True).clamp_min(1e-20)).sqrt()
    return out[:, None].to(wav.dtype)


def _noise(wav: Tensor, r: AugmentRanges, g: torch.Generator) -> Tensor:
    """Add white or pink noise at the drawn SNR (relative to the clip's power)."""
    b, _, t = wav.shape
    noise = torch.randn(b, t, generator=g, dtype=torch.float64)
    pink = torch.rand(b, generator=g) < 0.5
    if pink.any():  # 1/f power: amplitude 1/sqrt(f) by FFT
        spec = torch.fft.rfft(noise[pink], dim=-1)
        spec = spec / torch.arange(1, spec.shape[-1] + 1, dtype=torch.float64).sqrt()
        noise[pink] = torch.fft.irfft(spec, n=t, dim=-1)
    power = wav[:, 0].double().pow(2).mean(-1, keepdim=True)
    snr = _uniform(r.snr_db, b, g)[:, None]
    noise = noise * (power / noise.pow(2).mean(-1, keepdim=True).clamp_min(1e-20) / 10 ** (snr / 10)).sqrt()
    return (wav[:, 0].double() + noise)[:, None].to(wav.dtype)


def augment(wav: Tensor, p: float, generator: torch.Generator, sample_rate: int = 16000,
            ranges: AugmentRanges = AugmentRanges()) -> Tensor:
    """Augment a batch: each effect on each clip with probability ``p``.

    Args:
        wav (Tensor): [B, 1, T] float in [-1, 1] (on any device; the effects run on the CPU in float64).
        p (float): probability of each effect per clip, in [0, 1] (0: ``wav`` unchanged).
        generator (torch.Generator): the draws (see :func:`step_generator`).
        sample_rate (int): Hz.
        ranges (AugmentRanges): the ranges of the effects.

    Returns:
        Tensor: [B, 1, T], the same dtype and device, peak at most ``ranges.peak_limit``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"augmentation probability must lie in [0, 1], got {p}")
    if p == 0.0:
        return wav
    device, x = wav.device, wav.detach().cpu()
    b = x.shape[0]
    gain = torch.where(torch.rand(b, generator=generator) < p, _uniform(ranges.gain_db, b, generator), 0.0)
    x = x * (10 ** (gain / 20)).to(x.dtype)[:, None, None]
    for effect in (lambda y: _eq(y, sample_rate, ranges, generator), lambda y: _room(y, sample_rate, ranges, generator),
                   lambda y: _noise(y, ranges, generator)):
        chosen = torch.rand(b, generator=generator) < p
        if chosen.any():
            x = x.clone()
            x[chosen] = effect(x[chosen])
    peak = x.abs().amax(dim=(1, 2), keepdim=True)
    x = x * torch.where(peak > ranges.peak_limit, ranges.peak_limit / peak.clamp_min(1e-12), torch.ones_like(peak))
    return x.to(device)

