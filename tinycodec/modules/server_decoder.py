"""Server decoders: a large frame-rate decoder behind a tiny microcontroller encoder.

The mirror decoder (:class:`~tinycodec.modules.seanet.SEANetDecoder`) is as small as the encoder,
because it mirrors it. A server can afford 50x more: :class:`ServerDecoder` works at the frame rate
(62.5 Hz for TinyStream) on the quantized embeddings with ConvNeXt blocks (dense 1x1 layers, where
CPUs are efficient) and turns each frame into a spectrum, which an inverse FFT and an overlap-add
make into audio (the Vocos recipe, Siuzdak 2023), made causal::

    q [B, D, F] -> causal conv k=7 -> N x ConvNeXt block -> LayerNorm -> Linear -> (log|X|, phase)
        -> irfft (n_fft) * window -> causal overlap-add (hop) -> wav [B, 1, F * hop]

    ConvNeXt block:  x + gamma * W2 GELU(W1 LN(dwconv_k7(x)))     (depthwise conv causal)

Causal overlap-add: frame ``f`` synthesises samples ``[f hop, f hop + n_fft)``; output block ``f``
(samples ``[f hop, (f + 1) hop)``) is complete once frame ``f`` is in, so the decoder adds no
look-ahead. Streaming keeps the ``n_fft - hop`` samples of overlap (and each depthwise conv its
``k - 1`` inputs), so chunked == offline exactly.

Notebook: book/04_training.md
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinycodec.modules.conv import StreamingConv1d
from tinycodec.modules.streaming import State, StreamingModule


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a [B, C, T] tensor."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ConvNeXtBlock(StreamingModule):
    """Causal ConvNeXt block at constant width ``dim`` and frame rate.

    Args:
        dim (int): channels.
        mult (int): width of the 1x1 MLP is ``mult * dim``.
        kernel_size (int): taps of the causal depthwise conv.
        layer_scale (float): initial residual-branch scale ``gamma``.
    """

    def __init__(self, dim: int, mult: int = 3, kernel_size: int = 7, layer_scale: float = 0.1) -> None:
        super().__init__()
        self.dwconv = StreamingConv1d(dim, dim, kernel_size, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, mult * dim)
        self.pw2 = nn.Linear(mult * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (Tensor): [B, dim, F]. Returns: Tensor: [B, dim, F]."""
        h = self.dwconv(x).transpose(1, 2)  # [B, F, dim]: the MLP is two dense matmuls
        h = self.pw2(F.gelu(self.pw1(self.norm(h)))) * self.gamma
        return x + h.transpose(1, 2)


@dataclass
class _OLAState(State):
    tail: Tensor  # [B, n_fft - hop] overlap not yet emitted


class ISTFTHead(StreamingModule):
    """Frames -> waveform: per frame a log-magnitude and a phase per bin, an inverse real FFT, a
    Hann window and a causal overlap-add.

    Args:
        dim (int): input channels.
        hop_length (int): samples per frame.
        n_fft (int): FFT size (a multiple of ``hop_length``).
    """

    def __init__(self, dim: int, hop_length: int, n_fft: int) -> None:
        super().__init__()
        if n_fft % hop_length or n_fft < hop_length:
            raise ValueError(f"n_fft={n_fft} must be a positive multiple of hop_length={hop_length}")
        self.hop_length, self.n_fft = hop_length, n_fft
        self.bins = n_fft // 2 + 1
        self.proj = nn.Linear(dim, 2 * self.bins)
        window = torch.hann_window(n_fft, periodic=True)
        # a periodic Hann window sums to n_fft / (2 hop) over overlapping frames: divide it out
        self.register_buffer("window", window * (2 * hop_length / n_fft), persistent=False)

    def _init_streaming_state(self, batch_size: int) -> _OLAState:
        return _OLAState(batch_size, self.window.new_zeros(batch_size, self.n_fft - self.hop_length))

    def frames(self, x: Tensor) -> Tensor:
        """Args: x (Tensor): [B, dim, F]. Returns: Tensor: [B, F, n_fft] windowed frames."""
        p = self.proj(x.transpose(1, 2)).float()  # [B, F, 2 * bins]
        log_mag, phase = p[..., : self.bins], p[..., self.bins:]
        mag = torch.exp(log_mag.clamp(max=8.0))  # |X| <= e^8: no inf from a wild step
        spec = torch.polar(mag, phase)
        return torch.fft.irfft(spec, n=self.n_fft) * self.window

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (Tensor): [B, dim, F]. Returns: Tensor: [B, 1, F * hop]."""
        state, persistent = self._get_state(x.shape[0])
        B, _, n = x.shape
        hop, overlap = self.hop_length, self.n_fft - self.hop_length
        if n == 0:
            return x.new_zeros(B, 1, 0)
        frames = self.frames(x)  # [B, F, n_fft]
        length = (n - 1) * hop + self.n_fft
        y = F.fold(frames.transpose(1, 2), output_size=(1, length), kernel_size=(1, self.n_fft),
                   stride=(1, hop)).reshape(B, length)
        if overlap:
            y = torch.cat([y[:, :overlap] + state.tail, y[:, overlap:]], dim=1)
        if persistent:
            state.tail = y[:, n * hop:]
        return y[:, None, : n * hop]


class ServerDecoder(StreamingModule):
    """Quantized embeddings [B, D, F] -> waveform [B, 1, F * hop] (see the module docstring).

    Args:
        D (int): embedding dimension (the quantizer's).
        hop_length (int): samples per frame.
        dim (int): width of the ConvNeXt blocks.
        num_layers (int): ConvNeXt blocks.
        n_fft (int | None): FFT size of the head (default ``4 * hop_length``).
        mult (int): MLP width multiplier.
    """

    def __init__(self, D: int, hop_length: int, dim: int = 256, num_layers: int = 8, n_fft: int | None = None,
                 mult: int = 3) -> None:
        super().__init__()
        self.embed = StreamingConv1d(D, dim, 7)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, mult, layer_scale=1.0 / math.sqrt(num_layers))
                                    for _ in range(num_layers))
        self.norm = ChannelLayerNorm(dim)
        self.head = ISTFTHead(dim, hop_length, n_fft or 4 * hop_length)

    def forward(self, q: Tensor) -> Tensor:
        """Args: q (Tensor): [B, D, F]. Returns: Tensor: [B, 1, F * hop_length]."""
        x = self.embed(q)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))
