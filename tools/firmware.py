"""Build, test and measure the C int8 encoder: host (ctest) and Cortex-M4 under QEMU.

    python tools/firmware.py [--quick] [--presets tinycodec ultra_tiny tiny] [--build DIR] [--out JSON]
                             [--update] [--before OLD_JSON]
    python tools/firmware.py --presets tiny_stft        # any shipped model or preset name

The report goes to _build/firmware.json; ``--update`` rewrites the committed benchmarks/firmware.json
(each shipped entry stamped with the encoder hash it measured: tinycodec.eval.provenance).

For each preset: export ``tinycodec_model.h`` + golden vectors (Python int8 reference on real
audio), build and run the host tests (CMake + ctest, cmocka), build the Cortex-M4F ELF
(arm-none-eabi-gcc -O2) and run it under ``qemu-system-arm -M mps2-an386`` with our TCG plugin
counting instructions per function (grouped by kernel: ``pointwise`` counts every C function of
tc_pointwise.c, ``log_spectrum`` the FFT and log of tc_spectrum.c), run the DSP self-test ELF
(pruned VQ search == full search on random data), and take flash/RAM from ``arm-none-eabi-size``
of a size-probe ELF (encoder + model, no test vectors). Writes ``benchmarks/firmware.json`` (the
presets measured replace their entries, the others are kept); the ``*_before`` fields (the split
measured with the kernels before the DSP rework) are carried over from the existing file, or taken from
``--before OLD_JSON`` (its ``per_function_per_audio_second``). Fetches the demo corpus first when
it is missing (``tools/book.py data``). Exits 2 with the install line when a toolchain is
missing, 1 when a check fails.

Notebook: book/07_deployment.md
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
APT_LINE = ("apt-get update && apt-get install -y --no-install-recommends gcc-arm-none-eabi "
            "libnewlib-arm-none-eabi qemu-system-arm libcmocka-dev")
TOOLS = ["cmake", "ctest", "make", "gcc", "arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm",
         "qemu-system-arm"]
TARGETS = {"tiny": {"flash_bytes": 320 * 1024, "ram_bytes": 48 * 1024, "instructions_per_audio_second": 40e6}}
TARGETS["tiny_stft"] = TARGETS["tiny"]  # the spectral encoder of the same size class, on the same device
# C symbol prefix (after "tc_", before any ".isra.0"-style suffix) -> the kernel (Python int8
# name) whose file it lives in; the first matching prefix wins
KERNEL_PREFIXES = (("conv1d", "conv1d"), ("depthwise", "depthwise"), ("pointwise", "pointwise"),
                   ("widen_", "pointwise"), ("rows_", "pointwise"), ("blocks4", "pointwise"),
                   ("one_row", "pointwise"), ("residual", "residual_add"), ("rvq", "rvq_search"),
                   ("search_", "rvq_search"), ("dot_residual", "rvq_search"), ("dot_segment", "rvq_search"),
                   ("relu", "relu"), ("requantize", "requantize"), ("encode_input", "run_graph"),
                   ("run_graph", "run_graph"), ("log_spectrum", "log_spectrum"), ("fft_", "log_spectrum"),
                   ("spectrum_", "log_spectrum"))
# kernels and driver functions that run per frame; codebook norms run once at init, reported apart
ENCODER_FUNCTIONS = {"conv1d", "depthwise", "pointwise", "relu", "residual_add", "rvq_search", "requantize",
                     "log_spectrum",
                     "run_graph", "tinycodec_encode_frame", "tinycodec_encode", "tinycodec_encoder_reset",
                     "memcpy", "memmove", "memset"}
INIT_FUNCTIONS = {"codebook_norms", "tinycodec_encoder_init", "model_fits", "dot_s8"}
NOT_PRESETS = ("weights", "provenance")  # top-level keys of the report that are not presets
ESPDL_PRESETS = ("tiny",)  # the esp-ppq export + comparison runs for these (trained weights only)
# carried over from the existing report: the per-function split before the DSP rework
BEFORE_KEYS = ("per_function_per_audio_second_before", "instructions_per_audio_second_before", "before_note")
STACK_SIZE = 1024  # reserved in the size probe; the measured high-water mark must stay below
QEMU_TIMEOUT_S = 240


def ensure_demo_data() -> None:
    """The calibration and golden-vector audio (data/demo): fetched like ``nox -s book`` does."""
    if any((ROOT / "data" / "demo" / "speech").glob("*.wav")) and any((ROOT / "data" / "demo" / "nature").glob("*.wav")):
        return
    print("data/demo is missing: fetching the demo corpus (python tools/book.py data)")
    subprocess.run([sys.executable, str(ROOT / "tools" / "book.py"), "data"], check=True, cwd=ROOT)


def check_toolchain() -> list[str]:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if not Path("/usr/include/cmocka.h").exists():
        missing.append("libcmocka-dev (cmocka.h)")
    return missing


def run(cmd: list[str], cwd: Path | None = None, timeout: float = 600) -> str:
    """Run a command, return stdout+stderr; raise with the output on failure."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{out[-4000:]}")
    return out


