"""TinyTransformerCodec: a causal conv VQ-VAE with a small causal transformer in the latent space.

::

    wav [B, 1, T] -> SEANetEncoder -> LatentTransformer -> RVQ (2 x 1024) -> codes [B, 2, F]
    codes -> RVQ.decode -> LatentTransformer -> SEANetDecoder -> wav [B, 1, F * 240]

16 kHz, strides [2, 4, 5, 6]: hop 240 samples = 15 ms, 66.7 frames/s, 2 x 10 bits -> 1.33 kbps.
Each transformer layer is pre-norm, causal, and attends to the last ``context`` frames only
(itself included), with a learned relative-position bias instead of absolute positions. So a
streaming run needs a KV cache of only ``context - 1`` frames, its cost per frame is bounded, and
a chunked run equals the offline run exactly: the cache is part of the moshi-style streaming
state (``with model.streaming(B):`` carries the conv states AND the KV caches; leaving resets).

Device and server exchange only integer tokens: ``model.encoder_module`` (wav -> codes) and
``model.decoder_module`` (codes -> wav) are separate modules sharing this model's weights.

Notebook: book/06_streaming.md
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from tinycodec.models.base import CodecModel, register_model
from tinycodec.models.config import CONFIG_CLASSES, LIMITS, PRESETS, CodecConfig
from tinycodec.modules import SEANetDecoder, SEANetEncoder, State, StreamingModule


@dataclass
class TransformerCodecConfig(CodecConfig):
    """TinyTransformerCodec: SEANet convs + a bounded-context causal transformer on each side."""

    family: ClassVar[str] = "transformer"
    # caps of the transformer's own size-bearing fields (see CodecConfig.check_limits)
    LIMITS: ClassVar[dict[str, tuple[int, int]]] = LIMITS | {
        "num_layers": (0, 64), "num_heads": (1, 64), "ff_mult": (1, 16), "context": (1, 4096)}
    C: int = 8
    D: int = 128  # latent and transformer width
    strides: list[int] = field(default_factory=lambda: [2, 4, 5, 6])  # hop 240 = 15 ms at 16 kHz
    num_quantizers: int = 2
    codebook_size: int = 1024
    sample_rate: int = 16000
    dilations: list[int] = field(default_factory=lambda: [1, 3])
    activation: str = "elu"
    quantizer_dropout: bool = False
    num_layers: int = 2  # transformer layers on EACH side (encoder and decoder)
    num_heads: int = 4
    ff_mult: int = 2  # feed-forward width = ff_mult * D
    context: int = 32  # frames each query attends to, itself included (32 x 15 ms = 480 ms)
    layer_scale: float = 0.01  # residual branch scale at init: starts as the plain conv codec

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.D % self.num_heads:
            raise ValueError(f"D={self.D} is not divisible by num_heads={self.num_heads}")
        if self.context < 1 or self.num_layers < 0:
            raise ValueError("context must be >= 1 and num_layers >= 0")


CONFIG_CLASSES["transformer"] = TransformerCodecConfig
PRESETS["transformer_tiny"] = TransformerCodecConfig()  # ~1.3 kbps, 15 ms hop


MAX_BLOCK = 256  # query frames per attention call


@dataclass
class _KVState(State):
    k: Tensor  # [B, H, L, d] keys of the last L <= context - 1 frames
    v: Tensor  # [B, H, L, d]


class StreamingAttention(StreamingModule):
    """Causal multi-head self-attention over the last ``context`` frames, with a KV cache.

    Query at frame ``t`` sees keys ``t - context + 1 .. t``; the score gets a learned bias per
    head and distance (translation invariant, so no position counter is needed and the cache
    never grows past ``context - 1`` frames).
    """

    def __init__(self, dim: int, num_heads: int, context: int) -> None:
        super().__init__()
        self.num_heads, self.context, self.head_dim = num_heads, context, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.rel_bias = nn.Parameter(torch.zeros(num_heads, context))  # [H, distance]

    def _init_streaming_state(self, batch_size: int) -> _KVState:
        empty = self.qkv.weight.new_zeros(batch_size, self.num_heads, 0, self.head_dim)
        return _KVState(batch_size, empty, empty.clone())

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (Tensor): [B, T, D]. Returns: Tensor: [B, T, D]."""
        state, _ = self._get_state(x.shape[0])  # offline: a fresh state, dropped afterwards
        if x.shape[1] == 0:
            return self.out(x)
        # long offline inputs go in blocks: the score matrix stays [H, 256, 256 + context]
        # instead of [H, T, T], and blocks with a carried cache are the streaming math anyway
        return torch.cat([self._attend(state, x[:, i:i + MAX_BLOCK]) for i in range(0, x.shape[1], MAX_BLOCK)], 1)

    def _attend(self, state: _KVState, x: Tensor) -> Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k = torch.cat([state.k, k], dim=2)  # [B, H, L + T, d]
        v = torch.cat([state.v, v], dim=2)
        L = state.k.shape[2]
        # distance between query t (position L + t in this window) and key j
        dist = (torch.arange(T, device=x.device)[:, None] + L) - torch.arange(L + T, device=x.device)[None]
        allowed = (dist >= 0) & (dist < self.context)  # [T, L + T]
        bias = self.rel_bias[:, dist.clamp(0, self.context - 1)]  # [H, T, L + T]
        bias = bias.masked_fill(~allowed, float("-inf"))
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # [B, H, T, d]
        start = max(0, k.shape[2] - (self.context - 1))  # the next query needs context - 1 keys
        state.k, state.v = k[:, :, start:], v[:, :, start:]
        return self.out(y.transpose(1, 2).reshape(B, T, D))


