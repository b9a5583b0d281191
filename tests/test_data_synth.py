"""The synthetic nature generator: determinism, band limits, SNR, and the speech fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinycodec.data import synth
from tinycodec.data.synth import (
    AMBIENCE_KINDS,
    BIRD_KINDS,
    NatureConfig,
    ambience,
    bird_call,
    mix_at_snr,
    synth_nature,
)


def test_same_seed_same_clip_and_different_seeds_differ():
    a, meta_a = synth_nature(3)
    b, meta_b = synth_nature(3)
    c, _ = synth_nature(4)
    assert torch.equal(a, b) and meta_a == meta_b
    assert not torch.allclose(a, c)
    assert a.shape == (1, 80_000) and a.dtype == torch.float32
    assert float(a.abs().max()) == pytest.approx(0.8, abs=1e-6)
    assert len(meta_a["calls"]) == 4 and all(k["kind"] in BIRD_KINDS for k in meta_a["calls"])


@pytest.mark.parametrize("kind", BIRD_KINDS)
@pytest.mark.parametrize("sr", [8000, 16000])
def test_bird_calls_stay_below_nyquist(kind, sr):
    x = bird_call(kind, np.random.default_rng(1), sr)
    assert (
        x.ndim == 1 and 0.02 * sr < x.size < 3 * sr and np.isfinite(x).all() and np.abs(x).max() <= 1.0 + 1e-9
    )
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / sr)
    assert spec[f > 0.45 * sr].sum() / spec.sum() < 1e-3  # no energy pressed against Nyquist


@pytest.mark.parametrize("kind", AMBIENCE_KINDS)
def test_ambience_layers_are_unit_rms(kind):
    x = ambience(kind, 16000, np.random.default_rng(2))
    assert x.shape == (16000,) and np.sqrt(np.mean(x**2)) == pytest.approx(1.0, rel=1e-6)


def test_mix_at_snr_is_exact():
    rng = np.random.default_rng(0)
    fg, bg = rng.standard_normal(4000), 3 * rng.standard_normal(4000)
    for snr in (-5.0, 0.0, 10.0, 30.0):
        mix = mix_at_snr(fg, bg, snr)
        noise = mix - fg
        assert 10 * np.log10(np.mean(fg**2) / np.mean(noise**2)) == pytest.approx(snr, abs=1e-9)


def test_config_snr_changes_the_balance():
    cfg = dict(n_calls=3, ambience=("wind",), duration=2.0)
    quiet_bed, _ = synth_nature(0, NatureConfig(snr_db=30.0, **cfg))
    loud_bed, _ = synth_nature(0, NatureConfig(snr_db=-10.0, **cfg))
    bed_only, _ = synth_nature(0, NatureConfig(n_calls=0, ambience=("wind",), duration=2.0))
    # at -10 dB the clip looks like the bed; at +30 dB it does not
    corr = lambda a, b: float(torch.corrcoef(torch.stack([a[0], b[0]]))[0, 1])  # noqa: E731
    assert corr(loud_bed, bed_only) > 0.9 > corr(quiet_bed, bed_only)


def test_unknown_kinds_raise():
    with pytest.raises(ValueError, match="bird"):
        bird_call("parrot", np.random.default_rng(0))
    with pytest.raises(ValueError, match="ambience"):
        ambience("traffic", 100, np.random.default_rng(0))


def test_synth_speech_without_a_synthesizer_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="espeak-ng or flite"):
        synth.synth_speech("hello")
