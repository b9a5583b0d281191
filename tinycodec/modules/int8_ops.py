"""The int8 op set and its integer arithmetic rules: the one definition every int8 path reads.

An int8 encoder is a list of :class:`Int8Layer` (one row of the C layer table) whose ``op`` is an
:class:`Op`. Every tensor is an integer array with a power-of-two scale, ``real = q * 2**-e``.
The rules, written once here and mirrored by the C firmware (``tc_requantize``, ``tc_residual_add``):

* input: int16 PCM, ``q = sat16(round(x * 2**15))`` (:func:`pcm_from_float`), exponent 15;
* conv weights: ``sat8(round(w * 2**e_w))``, bias ``round(b * 2**(e_x + e_w))`` in int32
  (:func:`quantize_conv`);
* requantize: ``sat8((acc + 2**(s - 1)) >> s)`` with ``s = e_x + e_w - e_y`` (:func:`conv_shift`),
  a left shift without rounding when ``s <= 0`` (:func:`requantize`);
* residual add: both operands shifted left to the finer exponent, summed, requantized
  (:func:`residual_shifts`); ReLU keeps its input's exponent.

:func:`build_layer` is the one builder per op: the int8 reference (:mod:`tinycodec.export.int8`),
the post-training quantizer, the int8-exact model (:mod:`tinycodec.modules.int8_exact`), the C export
and the device budget all take their layers from it. Adding an op means an :class:`Op` member, its
builder here, its kernels (numpy reference, torch runner) and its C twin.

Notebook: book/07_deployment.md
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

from tinycodec.modules.int8_spectrum import check_int32

if TYPE_CHECKING:
    from tinycodec.modules.graph import GraphLayer

PCM_EXPONENT = 15  # int16 PCM: real = q / 32768
PCM_SCALE = float(2**PCM_EXPONENT)
INT8_MIN, INT8_MAX = -128, 127


class Op(StrEnum):
    """The int8 ops (the C ``tc_op_t``: ``TC_OP_`` + the member's name)."""

    LOG_SPECTRUM = "log_spectrum"  # the spectral encoder's integer FFT frontend (no weights)
    CONV1D = "conv1d"  # standard conv, only on the PCM input
    DEPTHWISE = "depthwise"
    POINTWISE = "pointwise"
    RELU = "relu"
    RESIDUAL_ADD = "residual_add"

    @property
    def c_name(self) -> str:
        return f"TC_OP_{self.name}"

    @property
    def is_conv(self) -> bool:
        """Has int8 weights (and a requantization shift ``e_x + e_w - e_y``)."""
        return self in (Op.CONV1D, Op.DEPTHWISE, Op.POINTWISE)

    @property
    def is_elementwise(self) -> bool:
        return self in (Op.RELU, Op.RESIDUAL_ADD)

    @property
    def fuses_relu(self) -> bool:
        """A following ReLU can be folded into this op's saturation (clamp to [0, 127])."""
        return self in (Op.POINTWISE, Op.RESIDUAL_ADD)


@dataclass
class LayerSlot:
    """Where a layer sits in the flat graph: its op and the tensor ids it reads and writes.

    Attributes:
        op (Op): the op (a name such as ``"pointwise"`` becomes its member; an unknown one raises
            ``ValueError``).
        inputs (list[int]): tensor ids read (two for ``residual_add``).
        output (int): tensor id written.
    """

    op: Op
    inputs: list[int]
    output: int

    def __post_init__(self) -> None:
        self.op = Op(self.op)


@dataclass
class Int8Layer(LayerSlot):
    """One step of the int8 graph (a row of the C layer table): a :class:`LayerSlot` and its integers.

    Attributes:
        weight (ndarray | None): int8 [C_out, C_in, k] (conv1d), [C, k] (depthwise), [C_out, C_in].
        bias (ndarray | None): int32 [C_out]; for ``log_spectrum`` the int64 constants
            ``(F, A, B)`` of :func:`~tinycodec.modules.int8_spectrum.spectrum_affine`.
        shift (int): requantization shift.
        shift_a, shift_b (int): alignment shifts of ``residual_add``.
        stride, dilation (int): of the conv (``stride``: the hop of ``log_spectrum``).
        history (int): ``P = k_eff - stride`` input samples kept as streaming state.
        name (str): module path in the encoder.
    """

    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    shift: int = 0
    shift_a: int = 0
    shift_b: int = 0
    stride: int = 1
    dilation: int = 1
    history: int = 0
    name: str = ""


# -- the arithmetic rules ----------------------------------------------------------------------
def pcm_from_float(x) -> np.ndarray:
    """Float audio in [-1, 1] -> int16 PCM values (int64): round half to even, saturate."""
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * PCM_SCALE), -32768, 32767).astype(np.int64)


def conv_shift(e_x: int, e_w: int, e_y: int) -> int:
    """Right shift from a conv's accumulator (exponent ``e_x + e_w``) to its output exponent."""
    return e_x + e_w - e_y


def residual_shifts(e_a: int, e_b: int, e_y: int) -> tuple[int, int, int]:
    """``(shift_a, shift_b, shift)`` of ``residual_add``: both operands aligned to the finer of their
    exponents ``e_m = max(e_a, e_b)``, then requantized to ``e_y``."""
    e_m = max(e_a, e_b)
    return e_m - e_a, e_m - e_b, e_m - e_y


def rounding_half(shift: int) -> int:
    """What :func:`requantize` adds before its right shift: half an output step (0 for a left shift)."""
    return 1 << (shift - 1) if shift > 0 else 0


