"""A seeded synthetic nature generator: bird calls over forest ambience, mixed at a chosen SNR.

Deterministic (same seed, same samples) and fast, for unit tests and the demo corpus. It is a
caricature of nature: never the sole basis of a quality claim. Optional robotic speech through
``espeak-ng`` or ``flite`` when either is installed (``synth_speech``).

Notebook: book/01_data.md
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import signal

__all__ = ["NatureConfig", "bird_call", "ambience", "synth_nature", "synth_speech", "mix_at_snr"]

BIRD_KINDS = ("whistle", "trill", "chirp", "pattern")
AMBIENCE_KINDS = ("wind", "rain", "stream", "insects")


@dataclass
class NatureConfig:
    """What one synthetic clip contains; every random choice is drawn from ``seed``."""

    sample_rate: int = 16_000
    duration: float = 5.0  # seconds
    snr_db: float = 10.0  # birds over ambience, by RMS over the whole clip
    n_calls: int = 4  # bird calls placed at random times
    birds: tuple[str, ...] = BIRD_KINDS  # call kinds to draw from
    ambience: tuple[str, ...] = ("wind", "stream", "insects")  # layers summed for the bed
    peak: float = 0.8  # final peak level, leaves headroom for PCM
    extra: dict = field(default_factory=dict)  # reserved for user tweaks, kept in metadata


def _tone(f_hz: np.ndarray, sr: int, phase0: float = 0.0) -> np.ndarray:
    """A sine whose instantaneous frequency follows ``f_hz`` (integrate the frequency)."""
    return np.sin(phase0 + 2 * np.pi * np.cumsum(f_hz) / sr)


def _envelope(n: int, attack: float = 0.1, release: float = 0.3) -> np.ndarray:
    a, r = max(1, int(n * attack)), max(1, int(n * release))
    env = np.ones(n)
    env[:a] = np.linspace(0, 1, a) ** 2
    env[n - r :] = np.linspace(1, 0, r) ** 2
    return env


def bird_call(kind: str, rng: np.random.Generator, sr: int = 16_000) -> np.ndarray:
    """One bird call as float64 samples in [-1, 1].

    Args:
        kind: ``"whistle"`` (one FM sweep), ``"trill"`` (fast repeated notes), ``"chirp"``
            (a downward sweep with harmonics) or ``"pattern"`` (a motif of 2-4 notes, repeated).
        rng: the generator all random choices come from.
        sr: sample rate in Hz; keeps all content below 0.45 * sr.
    """
    top = 0.42 * sr

    def freq(lo: float, hi: float, ceiling: float = top) -> float:
        # the species' range, squeezed under ``ceiling`` at low sample rates
        return rng.uniform(min(lo, 0.6 * ceiling), min(hi, ceiling))

    if kind == "whistle":
        dur = rng.uniform(0.25, 0.7)
        n = int(dur * sr)
        t = np.linspace(0, 1, n)
        f0, f1 = freq(1800, 5000, top - 100), freq(1800, 6000, top - 100)
        vib = 80 * np.sin(2 * np.pi * rng.uniform(5, 12) * t * dur)
        return _tone(f0 + (f1 - f0) * t**1.5 + vib, sr) * _envelope(n)
    if kind == "trill":
        n_notes, note, gap = rng.integers(6, 16), rng.uniform(0.03, 0.06), rng.uniform(0.01, 0.03)
        f = freq(2500, 6500, top / 1.2)  # notes sweep up to 15 % above f
        out = []
        for _ in range(n_notes):
            m = int(note * sr)
            fm = f * (1 + 0.15 * np.linspace(1, -1, m))  # each note sweeps down a little
            out += [_tone(fm, sr) * np.hanning(m), np.zeros(int(gap * sr))]
        return np.concatenate(out)
    if kind == "chirp":
        dur = rng.uniform(0.08, 0.2)
        n = int(dur * sr)
        t = np.linspace(0, 1, n)
        f = freq(3000, 5000, top - 400) * (1 - 0.5 * t)  # margin: the short envelope widens the line
        x = sum(a * _tone(k * f, sr) for k, a in ((1, 1.0), (2, 0.4), (3, 0.15)) if k * f.max() < top)
        return x * _envelope(n, 0.05, 0.6) / 1.55
    if kind == "pattern":
        notes = [(freq(2000, 5000, top / 1.25), rng.uniform(0.06, 0.15)) for _ in range(rng.integers(2, 5))]
        motif = []
        for f, d in notes:
            m = int(d * sr)
            motif += [
                _tone(np.full(m, f) * np.linspace(1.0, rng.uniform(0.8, 1.2), m), sr) * _envelope(m),
                np.zeros(int(0.03 * sr)),
            ]
        motif = np.concatenate(motif)
        reps = rng.integers(2, 4)
        return np.concatenate([motif, np.zeros(int(0.12 * sr))] * reps)
    raise ValueError(f"unknown bird call kind {kind!r}; choose from {BIRD_KINDS}")


def _colored_noise(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise with power spectrum 1 / f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=float)
    f[0] = 1.0
    x = np.fft.irfft(spec / f ** (exponent / 2), n)
    return x / (x.std() + 1e-12)


def _slow_lfo(n: int, rng: np.random.Generator, sr: int, rate_hz: float) -> np.ndarray:
    """A smooth random gain curve in [0.2, 1] (gusts, a stream's surges)."""
    knots = max(2, int(n / sr * rate_hz) + 2)
    y = np.interp(np.linspace(0, knots - 1, n), np.arange(knots), rng.uniform(0.2, 1.0, knots))
    return y


def ambience(kind: str, n: int, rng: np.random.Generator, sr: int = 16_000) -> np.ndarray:
    """``n`` samples of one ambience layer, unit RMS.

    Args:
        kind: ``"wind"`` (brown noise with gusts), ``"rain"`` (pink bed plus droplet clicks),
            ``"stream"`` (band-passed noise with surges) or ``"insects"`` (pulsed high tones).
    """
    if kind == "wind":
        x = _colored_noise(n, rng, 2.0) * _slow_lfo(n, rng, sr, 0.7)
    elif kind == "rain":
        x = 0.5 * _colored_noise(n, rng, 1.0)
        drops = np.zeros(n)
        idx = rng.integers(0, n, size=int(n / sr * 300))
        drops[idx] = rng.uniform(-1, 1, idx.size) * 4
        b, a = signal.butter(2, [1000, min(7000, 0.45 * sr)], btype="band", fs=sr)
        x = x + signal.lfilter(b, a, drops)
    elif kind == "stream":
        b, a = signal.butter(2, [300, min(3000, 0.45 * sr)], btype="band", fs=sr)
        x = signal.lfilter(b, a, rng.standard_normal(n)) * (0.6 + 0.4 * _slow_lfo(n, rng, sr, 3.0))
    elif kind == "insects":
        t = np.arange(n) / sr
        f = rng.uniform(0.3, 0.42) * sr
        pulse = (np.sin(2 * np.pi * rng.uniform(15, 40) * t) > 0.3).astype(float)
        chirp_gate = (np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t + rng.uniform(0, 6)) > 0).astype(float)
        x = np.sin(2 * np.pi * f * t) * pulse * chirp_gate + 0.05 * rng.standard_normal(n)
    else:
        raise ValueError(f"unknown ambience kind {kind!r}; choose from {AMBIENCE_KINDS}")
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def mix_at_snr(fg: np.ndarray, bg: np.ndarray, snr_db: float) -> np.ndarray:
    """``fg + g * bg`` with g chosen so that RMS(fg) / RMS(g * bg) is ``snr_db`` dB."""
    p_fg, p_bg = np.mean(fg**2), np.mean(bg**2) + 1e-12
    g = np.sqrt(p_fg / (p_bg * 10 ** (snr_db / 10)))
    return fg + g * bg


