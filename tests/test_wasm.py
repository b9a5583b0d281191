"""The firmware encoder compiled to WebAssembly sends the device's codes, bit for bit (tools/wasm.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import wasm  # noqa: E402

DEMO = ROOT / "data" / "demo"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from tinycodec.export.int8_quantize import quantize_encoder
    from tinycodec.pretrained import load_pretrained

    out = tmp_path_factory.mktemp("wasm")
    return wasm.build("tinycodec", out), quantize_encoder(load_pretrained("tinycodec"), None, preset="tinycodec")


def _clips(sample_rate: int) -> dict[str, np.ndarray]:
    from tinycodec.export.c_export import synthetic_golden_pcm
    from tinycodec.export.calibration import load_pcm

    return {"speech": load_pcm(DEMO / "speech" / "pyannote_sample.wav", sample_rate, 4.0),
            "rain": load_pcm(DEMO / "nature" / "onsen_water.wav", sample_rate, 3.0),
            "voice": synthetic_golden_pcm("speech", sample_rate, 2.0)}


def test_wasm_codes_equal_the_int8_reference_on_every_level(built, tmp_path):
    module, reference = built
    for name, pcm in _clips(reference.sample_rate).items():
        pcm = pcm[: len(pcm) // reference.hop_length * reference.hop_length]
        (tmp_path / f"{name}.pcm").write_bytes(pcm.astype("<i2").tobytes())
        subprocess.run(["node", str(ROOT / "firmware" / "wasm" / "encode.mjs"), str(module), str(tmp_path / f"{name}.pcm"),
                        str(tmp_path / f"{name}.json")], check=True, timeout=120)
        got = json.loads((tmp_path / f"{name}.json").read_text())
        reference.reset()
        want = reference.encode(pcm)
        assert got["n_q"] == want.shape[0] == 5
        np.testing.assert_array_equal(np.array(got["codes"]), want, err_msg=name)


def test_a_missing_toolchain_is_named(monkeypatch):
    monkeypatch.setattr(wasm.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install -y clang lld wasi-libc"):
        wasm.build("tinycodec", Path("/nonexistent"))
