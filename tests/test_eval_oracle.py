"""Oracle decodes: each replaces one part of the codec by the truth, and measurably helps there."""

from __future__ import annotations

import math

import pytest
import torch

from tinycodec.eval.clips import Clip
from tinycodec.eval.metrics import log_mel_distance
from tinycodec.eval.oracle import DECODES, oracle_decodes, oracle_scores, summarize_oracle
from tinycodec.pretrained import load_model


@pytest.fixture(scope="module")
def model():
    return load_model("tinycodec")


def _voice(seconds: float = 1.0, f0: float = 130.0) -> torch.Tensor:
    t = torch.arange(int(16000 * seconds)) / 16000
    phase = 2 * math.pi * torch.cumsum(f0 + 6 * torch.sin(2 * math.pi * 4 * t), 0) / 16000
    return (sum(0.25 / k * torch.sin(k * phase) for k in range(1, 16))).reshape(1, 1, -1)


def test_every_decode_has_the_input_shape_and_the_codes_decode_is_what_ships(model):
    wav = _voice()
    out = oracle_decodes(model, wav, n_q=4)
    assert list(out) == list(DECODES)
    assert all(v.shape == wav.shape and torch.isfinite(v).all() for v in out.values())
    with torch.no_grad():
        shipped = model.decode(model.encode(model.pad_for_delay(wav), n_q=4), length=wav.shape[-1])
    assert torch.allclose(out["codes"], shipped, atol=1e-6)


def test_the_true_magnitude_and_the_unquantized_latent_bring_the_decode_closer(model):
    wav = _voice()
    out = oracle_decodes(model, wav, n_q=1)
    d = {k: log_mel_distance(wav, v, 16000) for k, v in out.items()}
    assert d["oracle_magnitude"] < 0.5 * d["codes"]  # the magnitude is most of a log-mel distance
    assert d["latent"] < d["codes"]  # one codebook loses what the latent keeps


def test_bad_inputs_fail_clearly(model):
    with pytest.raises(ValueError, match=r"\[B, 1, T\]"):
        oracle_decodes(model, torch.zeros(16000))
    with pytest.raises(ValueError, match="n_q must be in 1..5"):
        oracle_decodes(model, torch.zeros(1, 1, 16000), n_q=6)


def test_scores_and_summary_count_every_clip_once_per_decode(model):
    clips = [Clip("a.wav", "speech", _voice(0.6, 120.0)), Clip("b.wav", "speech", _voice(0.6, 180.0))]
    rows = oracle_scores(model, clips, n_qs=[2, 4], speech=False)
    summary = summarize_oracle(rows)
    assert set(summary) == {"codes@2", "codes@4", "latent", "oracle_phase@2", "oracle_phase@4",
                            "oracle_magnitude@2", "oracle_magnitude@4"}
    assert all(v["n_clips"] == 2 for v in summary.values())
    assert summary["codes@4"]["log_mel"] <= summary["codes@2"]["log_mel"] + 0.05
