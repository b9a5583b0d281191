"""Tests for tinycodec.eval.bitrate: nominal formula, codebook entropy, rANS size, quality vs bitrate."""

import math

import numpy as np
import pytest
import torch

from tinycodec.data.synth import NatureConfig, synth_nature
from tinycodec.eval import bitrate
from tinycodec.eval.clips import Clip
from tinycodec.models import CodecModel, list_presets
from tinycodec.models.config import get_preset

SR = 16000


@pytest.fixture(scope="module")
def clips(speech_like):
    nature, _ = synth_nature(1, NatureConfig(duration=8.0, sample_rate=SR))
    return [
        Clip("speech/a.wav", "speech", speech_like(8.0, SR, seed=1)[None, None]),
        Clip("nature/b.wav", "nature", nature[None]),
    ]


@pytest.fixture(scope="module")
def model(clips):
    """``tiny`` with random weights and k-means-initialised codebooks (one training-mode pass), so its
    codes spread over the codebooks as a trained model's do (an untouched random model uses ~1 entry)."""
    torch.manual_seed(0)
    m = CodecModel.from_preset("tiny").train()
    with torch.no_grad():
        m(torch.cat([c.wav for c in clips], dim=-1))
    return m.eval()


@pytest.mark.parametrize("preset", list_presets())
def test_nominal_is_formula(preset):
    c = get_preset(preset)
    for n_q in range(1, c.num_quantizers + 1):
        expected = n_q * math.log2(c.codebook_size) * c.sample_rate / c.hop_length
        assert bitrate.nominal_bitrate(preset, n_q) == pytest.approx(expected, rel=1e-12)
    row = next(r for r in bitrate.bitrate_table() if r["preset"] == preset)
    assert row["bitrate"] == pytest.approx(row["num_quantizers"] * row["bitrate_per_quantizer"])


def test_nominal_from_model_matches_model_bitrate(model):
    assert bitrate.nominal_bitrate(model, 3) == model.bitrate(3) == 3 * 9 * 62.5


def test_codebook_entropy_bounded_by_nominal(model, clips):
    info = bitrate.codebook_entropy(model, clips)
    h = info["entropy_bits"]
    assert h.shape == (4,) and info["nominal_bits"] == 9.0
    assert np.all(h > 1.0) and np.all(h <= 9.0 + 1e-9)  # spread over many entries, never above log2 K
    assert info["entropy_bitrate"] == pytest.approx(h.sum() * 62.5)
    assert info["entropy_bitrate"] < info["nominal_bitrate"] == 2250.0


def test_entropy_coded_size_near_entropy_and_heldout_larger(model, clips):
    rep = bitrate.entropy_report(model, clips)
    assert rep.symbols >= 2000  # a sample large enough for the 2 % bound
    assert rep.packed_bits == rep.symbols * 9
    assert abs(rep.self_coded_bits - rep.entropy_bits) <= 0.02 * rep.entropy_bits
    assert rep.heldout_coded_bits >= rep.self_coded_bits
    assert rep.heldout_ideal_bits >= rep.entropy_bits  # cross-entropy >= entropy (Gibbs)
    assert abs(rep.heldout_coded_bits - rep.heldout_ideal_bits) <= 0.02 * rep.heldout_ideal_bits
    sav = rep.savings()
    assert 0 < sav["heldout_coded_bits"] <= sav["self_coded_bits"] < 1
    assert rep.bitrates()["packed_bitrate"] == pytest.approx(2250.0)


def test_entropy_coded_size_accepts_batches_and_lists():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 16, size=(3, 2, 50))
    a = bitrate.entropy_coded_size(codes, codes, 16, 50.0)
    b = bitrate.entropy_coded_size(list(codes), list(codes), 16, 50.0)
    assert a == b and a.symbols == 300 and a.seconds == pytest.approx(3.0)


def test_quality_vs_bitrate_rows(model, clips):
    short = [Clip(c.file, c.category, c.wav[..., :SR]) for c in clips]
    rows = bitrate.quality_vs_bitrate(
        {"tiny": model}, short, n_q_list=[1, 4, 9], baselines=["codec2_1200"], progress=False
    )
    got = {(r["category"], r["codec"]) for r in rows}
    assert got == {
        (cat, codec) for cat in ("speech", "nature") for codec in ("tiny_nq1", "tiny_nq4", "codec2_1200")
    }
    for r in rows:
        if r["family"] == "tinycodec":
            assert r["model"] == "tiny" and r["nominal_bitrate"] == bitrate.nominal_bitrate(model, r["n_q"])
        else:
            assert r["family"] == "codec2" and r["n_q"] is None
        assert ("pesq_wb" in r) == (r["category"] == "speech")
    md = bitrate.markdown_table(rows, ["codec", "bitrate"], {"bitrate": ".0f"})
    assert md.count("\n") == 2 + len(rows)


def test_plot_quality_vs_bitrate_labels_do_not_overlap():
    """Crowded points (the nature panel of chapter 05: five n_q within 2.3 kbit/s at one log-mel)
    get labels whose boxes never overlap; the legend names the model's n_q range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [{"codec": f"tinycodec_nq{n}", "family": "tinycodec", "model": "tinycodec", "n_q": n,
             "category": "nature", "bitrate": 562.5 * n, "log_mel": 0.7 - 0.05 * math.sqrt(n)} for n in range(1, 6)]
    rows += [{"codec": f"opus_{k}k", "family": "opus", "model": None, "n_q": None, "category": "nature",
              "bitrate": 1000.0 * k, "log_mel": 2.6} for k in (6, 8, 12)]
    fig, ax = plt.subplots(figsize=(4, 3))
    bitrate.plot_quality_vs_bitrate(rows, "log_mel", "nature", ax=ax)
    boxes = [t.get_window_extent() for t in ax.texts]
    assert 3 + 1 <= len(boxes) <= len(rows)  # every baseline label fits, and at least one n_q
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b)
    assert "tinycodec (n_q 1-5)" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)