def synth_nature(seed: int, config: NatureConfig | None = None) -> tuple[torch.Tensor, dict]:
    """A clip of bird calls over ambience, deterministic in ``seed``.

    Returns:
        (wav, meta): wav (Tensor) [1, T] float32 with T = duration * sample_rate, peak ``config.peak``;
        meta lists the calls (kind, start in s) and the ambience layers, for captions and tests.
    """
    cfg = config or NatureConfig()
    # independent streams for calls and bed: changing the calls leaves the ambience as it was
    rng, bed_rng = np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])
    sr, n = cfg.sample_rate, int(round(cfg.duration * cfg.sample_rate))
    birds = np.zeros(n)
    calls = []
    for _ in range(cfg.n_calls):
        kind = str(rng.choice(cfg.birds))
        call = bird_call(kind, rng, sr)[: n // 2] * rng.uniform(0.4, 1.0)
        start = int(rng.integers(0, max(1, n - call.size)))
        birds[start : start + call.size] += call
        calls.append({"kind": kind, "start_s": round(start / sr, 3)})
    bed = (
        sum(bed_rng.uniform(0.5, 1.0) * ambience(k, n, bed_rng, sr) for k in cfg.ambience)
        if cfg.ambience
        else np.zeros(n)
    )
    x = mix_at_snr(birds, bed, cfg.snr_db) if cfg.n_calls else bed
    x = x * (cfg.peak / (np.abs(x).max() + 1e-12))
    meta = {"seed": seed, "snr_db": cfg.snr_db, "calls": calls, "ambience": list(cfg.ambience), **cfg.extra}
    return torch.from_numpy(x.astype(np.float32))[None], meta


def synth_speech(text: str, sample_rate: int = 16_000, voice: str | None = None) -> torch.Tensor:
    """Robotic speech from ``espeak-ng`` (preferred) or ``flite``, resampled to ``sample_rate``.

    Returns:
        Tensor: [1, T] float32.

    Raises:
        RuntimeError: neither synthesizer is on the PATH (``apt-get install espeak-ng flite``).
    """
    from tinycodec.audio import load

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tts.wav"
        if shutil.which("espeak-ng"):
            cmd = ["espeak-ng", "-w", str(out)] + (["-v", voice] if voice else []) + [text]
        elif shutil.which("flite"):
            cmd = ["flite", "-t", text, "-o", str(out)] + (["-voice", voice] if voice else [])
        else:
            raise RuntimeError(
                "no speech synthesizer found: install espeak-ng or flite (apt-get install espeak-ng)"
            )
        subprocess.run(cmd, check=True, capture_output=True)
        wav, _ = load(out, sample_rate)
    return wav
