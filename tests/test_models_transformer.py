"""TinyTransformerCodec: streaming == offline (conv states + KV cache), causality, bounded
context, token-only halves, registry, one training step and checkpoint round trip."""

from __future__ import annotations

import random

import numpy as np
import pytest
import soundfile as sf
import torch

from tinycodec.models import TinyTransformerCodec, TransformerCodecConfig, build_model
from tinycodec.models.transformer import LatentTransformer

SMALL = dict(C=4, D=32, num_heads=2, codebook_size=64, dilations=[1])  # fast, same structure


def strong(model: TinyTransformerCodec) -> TinyTransformerCodec:
    """Make the transformer matter: unit layer scale and random relative biases (init is ~identity)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("scale1", "scale2")):
                p.fill_(1.0)
            elif name.endswith("rel_bias"):
                p.copy_(torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def model() -> TinyTransformerCodec:
    torch.manual_seed(0)
    return strong(TinyTransformerCodec(**SMALL))


def chunked(model, x: torch.Tensor, rng: random.Random, max_frames: int = 9):
    hop, codes, wavs, pos = model.hop_length, [], [], 0
    with model.streaming(x.shape[0]):
        while pos < x.shape[-1]:
            n = min(rng.randint(1, max_frames) * hop, x.shape[-1] - pos)
            c = model.encode(x[..., pos:pos + n])
            codes.append(c)
            wavs.append(model.decode(c))
            pos += n
        state = model.get_streaming_state()["encoder.mods.1.layers.0.attn"]
        cache_len = state.k.shape[2]
    return torch.cat(codes, -1), torch.cat(wavs, -1), cache_len


@pytest.mark.parametrize("seed", [0, 1, 2])
@torch.no_grad()
def test_stateful_streaming_equals_offline(model, seed):
    torch.manual_seed(seed)
    x = 0.1 * torch.randn(2, 1, 80 * model.hop_length)  # 80 frames > 2 x context
    codes_off = model.encode(x)
    wav_off = model.decode(codes_off)
    codes, wav, cache_len = chunked(model, x, random.Random(seed))
    assert torch.equal(codes, codes_off)
    assert (wav - wav_off).abs().max() < 1e-5
    assert cache_len == model.config.context - 1  # the KV cache is bounded


@torch.no_grad()
def test_preset_streams_exactly_and_leaving_resets():
    torch.manual_seed(0)
    m = strong(TinyTransformerCodec(TransformerCodecConfig()))  # the transformer_tiny architecture
    x = 0.1 * torch.randn(1, 1, 40 * m.hop_length)
    off = m.decode(m.encode(x))
    _, wav, _ = chunked(m, x, random.Random(5))
    assert (wav - off).abs().max() < 1e-5
    assert not m.is_streaming and all(state is None for state in m.get_streaming_state().values())
    with m.streaming(1):  # reset_streaming: a second stream starts from zeros again
        m.encode(x[..., : 5 * m.hop_length])
        m.reset_streaming()
        first = m.decode(m.encode(x[..., : 3 * m.hop_length]))
    assert (first - off[..., : 3 * m.hop_length]).abs().max() < 1e-5


@torch.no_grad()
def test_encoder_and_decoder_are_causal(model):
    hop = model.hop_length
    x = 0.1 * torch.randn(1, 1, 30 * hop)
    t0 = 17 * hop + 5
    y = x.clone()
    y[..., t0:] = torch.randn_like(y[..., t0:])
    zx, zy = model.encoder(x), model.encoder(y)
    assert torch.equal(zx[..., : t0 // hop], zy[..., : t0 // hop])
    assert not torch.equal(zx[..., t0 // hop:], zy[..., t0 // hop:])
    codes = model.encode(x)
    other = codes.clone()
    other[..., 20:] = (other[..., 20:] + 1) % model.config.codebook_size
    a, b = model.decode(codes), model.decode(other)
    assert torch.equal(a[..., : 20 * hop], b[..., : 20 * hop])
    assert not torch.equal(a[..., 20 * hop:], b[..., 20 * hop:])


@torch.no_grad()
def test_attention_context_is_bounded():
    torch.manual_seed(0)
    W = 6
    lt = LatentTransformer(16, num_layers=1, num_heads=2, context=W, ff_mult=2, layer_scale=1.0).eval()
    z = torch.randn(1, 16, 20)
    z2 = z.clone()
    z2[..., 3] = torch.randn(16)  # not a constant shift: LayerNorm would remove that
    diff = (lt(z) - lt(z2)).abs().amax(1)[0]  # [F]
    assert (diff[:3] == 0).all()  # the past never sees the future
    assert (diff[3:3 + W] > 1e-3).all()  # frames 3 .. 3 + W - 1 attend to frame 3
    assert (diff[3 + W:] == 0).all()  # beyond the context: frame 3 is forgotten


@torch.no_grad()
def test_token_only_halves(model):
    x = 0.1 * torch.randn(2, 1, 12 * model.hop_length)
    enc, dec = model.encoder_module, model.decoder_module
    codes = enc(x)
    assert codes.dtype == torch.long and torch.equal(codes, model.encode(x))
    assert torch.equal(dec(codes), model.decode(codes))
    with enc.streaming(2), dec.streaming(2):  # each side streams on its own
        out = torch.cat([dec(enc(c)) for c in x.split(3 * model.hop_length, -1)], -1)
    assert (out - model.decode(codes)).abs().max() < 1e-5
    with pytest.raises(ValueError, match="multiple of hop_length"), enc.streaming(2):
        enc(x[..., :100])


def test_registry_presets_and_summary():
    from tinycodec.models import CONFIG_CLASSES, MODEL_CLASSES, PRESETS
    from tinycodec.models.summary import summary
    from tinycodec.pretrained import load_model
    from tinycodec.train.config import model_families

    assert MODEL_CLASSES["transformer"] is TinyTransformerCodec and "transformer" in model_families()
    assert CONFIG_CLASSES["transformer"] is TransformerCodecConfig and "transformer_tiny" in PRESETS
    m = load_model("transformer_tiny")
    assert isinstance(m, TinyTransformerCodec)
    assert (m.hop_length, m.sample_rate, m.num_quantizers, m.config.codebook_size) == (240, 16000, 2, 1024)
    assert abs(m.bitrate() - 2 * 10 * 16000 / 240) < 1e-9
    rebuilt = build_model("transformer", m.config_dict())
    assert rebuilt.config == m.config
    s = summary(m)  # the conv walk ignores Linear layers: the model's own hook counts them
    macs = m.macs_per_second()
    assert macs["encoder"] > s.macs_encoder and macs["decoder"] > s.macs_decoder
    with pytest.raises(ValueError, match="divisible"):
        TransformerCodecConfig(D=30, num_heads=4)


def test_train_step_and_checkpoint_round_trip(tmp_path):
    from tinycodec.codec import TinyCodec
    from tinycodec.pretrained import load_model
    from tinycodec.train import TrainConfig, export_weights, load_checkpoint, train
    from tinycodec.train.discriminators import DiscriminatorConfig

    rng = np.random.default_rng(0)
    for i in range(8):  # the AudioFolder hash split needs a few files to fill train and val
        sf.write(tmp_path / f"clip_{i}.wav", (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
    disc = DiscriminatorConfig(wave_channels=4, wave_max_channels=16, wave_downsample_layers=2,
                               stft_channels=4, stft_n_fft=256, stft_hop_length=64)
    cfg = TrainConfig(model="transformer", preset="transformer_tiny", audio_dir=str(tmp_path), batch_size=2,
                      audio_length=0.12, val_clips=1, val_length=0.12, disc=disc,
                      model_overrides=dict(SMALL, codebook_size=16), checkpoint_dir=str(tmp_path / "ckpt"),
                      log_dir=None, max_steps=1, val_interval=1000, save_interval=1000, progress=False,
                      seed=0, num_threads=1)
    result = train(cfg)
    assert result.step == 1 and result.skipped_steps == 0
    loaded = load_checkpoint(result.checkpoint)
    assert isinstance(loaded, TinyTransformerCodec) and loaded.config.D == 32
    for k, v in result.model.state_dict().items():
        assert torch.equal(v.cpu(), loaded.state_dict()[k]), k
    weights = export_weights(result.checkpoint, tmp_path / "w.safetensors")
    x = 0.1 * torch.randn(1, 1, 4 * loaded.hop_length)
    with torch.no_grad():
        ref = loaded.eval().decode(loaded.encode(x))
        assert torch.equal(load_model(str(weights)).decode(load_model(str(weights)).encode(x)), ref)
    codec = TinyCodec(model_path=result.checkpoint)
    assert torch.equal(codec.decode_audio(codec.encode_audio(x[0, 0])), ref[0, 0])


@torch.no_grad()
def test_offline_attention_in_blocks_equals_one_block(monkeypatch):
    import tinycodec.models.transformer as tt

    torch.manual_seed(0)
    lt = strong(TinyTransformerCodec(**SMALL)).decoder.mods[0]
    z = torch.randn(1, 32, 50)
    monkeypatch.setattr(tt, "MAX_BLOCK", 1000)
    whole = lt(z)
    monkeypatch.setattr(tt, "MAX_BLOCK", 7)  # long files: bounded memory, same math
    assert (lt(z) - whole).abs().max() < 1e-5
