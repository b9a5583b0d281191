"""The int8 op set (tinycodec.modules.int8_ops) and its fast torch runner (int8_runner): every op on
every path, and the runner's integers equal the numpy int8 reference's on real audio, in every
chunking, in float32 and float64 layers, with fused ReLUs and left shifts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tinycodec.export import int8, int8_quantize
from tinycodec.export.int8 import Int8Encoder, Int8Layer
from tinycodec.modules import int8_runner
from tinycodec.modules.int8_ops import BUILDERS, Op
from tinycodec.modules.int8_runner import Int8Runner
from tinycodec.modules.int8_spectrum import (
    fft_int,
    fft_int_torch,
    log_spectrum,
    log_spectrum_torch,
    spectrum_tables,
)

ROOT = Path(__file__).resolve().parents[1]


def test_every_op_has_a_builder_a_kernel_on_every_path_and_a_c_twin():
    header = (ROOT / "firmware/components/tinycodec_encoder/include/tinycodec_encoder.h").read_text()
    for op in Op:
        assert op in BUILDERS and op in int8.KERNELS and op in int8_runner._KERNELS, op
        assert op in int8_quantize.FLOAT_OPS, op
        assert op.c_name in header, op


@pytest.mark.parametrize("n_fft", [16, 64, 512])
def test_torch_integer_fft_equals_the_numpy_reference(n_fft):
    rng = np.random.default_rng(n_fft)
    tab = spectrum_tables(n_fft)
    re = rng.integers(-32768, 32768, size=(5, n_fft))
    re[0] = 32767  # the largest values the FFT must hold
    re[1, ::2], re[1, 1::2] = 32767, -32768
    im = np.zeros_like(re)
    im[2:] = rng.integers(-32768, 32768, size=(3, n_fft))
    want = fft_int(re, im, tab["tw_re"], tab["tw_im"])
    got = fft_int_torch(torch.from_numpy(re), torch.from_numpy(im), n_fft)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g.numpy(), w)


def test_torch_log_spectrum_equals_the_numpy_reference_on_real_speech(speech):
    pcm = np.clip(np.round(speech.double().numpy() * 32768), -32768, 32767).astype(np.int64)
    pcm = np.stack([pcm[: 256 * 40], pcm[256 * 40: 256 * 80] // 7])  # a loud and a quiet row
    x = np.concatenate([np.zeros((2, 256), np.int64), pcm], axis=1)  # history first
    for e_y in (2, 4):
        from tinycodec.modules.spectral_encoder import CausalLogSpectrum

        affine = CausalLogSpectrum(512, 256).int8_affine(e_y)
        want = log_spectrum(x[:, None], 512, 256, affine)  # [B, bins, F]
        got = log_spectrum_torch(torch.from_numpy(x), 512, 256, affine)  # [B, F, bins]
        np.testing.assert_array_equal(got.transpose(1, 2).numpy(), want)


def _synthetic_encoder() -> Int8Encoder:
    """A graph with every runner path: conv1d on PCM and a pointwise with a large bias (float64: sums
    beyond 2**24), a strided dilated depthwise, a left shift, a residual add with shift <= 0, ReLUs
    fused (after a pointwise, a residual add) and not (after a conv1d)."""
    rng = np.random.default_rng(0)
    w0 = rng.integers(-127, 128, size=(8, 1, 5))
    w0[0] = 127  # sum |w| 32768 > 2**24
    big = rng.integers(-2**25, 2**25, size=8)
    layers = [
        Int8Layer(Op.CONV1D, [0], 1, weight=w0.astype(np.int8), bias=rng.integers(-2**20, 2**20, 8).astype(np.int32),
                  shift=13, history=4),
        Int8Layer(Op.RELU, [1], 2),
        Int8Layer(Op.DEPTHWISE, [2], 3, weight=rng.integers(-127, 128, size=(8, 3)).astype(np.int8), shift=5,
                  stride=2, dilation=2, history=3),
        Int8Layer(Op.POINTWISE, [3], 4, weight=rng.integers(-127, 128, size=(8, 8)).astype(np.int8),
                  bias=big.astype(np.int32), shift=18),
        Int8Layer(Op.RELU, [4], 5),
        Int8Layer(Op.POINTWISE, [5], 6, weight=rng.integers(-3, 4, size=(8, 8)).astype(np.int8),
                  bias=rng.integers(-9, 10, 8).astype(np.int32), shift=-1),
        Int8Layer(Op.RESIDUAL_ADD, [3, 6], 7, shift=0, shift_a=1, shift_b=0),
        Int8Layer(Op.RELU, [7], 8),
        Int8Layer(Op.POINTWISE, [8], 9, weight=rng.integers(-127, 128, size=(4, 8)).astype(np.int8),
                  bias=np.zeros(4, np.int32), shift=7),
    ]
    channels = {0: 1, **{i: 8 for i in range(1, 9)}, 9: 4}
    return Int8Encoder(layers=layers, channels=channels, exponents={}, codebooks=np.zeros((1, 2, 4), np.int8),
                       z_shift=0, cb_shifts=np.zeros(1, np.int64), hop_length=2, sample_rate=16000)


def test_runner_equals_the_int8_reference_in_float32_and_float64_layers_and_in_chunks():
    enc = _synthetic_encoder()
    runner = Int8Runner(enc.layers, enc.channels)
    dtypes = {s.layer.name or i: s.dtype for i, s in enumerate(runner.steps) if s.layer.op.is_conv}
    assert set(dtypes.values()) == {torch.float32, torch.float64}
    assert [s.skip for s in runner.steps] == [False, False, False, False, True, False, False, True, False]
    rng = np.random.default_rng(1)
    pcm = np.clip(rng.normal(0, 12000, size=(2, 96)).round(), -32768, 32767).astype(np.int64)
    pcm[0, 10:20] = 32767
    whole = runner.run(torch.from_numpy(pcm).double())  # [B, F, D]
    state = runner.fresh_state(2)
    chunks = [runner.run(torch.from_numpy(c).double(), state) for c in np.split(pcm, [2, 8, 10, 40, 42], axis=1)]
    np.testing.assert_array_equal(torch.cat(chunks, 1).numpy(), whole.numpy())
    for b in range(2):
        want = enc.run_graph(pcm[b], enc.fresh_states())
        np.testing.assert_array_equal(whole[b].T.numpy(), want)


def test_runner_keeps_its_integers_when_float32_products_may_round():
    enc = _synthetic_encoder()
    runner = Int8Runner(enc.layers, enc.channels)
    pcm = torch.from_numpy(np.random.default_rng(2).integers(-20000, 20000, size=(1, 64))).double()
    want = runner.run(pcm)
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")  # bf16 or TF32 products where the hardware has them
        got = runner.run(pcm)
    finally:
        torch.set_float32_matmul_precision(before)
    assert all(s.dtype == torch.float64 for s in runner._steps64 if s.layer.op.is_conv)
    np.testing.assert_array_equal(got.numpy(), want.numpy())


@pytest.mark.parametrize("name", ["tinycodec", "ultra_tiny"])
def test_deployed_model_codes_equal_the_int8_reference_in_every_chunking(name):
    from tinycodec.export.calibration import default_calib_wavs, load_pcm
    from tinycodec.export.int8_quantize import int8_encoder_of
    from tinycodec.pretrained import load_pretrained

    model = load_pretrained(name).eval()
    hop = model.hop_length
    ref = int8_encoder_of(model)
    rng = np.random.default_rng(0)
    for path in default_calib_wavs()[:2]:
        pcm = load_pcm(path, model.sample_rate, 3.0)
        pcm = pcm[: len(pcm) // hop * hop]
        want = ref.encode(pcm)
        wav = torch.from_numpy(pcm.astype(np.float32) / 32768).reshape(1, 1, -1)
        with torch.no_grad():
            np.testing.assert_array_equal(model.encode(wav)[0].numpy(), want)
            cuts = np.sort(rng.choice(np.arange(1, len(pcm) // hop), size=12, replace=False)) * hop
            with model.streaming(1):
                parts = [model.encode(c) for c in torch.tensor_split(wav, torch.from_numpy(cuts), dim=-1)]
            np.testing.assert_array_equal(torch.cat(parts, -1)[0].numpy(), want)
            both = model.encode(torch.cat([wav, wav.flip(-1)]))
        np.testing.assert_array_equal(both[0].numpy(), want)
        np.testing.assert_array_equal(both[1].numpy(), ref.encode(pcm[::-1].copy()))


def test_integer_layers_are_built_once_and_rebuilt_after_a_weight_change():
    from tinycodec.pretrained import load_pretrained

    enc = load_pretrained("tinycodec").eval().encoder
    first = enc.integer_layers()
    assert enc.integer_layers() is first
    conv = enc.graph[1].conv
    with torch.no_grad():
        conv.weight.mul_(-1.0)
    second = enc.integer_layers()
    assert second is not first
    assert not np.array_equal(second[1].weight, first[1].weight)
    enc.load_state_dict(enc.state_dict())  # a load copies into the same tensors: a new version
    assert enc.integer_layers() is not second


def test_a_deployed_model_loaded_in_inference_mode_encodes_the_same_codes(speech):
    # tensors made in inference mode keep no version counter: the rebuild key must not ask for one
    from tinycodec.pretrained import load_pretrained

    x = speech[: 16000].reshape(1, 1, -1)
    with torch.no_grad():
        expected = load_pretrained("tinycodec").eval().encode(x)
    with torch.inference_mode():
        model = load_pretrained("tinycodec").eval()
        assert model.encoder.exponents.is_inference()
        assert torch.equal(model.encode(x), expected)
