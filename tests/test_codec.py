"""TinyCodec: shapes, types, errors, all families, long inputs (fixtures ``codec``, ``speech`` in conftest)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinycodec.codec import TinyCodec


def test_default_model_is_the_best_shipped_server_decoder_or_a_clear_error(monkeypatch):
    import json
    from pathlib import Path

    import tinycodec.codec
    from tinycodec.pretrained import list_pretrained

    default = TinyCodec()
    assert default.model.config.decoder == "server"
    # the shipped model with the best PESQ-WB + STOI on held-out speech (the README's table)
    speech = json.loads((Path(__file__).parents[1] / "benchmarks" / "quality.json").read_text())["categories"]["speech"]
    rows = {(name, int(codec[len(name) + 3:])): row for name in list_pretrained() for codec, row in speech.items()
            if codec.startswith(f"{name}_nq") and codec[len(name) + 3:].isdigit()}
    full = {name: row for (name, _), row in sorted(rows.items())}  # each model at its most codebooks
    assert max(full, key=lambda n: full[n]["pesq_wb"] + full[n]["stoi"]) == default.model.model_id
    assert TinyCodec("transformer_tiny").model.family == "transformer"
    monkeypatch.setattr(tinycodec.codec, "DEFAULT_MODEL", "not_shipped")  # an install without weights
    with pytest.raises(RuntimeError, match="no shipped reference 'not_shipped' model.*model_path"):
        TinyCodec()


def test_shapes_and_types(codec):
    assert codec.device == torch.device("cpu") and codec.sample_rate == 16000 and codec.hop_length == 240
    one = codec.encode_audio(0.1 * torch.randn(480))
    assert len(one) == 2 and all(isinstance(a, np.ndarray) and a.dtype == np.int64 for a in one)
    assert [a.shape for a in one] == [(1, 2), (1, 2)]
    out = codec.decode_audio(one, original_length=480)
    assert isinstance(out, torch.Tensor) and out.shape == (480,)
    batch = codec.encode_audio(np.float32(0.1) * np.random.default_rng(0).standard_normal((3, 1000), np.float32))
    assert [a.shape for a in batch] == [(3, 5), (3, 5)]  # ceil(1000 / 240) frames
    assert codec.decode_audio(batch, original_length=1000).shape == (3, 1000)
    assert codec.decode_audio(batch).shape == (3, 5 * 240)
    assert codec.decode_audio(one, squeeze=False).shape == (1, 480)
    assert codec.decode_audio([a[0] for a in one]).shape == (480,)  # (F,) arrays mean B = 1


def test_round_trip_equals_the_model(codec):
    x = 0.1 * torch.randn(2, 960)
    with torch.no_grad():
        ref = codec.model.decode(codec.model.encode(x[:, None]))[:, 0]
    assert torch.equal(codec.decode_audio(codec.encode_audio(x), original_length=960), ref)
    coarse = codec.decode_audio(codec.encode_audio(x)[:1], original_length=960)  # first codebook only
    assert coarse.shape == (2, 960) and not torch.equal(coarse, ref)


@pytest.mark.parametrize("spec", ["tiny", "soundstream_16k"])
def test_other_families(spec):
    c = TinyCodec(model_path=spec)
    x = 0.1 * torch.randn(2, 1000)
    idx = c.encode_audio(x)
    frames = -(-1000 // c.hop_length)
    assert len(idx) == c.model.num_quantizers and all(a.shape == (2, frames) for a in idx)
    assert c.decode_audio(idx, original_length=1000).shape == (2, 1000)


def test_errors(codec):
    idx = codec.encode_audio(0.1 * torch.randn(480))
    with pytest.raises(ValueError, match=r"\(L,\) or \(B, L\)"):
        codec.encode_audio(torch.zeros(1, 1, 480))
    with pytest.raises(TypeError, match="floating point"):
        codec.encode_audio(torch.zeros(480, dtype=torch.int16))
    with pytest.raises(ValueError, match="empty"):
        codec.encode_audio(torch.zeros(0))
    with pytest.raises(ValueError, match="NaN"):
        codec.encode_audio(torch.full((480,), float("nan")))
    with pytest.raises(TypeError, match="torch.Tensor or numpy"):
        codec.encode_audio([0.0] * 480)
    with pytest.raises(ValueError, match="3 codebook arrays; this model has 2"):
        codec.decode_audio(idx + idx[:1])
    with pytest.raises(TypeError, match="one integer array per codebook"):
        codec.decode_audio(np.stack(idx))
    with pytest.raises(TypeError, match="must be integers"):
        codec.decode_audio([a.astype(np.float32) for a in idx])
    with pytest.raises(ValueError, match="out of range"):
        codec.decode_audio([idx[0], idx[1] + 1024])
    with pytest.raises(ValueError, match="out of range"):
        codec.decode_audio([idx[0], idx[1] - 1024])
    with pytest.raises(ValueError, match="differ in shape"):
        codec.decode_audio([idx[0], idx[1][:, :1]])
    with pytest.raises(ValueError, match="original_length"):
        codec.decode_audio(idx, original_length=481)
    with pytest.raises(ValueError, match="n_q"):
        TinyCodec(model_path="transformer_tiny", n_q=3)


def test_long_inputs_run_in_chunks_and_max_seconds_bounds_them():
    from tinycodec.bitstream import LimitError

    c = TinyCodec(model_path="tiny", max_seconds=12)
    wav = 0.1 * torch.randn(2, 10 * 16000 + 77, generator=torch.Generator().manual_seed(0))  # > 2 chunks
    idx = c.encode_audio(wav)
    with torch.no_grad():
        codes = c.model.encode(wav[:, None])
        ref = c.model.decode(codes, length=wav.shape[-1])[:, 0]
    assert all(np.array_equal(a, codes[:, q].numpy()) for q, a in enumerate(idx))
    out = c.decode_audio(idx, original_length=wav.shape[-1])
    assert out.shape == ref.shape and (out - ref).abs().max() <= 1e-5
    with pytest.raises(LimitError, match="max_seconds=12"):
        c.encode_audio(torch.zeros(13 * 16000))
    with pytest.raises(LimitError, match="indices of 13.0 s"):
        c.decode_audio([np.zeros(int(13 * 62.5), np.int64)] * 4)
