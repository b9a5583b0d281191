"""The server decoder: shapes, size, exact streaming, and the config that picks it."""

from __future__ import annotations

import pytest
import torch

from tinycodec.models import TinyStream, get_preset
from tinycodec.modules.server_decoder import ISTFTHead, ServerDecoder


def test_server_decoder_shapes_and_size():
    cfg = get_preset("tiny")
    cfg.decoder = "server"
    model = TinyStream(config=cfg).eval()
    n = sum(p.numel() for p in model.decoder.parameters())
    assert 1_000_000 <= n <= 5_000_000, n
    wav = torch.randn(2, 1, 256 * 10) * 0.1
    with torch.no_grad():
        assert model(wav).reconstruction.shape == wav.shape
        assert model.decode(model.encode(wav)).shape == (2, 1, 2560)


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_streaming_equals_offline(chunk):
    torch.manual_seed(0)
    dec = ServerDecoder(D=16, hop_length=64, dim=32, num_layers=3).eval()
    q = torch.randn(2, 16, 23)
    with torch.no_grad():
        offline = dec(q)
        with dec.streaming(2):
            parts = [dec(q[..., i:i + chunk]) for i in range(0, 23, chunk)]
    streamed = torch.cat(parts, -1)
    assert streamed.shape == offline.shape == (2, 1, 23 * 64)
    assert float((streamed - offline).abs().max()) <= 1e-6


def test_causal_overlap_add_has_no_lookahead():
    """Output block f depends on frames <= f only."""
    torch.manual_seed(0)
    dec = ServerDecoder(D=8, hop_length=32, dim=16, num_layers=2).eval()
    q = torch.randn(1, 8, 12)
    with torch.no_grad():
        a = dec(q)
        q2 = q.clone()
        q2[..., 7:] = torch.randn(1, 8, 5)
        b = dec(q2)
    assert torch.equal(a[..., : 7 * 32], b[..., : 7 * 32])
    assert not torch.equal(a[..., 7 * 32:], b[..., 7 * 32:])


def test_istft_head_rejects_bad_fft_size():
    with pytest.raises(ValueError, match="multiple"):
        ISTFTHead(8, hop_length=64, n_fft=100)


def test_unknown_decoder_is_a_clear_error():
    cfg = get_preset("tiny")
    with pytest.raises(ValueError, match="unknown decoder"):
        type(cfg)(**(cfg.__dict__ | {"decoder": "huge"}))
