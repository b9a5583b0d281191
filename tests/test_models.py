"""Models: presets, API, config round-trip, streaming == offline, causality, training pass."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from tinycodec.models import (
    PRESETS,
    CodecModel,
    SoundStream,
    SoundStreamConfig,
    TinyStream,
    TinyStreamConfig,
    build_model,
    list_presets,
)

EXPECTED = {  # name: (family, C, D, strides, n_q, K, sample_rate, bitrate)
    "ultra_tiny": ("tinystream", 4, 64, [4, 4, 4, 4], 2, 256, 16000, 1000.0),
    "tiny": ("tinystream", 8, 128, [4, 4, 4, 4], 4, 512, 16000, 2250.0),
    "small": ("tinystream", 12, 192, [4, 4, 4, 4], 4, 1024, 16000, 2500.0),
    "soundstream_tiny": ("soundstream", 16, 256, [2, 4, 5, 8], 8, 1024, 24000, 6000.0),
    "soundstream_small": ("soundstream", 16, 512, [2, 4, 5, 8], 8, 1024, 24000, 6000.0),
    "soundstream_base": ("soundstream", 32, 512, [2, 4, 5, 8], 8, 1024, 24000, 6000.0),
    "soundstream_16k": ("soundstream", 8, 128, [2, 4, 5, 8], 6, 1024, 16000, 3000.0),
    "transformer_tiny": ("transformer", 8, 128, [2, 4, 5, 6], 2, 1024, 16000, 4000.0 / 3),
}


@torch.no_grad()
def _warm(model: CodecModel, seconds: float = 0.1, seed: int = 0) -> CodecModel:
    """Seed each codebook with jittered encoder frames (residuals of the levels before).

    A cheap stand-in for the k-means init (tested in test_quantization.py): codes then
    spread over real encoder output instead of collapsing onto one random code.
    """
    torch.manual_seed(seed)
    model.eval()
    residual = model.encoder(0.5 * torch.randn(2, 1, int(seconds * model.sample_rate)))
    frames = residual.transpose(1, 2).reshape(-1, model.config.D)
    for layer in model.quantizer.layers:
        rows = frames[torch.randint(0, frames.shape[0], (layer.codebook_size,))]
        layer.embed.copy_(rows + 0.3 * rows.std(0) * torch.randn_like(rows))
        frames = frames - layer.embed[layer.encode(frames.t()[None])[0]]
    return model


@pytest.fixture(scope="module")
def warmed():
    cache = {}

    def get(name):
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = _warm(CodecModel.from_preset(name))
        return cache[name]

    return get


def test_presets_are_exactly_as_specified():
    assert list_presets() == list(EXPECTED) == list(PRESETS)
    for name, (family, C, D, strides, n_q, K, sr, bps) in EXPECTED.items():
        cfg = PRESETS[name]
        assert (cfg.family, cfg.C, cfg.D, cfg.strides, cfg.num_quantizers, cfg.codebook_size, cfg.sample_rate) == (
            family, C, D, strides, n_q, K, sr)
        assert cfg.bitrate() == pytest.approx(bps, rel=1e-12)
    ts, ss = TinyStreamConfig(), SoundStreamConfig()
    assert (ts.separable, ts.activation, ts.dilations, ts.quantizer_dropout) == (True, "relu", [1], False)
    assert (ss.separable, ss.activation, ss.dilations, ss.quantizer_dropout) == (False, "elu", [1, 3, 9], True)
    assert list_presets("tinystream") == ["ultra_tiny", "tiny", "small"]


def test_construction_like_the_seed_readmes():
    model = SoundStream(C=32, D=512, strides=[2, 4, 5, 8], num_quantizers=8, codebook_size=1024,
                        sample_rate=24000)
    assert (model.hop_length, model.frame_rate, model.bitrate(), model.bitrate(4)) == (320, 75.0, 6000.0, 3000.0)
    tiny = TinyStream(C=8, D=128, strides=[4, 4, 4, 4], num_quantizers=4, codebook_size=512, sample_rate=16000)
    assert tiny.config == PRESETS["tiny"] and tiny.family == "tinystream" and model.family == "soundstream"
    assert isinstance(TinyStream.from_preset("tiny"), TinyStream)
    assert isinstance(SoundStream.from_preset("soundstream_16k"), SoundStream)
    assert isinstance(CodecModel.from_preset("small"), TinyStream)
    with pytest.raises(ValueError):
        TinyStream.from_preset("soundstream_base")
    with pytest.raises(ValueError):
        CodecModel.from_preset("nope")
    with pytest.raises(ValueError):
        TinyStream(codebook_size=500)


@torch.no_grad()
def test_config_round_trip_rebuilds_identical_model(warmed):
    model = warmed("tiny")
    clone = build_model(model.family, asdict(model.config))
    clone.load_state_dict(model.state_dict())
    clone.eval()
    assert clone.config == model.config and type(clone) is TinyStream
    wav = torch.randn(1, 1, 2048)
    assert torch.equal(clone.encode(wav), model.encode(wav))
    with pytest.raises(ValueError):
        build_model("mp3", {})


@torch.no_grad()
def test_encode_decode_shapes_and_quantizer_signature(warmed):
    model = warmed("ultra_tiny")
    wav = torch.randn(3, 1, 1000)  # not a multiple of hop: offline pads the last frame
    codes = model.encode(wav)
    assert codes.shape == (3, 2, 4) and codes.dtype == torch.long
    assert model.decode(codes).shape == (3, 1, 4 * 256)
    assert model.decode(codes, length=1000).shape == (3, 1, 1000)
    assert model.encode(wav, n_q=1).shape == (3, 1, 4)
    z = model.encoder(torch.nn.functional.pad(wav, (0, 24)))
    quantized, indices, commit = model.quantizer(z)
    assert quantized.shape == z.shape and torch.equal(indices, codes) and commit.dim() == 0
    with pytest.raises(ValueError):
        model.encode(torch.randn(2, 1000))


@pytest.mark.parametrize("name", list(EXPECTED))
@torch.no_grad()
def test_streaming_equals_offline_every_preset(name, warmed):
    model = warmed(name)
    hop = model.hop_length
    gen = torch.Generator().manual_seed(len(name))
    # SoundStream costs ~100x more MACs per second: fewer frames and one stream keep it fast
    n_frames, batch, trials = (8, 1, 1) if name.startswith("soundstream") else (24, 2, 2)
    wav = 0.1 * torch.randn(batch, 1, n_frames * hop, generator=gen)
    codes = model.encode(wav)
    audio = model.decode(codes)
    assert len(codes.unique()) > 4  # informative codes, not one repeated index
    for _ in range(trials):
        sizes, left = [], n_frames
        while left:
            sizes.append(int(torch.randint(1, min(left, 4) + 1, (1,), generator=gen)))
            left -= sizes[-1]
        with model.streaming(batch_size=batch):
            chunk_codes = [model.encode(c) for c in torch.split(wav, [n * hop for n in sizes], dim=-1)]
            chunk_audio = [model.decode(c) for c in chunk_codes]
        assert torch.equal(torch.cat(chunk_codes, -1), codes)
        assert (torch.cat(chunk_audio, -1) - audio).abs().max() <= 1e-5


@torch.no_grad()
def test_streaming_rejects_partial_frames_and_resets(warmed):
    model = warmed("tiny")
    wav = torch.randn(1, 1, 4 * 256)
    with model.streaming(1):
        with pytest.raises(ValueError, match="hop_length"):
            model.encode(torch.randn(1, 1, 300))
        first = model.encode(wav)
        model.reset_streaming()
        assert torch.equal(model.encode(wav), first)
    assert not model.is_streaming


@pytest.mark.parametrize("name", ["ultra_tiny", "tiny", "soundstream_tiny"])
@torch.no_grad()
def test_future_input_never_changes_the_past(name, warmed):
    model = warmed(name)
    hop = model.hop_length
    torch.manual_seed(5)
    past, future = 0.1 * torch.randn(1, 1, 6 * hop), 0.1 * torch.randn(1, 1, 5 * hop)
    codes_past = model.encode(past)
    codes_all = model.encode(torch.cat([past, future], -1))
    assert torch.equal(codes_all[..., :6], codes_past)
    noisy = codes_all.clone()
    noisy[..., 6:] = torch.randint(0, model.config.codebook_size, noisy[..., 6:].shape)
    audio_past = model.decode(codes_past)
    assert (model.decode(noisy)[..., : 6 * hop] - audio_past).abs().max() <= 1e-6
    assert (model.decode(codes_all)[..., : 6 * hop] - audio_past).abs().max() <= 1e-6


@torch.no_grad()
def test_soundstream_decodes_with_fewer_quantizers(warmed):
    model = warmed("soundstream_tiny")
    codes = model.encode(0.5 * torch.randn(1, 1, 8 * 320))
    for n in (1, 2, 4, 8):
        expected = sum(model.quantizer.layers[i].embed[codes[0, i]] for i in range(n)).t()[None]
        assert torch.allclose(model.quantizer.decode(codes[:, :n]), expected, atol=1e-5)
        assert model.decode(codes[:, :n]).shape == (1, 1, 8 * 320)
    # refinement: each extra level lowers the embedding error (small codebooks, so the
    # k-means fit is not trivially exact at level 0)
    torch.manual_seed(1)
    small = SoundStream(C=2, D=8, strides=[2, 2], num_quantizers=4, codebook_size=8, sample_rate=8000).train()
    wav = torch.randn(8, 1, 4 * 100)
    for _ in range(3):
        small(wav, n_q=4)
    small.eval()
    z, codes = small.encoder(wav), small.encode(wav)
    errors = [float((small.quantizer.decode(codes[:, :n]) - z).pow(2).mean()) for n in range(1, 5)]
    assert all(b < a for a, b in zip(errors, errors[1:]))


def test_training_forward_dropout_and_gradients():
    torch.manual_seed(0)
    model = SoundStream(C=2, D=16, strides=[2, 4], num_quantizers=4, codebook_size=16, sample_rate=8000).train()
    wav = 0.1 * torch.randn(16, 1, 8 * 40)
    out = model(wav)
    assert out.reconstruction.shape == wav.shape and out.codes.shape[0] == 16
    assert len(set(out.stats.n_q.tolist())) > 1  # quantizer dropout draws differ per example
    assert out.stats.usage.shape == out.stats.perplexity.shape == (out.codes.shape[1],)
    assert set(out.losses) == {"commitment"}
    (out.reconstruction.pow(2).mean() + out.commitment_loss).backward()
    assert model.encoder.layers[0].conv.weight.grad.abs().sum() > 0  # straight-through reaches the encoder
    tiny = TinyStream(C=2, D=16, num_quantizers=3, codebook_size=16).train()
    assert (tiny(0.1 * torch.randn(8, 1, 512)).stats.n_q == 3).all()
    assert (tiny(0.1 * torch.randn(8, 1, 512), n_q=2).codes.shape[1]) == 2
