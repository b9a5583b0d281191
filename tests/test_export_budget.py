"""Device budget (tinycodec.export.budget): flash/arena agree with the C header, MACs agree
with tinycodec.models.summary, the S3 estimate scales as it should, firmware.json rows tolerate gaps;
the spectral encoder's log_spectrum is priced (FFT multiplies, FFT rows, tables)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from tinycodec.export.budget import (
    ESP_NN_S3,
    device_budget,
    firmware_rows,
    load_firmware,
    per_function,
    s3_estimate,
    spectrum_macs_per_frame,
)
from tinycodec.export.c_export import write_model_header
from tinycodec.export.int8_quantize import quantize_encoder
from tinycodec.models import TinyStream
from tinycodec.models.summary import summary


@pytest.fixture(scope="module")
def ultra_tiny():
    torch.manual_seed(0)
    model = TinyStream.from_preset("ultra_tiny").eval()
    noise = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    return model, quantize_encoder(model, [noise], preset="ultra_tiny")


def test_budget_matches_the_generated_header(ultra_tiny, tmp_path):
    _, enc = ultra_tiny
    budget = device_budget(enc)
    write_model_header(enc, tmp_path / "tinycodec_model.h")
    header = (tmp_path / "tinycodec_model.h").read_text()
    flash = int(re.search(r"#define TC_FLASH_BYTES_ESTIMATE (\d+)u", header).group(1))
    arena = int(re.search(r"#define TC_ARENA_BYTES (\d+)u", header).group(1))
    assert budget.flash_bytes == flash
    assert budget.arena_bytes == arena
    assert budget.codebooks == enc.codebooks.size + enc.n_q
    # the arena holds the state, the norms and the residual, with room left for frame buffers
    assert 0 < budget.state_bytes and budget.buffer_bytes > 0


def test_macs_agree_with_model_summary(ultra_tiny):
    model, enc = ultra_tiny
    budget = device_budget(enc)
    s = summary(model)
    assert budget.macs_per_second["rvq_search"] == pytest.approx(s.macs_search)
    encoder_macs = budget.macs_total - budget.macs_per_second["rvq_search"]
    assert encoder_macs == pytest.approx(s.macs_encoder)


@pytest.fixture(scope="module")
def tiny_stft():
    from tinycodec.pretrained import load_model

    model = load_model("tiny_stft").eval()
    noise = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    return model, quantize_encoder(model, [noise], preset="tiny_stft")


def test_budget_prices_the_log_spectrum(tiny_stft, ultra_tiny, tmp_path):
    _, enc = tiny_stft
    budget = device_budget(enc)
    write_model_header(enc, tmp_path / "tinycodec_model.h")
    header = (tmp_path / "tinycodec_model.h").read_text()
    assert budget.flash_bytes == int(re.search(r"#define TC_FLASH_BYTES_ESTIMATE (\d+)u", header).group(1))
    assert budget.arena_bytes == int(re.search(r"#define TC_ARENA_BYTES (\d+)u", header).group(1))
    n_fft = 512
    # Hann int16 [N], twiddles int32 2 x [N/2], log table int32 [256], tc_spectrum_t (5 pointers + 3 int64)
    assert budget.spectrum_tables == 2 * n_fft + 4 * n_fft + 4 * 256 + 48
    assert budget.fft_bytes == 8 * n_fft  # 2 x N int32, in the arena's kernel scratch
    assert re.search(r"TC_ARENA_BYTES, \d+u, \d+u, \d+u, \d+u, \d+u, \d+u, (\d+)u", header).group(1) == str(8 * n_fft)
    assert budget.state_bytes >= 2 * (n_fft - 256)  # the int16 PCM history of the frontend
    # the first pointwise reads 257 bins padded to 264: the C table stores those zero weights
    stored = sum(layer.weight.size for layer in enc.layers if layer.weight is not None) + 7 * 128
    assert budget.weights == stored and budget.biases == 4 * sum(
        layer.bias.size for layer in enc.layers if layer.bias is not None and layer.op != "log_spectrum")
    # per frame: window N, 4 per butterfly with a twiddle other than 1 or -i, 3 per bin
    assert spectrum_macs_per_frame(16) == 16 + 4 * (2 * 2 + 1 * 6) + 3 * 9
    assert spectrum_macs_per_frame(n_fft) == n_fft + 4 * 1538 + 3 * 257
    assert budget.macs_per_second["log_spectrum"] == pytest.approx(62.5 * spectrum_macs_per_frame(n_fft))
    assert "conv1d" in budget.macs_per_second and budget.macs_per_second["conv1d"] == 0
    est = s3_estimate(budget.macs_per_second, budget.elementwise_per_second)
    assert est["per_kind"]["log_spectrum"] > 0 and "log_spectrum" in est["assumptions"]
    # a SEANet encoder has no spectrum entry
    seanet = device_budget(ultra_tiny[1])
    assert "log_spectrum" not in seanet.macs_per_second and seanet.spectrum_tables == seanet.fft_bytes == 0
    assert "log_spectrum" not in s3_estimate(seanet.macs_per_second)["assumptions"]


def test_s3_estimate_is_a_range_that_scales_with_work_and_clock():
    macs = {"pointwise": 1e7, "depthwise": 2e6, "rvq_search": 1.6e7, "conv1d": 1e6}
    est = s3_estimate(macs, elementwise_per_second=1e6)
    lo, hi = est["cycles_per_second"]
    assert 0 < lo < hi
    assert est["per_kind"]["depthwise"] == pytest.approx(2e6 / ESP_NN_S3["depthwise"])
    double = s3_estimate({k: 2 * v for k, v in macs.items()}, elementwise_per_second=2e6)
    assert double["cycles_per_second"][0] == pytest.approx(2 * lo)
    faster = s3_estimate(macs, elementwise_per_second=1e6, clock_hz=480e6)
    assert faster["cpu_load"][0] == pytest.approx(est["cpu_load"][0] / 2)
    assert "ESTIMATE" in est["assumptions"]
    with pytest.raises(ValueError, match="no published S3 rate"):
        s3_estimate({"transformer": 1.0})


def test_firmware_rows_report_missing_presets(tmp_path):
    data = {"tiny": {"flash_bytes": 2048, "ram_bytes": 1024, "arena_bytes": 512, "bit_exact": True,
                     "instructions_per_audio_second": 120e6,
                     "per_function_per_audio_second": {"a": 900, "b": 99, "c": 1}}}
    path = tmp_path / "firmware.json"
    path.write_text(json.dumps(data))
    rows = firmware_rows(load_firmware(path), ["tiny", "small"])
    assert rows[0]["measured"] and rows[0]["flash_kb"] == 2.0 and rows[0]["minstr_per_s"] == 120.0
    assert rows[0]["realtime_share_240mhz"] == pytest.approx(0.5)
    assert rows[1] == {"preset": "small", "measured": False}
    assert load_firmware(tmp_path / "nope.json") == {}
    split = per_function(data, "tiny", min_share=0.01)
    assert list(split) == ["a", "b", "other"] and sum(split.values()) == 1000
    assert per_function(data, "small") == {}
