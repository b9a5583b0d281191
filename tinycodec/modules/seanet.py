"""SEANet-style encoder and decoder built from causal streaming convs.

Encoder: ``conv(1 -> C, k=7)``, then one block per stride ``s_i`` with ``C_i = C * 2**(i+1)``
channels (residual units at ``C_i / 2`` channels, then a ``k = 2 s_i`` strided conv
``C_i / 2 -> C_i``), then ``conv(16 C -> D, k=3)``. The decoder mirrors it with
transposed convs. SoundStream uses standard convs, ELU and 3 residual units
(dilations 1, 3, 9); TinyStream uses depthwise-separable convs, ReLU and 1 unit.

Notebook: book/02_architecture.md
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from tinycodec.modules.conv import make_conv, make_conv_transpose
from tinycodec.modules.streaming import StreamingModule

ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU}


def make_activation(name: str) -> nn.Module:
    """``"elu"`` or ``"relu"``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class ResidualUnit(StreamingModule):
    """``x + conv1x1(act(conv_k,d(act(x))))`` at constant channels and rate.

    Args:
        channels (int): C of input and output.
        dilation (int): dilation of the ``kernel_size`` conv.
        kernel_size (int): 7 in SoundStream.
        activation (str): ``"elu"`` or ``"relu"``.
        separable (bool): depthwise-separable ``k``-tap conv.
    """

    def __init__(self, channels: int, dilation: int, kernel_size: int = 7, activation: str = "elu",
                 separable: bool = False) -> None:
        super().__init__()
        self.block = nn.Sequential(
            make_activation(activation),
            make_conv(separable, channels, channels, kernel_size, dilation=dilation),
            make_activation(activation),
            make_conv(separable, channels, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (Tensor): [B, C, T]. Returns: Tensor: [B, C, T]."""
        return x + self.block(x)


class EncoderBlock(nn.Sequential):
    """Residual units at ``out_channels // 2``, then a causal ``k = 2s`` strided conv."""

    def __init__(self, out_channels: int, stride: int, dilations: Sequence[int], kernel_size: int,
                 activation: str, separable: bool) -> None:
        hidden = out_channels // 2
        layers: list[nn.Module] = [
            ResidualUnit(hidden, d, kernel_size, activation, separable) for d in dilations
        ]
        layers += [make_activation(activation),
                   make_conv(separable, hidden, out_channels, 2 * stride, stride=stride)]
        super().__init__(*layers)


class DecoderBlock(nn.Sequential):
    """A causal ``k = 2s`` transposed conv ``in -> in // 2``, then residual units."""

    def __init__(self, in_channels: int, stride: int, dilations: Sequence[int], kernel_size: int,
                 activation: str, separable: bool) -> None:
        out = in_channels // 2
        layers: list[nn.Module] = [make_activation(activation),
                                   make_conv_transpose(separable, in_channels, out, 2 * stride, stride)]
        layers += [ResidualUnit(out, d, kernel_size, activation, separable) for d in dilations]
        super().__init__(*layers)


class SEANetEncoder(StreamingModule):
    """Waveform [B, 1, T] -> embeddings [B, D, T / prod(strides)].

    Args:
        C (int): base channels; block ``i`` has ``C * 2**(i+1)`` channels.
        D (int): embedding dimension.
        strides (Sequence[int]): downsampling factors, in order.
        dilations (Sequence[int]): one residual unit per dilation in each block.
        kernel_size (int): kernel of first conv and residual units.
        activation (str): ``"elu"`` or ``"relu"``.
        separable (bool): depthwise-separable convs (TinyStream).
    """

    def __init__(self, C: int, D: int, strides: Sequence[int], dilations: Sequence[int],
                 kernel_size: int = 7, activation: str = "elu", separable: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [make_conv(separable, 1, C, kernel_size)]
        channels = C
        for stride in strides:
            layers.append(EncoderBlock(2 * channels, stride, dilations, kernel_size, activation, separable))
            channels *= 2
        layers += [make_activation(activation), make_conv(separable, channels, D, 3)]
        self.layers = nn.Sequential(*layers)

    def forward(self, wav: Tensor) -> Tensor:
        """Args: wav (Tensor): [B, 1, T]. Returns: Tensor: [B, D, T // hop_length]."""
        return self.layers(wav)


class SEANetDecoder(StreamingModule):
    """Embeddings [B, D, F] -> waveform [B, 1, F * prod(strides)] (mirror of the encoder)."""

    def __init__(self, C: int, D: int, strides: Sequence[int], dilations: Sequence[int],
                 kernel_size: int = 7, activation: str = "elu", separable: bool = False) -> None:
        super().__init__()
        channels = C * 2 ** len(strides)
        layers: list[nn.Module] = [make_conv(separable, D, channels, kernel_size)]
        for stride in reversed(list(strides)):
            layers.append(DecoderBlock(channels, stride, dilations, kernel_size, activation, separable))
            channels //= 2
        layers += [make_activation(activation), make_conv(separable, channels, 1, kernel_size)]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        """Args: z (Tensor): [B, D, F]. Returns: Tensor: [B, 1, F * hop_length]."""
        return self.layers(z)
