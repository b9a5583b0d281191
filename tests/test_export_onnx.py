"""Export: EncoderExport == model.encode, ONNX parity (dynamic time axis), int8 PTQ agreement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="export extra not installed: pip install '.[export]'")

import onnx  # noqa: E402

from tinycodec.export.calibration import calibration_clips, prepare_untrained, split_clips  # noqa: E402
from tinycodec.export.encoder import EncoderExport  # noqa: E402
from tinycodec.export.onnx import check_onnx, export_onnx, onnx_session, run_onnx  # noqa: E402
from tinycodec.export.onnx_ptq import ptq  # noqa: E402
from tinycodec.models import TinyStream  # noqa: E402

DATA = str(Path(__file__).resolve().parents[1] / "data" / "demo")


def _model(preset: str, seed: int = 0) -> TinyStream:
    torch.manual_seed(seed)
    return TinyStream.from_preset(preset).eval()


@pytest.fixture(scope="module")
def clips():
    return calibration_clips(DATA, sample_rate=16000)


@pytest.fixture(scope="module", params=["ultra_tiny", "tiny"])
def exported(request, tmp_path_factory):
    model = _model(request.param)
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx")
    return model, path


@pytest.mark.parametrize("preset", ["ultra_tiny", "tiny"])
@pytest.mark.parametrize("length", [4096, 16000 + 77, 300])
def test_encoder_export_equals_model_encode(preset, length):
    model = _model(preset)
    torch.manual_seed(1)
    wav = 0.3 * torch.randn(2, 1, length)
    with torch.no_grad():
        codes, emb = EncoderExport(model, with_embeddings=True)(wav)
        ref = model.encode(wav)
    assert codes.dtype == torch.int64
    assert codes.shape == ref.shape == (2, model.num_quantizers, -(-length // model.hop_length))
    assert torch.equal(codes, ref)
    assert emb.shape[1] == model.config.D


def test_encoder_export_shares_weights():
    model = _model("ultra_tiny")
    export = EncoderExport(model)
    first = model.encoder.layers[0].conv.weight
    assert any(p is first for p in export.parameters())


def test_onnx_parity_dynamic_time(exported, clips):
    model, path = exported
    # two lengths (one not a multiple of hop_length) and a batch of 2, through one file
    wavs = [clips[0][:, 16000:16000 + 3 * 16000], clips[-1][:, :5 * 256 + 100].expand(2, -1).reshape(2, 1, -1)]
    check = check_onnx(model, path, wavs)
    assert check.max_abs_diff <= 1e-4, check
    assert check.code_agreement == 1.0, check
    session = onnx_session(path)
    shapes = {run_onnx(session, w.reshape(-1, 1, w.shape[-1]))[0].shape for w in wavs}
    assert shapes == {(1, model.num_quantizers, 188), (2, model.num_quantizers, 6)}


def test_onnx_convs_are_causal(exported):
    _, path = exported
    graph = onnx.load(str(path)).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    pads = [next((list(a.ints) for a in n.attribute if a.name == "pads"), [0, 0]) for n in convs]
    assert convs and all(p[1] == 0 for p in pads)  # nothing on the right: no look-ahead
    assert sum(p[0] > 0 for p in pads) >= 10  # the causal Pad nodes were folded into the convs
    # the one Pad left is the dynamic right-padding of the input to a multiple of hop_length
    pads_left = [n for n in graph.node if n.op_type == "Pad"]
    assert [n.input[0] for n in pads_left] == ["wav"]


def test_cli_export_onnx(tmp_path, capsys):
    from tinycodec.cli import main

    assert main(["export", "onnx", "--preset", "ultra_tiny", "--out", str(tmp_path), "--data", DATA]) == 0
    assert (tmp_path / "ultra_tiny_encoder.onnx").is_file()
    assert "code agreement 1.0000" in capsys.readouterr().out
    assert main(["export", "onnx", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path)]) == 1


# Bound for int8 PTQ on an *untrained* stand-in (random weights conditioned by
# prepare_untrained): level-1 codes must agree with fp32 on >= 20 % of held-out frames,
# 50x the 1/256 chance of ultra_tiny's codebook (measured: ~0.45). Deep random nets amplify
# quantization noise far more than trained ones, so this is a floor against broken
# quantization (all-zero codes, quantized distances tie -> agreement ~1/K), not the target
# for trained weights.
MIN_LEVEL1_AGREEMENT = 0.2


@pytest.mark.slow  # 17-40 s on 2 busy cores: LSUV conditioning, k-means, ORT calibration
def test_ptq_code_agreement(tmp_path, clips):
    model = _model("ultra_tiny")
    prepare_untrained(model, split_clips(clips)[0])
    result = ptq(model, tmp_path, clips, calib_count=8, eval_count=8)
    print(f"ultra_tiny int8 PTQ: agreement {result.code_agreement:.3f} per level "
          f"{[round(a, 3) for a in result.agreement_per_level]}, mel delta {result.mel_delta:+.4f}")
    assert result.agreement_per_level[0] >= MIN_LEVEL1_AGREEMENT
    assert 0.0 <= result.code_agreement <= 1.0
    assert abs(result.mel_delta) < 0.5  # decoded log-mel L1 moves by less than 0.5 nats
    assert (tmp_path / "encoder_int8.onnx").is_file()


@pytest.mark.parametrize("name", ["ultra_tiny", "tinycodec"])  # a SEANet and the spectral flagship
def test_onnx_of_a_deployed_encoder_sends_the_devices_codes(tmp_path, clips, name):
    from tinycodec.export.int8_quantize import int8_encoder_of
    from tinycodec.export.onnx import ARITHMETIC_KEY
    from tinycodec.pretrained import load_pretrained

    model = load_pretrained(name)  # its encoder computes the firmware's int8 arithmetic
    assert model.config.encoder_int8
    path = export_onnx(model, tmp_path / f"{name}.onnx")
    assert {p.key: p.value for p in onnx.load(str(path)).metadata_props}[ARITHMETIC_KEY] == "int8"
    wavs = [c.reshape(1, 1, -1)[..., : 16000 + 77] for c in clips[:2]]  # not a multiple of the hop
    check = check_onnx(model, path, wavs)
    assert check.reference == "int8" and check.max_abs_diff == 0.0
    assert check.code_agreement == check.device_code_agreement == 1.0
    ref = int8_encoder_of(model)
    codes, _ = run_onnx(onnx_session(path), wavs[0])
    np.testing.assert_array_equal(codes[0].numpy(), ref.encode(wavs[0]))  # the numpy int8 reference's codes
    fl = check_onnx(model, export_onnx(model, tmp_path / "float.onnx", exact_int8=False), wavs)
    assert fl.reference == "float" and fl.device_code_agreement < fl.code_agreement  # not what the device sends


def test_a_layer_without_an_exact_float32_form_is_refused():
    from tinycodec.export.int8 import Int8Encoder, Int8Layer, Op
    from tinycodec.export.onnx_int8 import Int8GraphExport

    layer = Int8Layer(Op.POINTWISE, [0], 1, weight=np.full((2, 1), 127, np.int8), bias=np.array([2**25, 0], np.int32),
                      shift=20)
    enc = Int8Encoder(layers=[layer], channels={0: 1, 1: 2}, exponents={0: 15, 1: 0},
                      codebooks=np.zeros((1, 2, 2), np.int8), z_shift=0, cb_shifts=np.zeros(1, np.int64),
                      hop_length=1, sample_rate=16000)
    with pytest.raises(ValueError, match="float32"):
        Int8GraphExport(enc)


def test_the_server_decoder_exports_to_onnx_and_decodes_as_the_model_does(tmp_path):
    from tinycodec.export.onnx_decoder import check_decoder_onnx, export_decoder_onnx
    from tinycodec.pretrained import load_pretrained

    model = load_pretrained("tinycodec")
    wav = torch.randn(1, 1, 256 * 24, generator=torch.Generator().manual_seed(0)) * 0.1
    codes = model.encode(wav)
    for n_q in (5, 4):
        path = export_decoder_onnx(model, tmp_path / f"decoder_nq{n_q}.onnx", n_q=n_q)
        assert check_decoder_onnx(model, path, codes[:, :n_q]) < 1e-5
        assert check_decoder_onnx(model, path, codes[:, :n_q, :7]) < 1e-5  # another length: dynamic time axis


def test_a_mirror_decoder_is_refused_by_the_decoder_export():
    from tinycodec.export.onnx_decoder import DecoderExport
    from tinycodec.pretrained import load_pretrained

    with pytest.raises(ValueError, match="only a server decoder"):
        DecoderExport(load_pretrained("tiny_mirror"))


def test_one_decoder_graph_serves_every_bitrate_through_its_levels_input(tmp_path):
    from tinycodec.export.onnx_decoder import check_decoder_onnx, export_decoder_onnx
    from tinycodec.pretrained import load_pretrained

    model = load_pretrained("tinycodec")
    codes = model.encode(torch.randn(1, 1, 256 * 12, generator=torch.Generator().manual_seed(1)) * 0.1)
    path = export_decoder_onnx(model, tmp_path / "decoder.onnx", levels_input=True)
    for n in range(1, 6):
        assert check_decoder_onnx(model, path, codes, n_levels=n) < 1e-5