def requantize(acc: np.ndarray, shift: int) -> np.ndarray:
    """int32 accumulator -> int8: ``sat8((acc + 2**(shift-1)) >> shift)`` (round half up).

    Args:
        acc (ndarray): int64 array holding int32 values.
        shift (int): right shift; ``<= 0`` means a left shift by ``-shift`` (no rounding).

    Returns:
        ndarray: int64 array of values in [-128, 127].
    """
    acc = np.asarray(acc, dtype=np.int64)
    if shift > 0:
        check_int32(acc + rounding_half(shift), "requantize rounding")
        y = (acc + rounding_half(shift)) >> shift  # numpy >> on int64 is floor division, like ASR
    else:
        # |acc| > 128 saturates anyway and 8 bits of left shift saturate any acc != 0: clamping
        # both first keeps int64 from overflowing and matches the C exactly
        y = np.clip(acc, -129, 128) << min(-shift, 8)
    return np.clip(y, INT8_MIN, INT8_MAX)


def quantize_conv(weight: np.ndarray, bias: np.ndarray | None, e_x: int, e_w: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer weights of a conv: ``sat8(round(w 2**e_w))`` and the bias ``round(b 2**(e_x + e_w))``
    (zeros without bias), both float64 arrays holding integers (round half to even, like torch)."""
    w = np.asarray(weight, dtype=np.float64)
    wq = np.clip(np.round(w * 2.0**e_w), INT8_MIN, INT8_MAX)
    b = np.zeros(w.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64)
    return wq, np.round(b * 2.0 ** (e_x + e_w))


# -- one builder per op --------------------------------------------------------------------------
def _conv(g: GraphLayer, exps: dict[int, int], wq: np.ndarray, bq: np.ndarray, e_w: int) -> Int8Layer:
    conv = g.conv
    wq, bq = np.asarray(wq).astype(np.int8), np.asarray(bq).astype(np.int64)
    if np.abs(bq).max(initial=0) > 2**31 - 1:
        raise OverflowError(f"{g.name}: bias does not fit int32")
    bias = bq.astype(np.int32)
    if g.op == Op.DEPTHWISE:  # [C, 1, k] -> [C, k], no bias in the C kernel
        wq, bias = wq[:, 0, :], None
    elif g.op == Op.POINTWISE:  # [C_out, C_in, 1] -> [C_out, C_in]
        wq = wq[:, :, 0]
    return Int8Layer(g.op, list(g.inputs), g.output, weight=wq, bias=bias,
                     shift=conv_shift(exps[g.inputs[0]], e_w, exps[g.output]), stride=conv.stride[0],
                     dilation=conv.dilation[0], history=g.history, name=g.name)


def _relu(g: GraphLayer, exps: dict[int, int], *_) -> Int8Layer:
    return Int8Layer(Op.RELU, list(g.inputs), g.output, name=g.name)


def _residual_add(g: GraphLayer, exps: dict[int, int], *_) -> Int8Layer:
    shift_a, shift_b, shift = residual_shifts(exps[g.inputs[0]], exps[g.inputs[1]], exps[g.output])
    return Int8Layer(Op.RESIDUAL_ADD, list(g.inputs), g.output, shift=shift, shift_a=shift_a, shift_b=shift_b,
                     name=g.name)


def _log_spectrum(g: GraphLayer, exps: dict[int, int], *_) -> Int8Layer:
    spec = g.spectrum
    return Int8Layer(Op.LOG_SPECTRUM, list(g.inputs), g.output,
                     bias=np.array(spec.int8_affine(exps[g.output]), dtype=np.int64), stride=spec.hop,
                     history=spec.n_fft - spec.hop, name=g.name)


BUILDERS = {Op.CONV1D: _conv, Op.DEPTHWISE: _conv, Op.POINTWISE: _conv, Op.RELU: _relu,
            Op.RESIDUAL_ADD: _residual_add, Op.LOG_SPECTRUM: _log_spectrum}


def output_exponent(op: Op, e_in: int, calibrated: int) -> int:
    """Exponent of an op's output: a ReLU keeps its input's scale, every other op takes the
    calibrated one."""
    return e_in if op == Op.RELU else calibrated


def build_layer(g: GraphLayer, exps: dict[int, int], weights: tuple | None = None) -> Int8Layer:
    """The :class:`Int8Layer` of float graph layer ``g``.

    Args:
        g (GraphLayer): from :func:`~tinycodec.modules.graph.extract_graph`.
        exps (dict[int, int]): exponent of every tensor id.
        weights (tuple | None): for a conv, ``(wq, bq, e_w)``: integer weights [C_out, C_in/g, k],
            integer bias [C_out] (:func:`quantize_conv`) and the weight exponent.
    """
    if g.op.is_conv and weights is None:
        raise ValueError(f"{g.name}: a {g.op} layer needs its integer weights")
    return BUILDERS[g.op](g, exps, *(weights or ()))


def fused_relus(layers: list[Int8Layer], output: int) -> list[bool]:
    """Per layer: whether the next layer is a ReLU folded into it (the C table's ``TC_LAYER_RELU``):
    ``layer.op.fuses_relu``, the ReLU reads only this layer's output and nothing else reads it."""
    readers: dict[int, int] = {}
    for layer in layers:
        for t in layer.inputs:
            readers[t] = readers.get(t, 0) + 1
    fused = []
    for i, layer in enumerate(layers):
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        fused.append(bool(layer.op.fuses_relu and nxt is not None and nxt.op == Op.RELU
                          and nxt.inputs == [layer.output] and readers.get(layer.output, 0) == 1
                          and layer.output != output))
    return fused
