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


@pytest.mark.slow
def test_firmware_tiny_stft_is_bit_exact_on_host_and_qemu(tmp_path):
    """The spectral encoder (log_spectrum frontend) through the whole firmware path: export, ctest,
    M4 (DSP and portable) under QEMU, golden codes whole signal and frame by frame."""
    out = tmp_path / "firmware.json"
    out.write_text(json.dumps({"other": {"kept": True}}))
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "firmware.py"), "--presets", "tiny_stft",
                           "--no-espdl", "--build", str(tmp_path / "build"), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["other"] == {"kept": True}  # presets not measured keep their entries
    entry = report["tiny_stft"]
    assert entry["bit_exact"] is True and entry["portable_c"]["bit_exact_qemu"] is True
    assert entry["bit_exact_host"] and entry["bit_exact_qemu_whole"] and entry["bit_exact_qemu_frames"]
    assert entry["stack_high_water_bytes"] < entry["stack_reserved_bytes"]
    assert 0 < entry["ram_bytes"] < 48 * 1024
    split = entry["per_function_per_audio_second"]
    assert {"log_spectrum", "pointwise", "depthwise", "rvq_search"} <= set(split) and "conv1d" not in split
    assert sum(split.values()) == pytest.approx(entry["instructions_per_audio_second"], rel=1e-3)
    # one 512-point FFT + log per 16 ms frame: tens of thousands of instructions, not millions
    assert 1e6 < split["log_spectrum"] < 10e6
    assert "100% tests passed" in (tmp_path / "build" / "ctest_output.txt").read_text()


def test_spectrum_symbols_group_as_log_spectrum():
    for name in ("tc_log_spectrum", "fft_stages", "fft_butterflies.isra.0", "spectrum_fft", "tc_fft_int"):
        assert firmware.kernel_of(name) == "log_spectrum", name
    assert "log_spectrum" in firmware.ENCODER_FUNCTIONS


# -- tc_log_spectrum / tc_fft_int against the Python reference on hard inputs -------------------
SPECTRUM_CASES = [(512, 256), (64, 16), (16, 16)]  # (n_fft, hop): tiny_stft's, a longer history, none
SPECTRUM_FRAMES = 4
SPECTRUM_EXPONENTS = (5, 7)  # output exponents e_y of the cases


