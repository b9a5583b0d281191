"""Tests for tinycodec.eval.baselines: real opusenc/opusdec and c2enc/c2dec runs."""

from __future__ import annotations

import pytest
import torch

from tinycodec.eval import baselines

SR = 16000


@pytest.fixture(scope="module")
def speech(speech_like):
    return speech_like(2.0, SR, seed=3)[: 2 * SR - 101]  # not a whole number of codec frames


@pytest.mark.parametrize("name", baselines.list_baselines())
def test_baseline_runs_with_matching_length_and_bitrate(name, speech):
    result = baselines.run_baseline(name, speech[None], SR)
    assert result.wav.shape == (1, speech.numel()) and result.sample_rate == SR
    energy = result.wav.pow(2).mean() / speech.pow(2).mean()
    assert 0.05 < energy < 5, energy  # decoded speech, not silence or noise
    if name.startswith("codec2"):
        # bare frames: measured == nominal plus the padding to whole frames past the delay
        assert result.bitrate == result.file_bitrate
        assert result.nominal_bitrate < result.bitrate < result.nominal_bitrate * 1.03
    else:
        # VBR spends less on pauses but never much more than asked; Ogg adds its pages on top
        assert 0.5 * result.nominal_bitrate < result.bitrate < 1.05 * result.nominal_bitrate
        assert result.file_bitrate > result.bitrate


@pytest.mark.parametrize("rate", [6000, 12000])
def test_opus_hard_cbr_measures_nominal(rate, speech):
    result = baselines.opus(speech, SR, rate, cbr=True)
    assert result.bitrate == pytest.approx(rate, rel=0.03)
    assert result.wav.shape == speech.shape


def test_codec2_delay_compensation_aligns_output(speech):
    aligned = baselines.codec2(speech, SR, 3200)
    raw = baselines.codec2(speech, SR, 3200, align=False)
    assert aligned.delay == 304 and raw.delay == 0
    torch.testing.assert_close(aligned.wav[:1000], raw.wav[304:1304], atol=2e-3, rtol=0)


@pytest.mark.parametrize("tool,package", [("opusenc", "opus-tools"), ("c2enc", "codec2")])
def test_missing_binary_names_debian_package(monkeypatch, speech, tool, package):
    real_which = baselines.shutil.which
    monkeypatch.setattr(baselines.shutil, "which", lambda name: None if name == tool else real_which(name))
    with pytest.raises(RuntimeError, match=rf"{tool} not found.*Debian package {package}"):
        baselines.run_baseline("opus_6k" if tool == "opusenc" else "codec2_1200", speech, SR)


def test_unknown_baseline():
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.run_baseline("mp3_128k", torch.zeros(100), SR)
