"""The spectral encoder (``encoder="stft"``): causal FFT frontend, exact streaming, training from --init,
its integer frontend (fixed-point FFT + table log) and the int8-exact model."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch

from tinycodec.models import TinyStream, build_model, get_preset
from tinycodec.models.config import TinyStreamConfig, config_to_dict
from tinycodec.modules.int8_spectrum import fft_int, log_spectrum, spectrum_affine, spectrum_tables
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
    from tinycodec.models.summary import summary

    # the device runs an FFT, not the float model's DFT-as-a-convolution (257 x 2 x 512 MACs per frame)
    assert summary(model).macs_encoder == pytest.approx(62.5 * (macs["fft"] + macs["layers"]))
    assert macs["fft"] < 2 * 257 * 512 / 10


def test_config_refuses_what_does_not_exist():
    with pytest.raises(ValueError, match="unknown encoder"):
        TinyStreamConfig(encoder="mel")
    with pytest.raises(ValueError, match="power-of-two"):
        spectrum_tables(384)


def test_integer_fft_is_the_fft_up_to_rounding():
    rng = np.random.default_rng(0)
    x = rng.integers(-32768, 32768, size=(3, 512))
    tab = spectrum_tables(512)
    re, im = fft_int(x, np.zeros_like(x), tab["tw_re"], tab["tw_im"])
    ref = np.fft.fft(x.astype(np.float64), axis=-1)
    err = np.abs(re + 1j * im - ref)
    assert err.max() < 12  # nine stages, one rounding (<= 1/2 per component) each
    assert np.abs(ref).max() > 1e5  # and the values are large: a wrong twiddle would show


@pytest.mark.parametrize("kind", ["speech", "silence", "square", "impulse"])
def test_integer_log_spectrum_tracks_the_float_frontend(kind):
    n = 16000
    if kind == "speech":
        pcm = np.round(speechlike(1.0)[0, 0].numpy() * 32768).astype(np.int64)
    elif kind == "silence":
        pcm = np.zeros(n, dtype=np.int64)
    elif kind == "square":  # full scale: the largest values the int32 FFT must hold
        pcm = np.where(np.arange(n) // 8 % 2 == 0, 32767, -32768)
    else:
        pcm = np.zeros(n, dtype=np.int64)
        pcm[5000] = 32767
    e_y = 5
    affine = spectrum_affine(512, e_y, LOG_FLOOR, LOG_SHIFT, LOG_SCALE)
    q = log_spectrum(np.concatenate([np.zeros(256, dtype=np.int64), pcm])[None], 512, 256, affine)
    ref = CausalLogSpectrum(512, 256)(torch.from_numpy(pcm / 32768.0).float()[None, None])[0].double().numpy()
    assert q.shape == ref.shape == (257, n // 256)
    assert q.min() >= -128 and q.max() <= 127
    err = np.abs(q / 2.0**e_y - np.clip(ref, -128 / 2**e_y, 127 / 2**e_y))
    assert err.max() <= 0.75 / 2**e_y  # rounding to the int8 grid (1/2 step) + window, FFT and table error
    if kind == "silence":
        assert (q == q.flat[0]).all()  # the floor, everywhere


def test_int8_spectral_encoder_streams_and_agrees_with_float_on_real_audio():
    from tinycodec.export.calibration import default_calib_wavs, load_pcm
    from tinycodec.export.int8_quantize import code_agreement, quantize_encoder
    from tinycodec.pretrained import load_pretrained

    model = load_pretrained("tiny_stft_v1")  # the float version: post-training quantization
    enc = quantize_encoder(model)
    assert enc.layers[0].op == "log_spectrum" and enc.layers[0].history == 256
    pcm = load_pcm(default_calib_wavs()[0], 16000, 3.0)
    whole = enc.encode(pcm)
    enc.reset()
    frames = np.concatenate([enc.encode_frame(pcm[i:i + 256]) for i in range(0, len(pcm) // 256 * 256, 256)], 1)
    np.testing.assert_array_equal(frames, whole[:, : frames.shape[1]])
    # post-training quantization of the trained float encoder, no fine-tune: measured 0.89 on level 0
    assert code_agreement(model, enc, [pcm])["per_level"][0] > 0.7


def test_int8_exact_spectral_model_is_the_reference_bit_for_bit():
    from tinycodec.export.int8_prepare import prepare_int8_model
    from tinycodec.export.int8_quantize import int8_encoder_of
    from tinycodec.pretrained import load_pretrained

    model = prepare_int8_model(load_pretrained("tiny_stft_v1"), [speechlike(2.0, seed=1)[0, 0].numpy()])
    assert model.config.encoder == "stft" and model.config.encoder_int8
    x = speechlike(0.96, seed=2)
    with torch.no_grad():
        codes = model.encode(x)
        with model.streaming(1):
            chunks = torch.cat([model.encode(x[..., i:i + 768]) for i in range(0, x.shape[-1], 768)], -1)
    np.testing.assert_array_equal(codes[0].numpy(), int8_encoder_of(model).encode(x))
    assert torch.equal(chunks, codes)


def test_init_with_a_new_encoder_keeps_the_decoder_and_starts_fresh_codebooks(corpus, tmp_path, tiny_config):
    from tinycodec.train import train
    from tinycodec.train.init import init_from

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


def test_its_encoder_hash_is_its_own():
    """(Its weights file round trip: tests/test_pretrained.py, one per encoder kind.)"""
    from tinycodec.bitstream import encoder_hash
    from tinycodec.pretrained import load_pretrained

    # tiny's sizes with the FFT frontend: never mistaken for the firmware's SEANet encoder
    assert encoder_hash(stft_tiny()) != encoder_hash(load_pretrained("tiny"))


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


def test_the_deployed_release_keeps_the_float_versions_files_decodable():
    """tiny_stft is now the int8-exact encoder (another encoder hash); a file the float version wrote
    while it was called tiny_stft finds it under its new name, tiny_stft_v1, by that hash."""
    from tinycodec.bitstream import read_tcz_header, write_tcz
    from tinycodec.bitstream.model_io import encoder_hash, find_model
    from tinycodec.export.int8_quantize import int8_encoder_of
    from tinycodec.pretrained import load_pretrained

    deployed, float_v1 = load_pretrained("tiny_stft"), load_pretrained("tiny_stft_v1")
    assert deployed.config.encoder_int8 and not float_v1.config.encoder_int8
    assert encoder_hash(deployed) != encoder_hash(float_v1)
    old = write_tcz(np.zeros((4, 8), np.int64), model_id="tiny_stft", model_hash=bytes.fromhex(encoder_hash(float_v1)),
                    sample_rate=16000, hop_length=256, length=8 * 256, bits=9)
    assert find_model(read_tcz_header(old)).model_id == "tiny_stft_v1"
    x = speechlike(0.5, seed=4)
    with torch.no_grad():  # and the deployed model's codes are the device's
        np.testing.assert_array_equal(deployed.encode(x)[0].numpy(), int8_encoder_of(deployed).encode(x))
