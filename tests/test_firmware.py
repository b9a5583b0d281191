"""The C encoder: host ctest + Cortex-M4 under QEMU bit-exact with the Python int8 reference
(tools/firmware.py --quick, ultra_tiny), JSON report with the agreed keys; the C layer table's
graph rewrites (fused ReLU, embedding order) keep the reference's integers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import firmware  # noqa: E402


@pytest.mark.slow
def test_firmware_quick_is_bit_exact_on_host_and_qemu(tmp_path):
    out = tmp_path / "firmware.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "firmware.py"), "--quick", "--build",
                           str(tmp_path / "build"), "--out", str(out)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    entry = report["ultra_tiny"]
    for key in ("flash_bytes", "ram_bytes", "instructions_per_audio_second", "bit_exact"):
        assert key in entry
    assert entry["bit_exact"] is True
    assert entry["bit_exact_host"] and entry["bit_exact_qemu_whole"] and entry["bit_exact_qemu_frames"]
    assert entry["qemu_selftest_rvq_search"] is True  # pruned DSP search == full search, ties included
    assert entry["stack_high_water_bytes"] < entry["stack_reserved_bytes"]
    assert 0 < entry["ram_bytes"] < 48 * 1024 and 0 < entry["flash_bytes"] < 320 * 1024
    assert entry["instructions_per_audio_second"] > 1e6
    split = entry["per_function_per_audio_second"]
    assert {"pointwise", "depthwise", "rvq_search", "conv1d"} <= set(split)
    assert sum(split.values()) == pytest.approx(entry["instructions_per_audio_second"], rel=1e-3)
    ctest_log = (tmp_path / "build" / "ctest_output.txt").read_text()
    assert "100% tests passed" in ctest_log


def test_missing_toolchain_prints_the_apt_line(monkeypatch, capsys):
    monkeypatch.setattr(firmware.shutil, "which", lambda name: None)
    assert firmware.main(["--quick"]) == 2
    assert "apt-get install" in capsys.readouterr().err


def test_symbols_group_by_kernel():
    assert firmware.kernel_of("tc_pointwise") == "pointwise"
    assert firmware.kernel_of("blocks4.isra.0") == "pointwise"
    assert firmware.kernel_of("depthwise7_c16") == "depthwise"
    assert firmware.kernel_of("search_pruned") == "rvq_search"
    assert firmware.kernel_of("run_graph.isra.0") == "run_graph"
    assert firmware.kernel_of("memmove") == "memmove"


def test_before_fields_come_from_an_older_report_or_carry_over(tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"tiny": {"instructions_per_audio_second": 100,
                                        "per_function_per_audio_second": {"pointwise": 60, "run_graph.isra.0": 40}}}))
    before = firmware.before_fields(old, tmp_path / "none.json")
    assert before["tiny"]["per_function_per_audio_second_before"] == {"pointwise": 60, "run_graph": 40}
    assert before["tiny"]["instructions_per_audio_second_before"] == 100
    current = tmp_path / "firmware.json"
    current.write_text(json.dumps({"tiny": {"instructions_per_audio_second": 50, **before["tiny"]}}))
    assert firmware.before_fields(None, current) == before


@pytest.fixture(scope="module")
def tiny_int8():
    pytest.importorskip("torch")
    from tinycodec.export.calibration import default_calib_wavs, load_pcm
    from tinycodec.export.int8_quantize import quantize_encoder
    from tinycodec.pretrained import load_model

    try:
        calib = default_calib_wavs(ROOT / "data" / "demo")
    except FileNotFoundError:
        pytest.skip("demo corpus not fetched (python tools/book.py data)")
    enc = quantize_encoder(load_model("tiny"), calib, preset="tiny")
    pcm = load_pcm(calib[0], enc.sample_rate, 4.0)
    return enc, pcm[: len(pcm) // enc.hop_length * enc.hop_length]


def test_c_table_embedding_order_keeps_every_code(tiny_int8):
    from tinycodec.export.c_export import order_dims

    enc, pcm = tiny_int8
    ordered = order_dims(enc)
    energy = (ordered.codebooks.astype(np.int64) ** 2).sum(axis=(0, 1))
    assert np.all(np.diff(energy) <= 0)  # largest dims first
    assert not np.array_equal(ordered.codebooks, enc.codebooks)
    assert np.array_equal(ordered.encode(pcm), enc.encode(pcm))


def test_c_table_fuses_single_reader_relus(tiny_int8):
    from tinycodec.export.c_export import fuse_relu

    enc, _ = tiny_int8
    fused, relu = fuse_relu(enc)
    assert len(fused.layers) == len(relu) < len(enc.layers)
    assert fused.output == enc.output
    readers: dict[int, int] = {}
    for layer in fused.layers:
        for t in layer.inputs:
            readers[t] = readers.get(t, 0) + 1
    by_output = {layer.output: layer for layer in fused.layers}
    for layer, flag in zip(fused.layers, relu, strict=True):
        if flag:
            assert layer.op in ("pointwise", "residual_add")
        if layer.op == "relu":  # a ReLU kept apart reads a tensor with another reader (a skip path)
            src = by_output.get(layer.inputs[0])
            assert src is None or src.op not in ("pointwise", "residual_add") or readers[layer.inputs[0]] > 1