def spectrum_signals(n_fft: int, hop: int) -> dict[str, np.ndarray]:
    """int16 test signals of SPECTRUM_FRAMES hops: the extremes of the integer frontend."""
    n = SPECTRUM_FRAMES * hop
    t = np.arange(n)
    rng = np.random.default_rng(n_fft)
    square = np.where((t // max(1, n_fft // 8)) % 2 == 0, 32767, -32768)
    impulse = np.zeros(n)
    impulse[3], impulse[n // 2 + 1] = 32767, -32768
    k0 = n_fft // 8  # a bin centre: a whole number of periods per window
    signals = {"silence": np.zeros(n), "square": square, "nyquist_square": np.where(t % 2 == 0, 32767, -32768),
               "impulse": impulse, "sine_bin_centre": np.round(32767 * np.sin(2 * np.pi * k0 * t / n_fft)),
               "white_noise": rng.integers(-32768, 32768, n), "dc_min": np.full(n, -32768)}
    return {k: np.asarray(v).astype(np.int16) for k, v in signals.items()}


def _spectrum_case(case_dir: Path, n_fft: int, hop: int) -> dict:
    """Write spectrum_case.h (the exporter's tables + signals + FFT vectors); return the inputs."""
    from tinycodec.export.c_export import SPECTRUM_PAD, _c_array, spectrum_c_source
    from tinycodec.modules import spectral_encoder as se
    from tinycodec.modules.int8_spectrum import spectrum_affine, spectrum_tables

    # tiny_stft's output exponent (5: int8 never saturates) and a finer one that saturates both ways
    affines = [spectrum_affine(n_fft, e_y, se.LOG_FLOOR, se.LOG_SHIFT, se.LOG_SCALE)
               for e_y in SPECTRUM_EXPONENTS]
    signals = spectrum_signals(n_fft, hop)
    rng = np.random.default_rng(1)
    big = 1 << 20  # |X| <= n |x| sqrt 2 < 2^31 for n <= 512
    vectors = [(rng.integers(-big, big, n_fft), rng.integers(-big, big, n_fft)),
               (np.where(np.arange(n_fft) % 3 == 0, big - 1, -big), np.full(n_fft, -big))]
    tab = spectrum_tables(n_fft)
    tw_re, tw_im = tab["tw_re"].copy(), tab["tw_im"].copy()
    tw_re[0] -= 1  # no trivial twiddle: every butterfly of tc_fft_int multiplies
    tw_im[n_fft // 4] += 1
    bins = n_fft // 2 + 1
    c_out = bins + (-bins % SPECTRUM_PAD)
    text = ["#include <stdint.h>", '#include "tinycodec_encoder.h"',
            f"#define TC_CASE_N_FFT {n_fft}", f"#define TC_CASE_HOP {hop}",
            f"#define TC_CASE_SAMPLES {SPECTRUM_FRAMES * hop}", f"#define TC_CASE_SIGNALS {len(signals)}",
            f"#define TC_CASE_C_OUT {c_out}", f"#define TC_CASE_FFT_VECTORS {len(vectors)}",
            f"#define TC_CASE_AFFINES {len(affines)}",
            *(spectrum_c_source(a, n_fft, np.array(affine)) for a, affine in enumerate(affines)),
            "#define TC_CASE_SPECTRA {" + ", ".join(f"&tc_spectrum{a}" for a in range(len(affines))) + "}",
            _c_array("int16_t", "tc_case_pcm_flat", np.stack(list(signals.values()))),
            "#define tc_case_pcm ((const int16_t (*)[TC_CASE_SAMPLES])tc_case_pcm_flat)",
            _c_array("int32_t", "tc_case_fft_re_flat", np.stack([v[0] for v in vectors])),
            _c_array("int32_t", "tc_case_fft_im_flat", np.stack([v[1] for v in vectors])),
            "#define tc_case_fft_re ((const int32_t (*)[TC_CASE_N_FFT])tc_case_fft_re_flat)",
            "#define tc_case_fft_im ((const int32_t (*)[TC_CASE_N_FFT])tc_case_fft_im_flat)",
            _c_array("int32_t", "tc_case_tw_re_generic", tw_re),
            _c_array("int32_t", "tc_case_tw_im_generic", tw_im)]
    case_dir.mkdir(parents=True, exist_ok=True)
    (case_dir / "spectrum_case.h").write_text("\n".join(text) + "\n")
    return {"affines": affines, "signals": signals, "vectors": vectors, "generic": (tw_re, tw_im), "c_out": c_out,
            "tables": tab}


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
    return proc.stdout


def _run_spectrum_check(target: str, case_dir: Path, build: Path) -> str:
    """Build firmware/host/spectrum_check.c for ``target`` and return what it prints."""
    src = ROOT / "firmware" / "components" / "tinycodec_encoder"
    if target == "m4":
        _run(["make", "-s", "-C", str(ROOT / "firmware" / "qemu"), f"MODEL_DIR={case_dir}", f"BUILD={build}",
              "spectrum_check"])
        out = firmware.qemu(build / "spectrum_check.elf")
        assert "QEMU_EXIT 0" in out, out[-2000:]
        return out
    exe = build / "spectrum_check"
    build.mkdir(parents=True, exist_ok=True)
    flags = ["-DTC_FFT_NO_SHORTCUTS"] if target == "host_no_shortcuts" else []
    _run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", *flags, f"-I{src / 'include'}", f"-I{case_dir}",
          "-o", str(exe), str(ROOT / "firmware" / "host" / "spectrum_check.c"), str(src / "src" / "tc_spectrum.c")])
    return _run([str(exe)])


@pytest.mark.parametrize("target", ["host", "host_no_shortcuts", "m4"])
def test_log_spectrum_c_is_the_python_reference_on_hard_inputs(target, tmp_path):
    """tc_log_spectrum (whole signal and streamed frame by frame with the history moved like the
    driver does) and tc_fft_int give the Python reference's integers on silence, full-scale squares,
    impulses, a full-scale sine at a bin centre, white noise and full-scale DC: on the host (portable
    C, with and without the trivial-twiddle shortcuts) and on the Cortex-M4 under QEMU (the
    assembly butterflies)."""
    from tinycodec.modules.int8_spectrum import fft_int, log_spectrum

    reference: dict[tuple, dict] = {}
    for n_fft, hop in SPECTRUM_CASES:
        case = _spectrum_case(tmp_path / f"case{n_fft}", n_fft, hop)
        text = _run_spectrum_check(target, tmp_path / f"case{n_fft}", tmp_path / f"build{n_fft}_{target}")
        assert "DONE" in text
        rows: dict[tuple, np.ndarray] = {}
        for line in text.splitlines():
            head, _, values = line.partition(":")
            if values:
                rows[tuple(head.split())] = np.array(values.split(), dtype=np.int64)
        bins, c_out = n_fft // 2 + 1, case["c_out"]
        history = np.zeros(n_fft - hop, dtype=np.int64)
        for a, affine in enumerate(case["affines"]):
            for s, (name, pcm) in enumerate(case["signals"].items()):
                want = log_spectrum(np.concatenate([history, pcm])[None, :], n_fft, hop, affine)  # [bins, F]
                assert want.shape == (bins, SPECTRUM_FRAMES)
                reference.setdefault((n_fft, a), {})[name] = want
                for f in range(SPECTRUM_FRAMES):
                    for mode in ("WHOLE", "STREAM"):
                        got = rows[(mode, str(a), str(s), str(f))]
                        assert got.shape == (c_out,)
                        bad = np.flatnonzero(got[:bins] != want[:, f])
                        assert not bad.size, (n_fft, SPECTRUM_EXPONENTS[a], name, mode, f, bad[:8])
                        assert not got[bins:].any()  # the padding channels are zero
        for v, (re, im) in enumerate(case["vectors"]):
            for tag, (tw_re, tw_im) in (("FFT", (case["tables"]["tw_re"], case["tables"]["tw_im"])),
                                        ("FFTG", case["generic"])):
                want_re, want_im = fft_int(re[None].astype(np.int64), im[None].astype(np.int64), tw_re, tw_im)
                assert np.abs(np.concatenate([want_re, want_im])).max() < 2**31
                got = rows[(tag, str(v))]
                assert np.array_equal(got[:n_fft], want_re[0]), (n_fft, tag, v)
                assert np.array_equal(got[n_fft:], want_im[0]), (n_fft, tag, v)
    # the cases reach the extremes: e_y = 7 saturates both ways, e_y = 5 spans a wide range, the
    # bin-centre sine peaks in its bin (and its neighbours: the Hann window) over the floor
    fine = np.concatenate([v.ravel() for v in reference[(512, 1)].values()])
    assert fine.min() == -128 and fine.max() == 127
    coarse = reference[(512, 0)]
    assert len(np.unique(np.concatenate([v.ravel() for v in coarse.values()]))) > 60
    sine = coarse["sine_bin_centre"][:, -1]
    assert sine.argmax() == 512 // 8 and (sine > sine.min()).sum() == 3
    assert not np.array_equal(coarse["square"], coarse["white_noise"])
