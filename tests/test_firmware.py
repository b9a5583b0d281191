"""The C encoder: host ctest + Cortex-M4 under QEMU bit-exact with the Python int8 reference
(tools/firmware.py --quick, ultra_tiny), JSON report with the agreed keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
    assert entry["stack_high_water_bytes"] < entry["stack_reserved_bytes"]
    assert 0 < entry["ram_bytes"] < 48 * 1024 and 0 < entry["flash_bytes"] < 320 * 1024
    assert entry["instructions_per_audio_second"] > 1e6
    assert "pointwise" in entry["per_function_per_audio_second"]
    ctest_log = (tmp_path / "build" / "ctest_output.txt").read_text()
    assert "100% tests passed" in ctest_log


def test_missing_toolchain_prints_the_apt_line(monkeypatch, capsys):
    sys.path.insert(0, str(ROOT / "tools"))
    import firmware

    monkeypatch.setattr(firmware.shutil, "which", lambda name: None)
    assert firmware.main(["--quick"]) == 2
    assert "apt-get install" in capsys.readouterr().err
