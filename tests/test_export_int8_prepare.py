"""The deployed encoder: an int8-exact encoder inside the model computes the firmware's codes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinycodec.export.calibration import default_calib_wavs, fit_codebooks, load_pcm
from tinycodec.export.int8_prepare import prepare_int8_model
from tinycodec.export.int8_quantize import code_agreement, int8_encoder_of
from tinycodec.models import TinyStream


@pytest.fixture(scope="module")
def deployed():
    torch.manual_seed(0)
    model = TinyStream.from_preset("ultra_tiny").eval()
    pcms = [load_pcm(f, 16000, 10.0) for f in default_calib_wavs()]
    fit_codebooks(model, pcms)
    return model, prepare_int8_model(model, pcms[:2]), pcms


def test_model_codes_are_the_int8_reference_codes(deployed):
    _, model, pcms = deployed
    agreement = code_agreement(model, int8_encoder_of(model), pcms[2:])
    assert agreement["frames_all_levels"] == 1.0, agreement
    assert agreement["frames"] > 500


def test_quantize_encoder_reads_the_tables_off_a_deployed_model(deployed):
    from tinycodec.export.int8_quantize import quantize_encoder

    _, model, pcms = deployed
    a, b = quantize_encoder(model), int8_encoder_of(model)
    np.testing.assert_array_equal(a.codebooks, b.codebooks)
    np.testing.assert_array_equal(a.encode(pcms[-1][:16000]), b.encode(pcms[-1][:16000]))


def test_int8_model_streams_exactly(deployed):
    _, model, pcms = deployed
    pcm = pcms[2][16000 * 7: 16000 * 7 + 256 * 30]
    wav = torch.from_numpy(pcm.astype(np.float32) / 32768).reshape(1, 1, -1)
    offline = model.encode(wav)
    with model.streaming(1):
        chunks = [model.encode(wav[..., i:i + 256 * n]) for i, n in zip(range(0, 256 * 30, 256 * 3), [3] * 10)]
    assert torch.equal(torch.cat(chunks, -1), offline)


def test_float_encoder_alone_disagrees_with_the_device(deployed):
    """Why the deployed encoder exists: the float path's codes are not the device's."""
    float_model, model, pcms = deployed
    int8 = int8_encoder_of(model)
    agreement = code_agreement(float_model, int8, pcms[2:])
    assert agreement["frames_all_levels"] < 0.9, agreement


def test_quantization_aware_gradients_reach_the_float_weights(deployed):
    _, model, pcms = deployed
    model = model.train()
    wav = torch.from_numpy(pcms[2][16000 * 8: 16000 * 9].astype(np.float32) / 32768).reshape(1, 1, -1)
    z = model.encoder(wav)
    z.pow(2).mean().backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    model.zero_grad(set_to_none=True)
    model.eval()


def test_encoder_int8_needs_relu():
    from tinycodec.models import get_preset

    cfg = get_preset("soundstream_16k")
    with pytest.raises(ValueError, match="relu"):
        type(cfg)(**(cfg.__dict__ | {"encoder_int8": True}))


def test_a_file_from_before_the_decoder_upgrade_decodes_with_the_upgraded_model():
    """The shipped tiny (server decoder) and its mirror-decoder twin tiny_mirror share the deployed
    encoder and codebooks (one encoder hash): a file one wrote decodes with the other."""
    from tinycodec.bitstream import decode_bytes, encode_bytes
    from tinycodec.bitstream.model_io import encoder_hash
    from tinycodec.pretrained import load_pretrained

    old, new = load_pretrained("tiny_mirror"), load_pretrained("tiny")
    assert encoder_hash(old) == encoder_hash(new) and old.config.decoder != new.config.decoder
    pcm = load_pcm(default_calib_wavs()[2], 16000, 9.0)[16000 * 7:]
    wav = torch.from_numpy(pcm.astype(np.float32) / 32768).reshape(1, 1, -1)
    data = encode_bytes(old, wav)
    out, _ = decode_bytes(data, new)
    with torch.no_grad():
        ref = new.decode(new.encode(wav), length=wav.shape[-1])
    assert float((out.reshape(-1) - ref.reshape(-1)).abs().max()) <= 1e-5


def test_a_version_1_file_of_the_old_tiny_finds_its_weights_under_the_new_name():
    from tinycodec.bitstream import read_tcz_header, write_tcz
    from tinycodec.bitstream.model_io import find_model, weights_hash
    from tinycodec.pretrained import load_pretrained

    v1 = load_pretrained("tiny_v1")
    codes = np.zeros((4, 8), np.int64)
    old = write_tcz(codes, model_id="tiny", model_hash=weights_hash(v1), sample_rate=16000, hop_length=256,
                    length=8 * 256, bits=9, version=1)  # what the CLI wrote before 2026-12
    assert find_model(read_tcz_header(old)).model_id == "tiny_v1"


def test_cached_integer_weights_follow_every_weight_change():
    import torch

    from tinycodec.pretrained import load_pretrained

    model = load_pretrained("tinycodec")
    wav = torch.randn(1, 1, 256 * 20, generator=torch.Generator().manual_seed(0)) * 0.1
    first = model.encode(wav)
    assert torch.equal(model.encode(wav), first)  # the cache serves the same integers
    conv = next(m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv1d) and m.weight.requires_grad)
    saved = conv.weight.detach().clone()
    with torch.no_grad():
        conv.weight.mul_(-1.0)  # an in-place update, as an optimizer step makes
    assert not torch.equal(model.encode(wav), first)
    with torch.no_grad():
        conv.weight.copy_(saved)
    assert torch.equal(model.encode(wav), first)