class TransformerLayer(StreamingModule):
    """Pre-norm block: ``x + g1 * attn(norm(x))``, then ``x + g2 * ff(norm(x))``."""

    def __init__(self, dim: int, num_heads: int, context: int, ff_mult: int, layer_scale: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = StreamingAttention(dim, num_heads, context)
        self.ff = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Linear(ff_mult * dim, dim))
        self.scale1 = nn.Parameter(torch.full((dim,), layer_scale))
        self.scale2 = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (Tensor): [B, T, D]. Returns: Tensor: [B, T, D]."""
        x = x + self.scale1 * self.attn(self.norm1(x))
        return x + self.scale2 * self.ff(self.norm2(x))


class LatentTransformer(StreamingModule):
    """A stack of :class:`TransformerLayer` applied to ``[B, D, F]`` latents (channels first)."""

    def __init__(self, dim: int, num_layers: int, num_heads: int, context: int, ff_mult: int,
                 layer_scale: float) -> None:
        super().__init__()
        self.dim, self.context = dim, context
        self.layers = nn.ModuleList(TransformerLayer(dim, num_heads, context, ff_mult, layer_scale)
                                    for _ in range(num_layers))

    def forward(self, z: Tensor) -> Tensor:
        """Args: z (Tensor): [B, D, F]. Returns: Tensor: [B, D, F]."""
        x = z.transpose(1, 2)  # (B, F, D)
        for layer in self.layers:
            x = layer(x)
        return x.transpose(1, 2)

    def macs_per_frame(self) -> float:
        """Multiply-accumulates per frame in steady state (full context): projections, FF, attention."""
        D, W = self.dim, self.context
        per_layer = 3 * D * D + D * D + 2 * D * (self.layers[0].ff[0].out_features if self.layers else 0)
        per_layer += 2 * W * D  # q.k over W keys, then weights.v
        return float(len(self.layers) * per_layer)


class _Chain(StreamingModule):
    """Run children in order (a Sequential that is also a StreamingModule)."""

    def __init__(self, *mods: nn.Module) -> None:
        super().__init__()
        self.mods = nn.ModuleList(mods)

    def forward(self, x: Tensor) -> Tensor:
        for m in self.mods:
            x = m(x)
        return x


class TokenEncoder(StreamingModule):
    """Device side: wav [B, 1, T] -> codes LongTensor [B, n_q, F] (shares the model's weights)."""

    def __init__(self, encoder: nn.Module, quantizer: nn.Module, hop_length: int) -> None:
        super().__init__()
        self.encoder, self.quantizer, self.hop_length = encoder, quantizer, hop_length

    def forward(self, wav: Tensor, n_q: int | None = None) -> Tensor:
        if self.is_streaming and wav.shape[-1] % self.hop_length:
            raise ValueError(f"streaming input length {wav.shape[-1]} is not a multiple of hop_length={self.hop_length}")
        return self.quantizer.encode(self.encoder(wav), n_q)


class TokenDecoder(StreamingModule):
    """Server side: codes LongTensor [B, n, F] -> wav [B, 1, F * hop_length]."""

    def __init__(self, quantizer: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.quantizer, self.decoder = quantizer, decoder

    def forward(self, codes: Tensor) -> Tensor:
        return self.decoder(self.quantizer.decode(codes))


@register_model
class TinyTransformerCodec(CodecModel):
    """Causal conv VQ-VAE + latent causal transformer; the API is :class:`CodecModel`'s.

    Attributes:
        encoder: SEANetEncoder then LatentTransformer, [B, 1, T] -> [B, D, F].
        decoder: LatentTransformer then SEANetDecoder, [B, D, F] -> [B, 1, F * hop_length].
        encoder_module / decoder_module: token-only halves (see :class:`TokenEncoder`).

    Args:
        config (TransformerCodecConfig | None): or pass its fields as keywords.
    """

    config_class = TransformerCodecConfig
    family = "transformer"

    def __init__(self, config: TransformerCodecConfig | None = None, **kwargs) -> None:
        super().__init__(config, **kwargs)
        c = self.config
        arch = dict(C=c.C, D=c.D, strides=c.strides, dilations=c.dilations, kernel_size=c.kernel_size,
                    activation=c.activation, separable=c.separable)
        tf = dict(dim=c.D, num_layers=c.num_layers, num_heads=c.num_heads, context=c.context,
                  ff_mult=c.ff_mult, layer_scale=c.layer_scale)
        # replace the base class's plain SEANet stacks with conv + transformer chains
        self.encoder = _Chain(SEANetEncoder(**arch), LatentTransformer(**tf))
        self.decoder = _Chain(LatentTransformer(**tf), SEANetDecoder(**arch))

    @property
    def encoder_module(self) -> TokenEncoder:
        """Device half: ``encoder_module(wav [B, 1, T]) -> codes [B, n_q, F]``; has its own
        ``streaming(B)`` block (conv states + KV caches of the encoder side only)."""
        return TokenEncoder(self.encoder, self.quantizer, self.hop_length)

    @property
    def decoder_module(self) -> TokenDecoder:
        """Server half: ``decoder_module(codes [B, n, F]) -> wav [B, 1, F * hop_length]``."""
        return TokenDecoder(self.quantizer, self.decoder)

    def macs_per_second(self) -> dict[str, float]:
        """MACs per second of audio by part (``tinycodec.models.summary`` counts convs only)."""
        from tinycodec.models.summary import conv_macs_per_second

        c, fr = self.config, self.config.frame_rate
        conv_enc, _ = conv_macs_per_second(self.encoder.mods[0], c.sample_rate)
        conv_dec, _ = conv_macs_per_second(self.decoder.mods[1], fr)
        return {
            "encoder": conv_enc + fr * self.encoder.mods[1].macs_per_frame(),
            "search": fr * c.num_quantizers * c.codebook_size * c.D,
            "decoder": conv_dec + fr * self.decoder.mods[0].macs_per_frame(),
        }
