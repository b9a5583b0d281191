"""The server decoder: shapes, size, exact streaming, and the config that picks it."""

from __future__ import annotations

import pytest
import torch

from tinycodec.models import TinyStream, get_preset
from tinycodec.modules.server_decoder import (
    DEFAULT_DELAY,
    DEFAULT_FFT_HOPS,
    HeadGeometry,
    ISTFTHead,
    ServerDecoder,
)


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


@pytest.mark.parametrize("delay, n_fft", [(0, 1024), (1, 512), (2, 1024)])
def test_delayed_decoder_uses_the_frames_that_heard_a_block(delay, n_fft):
    """Frame k has heard input blocks <= k. With ``decoder_delay = d`` the aligned offline output
    block k - d is the first one frame k shapes (frames k - d .. k, which heard it, write it); every
    sample before it stays exactly as it was. Without delay frame k reaches only blocks >= k."""
    torch.manual_seed(0)
    model = TinyStream(decoder="server", decoder_delay=delay, decoder_n_fft=n_fft, decoder_dim=32,
                       decoder_layers=2).eval()
    hop, k = model.hop_length, 7
    assert model.delay == delay * hop
    q = torch.randn(1, model.config.D, 12)
    changed = q.clone()
    changed[..., k] = torch.randn(model.config.D)
    with torch.no_grad():
        a, b = model.synthesize(q), model.synthesize(changed)
        wav = torch.randn(1, 1, 12 * hop - 5) * 0.1
        assert model(wav).reconstruction.shape == model.decode(model.encode(wav), wav.shape[-1]).shape == wav.shape
    assert a.shape == (1, 1, 12 * hop)
    first = (k - delay) * hop
    assert torch.equal(a[..., :first], b[..., :first])
    assert not torch.equal(a[..., first:first + hop], b[..., first:first + hop])


@pytest.mark.parametrize("chunk", [1, 3])
def test_delayed_decoder_streams_the_offline_output_late(chunk):
    """A stream hears the delay as latency: chunked output == offline output shifted by ``delay``."""
    torch.manual_seed(0)
    model = TinyStream(decoder="server", decoder_delay=1, decoder_n_fft=512, decoder_dim=32, decoder_layers=2).eval()
    codes = model.encode(torch.randn(1, 1, 11 * 256) * 0.1)
    with torch.no_grad():
        offline = model.decode(codes)
        with model.streaming(1):
            streamed = torch.cat([model.decode(codes[..., i:i + chunk]) for i in range(0, 11, chunk)], -1)
    assert streamed.shape == offline.shape
    assert float((streamed[..., 256:] - offline[..., :-256]).abs().max()) <= 1e-6


def test_decoder_delay_beyond_the_window_is_a_clear_error():
    with pytest.raises(ValueError, match="delay=2 frames must lie in 0..1"):
        TinyStream(decoder="server", decoder_delay=2, decoder_n_fft=512)
    with pytest.raises(ValueError, match="delay=4 frames must lie in 0..1"):
        ServerDecoder(D=8, hop_length=32, delay=4)
    with pytest.raises(ValueError, match="n_fft=96 must be a positive multiple of hop_length=64"):
        HeadGeometry(64, 96)


def test_one_geometry_for_the_config_and_the_decoder():
    """The FFT size and the delay have one set of defaults and one check (HeadGeometry): a config that
    leaves them at their defaults and a ServerDecoder built without them get the same head."""
    model = TinyStream(decoder="server", decoder_dim=32, decoder_layers=1)
    bare = ServerDecoder(D=model.config.D, hop_length=model.hop_length, dim=32, num_layers=1)
    hop = model.hop_length
    assert model.config.server_geometry == bare.geometry == HeadGeometry(hop, DEFAULT_FFT_HOPS * hop, DEFAULT_DELAY)
    assert (model.decoder.head.n_fft, model.delay) == (bare.head.n_fft, bare.delay) == (2 * hop, hop)
    assert HeadGeometry(hop, 4 * hop, 3).hops == 4


def test_server_configs_saved_before_the_delay_keep_their_geometry():
    """A stored server config without ``decoder_delay`` was trained with no delay and a 4-hop FFT; a new
    one gets today's defaults (one frame of delay, a 2-hop FFT)."""
    from dataclasses import asdict

    from tinycodec.models import build_model

    old = asdict(get_preset("tiny")) | {"decoder": "server", "decoder_dim": 32, "decoder_layers": 1}
    new = dict(old)
    del old["decoder_delay"]
    old["decoder_n_fft"] = 0
    a, b = build_model("tinystream", old), build_model("tinystream", new)
    assert (a.delay, a.decoder.head.n_fft) == (0, 1024)
    assert (b.delay, b.decoder.head.n_fft) == (256, 512)


def test_run_streaming_of_a_delayed_decoder_equals_offline():
    """``run_streaming`` drops the stream's lag and flushes the held-back end: offline == streamed."""
    from tinycodec.streaming import run_streaming

    torch.manual_seed(0)
    model = TinyStream(decoder="server", decoder_delay=1, decoder_n_fft=512, decoder_dim=32, decoder_layers=2).eval()
    wav = torch.randn(1, 1, 9 * 256 + 100) * 0.1
    with torch.no_grad():
        offline = model.decode(model.encode(wav), wav.shape[-1])
    streamed = run_streaming(model, wav, chunk=512)
    assert streamed.shape == offline.shape
    assert float((streamed - offline).abs().max()) <= 1e-6
    with pytest.raises(RuntimeError, match="flush"):
        model.flush()


def test_summary_latency_counts_the_decoder_delay():
    from tinycodec.models.summary import summary

    mirror = TinyStream.from_preset("tiny")
    delayed = TinyStream(decoder="server", decoder_delay=1, decoder_dim=32, decoder_layers=1)
    assert summary(mirror).latency_ms == 16.0
    assert summary(delayed).latency_ms == 32.0


def test_chunked_decoders_of_a_delayed_model_return_the_offline_audio(tmp_path):
    """``.tcz`` decoding and ``TinyCodec.decode_audio`` stream chunk by chunk: a delayed decoder's lag
    is dropped and its held-back end flushed, so both equal the offline decode (not 16 ms late)."""
    from tinycodec import TinyCodec
    from tinycodec.bitstream import decode_bytes, encode_bytes
    from tinycodec.train import export_weights

    torch.manual_seed(0)
    model = TinyStream(decoder="server", decoder_delay=1, decoder_n_fft=512, decoder_dim=32, decoder_layers=2).eval()
    wav = torch.randn(1, 1, 70 * 256 + 100) * 0.1  # more than one chunk of frames
    with torch.no_grad():
        codes = model.encode(wav)
        offline = model.decode(codes, wav.shape[-1])
    assert model.delay == 256
    from_file, _ = decode_bytes(encode_bytes(model, wav[0, 0]), model)
    assert from_file.shape == offline.shape
    assert float((from_file - offline).abs().max()) <= 1e-5
    codec = TinyCodec(str(export_weights(model, tmp_path / "delayed.safetensors")))
    out = codec.decode_audio(list(codes[0]), original_length=wav.shape[-1])
    assert out.shape == (wav.shape[-1],)
    assert float((out - offline[0, 0]).abs().max()) <= 1e-5
