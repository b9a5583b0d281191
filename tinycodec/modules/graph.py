"""A SEANet encoder as a flat graph of integer-friendly ops (the int8 reference and the C layer table).

``extract_graph(encoder)`` walks the module tree into layers ``conv1d | depthwise | pointwise |
relu | residual_add`` on numbered tensors (tensor 0 is the input), in execution order. The spectral
encoder (``encoder="stft"``) starts with one more op, ``log_spectrum`` (its fixed FFT frontend, no
weights: the layer's ``module`` is the float :class:`CausalLogSpectrum`), then the same ops. The int8
export, the int8-exact training encoder and the firmware all read this one walk.

Notebook: book/07_deployment.md
"""

from __future__ import annotations

from torch import nn

from tinycodec.modules.conv import StreamingConv1d, StreamingSeparableConv1d
from tinycodec.modules.seanet import ResidualUnit
from tinycodec.modules.spectral_encoder import SpectralEncoder


def extract_graph(encoder: nn.Module) -> tuple[list[dict], dict[int, int]]:
    """Flatten a SEANet encoder into float layers (dicts) on tensor ids; tensor 0 is the input.

    Returns:
        tuple: layers (op, inputs, output, conv module, history) and channels per tensor id.
    """
    layers: list[dict] = []
    channels = {0: 1}

    def add(op: str, inputs: list[int], c_out: int, conv: nn.Conv1d | None = None, history: int = 0,
            name: str = "", **extra) -> int:
        out = len(channels)
        channels[out] = c_out
        layers.append(dict(op=op, inputs=inputs, output=out, conv=conv, history=history, name=name, **extra))
        return out

    def visit(m: nn.Module, x: int, name: str) -> int:
        if isinstance(m, SpectralEncoder):
            spec = m.spectrum
            x = add("log_spectrum", [x], spec.bins, history=spec.n_fft - spec.hop, name="spectrum", module=spec)
            return visit(m.layers, x, "layers")
        if isinstance(m, StreamingSeparableConv1d):
            return visit(m.pointwise, visit(m.depthwise, x, name + ".depthwise"), name + ".pointwise")
        if isinstance(m, StreamingConv1d):
            conv = m.conv
            c_in, c_out, k = conv.in_channels, conv.out_channels, conv.kernel_size[0]
            if conv.groups == c_in and c_in == c_out and c_in > 1:
                op = "depthwise"
            elif conv.groups == 1 and k == 1 and conv.stride[0] == 1:
                op = "pointwise"
            elif conv.groups == 1:
                op = "conv1d"
            else:
                raise ValueError(f"{name}: grouped conv with groups={conv.groups} is not supported")
            return add(op, [x], c_out, conv, m.padding, name)
        if isinstance(m, nn.ReLU):
            return add("relu", [x], channels[x], name=name)
        if isinstance(m, ResidualUnit):
            y = visit(m.block, x, name + ".block")
            return add("residual_add", [x, y], channels[x], name=name)
        if isinstance(m, nn.Sequential):
            for child_name, child in m.named_children():
                x = visit(child, x, f"{name}.{child_name}" if name else child_name)
            return x
        if hasattr(m, "layers"):
            return visit(m.layers, x, name)
        raise ValueError(f"{name}: {type(m).__name__} has no int8 equivalent (ELU? use TinyStream)")

    visit(encoder, 0, "")
    return layers, channels
