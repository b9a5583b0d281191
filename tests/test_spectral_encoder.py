"""The spectral encoder (``encoder="stft"``): causal FFT frontend, exact streaming, training from --init."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from tinycodec.models import TinyStream, build_model, get_preset
from tinycodec.models.config import TinyStreamConfig, config_to_dict
from tinycodec.modules.spectral_encoder import LOG_FLOOR, LOG_SCALE, LOG_SHIFT, CausalLogSpectrum


def stft_tiny(**kw) -> TinyStream:
    torch.manual_seed(0)
    cfg = config_to_dict(get_preset("tiny")) | dict(encoder="stft", encoder_int8=False, decoder="server",
                                                     decoder_dim=32, decoder_layers=1) | kw
    return build_model("tinystream", cfg).eval()


def speechlike(seconds: float = 1.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(16000 * seconds)) / 16000
    f0 = 120 + 30 * torch.sin(2 * math.pi * 3 * t)
    wav = sum(torch.sin(2 * math.pi * k * torch.cumsum(f0, 0) / 16000) / k for k in range(1, 12))
    return (0.1 * wav * (1 + torch.sin(2 * math.pi * 4 * t)) + 0.01 * torch.randn(t.shape, generator=g))[None, None]


def test_log_spectrum_is_the_causal_hann_stft():
    hop = 64
    spec = CausalLogSpectrum(2 * hop, hop)
    x = speechlike(0.25)
    ours = spec(x)[0]
    # frame f ends at sample (f + 1) * hop: left-pad one hop, then a plain uncentred STFT
    padded = torch.nn.functional.pad(x[0, 0].double(), (hop, 0))
    window = torch.hann_window(2 * hop, periodic=True, dtype=torch.float64)
    ref = torch.stft(padded, 2 * hop, hop, window=window, center=False, return_complex=True) / window.sum()
    ref = (torch.log(ref.abs().square() + LOG_FLOOR) + LOG_SHIFT) / LOG_SCALE
    assert ours.shape == (hop + 1, x.shape[-1] // hop) == ref.shape
    torch.testing.assert_close(ours.double(), ref, atol=2e-4, rtol=0)


def test_encoder_streams_exactly_and_never_looks_ahead():
    model = stft_tiny()
    x = speechlike(0.96)  # 60 frames: whole chunks of 3 frames
    with torch.no_grad():
        offline = model.encode(x)
        with model.streaming(1):
            chunks = [model.encode(x[..., i:i + 768]) for i in range(0, x.shape[-1], 768)]
        assert torch.equal(torch.cat(chunks, -1), offline)
        later = x.clone()
        later[..., 8000:] = torch.randn(later[..., 8000:].shape)  # change the future only
        assert torch.equal(model.encode(later)[..., : 8000 // 256], offline[..., : 8000 // 256])


def test_fixed_transform_is_not_a_weight():
    model = stft_tiny()
    assert not any(k.startswith("encoder.spectrum") for k in model.state_dict())
    assert all(p.requires_grad for p in model.encoder.parameters())  # only learned layers are parameters
    macs = model.encoder.device_macs_per_frame()
    assert macs["layers"] == sum(p.numel() for p in model.encoder.layers.parameters() if p.dim() > 1)


def test_config_refuses_what_does_not_exist():
    with pytest.raises(ValueError, match="unknown encoder"):
        TinyStreamConfig(encoder="mel")
    with pytest.raises(ValueError, match="encoder_int8"):
        TinyStreamConfig(encoder="stft", encoder_int8=True)


def test_int8_export_says_the_fft_encoder_has_none():
    from tinycodec.export.int8_quantize import quantize_encoder

    with pytest.raises(ValueError, match="no int8 version"):
        quantize_encoder(stft_tiny(), calib_wavs=[speechlike(0.5)[0, 0].numpy()])


def test_init_with_a_new_encoder_keeps_the_decoder_and_starts_fresh_codebooks(corpus, tmp_path, tiny_config):
    from tinycodec.train import train
    from tinycodec.train.loop import init_from

    base = train(tiny_config(corpus, tmp_path / "base", decoder="server", max_steps=1,
                             model_overrides={**tiny_config(corpus, tmp_path).model_overrides,
                                              "decoder_dim": 32, "decoder_layers": 1})).checkpoint
    cfg = tiny_config(corpus, tmp_path / "stft", model=None, preset=None, init=str(base), encoder="stft")
    family, model_config, state = init_from(cfg)
    assert model_config["encoder"] == "stft" and not model_config["encoder_int8"]
    assert state and not any(k.startswith(("encoder.", "quantizer.")) for k in state)
    result = train(cfg)
    assert result.model.config.encoder == "stft" and result.skipped_steps == 0
    with pytest.raises(ValueError, match="freeze random weights"):
        init_from(tiny_config(corpus, tmp_path / "x", model=None, preset=None, init=str(base), encoder="stft",
                              freeze_encoder=True))


def test_cli_encoder_flag_reaches_the_config():
    from tinycodec.cli.train import config_from_args, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", "--init", "tiny", "--encoder", "stft", "--audio_dir", "x", "--max_steps", "5"])
    assert config_from_args(args).encoder == "stft"


def test_weights_file_round_trip_and_its_own_encoder_hash(tmp_path):
    import tinycodec
    from tinycodec.bitstream import encoder_hash
    from tinycodec.pretrained import load_pretrained, load_weights

    model = stft_tiny()
    path = tinycodec.export_weights(model, tmp_path / "s.safetensors", dtype=torch.float16, inference_only=True)
    again = load_weights(path)
    assert again.config.encoder == "stft"
    x = speechlike(0.5)
    with torch.no_grad():
        torch.testing.assert_close(again.encoder(x), model.encoder(x), atol=0.05, rtol=0.02)  # float16 weights
    assert encoder_hash(again) == encoder_hash(model)
    assert encoder_hash(again) != encoder_hash(load_pretrained("tiny"))  # never mistaken for the firmware's


def test_onnx_export_gives_the_same_codes(tmp_path):
    import onnxruntime as ort  # the [export] extra, which CI installs

    from tinycodec.export.onnx import export_onnx

    model = stft_tiny()
    path = export_onnx(model, tmp_path / "stft.onnx")
    session = ort.InferenceSession(str(path))
    x = speechlike(0.5, seed=3)
    codes = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        assert (codes == model.encode(x).numpy()).mean() == 1.0
