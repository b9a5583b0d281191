"""Int8 reference (tinycodec.export.int8): kernels hand-checked, streaming == whole signal,
exact integer VQ search, code agreement with the float model on real audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinycodec.export.calibration import default_calib_wavs, fit_codebooks, load_pcm
from tinycodec.export.int8 import (
    codebook_norms,
    conv1d,
    depthwise,
    pointwise,
    requantize,
    residual_add,
    rvq_search,
)
from tinycodec.export.int8_quantize import code_agreement, quantize_encoder
from tinycodec.models import TinyStream

# Measured on ultra_tiny with seeded random weights (zero biases, k-means codebooks) on the demo
# speech + nature clips: level-0 agreement ~0.39. The bound guards against a broken quantizer
# (a wrong shift or scale gives ~1/K = 0.004); re-measure once trained weights exist.
MIN_LEVEL0_AGREEMENT = 0.25


def test_requantize_rounds_half_up_and_saturates():
    acc = np.array([5, -5, 3, -3, -7, 1000, -1000, 4, -4])
    assert requantize(acc, 1).tolist() == [3, -2, 2, -1, -3, 127, -128, 2, -2]
    assert requantize(np.array([-7, 7, -6]), 2).tolist() == [-2, 2, -1]  # -1.75, 1.75, -1.5
    assert requantize(np.array([3, 100, -100, -7]), -2).tolist() == [12, 127, -128, -28]
    assert requantize(np.array([127, -128]), 0).tolist() == [127, -128]


def test_kernels_match_float_arithmetic_exactly_when_no_rounding():
    rng = np.random.default_rng(0)
    x = rng.integers(-8, 8, size=(3, 2 + 16))  # 2 history samples
    w = rng.integers(-8, 8, size=(5, 3, 3))
    b = rng.integers(-50, 50, size=5)
    y = conv1d(x, w, b, 0)
    ref = torch.nn.functional.conv1d(torch.tensor(x[None]).double(), torch.tensor(w).double(),
                                     torch.tensor(b).double())[0].numpy()
    np.testing.assert_array_equal(y, np.clip(ref, -128, 127))
    wd = rng.integers(-8, 8, size=(3, 4))
    yd = depthwise(np.pad(x, ((0, 0), (0, 0))), wd, 0, stride=2)
    ref = torch.nn.functional.conv1d(torch.tensor(x[None]).double(), torch.tensor(wd[:, None]).double(),
                                     stride=2, groups=3)[0].numpy()
    np.testing.assert_array_equal(yd, np.clip(ref, -128, 127))
    wp = rng.integers(-8, 8, size=(4, 3))
    np.testing.assert_array_equal(pointwise(x, wp, np.zeros(4, dtype=np.int64), 0), np.clip(wp @ x, -128, 127))
    assert residual_add(np.array([10, -10]), np.array([3, 3]), 1, 0, 1).tolist() == [12, -8]


def test_rvq_search_is_exact_l2_argmin_with_lowest_index_ties():
    rng = np.random.default_rng(1)
    cb = rng.integers(-20, 20, size=(2, 16, 8)).astype(np.int8)
    cb[0, 5] = cb[0, 3]  # a duplicate codeword: the tie must go to index 3
    shifts = np.array([1, 0])
    z = rng.integers(-60, 60, size=(8, 40))
    z[:, 0] = cb[0, 3].astype(np.int64) << 1  # exactly on the duplicate
    codes = rvq_search(z, cb, codebook_norms(cb, shifts), 0, shifts)
    r = z.astype(np.int64)
    for q in range(2):
        full = ((r[None] - (cb[q].astype(np.int64)[:, :, None] << shifts[q])) ** 2).sum(1)  # [K, F]
        np.testing.assert_array_equal(codes[q], full.argmin(0))
        r = r - (cb[q].astype(np.int64)[codes[q]].T << shifts[q])
    assert codes[0, 0] == 3


@pytest.fixture(scope="module")
def ultra_tiny():
    torch.manual_seed(0)
    model = TinyStream.from_preset("ultra_tiny").eval()
    with torch.no_grad():
        for m in model.encoder.modules():
            if isinstance(m, torch.nn.Conv1d) and m.bias is not None:
                m.bias.zero_()
    pcms = [load_pcm(f, 16000, 10.0) for f in default_calib_wavs()]
    fit_codebooks(model, pcms)
    return model, quantize_encoder(model, pcms, preset="ultra_tiny"), pcms


def test_streaming_equals_whole_signal_on_real_audio(ultra_tiny):
    _, enc, pcms = ultra_tiny
    pcm = pcms[2][16000 * 7:]  # pyannote: speech starts at ~7.5 s
    pcm = pcm[: len(pcm) // enc.hop_length * enc.hop_length]
    whole = enc.encode(pcm)
    enc.reset()
    hop = enc.hop_length
    chunks = [enc.encode_frame(pcm[i:i + n]) for i, n in zip(range(0, len(pcm), 3 * hop), [3 * hop] * 1000)
              if len(pcm[i:i + n]) == n]
    frames = [enc.encode_frame(pcm[i:i + hop]) for i in range(len(chunks) * 3 * hop, len(pcm) - hop + 1, hop)]
    np.testing.assert_array_equal(np.concatenate(chunks + frames, axis=1), whole)
    assert len(np.unique(whole[0])) > 3  # the clip exercises several codewords


def test_float_input_matches_int16_input(ultra_tiny):
    _, enc, pcms = ultra_tiny
    pcm = pcms[-1][:8000]
    np.testing.assert_array_equal(enc.encode(pcm), enc.encode(torch.from_numpy(pcm / 32768.0).float()))


def test_code_agreement_with_float_model(ultra_tiny):
    model, enc, pcms = ultra_tiny
    agreement = code_agreement(model, enc, pcms)
    assert agreement["per_level"][0] >= MIN_LEVEL0_AGREEMENT, agreement


def test_encode_frame_rejects_partial_frames(ultra_tiny):
    _, enc, _ = ultra_tiny
    with pytest.raises(ValueError, match="hop_length"):
        enc.encode_frame(np.zeros(100, dtype=np.int16))


def test_cross_layer_equalization_keeps_the_function_and_rescues_trained_weights():
    """The shipped (trained) tiny: equalization leaves the float encoder as it is and lifts the int8
    embedding's SNR; without it the int8 embedding is mostly rounding noise."""
    from tinycodec.export.int8_quantize import equalize_cross_layer
    from tinycodec.pretrained import load_pretrained

    model = load_pretrained("tiny_v1")  # the float model: what post-training quantization starts from
    files = default_calib_wavs()  # the demo corpus
    speech = next(f for f in files if f.name == "pyannote_sample.wav")
    water = next(f for f in files if f.name == "onsen_water.wav")
    pcm = load_pcm(speech, model.sample_rate)
    calib, held = [pcm[: 7 * 16000], load_pcm(water, model.sample_rate, 10.0)], pcm[20 * 16000: 26 * 16000]
    wav = torch.from_numpy(held.astype(np.float32) / 32768).reshape(1, 1, -1)
    with torch.no_grad():
        z = model.encoder(wav)[0].double().numpy()
        assert torch.allclose(equalize_cross_layer(model.encoder)(wav), model.encoder(wav), atol=1e-4)

    def snr_db(equalize: bool) -> float:
        enc = quantize_encoder(model, calib, "tiny", equalize=equalize)
        zq = enc.run_graph(held.astype(np.int64), enc.fresh_states()) * 2.0 ** -enc.exponents[enc.output]
        return float(10 * np.log10((z ** 2).mean() / ((zq - z) ** 2).mean()))

    plain, equalized = snr_db(False), snr_db(True)
    assert equalized > plain + 3.0, (plain, equalized)
    print(f"int8 embedding SNR: {plain:.1f} dB plain, {equalized:.1f} dB equalized")


def test_a_deployed_encoder_exports_to_c_from_any_folder_without_audio(tmp_path, monkeypatch):
    from tinycodec.export.c_export import export_c

    monkeypatch.chdir(tmp_path)  # no data/demo here: the deployed model needs no calibration audio
    result = export_c("tinycodec", tmp_path / "out")
    golden = (tmp_path / "out" / "tinycodec_golden.h").read_text()
    assert "TC_GOLDEN_SPEECH_SAMPLES" in golden and "TC_GOLDEN_NATURE_SAMPLES" in golden
    assert result["n_q"] == 5 and (tmp_path / "out" / "tinycodec_model.h").stat().st_size > 100_000
