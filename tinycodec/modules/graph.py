"""A SEANet or spectral encoder as a flat graph of integer-friendly ops (the int8 layer table).

``extract_graph(encoder)`` walks the module tree into :class:`GraphLayer` rows whose ``op`` is an
:class:`~tinycodec.modules.int8_ops.Op` (``conv1d | depthwise | pointwise | relu | residual_add``)
on numbered tensors (tensor 0 is the input), in execution order. The spectral encoder
(``encoder="stft"``) starts with one more op, ``log_spectrum`` (its fixed FFT frontend, no weights:
the layer's ``spectrum`` is the float :class:`CausalLogSpectrum`), then the same ops. The int8
export, the int8-exact model and the firmware all read this one walk; each row becomes an int8
layer through :func:`tinycodec.modules.int8_ops.build_layer`.

Notebook: book/07_deployment.md
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from tinycodec.modules.conv import StreamingConv1d, StreamingSeparableConv1d
from tinycodec.modules.int8_ops import LayerSlot, Op
from tinycodec.modules.seanet import ResidualUnit
from tinycodec.modules.spectral_encoder import CausalLogSpectrum, SpectralEncoder


@dataclass
class GraphLayer(LayerSlot):
    """One float layer of the flat graph: a :class:`~tinycodec.modules.int8_ops.LayerSlot` and its module.

    Attributes:
        name (str): module path in the encoder.
        history (int): input samples kept as streaming state (``k_eff - stride``; ``n_fft - hop``).
        conv (nn.Conv1d | None): the float conv of a conv op.
        spectrum (CausalLogSpectrum | None): the float frontend of ``log_spectrum``.
    """

    name: str = ""
    history: int = 0
    conv: nn.Conv1d | None = None
    spectrum: CausalLogSpectrum | None = None


def conv_op(conv: nn.Conv1d, name: str = "") -> Op:
    """The int8 op of a float conv: depthwise (groups = channels), pointwise (1x1) or conv1d."""
    c_in, c_out, k = conv.in_channels, conv.out_channels, conv.kernel_size[0]
    if conv.groups == c_in and c_in == c_out and c_in > 1:
        return Op.DEPTHWISE
    if conv.groups == 1 and k == 1 and conv.stride[0] == 1:
        return Op.POINTWISE
    if conv.groups == 1:
        return Op.CONV1D
    raise ValueError(f"{name}: grouped conv with groups={conv.groups} is not supported")


def extract_graph(encoder: nn.Module) -> tuple[list[GraphLayer], dict[int, int]]:
    """Flatten a SEANet or spectral encoder into float layers on tensor ids; tensor 0 is the input.

    Returns:
        tuple: layers (list[GraphLayer]) and channels per tensor id (dict[int, int]).
    """
    layers: list[GraphLayer] = []
    channels = {0: 1}

    def add(op: Op, inputs: list[int], c_out: int, name: str, **extra) -> int:
        out = len(channels)
        channels[out] = c_out
        layers.append(GraphLayer(op, inputs, out, name, **extra))
        return out

    def visit(m: nn.Module, x: int, name: str) -> int:
        if isinstance(m, SpectralEncoder):
            spec = m.spectrum
            x = add(Op.LOG_SPECTRUM, [x], spec.bins, "spectrum", history=spec.n_fft - spec.hop, spectrum=spec)
            return visit(m.layers, x, "layers")
        if isinstance(m, StreamingSeparableConv1d):
            return visit(m.pointwise, visit(m.depthwise, x, name + ".depthwise"), name + ".pointwise")
        if isinstance(m, StreamingConv1d):
            return add(conv_op(m.conv, name), [x], m.conv.out_channels, name, history=m.padding, conv=m.conv)
        if isinstance(m, nn.ReLU):
            return add(Op.RELU, [x], channels[x], name)
        if isinstance(m, ResidualUnit):
            y = visit(m.block, x, name + ".block")
            return add(Op.RESIDUAL_ADD, [x, y], channels[x], name)
        if isinstance(m, nn.Sequential):
            for child_name, child in m.named_children():
                x = visit(child, x, f"{name}.{child_name}" if name else child_name)
            return x
        if hasattr(m, "layers"):
            return visit(m.layers, x, name)
        raise ValueError(f"{name}: {type(m).__name__} has no int8 equivalent (ELU? use TinyStream)")

    visit(encoder, 0, "")
    return layers, channels
