"""The benchmark scripts (benchmarks/), each run in its quick mode: they write the JSON they promise.

The numbers they measure are not checked here (they depend on the machine); the structure is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_streaming_benchmark_quick_writes_json(tmp_path):
    path = ROOT / "benchmarks" / "bench_streaming.py"
    out = tmp_path / "streaming.json"
    run = subprocess.run([sys.executable, str(path), "--quick", "--presets", "ultra_tiny", "tiny",
                          "--seconds", "0.2", "--out", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    assert [r["preset"] for r in report["results"]] == ["ultra_tiny", "tiny"]
    assert all(r["rtf"] > 0 and r["frames"] == 12 for r in report["results"])
    assert isinstance(report["target"]["met"], bool) and report["machine"]["torch_threads"] == 1


def test_deployed_streaming_benchmark_records_encode_decode_and_targets(tmp_path):
    out = tmp_path / "deployed.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_streaming.py"), "--deployed", "tinycodec",
           "--rounds", "1", "--seconds", "0.3", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    report = json.loads(out.read_text())
    for n in ("1", "4"):
        row = report["best"]["current"][n]
        assert set(row) == {"rtf_cpu_encode", "rtf_cpu_decode", "rtf_cpu_encode_decode"}
        assert all(v > 0 for v in row.values())
        target = report["targets"][n]
        assert target["target"] == {"1": 0.08, "4": 0.03}[n]
        assert target["current"]["met"] == (row["rtf_cpu_encode_decode"] <= target["target"])


def test_latency_benchmark_writes_json(tmp_path):
    out = tmp_path / "latency.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_latency.py"), "--quick", "--models", "ultra_tiny",
           "--seconds", "0.2", "--repeats", "2", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    report = json.loads(out.read_text())
    (r,) = report["results"]
    assert r["model"] == "ultra_tiny" and r["first_sound_ms_best"] >= r["algorithmic_latency_ms"] > 0
    assert r["ttfa_ms_best"] >= r["algorithmic_latency_ms"] - r["decoder_delay_ms"]  # one hop recorded first
    assert report["weights"]["ultra_tiny"]["weights_hash"]  # stamped with the weights it measured
    assert r["rtf"] > 0 and report["machine"]["torch_threads"] == 1