def export(preset: str, out_dir: Path) -> dict:
    """Headers + code agreement int8 vs float on the calibration audio."""
    from tinycodec.export.c_export import export_c_encoder
    from tinycodec.export.calibration import default_calib_wavs, load_pcm
    from tinycodec.export.int8_quantize import code_agreement

    info, enc, model = export_c_encoder(preset, out_dir)
    pcms = [load_pcm(f, enc.sample_rate, 20.0) for f in default_calib_wavs()]
    info["code_agreement"] = code_agreement(model, enc, pcms)
    info["golden_codes"] = {g: None for g in info["frames"]}
    return info


def golden_codes(header: Path) -> dict[str, list[int]]:
    """The expected codes [n_q * F] of each golden clip, read back from the generated header."""
    text = header.read_text()
    out = {}
    for m in re.finditer(r"tc_golden_(\w+)_codes\[\d+\](?: TC_ALIGNED)? = \{([^}]*)\}", text):
        out[m.group(1)] = [int(v) for v in m.group(2).replace("\n", " ").split(",")]
    return out


def symbols(elf: Path, txt: Path) -> None:
    """Function PC ranges "start end name" (Thumb bit cleared) for the plugin."""
    lines = []
    for line in run(["arm-none-eabi-nm", "-S", str(elf)]).splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW":
            start = int(parts[0], 16) & ~1
            lines.append(f"{start:x} {start + int(parts[1], 16):x} {parts[3]}")
    txt.write_text("\n".join(lines) + "\n")


def size(elf: Path) -> dict:
    text, data, bss = (int(v) for v in run(["arm-none-eabi-size", str(elf)]).splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss, "flash_bytes": text + data, "ram_bytes": data + bss}


def kernel_of(symbol: str) -> str:
    """The kernel a C symbol belongs to: ``tc_pointwise`` -> ``pointwise``, ``blocks4.isra.0`` -> ``pointwise``."""
    base = symbol.split(".")[0]
    base = base[3:] if base.startswith("tc_") else base
    return next((kernel for prefix, kernel in KERNEL_PREFIXES if base.startswith(prefix)), base)


