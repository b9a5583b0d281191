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


def test_the_page_check_fails_on_a_single_wrong_code(built, tmp_path):
    # tools/web_check.py compares what the browser returned with Python; a check that cannot fail is no check
    import torch
    import web_check

    from tinycodec.export.onnx import onnx_session
    from tinycodec.export.onnx_decoder import export_decoder_onnx
    from tinycodec.pretrained import load_pretrained

    _, reference = built
    model = load_pretrained("tinycodec")
    session = onnx_session(export_decoder_onnx(model, tmp_path / "decoder.onnx", levels_input=True))
    pcm = _clips(reference.sample_rate)["voice"][: 256 * 20]
    reference.reset()
    codes = reference.encode(pcm)
    levels = (np.arange(5) < 4).astype(np.float32)
    (wav,) = session.run(["wav"], {"codes": codes[None].astype(np.int64), "levels": levels})
    good = {"pcm": pcm.tolist(), "codes": codes.tolist(), "decoded": {"4": wav.reshape(-1).tolist()}}
    assert web_check.result_problems(good, reference, session, "clip") == []
    bad = dict(good, codes=[list(level) for level in codes.tolist()])
    bad["codes"][2][5] = (bad["codes"][2][5] + 1) % 512
    assert "codes differ" in web_check.result_problems(bad, reference, session, "clip")[0]
    louder = dict(good, decoded={"4": (1.01 * torch.tensor(good["decoded"]["4"])).tolist()})
    assert "differs from ONNX Runtime" in web_check.result_problems(louder, reference, session, "clip")[0]
