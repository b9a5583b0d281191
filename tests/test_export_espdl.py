"""ESP-DL export through esp-ppq: .espdl produced, every causal conv streamed with the cache its
stride needs (streaming == whole signal in an integer simulation that reproduces esp-ppq's own
test values), golden vectors, and the layer-by-layer comparison with our int8 reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("esp_ppq", reason="export extra not installed: pip install '.[export]'")

import onnx  # noqa: E402

from tinycodec.export.calibration import calibration_clips, split_clips  # noqa: E402
from tinycodec.export.encoder import causal_encoder  # noqa: E402
from tinycodec.export.espdl import EspdlError, check_log, export_espdl, parse_test_values  # noqa: E402
from tinycodec.export.espdl_sim import EspdlSim, sim_ops, streaming_windows  # noqa: E402
from tinycodec.models import TinyStream  # noqa: E402


def test_check_log_rejects_errors_and_counts_caches():
    ok = "\x1b[38;5;2m[INFO][ESPDL]: \x1b[mInserting StreamingCache on Variable wav: window_size 7\n" * 3
    assert check_log(ok) == 3
    for bad in ("[ERROR][ESPDL]: something failed", "[1, 1] is not supported in streaming node."):
        with pytest.raises(EspdlError):
            check_log(ok + bad)


@pytest.fixture(scope="module")
def ultra_tiny_espdl(tmp_path_factory):
    torch.manual_seed(0)
    model = TinyStream.from_preset("ultra_tiny").eval()
    calib, held = split_clips(calibration_clips(Path(__file__).resolve().parents[1] / "data" / "demo", sample_rate=16000))
    out = tmp_path_factory.mktemp("espdl")
    # 8-bit only (no 16-bit retry) and few calibration windows: keeps this under a minute
    result = export_espdl(model, out, target="esp32s3", bits=8, calib_wavs=calib, eval_wavs=held,
                          calib_steps=4, fallback=False)
    return model, result


def test_espdl_files_and_streaming_nodes(ultra_tiny_espdl):
    model, r = ultra_tiny_espdl
    for path in (r.espdl, r.info, r.json, r.log, r.vectors):
        assert open(path, "rb").read(1), path
    # every conv whose window spans more than one sample got a StreamingCache
    graph = onnx.load(r.espdl.replace("_8bit.espdl", ".onnx")).graph
    windowed = sum(1 for n in graph.node if n.op_type == "Conv" and
                   next(a.ints[0] for a in n.attribute if a.name == "kernel_shape") > 1)
    assert r.streaming_nodes == windowed > 0
    text = open(r.log).read()
    assert "not supported in streaming" not in text and "[ERROR]" not in text
    assert "StreamingCache" in open(r.info).read()
    assert 0.0 <= r.agreement[8] <= 1.0 and r.bits == 8


def test_espdl_streaming_equals_whole_signal(ultra_tiny_espdl):
    _, r = ultra_tiny_espdl
    check = r.streaming_check
    assert check["checked"] and check["test_output_reproduced"]  # the simulation is esp-ppq's arithmetic
    assert check["streaming_equals_whole"] and check["streaming_equal_fraction"] == 1.0
    # strided convs cache k - stride frames (window k - stride + 1), stride-1 convs k - 1
    ops = {op.output: op for op in sim_ops(r.graph)}
    for out, window in check["windows"].items():
        op = ops[out]
        assert window == (op.weight.shape[-1] - 1) * op.dilation + 1 - op.stride + 1


def test_espdl_default_windows_break_strided_streaming(ultra_tiny_espdl):
    # esp-ppq's auto-streaming caches k - 1 frames whatever the stride: our check must catch it
    _, r = ultra_tiny_espdl
    ops = sim_ops(r.graph)
    naive = {op.output: (op.weight.shape[-1] - 1) * op.dilation + 1 for op in ops if op.type == "Conv"}
    assert any(op.stride > 1 for op in ops if op.type == "Conv")
    (x,) = parse_test_values(r.info)["inputs"].values()
    wav = np.asarray(x["values"], dtype=np.float64) * 2.0 ** x["exponent"]
    whole = EspdlSim(ops).run(wav)["embeddings"][0]
    assert np.array_equal(EspdlSim(ops, streaming_windows(ops)).run_streaming(wav, r.hop_length)["embeddings"][0], whole)
    assert not np.array_equal(EspdlSim(ops, naive).run_streaming(wav, r.hop_length)["embeddings"][0], whole)


def test_compare_quantization_reports_every_conv_layer(tmp_path):
    from tinycodec.export.espdl_compare import compare_quantization
    from tinycodec.export.int8_quantize import extract_graph

    torch.manual_seed(0)
    model = TinyStream.from_preset("ultra_tiny").eval()
    calib, held = split_clips(calibration_clips(Path(__file__).resolve().parents[1] / "data" / "demo", sample_rate=16000))
    rep = compare_quantization(model, calib, held[:1], tmp_path, calib_steps=4, seconds=1.0)
    convs = [layer for layer in extract_graph(model.encoder)[0] if layer.op.is_conv]
    assert [row["layer"] for row in rep["layers"]] == [layer.name for layer in convs]
    for row in rep["layers"]:
        for side in ("ours", "esp_ppq"):
            assert np.isfinite(row[side]["snr_db"]) and isinstance(row[side]["output_exponent"], int)
    assert len(rep["code_agreement_per_level"]["esp_ppq_vs_ours"]) == model.config.num_quantizers
    assert rep["espdl_export"]["bits"] == 8 and rep["espdl_export"]["streaming_check"]["streaming_equals_whole"]


def test_espdl_golden_vectors(ultra_tiny_espdl):
    model, r = ultra_tiny_espdl
    vec = parse_test_values(r.info)
    assert json.load(open(r.vectors)) == vec
    (x,) = vec["inputs"].values()
    (y,) = vec["outputs"].values()
    n, frames = r.input_length, r.input_length // r.hop_length
    assert x["shape"] == [1, n, 1] and y["shape"] == [1, frames, model.config.D]  # NWC
    assert all(-128 <= v <= 127 for v in x["values"] + y["values"])
    # the int8 golden output is the encoder's output on the golden input, up to quantization
    wav = torch.tensor(x["values"], dtype=torch.float32).reshape(1, 1, n) * 2.0 ** x["exponent"]
    with torch.no_grad():
        ref = causal_encoder(model)(wav)[0].T.numpy()  # [frames, D]
    got = np.asarray(y["values"], dtype=np.float64).reshape(frames, -1) * 2.0 ** y["exponent"]
    snr = 10 * np.log10((ref ** 2).sum() / ((ref - got) ** 2).sum())
    assert snr > 20.0, snr


def test_espdl_equalization_keeps_the_callers_model_and_the_function():
    from tinycodec.export.espdl import _equalized
    from tinycodec.pretrained import load_model

    model = load_model("tiny_v1")  # a float encoder (the shipped tiny is int8-exact)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    eq = _equalized(model)
    assert eq is not model and eq.encoder is not model.encoder
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # caller's model untouched
    wav = 0.1 * torch.randn(1, 1, 8 * model.hop_length, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(eq.encoder(wav), model.encoder(wav), atol=1e-4)
    soundstream = load_model("soundstream_tiny")  # ELU: nothing our graph walker can equalize
    assert _equalized(soundstream) is soundstream


def test_espdl_of_a_deployed_encoder_reports_agreement_with_the_int8_reference(tmp_path, ultra_tiny_espdl):
    from tinycodec.export import calibration
    from tinycodec.export.encoder import EncoderExport
    from tinycodec.export.espdl import _ppq_embeddings
    from tinycodec.export.int8_quantize import int8_encoder_of
    from tinycodec.pretrained import load_pretrained

    assert ultra_tiny_espdl[1].device_agreement == {}  # a float model has no device codes to compare with
    model = load_pretrained("ultra_tiny")  # the deployed int8 encoder
    calib, held = split_clips(calibration_clips(Path(__file__).resolve().parents[1] / "data" / "demo", sample_rate=16000))
    r = export_espdl(model, tmp_path, target="esp32s3", bits=8, calib_wavs=calib, eval_wavs=held[:2],
                     calib_steps=4, fallback=False)
    windows = calibration.windows(held[:2], r.input_length, 16)
    ref = int8_encoder_of(model)
    vq = EncoderExport(model)
    with torch.no_grad():
        codes = [vq.quantize(z) for z in _ppq_embeddings(r.graph, windows)]
    same = sum(int((c[0].numpy() == ref.encode(w)).sum()) for c, w in zip(codes, windows, strict=True))
    assert r.device_agreement[8] == same / sum(c.numel() for c in codes)
    assert r.device_agreement[8] < 1.0  # esp-ppq requantizes the float encoder its own way