def qemu(elf: Path, plugin: Path | None = None, syms: Path | None = None, counts: Path | None = None) -> str:
    cmd = ["timeout", str(QEMU_TIMEOUT_S), "qemu-system-arm", "-M", "mps2-an386", "-nographic",
           "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    if plugin:
        cmd += ["-plugin", f"{plugin},syms={syms},out={counts}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=QEMU_TIMEOUT_S + 30)
    out = proc.stdout + proc.stderr
    if proc.returncode == 124:
        raise RuntimeError(f"qemu timed out after {QEMU_TIMEOUT_S} s on {elf}")
    return out + f"\nQEMU_EXIT {proc.returncode}\n"


def measure_qemu(preset: str, model_dir: Path, build: Path, expected: dict[str, list[int]], n_q: int,
                 extra_cflags: str = "") -> dict:
    run(["make", "-s", f"MODEL_DIR={model_dir}", f"BUILD={build}", f"STACK_SIZE={STACK_SIZE}",
         f"EXTRA_CFLAGS={extra_cflags}"], cwd=FIRMWARE / "qemu")
    elf, probe = build / "tinycodec_m4.elf", build / "size_probe.elf"
    symbols(elf, build / "syms.txt")
    out = qemu(elf, build / "libinsn_count.so", build / "syms.txt", build / "counts.txt")
    (build / "qemu_output.txt").write_text(out)
    checks = {f"{clip}_{mode}": int(bad) for clip, mode, bad in re.findall(r"CHECK (\w+) (\w+) mismatches=(\d+)", out)}
    printed = {}
    for clip, _q, vals in re.findall(r"CODES (\w+) (\d+):([\d ]*)", out):
        printed.setdefault(clip, []).extend(int(v) for v in vals.split())
    codes_equal = all(printed.get(clip) == codes for clip, codes in expected.items())
    exit_ok = "QEMU_EXIT 0" in out and "RESULT PASS" in out
    counts: dict[str, int] = {}
    for line in (build / "counts.txt").read_text().splitlines():
        n, name = line.split(maxsplit=1)
        key = name if name in ("TOTAL", "OTHER") else kernel_of(name)
        counts[key] = counts.get(key, 0) + int(n)
    samples = int(re.search(r"AUDIO_SAMPLES (\d+)", out).group(1))
    seconds = samples / 16000
    per_func = {name: n for name, n in counts.items() if name in ENCODER_FUNCTIONS}
    encoder_total = sum(per_func.values())
    selftest_out = qemu(build / "selftest.elf")
    (build / "selftest_output.txt").write_text(selftest_out)
    probe_size = size(probe)
    probe_out = qemu(probe)
    stack_hw = int(re.search(r"STACK_HIGH_WATER (\d+)", probe_out).group(1))
    whole = all(v == 0 for k, v in checks.items() if k.endswith("whole")) and len(checks) == 2 * len(expected)
    frames = all(v == 0 for k, v in checks.items() if k.endswith("frames")) and len(checks) == 2 * len(expected)
    return {
        "bit_exact_qemu_whole": whole and codes_equal,
        "bit_exact_qemu_frames": frames,
        "qemu_exit_ok": exit_ok,
        "qemu_selftest_rvq_search": "SELFTEST rvq_search mismatches=0" in selftest_out
                                    and "QEMU_EXIT 0" in selftest_out,
        "instructions_per_audio_second": round(encoder_total / seconds),
        "instructions_per_frame": round(encoder_total / (samples / 256)),
        "instructions_total_run": counts.get("TOTAL", 0),
        "init_instructions": sum(counts.get(k, 0) for k in INIT_FUNCTIONS),
        "audio_seconds_encoded": seconds,
        "per_function_per_audio_second": {k: round(v / seconds)
                                          for k, v in sorted(per_func.items(), key=lambda kv: -kv[1])},
        "flash_bytes": probe_size["flash_bytes"],
        "ram_bytes": probe_size["ram_bytes"],
        "size_probe": probe_size,
        "stack_reserved_bytes": STACK_SIZE,
        "stack_high_water_bytes": stack_hw,
        "elf_with_test_vectors": size(elf),
    }


def before_fields(before: Path | None, out: Path) -> dict[str, dict]:
    """Per preset, the ``*_before`` fields: from ``--before`` (an older report's split) or carried
    over from the report being replaced."""
    if before is not None:
        old = json.loads(before.read_text())
        def by_kernel(split: dict) -> dict:
            out: dict[str, int] = {}
            for name, n in split.items():
                out[kernel_of(name)] = out.get(kernel_of(name), 0) + n
            return dict(sorted(out.items(), key=lambda kv: -kv[1]))

        return {p: {"per_function_per_audio_second_before": by_kernel(e["per_function_per_audio_second"]),
                    "instructions_per_audio_second_before": e["instructions_per_audio_second"],
                    "before_note": f"kernels before the DSP rework (scalar depthwise/conv1d/requantize, SMLAD "
                                   f"pointwise, full VQ search), same weights and toolchain; from {before.name}"}
                for p, e in old.items() if p not in NOT_PRESETS and "per_function_per_audio_second" in e}
    if not out.exists():
        return {}
    old = json.loads(out.read_text())
    return {p: {k: e[k] for k in BEFORE_KEYS if k in e} for p, e in old.items() if p not in NOT_PRESETS}


def esp32s3_estimate(portable_instructions: int, mhz: float = 240.0) -> dict:
    """An estimate, not a measurement: the ESP32-S3 build compiles the portable C path (no Arm
    DSP, no PIE SIMD), so its Cortex-M4 instruction count stands in for Xtensa LX7 instructions,
    at about one instruction per cycle (code and weights in internal RAM or cache hits)."""
    cycles = portable_instructions  # 1 instruction / cycle assumed
    return {"basis": "portable-C instructions on the Cortex-M4 (QEMU) as a proxy for LX7 instructions, "
                     "1 instruction/cycle; not measured on an ESP32-S3",
            "mhz": mhz, "cycles_per_audio_second": cycles,
            "core_load": round(cycles / (mhz * 1e6), 3), "ms_per_16ms_frame": round(cycles / (mhz * 1e6) * 16, 2)}


# fields of an earlier entry that a re-measurement keeps when it does not measure them itself
# (the *_before split is carried by before_fields)
KEPT_IF_SKIPPED = ("espdl",)


def espdl_report(preset: str, build: Path) -> dict:
    """ESP-DL: the 8-bit esp-ppq export of the shipped model (streaming checked against the
    whole-signal graph) compared layer by layer with our int8 reference (espdl_compare)."""
    import importlib.util

    if importlib.util.find_spec("esp_ppq") is None:
        return {"skipped": "esp-ppq not installed (pip install -c constraints.txt -e '.[export]')"}
    from tinycodec.export.calibration import calibration_clips, split_clips
    from tinycodec.export.espdl_compare import compare_quantization
    from tinycodec.pretrained import load_model

    model = load_model(preset)
    calib, held = split_clips(calibration_clips(ROOT / "data" / "demo", sample_rate=model.sample_rate))
    rep = compare_quantization(model, calib, held, build / "espdl" / preset)
    export = rep.pop("espdl_export")
    for key in ("espdl", "info", "json", "log", "vectors"):
        export[key] = Path(export[key]).name
    return {"export": export, **rep,
            "note": "esp-ppq 8-bit (no 16-bit fallback); agreement/SNR in `export` are on 16 loud held-out "
                    "windows of 8 frames, the rest on the first 8 s of every held-out clip, whole signal; "
                    "per-layer SNR is against the float encoder and accumulates from the input on"}


def path_quality_report(preset: str, clips_per_category: int = 12) -> dict:
    """``quality_mcu_path`` / ``quality_float_path`` of a shipped model on held-out clips: the reference
    corpus's test split (whole speakers held out) when it is fetched, else the demo corpus (named)."""
    from tinycodec.eval.clips import load_clips
    from tinycodec.eval.int8_quality import path_quality
    from tinycodec.pretrained import load_pretrained

    model = load_pretrained(preset)
    if not model.config.encoder_int8:
        return {}
    reference = ROOT / "data" / "reference"
    if (reference / "speech").exists():
        data, clips = "data/reference test split (held-out speakers and recordings), 4 s clips", load_clips(
            reference, model.sample_rate, split="test", max_clips=clips_per_category, clip_seconds=4.0)
    else:
        data, clips = "data/demo (not held out: fetch the speech and nature corpora for held-out numbers)", \
            load_clips(ROOT / "data" / "demo", model.sample_rate, max_clips=clips_per_category, clip_seconds=4.0)
    q = path_quality(model, clips)
    return {"quality_mcu_path": q["mcu"], "quality_float_path": q["float"],
            "code_agreement_float_arithmetic_vs_mcu": q["code_agreement_float_vs_mcu"], "quality_data": data,
            "quality_decoder": model.config.decoder}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="ultra_tiny only (the test suite's run)")
    parser.add_argument("--presets", nargs="+", default=None,
                        help="shipped model or preset names; default: tinycodec ultra_tiny tiny (the flagship's "
                             "spectral encoder and the SEANet ones)")
    parser.add_argument("--build", type=Path, default=ROOT / "_build" / "firmware")
    parser.add_argument("--out", type=Path, default=None,
                        help="the report (default: _build/firmware.json; --update: benchmarks/firmware.json)")
    parser.add_argument("--update", action="store_true",
                        help="rewrite the committed benchmarks/firmware.json (stamped with the encoder hashes)")
    parser.add_argument("--no-espdl", action="store_true", help="skip the esp-ppq export and comparison")
    parser.add_argument("--before", type=Path, default=None,
                        help="a report measured with the earlier kernels: its per-function split becomes *_before")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = ROOT / ("benchmarks" if args.update else "_build") / "firmware.json"
    missing = check_toolchain()
    if missing:
        print(f"missing toolchain: {', '.join(missing)}\ninstall with:\n  {APT_LINE}", file=sys.stderr)
        return 2
    before = before_fields(args.before, args.out)
    ensure_demo_data()
    presets = args.presets or (["ultra_tiny"] if args.quick else ["tinycodec", "ultra_tiny", "tiny"])
    build = args.build.resolve()
    export_dir = build / "export"
    t0 = time.time()
    results: dict[str, dict] = {}
    for preset in presets:
        t = time.time()
        info = export(preset, export_dir / preset)
        info["export_seconds"] = round(time.time() - t, 1)
        info["golden_codes"] = golden_codes(Path(info["golden_header"]))
        results[preset] = info
        print(f"[{preset}] exported in {info['export_seconds']} s, code agreement {info['code_agreement']}")
    t = time.time()
    host = build / "host"
    run(["cmake", "-S", str(FIRMWARE / "host"), "-B", str(host), f"-DTC_EXPORT_DIR={export_dir}",
         f"-DTC_PRESETS={';'.join(presets)}", "-DCMAKE_BUILD_TYPE=Release"])
    run(["cmake", "--build", str(host), "-j", "1"])
    ctest = subprocess.run(["ctest", "--test-dir", str(host), "--output-on-failure"], capture_output=True, text=True)
    (build / "ctest_output.txt").write_text(ctest.stdout + ctest.stderr)
    host_ok = {p: bool(re.search(rf"encoder_{p} \.+\s+Passed", ctest.stdout)) for p in presets}
    print(f"host ctest: {'PASS' if ctest.returncode == 0 else 'FAIL'} ({time.time() - t:.1f} s)")
    ok = ctest.returncode == 0
    report = {}
    for preset in presets:
        from tinycodec.pretrained import list_pretrained

        t = time.time()
        info = results[preset]
        m = measure_qemu(preset, export_dir / preset, build / "qemu" / preset, info["golden_codes"], info["n_q"])
        bit_exact = host_ok[preset] and m["bit_exact_qemu_whole"] and m["bit_exact_qemu_frames"] and m["qemu_exit_ok"]
        ok &= m["qemu_selftest_rvq_search"]
        # the portable C path (what the ESP32-S3 build compiles): same M4, no DSP instructions
        p = measure_qemu(preset, export_dir / preset, build / "qemu" / f"{preset}_portable", info["golden_codes"],
                         info["n_q"], extra_cflags="-DTC_PORTABLE")
        portable = {"instructions_per_audio_second": p["instructions_per_audio_second"],
                    "per_function_per_audio_second": p["per_function_per_audio_second"],
                    "bit_exact_qemu": p["bit_exact_qemu_whole"] and p["bit_exact_qemu_frames"] and p["qemu_exit_ok"],
                    "flash_bytes": p["flash_bytes"]}
        ok &= portable["bit_exact_qemu"]
        entry = {
            "flash_bytes": m.pop("flash_bytes"), "ram_bytes": m.pop("ram_bytes"),
            "instructions_per_audio_second": m.pop("instructions_per_audio_second"),
            "bit_exact": bit_exact, "bit_exact_host": host_ok[preset], **m,
            "arena_bytes": info["arena_bytes"], "flash_bytes_estimate_model": info["flash_bytes_estimate"],
            "code_agreement_int8_vs_float": info["code_agreement"],
            "c_layers": info["c_layers"], "scratch_bytes": info["scratch_bytes"],
            "rvq_tail_norm_bytes": info["rvq_tail_norm_bytes"],
            "weights": ("shipped reference model (trained; tinycodec/pretrained)" if preset in list_pretrained()
                        else "random (seed 0), zero biases, k-means codebooks on the demo audio"),
            "cpu": "Cortex-M4F (qemu-system-arm -M mps2-an386), arm-none-eabi-gcc -O2",
            "portable_c": portable,
            "esp32s3_estimate": esp32s3_estimate(portable["instructions_per_audio_second"]),
        }
        entry.update(before.get(preset, {}))
        if not args.quick and preset in list_pretrained():
            t_q = time.time()
            entry.update(path_quality_report(preset))
            print(f"[{preset}] MCU-path vs float-path quality ({time.time() - t_q:.0f} s)")
        if preset in ESPDL_PRESETS and not (args.quick or args.no_espdl) and preset in list_pretrained():
            t_dl = time.time()
            entry["espdl"] = espdl_report(preset, build)
            print(f"[{preset}] ESP-DL export + comparison ({time.time() - t_dl:.0f} s)")
            ok &= entry["espdl"].get("export", {}).get("streaming_check", {}).get("streaming_equals_whole", True)
        if preset in TARGETS:
            entry["targets"] = {k: {"target": v, "measured": entry[k], "met": entry[k] <= v,
                                    "ratio": round(entry[k] / v, 3)} for k, v in TARGETS[preset].items()}
        report[preset] = entry
        ok &= bit_exact and entry["stack_high_water_bytes"] < STACK_SIZE
        print(f"[{preset}] bit_exact={bit_exact} flash={entry['flash_bytes']} ram={entry['ram_bytes']} "
              f"instr/s={entry['instructions_per_audio_second'] / 1e6:.1f}M ({time.time() - t:.1f} s)")
    for entry in report.values():
        entry["host"] = {"machine": platform.machine(), "python": platform.python_version()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    earlier = json.loads(args.out.read_text()) if args.out.exists() else {}
    # presets not measured in this run keep their entries; the provenance blocks are rewritten below
    kept = {p: e for p, e in earlier.items() if p not in report and p not in NOT_PRESETS}
    for preset, entry in report.items():  # and what this run skipped (ESP-DL with --no-espdl)
        report[preset] = {**{k: v for k, v in earlier.get(preset, {}).items() if k in KEPT_IF_SKIPPED}, **entry}
    args.out.write_text(json.dumps({**kept, **report}, indent=2) + "\n")
    from tinycodec.eval.provenance import stamp_results
    from tinycodec.pretrained import shipped_names

    # the encoder each shipped entry measured (random-weight presets have none to record)
    stamp_results(args.out, [p for p in {**kept, **report} if p in shipped_names()], encoder_only=True)
    print(f"wrote {args.out} in {time.time() - t0:.0f} s: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
