"""tinycodec.audio.excerpt: energy-based excerpts skip leading silence; players carry their level."""

from __future__ import annotations

import base64
import io
import math
import re
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

import tinycodec
from tinycodec.audio.excerpt import (
    AUDIBLE_RMS_DBFS,
    active_excerpt,
    active_start,
    frame_levels_dbfs,
    is_audible,
    loudness_report,
    player,
)

SR = 16000
DEMO_SPEECH = Path(__file__).resolve().parents[1] / "data" / "demo" / "speech" / "pyannote_sample.wav"


def _tone(seconds: float, amplitude: float = 0.3, freq: float = 440.0) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return amplitude * torch.sin(2 * math.pi * freq * t)


def _noise(seconds: float, dbfs: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 10 ** (dbfs / 20) * torch.randn(int(seconds * SR), generator=g)


def test_frame_levels_of_a_full_scale_square_is_0_dbfs():
    square = torch.ones(SR).repeat_interleave(1)
    square[::2] = -1
    levels = frame_levels_dbfs(square[None, None], SR)
    assert levels.shape == (20,)
    assert torch.allclose(levels, torch.zeros(20), atol=1e-4)


def test_leading_silence_is_skipped():
    wav = torch.cat([_noise(6.0, -70), _tone(10.0)])[None]  # [1, T]: 6 s of room noise, then sound
    start = active_start(wav, SR, 4.0)
    assert 5.9 * SR <= start <= 6.05 * SR
    excerpt = active_excerpt(wav, SR, 4.0)
    assert excerpt.shape == (1, 4 * SR)
    assert is_audible(loudness_report(excerpt, SR))
    assert not is_audible(loudness_report(wav[..., : 4 * SR], SR))  # what "the first 4 s" gave


def test_a_lone_click_in_the_silence_does_not_start_the_excerpt():
    quiet = _noise(8.0, -70)
    quiet[int(2.0 * SR) : int(2.05 * SR)] += 0.3  # one 50 ms click at 2 s
    wav = torch.cat([quiet, _tone(6.0)])
    start = active_start(wav, SR, 4.0)
    assert start >= 7.5 * SR


def test_active_from_the_start_keeps_the_start():
    wav = torch.cat([_tone(3.0), _noise(1.0, -80), _tone(6.0)])
    assert active_start(wav, SR, 2.0) == 0


def test_window_always_fits_in_the_clip():
    wav = torch.cat([_noise(9.0, -75), _tone(1.0)])  # sound only in the last second
    excerpt = active_excerpt(wav, SR, 4.0)
    assert excerpt.shape[-1] == 4 * SR
    assert torch.equal(excerpt[-SR:], wav[-SR:])


@pytest.mark.parametrize("shape", [(1, 1), (1,), (2, 1)])
def test_leading_dimensions_are_kept(shape):
    wav = torch.cat([_noise(3.0, -70), _tone(3.0)]).expand(*shape, -1)
    out = active_excerpt(wav, SR, 2.0)
    assert out.shape == (*shape, 2 * SR)


def test_short_or_silent_clips_start_at_zero():
    assert active_start(_tone(1.0), SR, 4.0) == 0
    assert active_excerpt(_tone(1.0), SR, 4.0).shape[-1] == SR
    assert active_start(torch.zeros(5 * SR), SR, 2.0) == 0
    with pytest.raises(ValueError):
        active_start(_tone(1.0), SR, 0.0)


def test_exported_at_package_root():
    assert tinycodec.active_excerpt is active_excerpt


def test_report_levels():
    rep = loudness_report(_tone(1.0, amplitude=1.0), SR)
    assert rep["rms_dbfs"] == pytest.approx(20 * math.log10(1 / math.sqrt(2)), abs=0.01)
    assert rep["peak_dbfs"] == pytest.approx(0.0, abs=0.01)
    assert rep["active_fraction"] == 1.0
    quiet = loudness_report(_noise(2.0, -70), SR)
    assert quiet["rms_dbfs"] < AUDIBLE_RMS_DBFS and quiet["active_fraction"] == 0.0
    assert not is_audible(quiet)


def test_player_records_the_level_before_normalization():
    pytest.importorskip("IPython")
    quiet = _noise(1.0, -70)
    html = player(quiet, SR)._repr_html_()
    level = float(re.search(r'data-tinycodec-rms-dbfs="(-?[\d.]+)"', html).group(1))
    assert level == pytest.approx(-70, abs=0.5)
    assert 'data-tinycodec-audible="false"' in html
    # the embedded samples are normalized: the player alone could not tell silence from sound
    data = base64.b64decode(re.search(r'base64,([A-Za-z0-9+/=]+)', html).group(1))
    with wave.open(io.BytesIO(data)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    assert np.abs(pcm).max() > 30000
    assert 'data-tinycodec-audible="true"' in player(_tone(1.0).numpy()[None], SR)._repr_html_()


@pytest.mark.skipif(not DEMO_SPEECH.exists(), reason="demo corpus not fetched (tinycodec data fetch demo)")
def test_demo_conversation_excerpt_is_speech():
    from tinycodec.audio import load

    wav, sr = load(DEMO_SPEECH, SR)
    assert not is_audible(loudness_report(wav[:, : 4 * sr], sr))  # its first seconds are room noise
    for seconds in (3.0, 4.0, 20.0):
        start = active_start(wav, sr, seconds)
        assert start >= 6 * sr
        assert is_audible(loudness_report(active_excerpt(wav, sr, seconds), sr))


def test_a_player_of_dc_alone_is_not_audible():
    # the untrained-decoder failure mode: a constant offset near full scale is a click, not a sound
    dc = torch.full((16000,), -0.96)
    rep = loudness_report(dc, 16000)
    assert rep["dc"] == pytest.approx(-0.96, abs=1e-6)
    assert rep["rms_dbfs"] < AUDIBLE_RMS_DBFS and not is_audible(rep)
    html = player(dc, 16000)._repr_html_()
    assert 'data-tinycodec-audible="false"' in html


def test_a_tone_on_a_dc_offset_is_measured_without_the_offset():
    t = torch.arange(16000) / 16000
    tone = 0.1 * torch.sin(2 * math.pi * 440 * t)
    rep = loudness_report(tone + 0.5, 16000)
    assert rep["rms_dbfs"] == pytest.approx(loudness_report(tone, 16000)["rms_dbfs"], abs=0.05)
    assert is_audible(rep)
