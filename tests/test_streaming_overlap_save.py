"""Overlap-save against offline and the streaming state, and the streaming example script that uses it.

Fixtures ``codec`` (the shipped transformer_tiny) and ``speech`` (2 s of demo speech) come from conftest.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tinycodec.codec import TinyCodec
from tinycodec.streaming.overlap_save import OverlapSave, compare_stream_modes, overlap_save, run_streaming

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def test_overlap_save_against_offline_and_stateful(codec, speech):
    """What overlap-save costs in fidelity, and why.

    OaS primes its history with ``window - hop`` zeros, so with a window covering the model's
    whole history it equals offline decoding of the zero-primed signal (< 1e-5): any gap is
    context truncation, nothing else. transformer_tiny's output depends on 2 x 2 x 31 frames of
    transformer context plus a 2240-sample conv receptive field, far more than 480 samples, so
    with 480/240 the output differs. On speech (seeded random weights) we measured an SNR
    against offline of 13.4 dB; we assert 6 dB < SNR < 60 dB (clearly above zero output, 0 dB,
    clearly below rounding, ~130 dB), while stateful streaming stays at float rounding (max diff
    < 1e-5). Random decoders ring at the hop period, so alignment is checked by the exact
    full-window case, not by this SNR.
    """
    model = codec.model
    wav = speech[None, None]
    offline = model.decode(model.encode(wav), wav.shape[-1])
    oas = overlap_save(codec, wav, window=480, hop=240)
    assert oas.shape == wav.shape
    err = oas - offline
    snr = 10 * torch.log10(offline.pow(2).sum() / err.pow(2).sum())
    assert 6.0 < snr < 60.0, snr  # a real, bounded difference
    # a window covering the whole history (here the whole 0.72 s clip) equals zero-primed offline
    short, prime = wav[..., : 48 * 240], 84 * 240
    full = overlap_save(codec, short, window=96 * 240, hop=12 * 240)
    primed = torch.nn.functional.pad(short, (prime, 0))
    assert (full - model.decode(model.encode(primed))[..., prime:]).abs().max() < 1e-5
    st = run_streaming(codec, wav)
    assert (st - offline).abs().max() < 1e-5
    with pytest.raises(ValueError, match="multiples of the model's hop_length"):
        OverlapSave(codec, window=500, hop=250)


def test_compare_stream_modes_counts_half_the_compute():
    r = compare_stream_modes(TinyCodec("tiny"), 0.1 * torch.randn(1, 8 * 256))
    assert r["compute_ratio_stateful_over_oas"] == pytest.approx(0.5)
    assert r["overlap_save"]["samples_processed_per_second"] == pytest.approx(32000)
    assert r["stateful"]["macs_per_second"] == pytest.approx(r["overlap_save"]["macs_per_second"] / 2)
    assert r["stateful"]["algorithmic_latency_ms"] == r["overlap_save"]["algorithmic_latency_ms"] == 16.0
    assert r["stateful"]["max_abs_diff_vs_offline"] < 1e-5 < r["overlap_save"]["max_abs_diff_vs_offline"]
    assert r["stateful"]["rtf"] > 0 and r["overlap_save"]["rtf"] > 0


def test_streaming_example_writes_both_files(tmp_path, codec, speech):
    clip = tmp_path / "clip.wav"
    sf.write(clip, speech.numpy(), 16000)
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "streaming_example.py"), "--input", str(clip),
                           "--model", "transformer_tiny", "--out_dir", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    orig, sr1 = sf.read(tmp_path / "out" / "original_stream.wav", dtype="float32")
    recon, sr2 = sf.read(tmp_path / "out" / "reconstructed_stream.wav", dtype="float32")
    assert sr1 == sr2 == 16000 and orig.shape == recon.shape == (32000,)
    assert np.abs(orig - speech.numpy()).max() <= 1 / 32768 + 1e-6  # PCM_16 rounding
    with torch.no_grad():
        ref = overlap_save(codec, speech, window=480, hop=240)[0, 0].clamp(-1, 1).numpy()
    assert np.abs(recon - ref).max() <= 1 / 32768 + 1e-5  # the script is the library's overlap-save


def test_encode_then_decode_is_push(codec, speech):
    a, b = OverlapSave(codec, 480, 240), OverlapSave(codec, 480, 240)
    for chunk in speech[: 10 * 240].reshape(10, 1, 1, 240):
        codes = a.encode(chunk)
        assert codes.shape == (1, codec.model.num_quantizers, 2)
        assert torch.equal(a.decode(codes), b.push(chunk))
    assert a.samples_processed == b.samples_processed == 10 * 480


def test_old_name_of_run_streaming_warns(codec, speech):
    from tinycodec.streaming.overlap_save import stateful_stream

    with pytest.warns(DeprecationWarning, match="run_streaming"):
        out = stateful_stream(codec, speech[:480])
    assert torch.equal(out, run_streaming(codec, speech[:480]))
