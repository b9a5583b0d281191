"""The int8 graph at inference speed in torch: the int8 reference's integers from fast kernels.

:class:`Int8Runner` runs a list of :class:`~tinycodec.modules.int8_ops.Int8Layer` (built once from
the integer weights) on a batch, with three choices that change the speed and not one integer:

* layout: time-major ``[B, T, C]``, so a pointwise layer is one matrix product over ``B T`` rows
  and a depthwise layer ``k`` multiply-adds over unfolded taps (no per-channel conv kernel);
* dtype: float32 wherever every partial sum of a layer is an integer below ``2**24`` (then float32
  is exact in any summation order), float64 where it is not, on the int16 PCM input, and everywhere
  while torch's float32 matrix products may round (``torch.get_float32_matmul_precision()`` other
  than ``"highest"``: TF32, bf16); int32 accumulators are below ``2**53``; int64 for the integer
  FFT of ``log_spectrum``;
* requantization folded into the weights: with ``s`` the layer's shift, the weights times
  ``2**-s`` and the bias plus half a step times ``2**-s`` give ``(acc + 2**(s-1)) / 2**s`` exactly
  (powers of two only move the exponent), so :func:`~tinycodec.modules.int8_ops.requantize` is
  ``floor`` then ``clamp`` to [-128, 127], or to [0, 127] where a ReLU is fused
  (:func:`~tinycodec.modules.int8_ops.fused_relus`).

Streaming state per layer with history: the last ``P`` input rows ``[B, P, C]``; a fresh zero state
is the offline run, so chunked == offline by construction.

Notebook: book/07_deployment.md
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tinycodec.modules.int8_ops import PCM_EXPONENT, Int8Layer, Op, fused_relus, rounding_half
from tinycodec.modules.int8_spectrum import log_spectrum_torch

FLOAT32_EXACT = 2**24  # every integer of magnitude <= 2**24 is a float32


@dataclass
class _Step:
    layer: Int8Layer
    lo: float = -128.0  # 0 where a ReLU is fused
    weight: Tensor | None = None  # scaled: pointwise [C_in, C_out], conv1d [C_in k, C_out], depthwise [C, k]
    bias: Tensor | None = None  # scaled (b + half) 2**-s [C_out] (depthwise: the half only)
    scale_a: float = 1.0  # residual_add: 2**(shift_a - s), 2**(shift_b - s), half 2**-s
    scale_b: float = 1.0
    half: float = 0.0
    dtype: torch.dtype = torch.float32
    skip: bool = False  # a ReLU folded into the previous step


def _exact_dtype(bound: float) -> torch.dtype:
    return torch.float32 if bound <= FLOAT32_EXACT else torch.float64


class Int8Runner:
    """Runs int8 layers in torch on whole batches, bit-identical to :mod:`tinycodec.export.int8`.

    Args:
        layers (list[Int8Layer]): the graph (tensor 0: int16 PCM).
        channels (dict[int, int]): channels per tensor id.
        device (torch.device | str): where the prepared weights live.
    """

    def __init__(self, layers: list[Int8Layer], channels: dict[int, int], device="cpu") -> None:
        self.layers, self.channels = layers, channels
        self.output = layers[-1].output
        self.float_input = any(lay.inputs[0] == 0 and lay.op != Op.LOG_SPECTRUM for lay in layers)
        self.device = device
        self.steps = self._build(force64=False)
        self._steps64: list[_Step] | None = None

    def _build(self, force64: bool) -> list[_Step]:
        layers, device = self.layers, self.device
        fused = fused_relus(layers, self.output)
        steps = []
        for i, layer in enumerate(layers):
            step = _Step(layer, lo=0.0 if fused[i] else -128.0, skip=i > 0 and fused[i - 1])
            if layer.op == Op.LOG_SPECTRUM and layer.inputs[0] != 0:
                raise ValueError(f"{layer.name}: log_spectrum reads the PCM input (tensor 0), not {layer.inputs[0]}")
            x_max = 2.0**PCM_EXPONENT if layer.inputs[0] == 0 else 128.0
            if layer.op.is_conv:
                s = layer.shift
                w = layer.weight.astype(np.float64)
                b = np.zeros(w.shape[0]) if layer.bias is None else layer.bias.astype(np.float64)
                bound = np.abs(w).reshape(w.shape[0], -1).sum(1).max() * x_max + np.abs(b).max() + rounding_half(s)
                step.dtype = torch.float64 if force64 or layer.inputs[0] == 0 else _exact_dtype(bound)
                scaled = w * 2.0**-s
                if layer.op == Op.POINTWISE:
                    scaled = scaled.T
                elif layer.op == Op.CONV1D:
                    scaled = scaled.reshape(w.shape[0], -1).T
                step.weight = torch.tensor(np.ascontiguousarray(scaled), dtype=step.dtype, device=device)
                step.bias = torch.tensor((b + rounding_half(s)) * 2.0**-s, dtype=step.dtype, device=device)
            elif layer.op == Op.RESIDUAL_ADD:
                s = layer.shift
                step.dtype = _exact_dtype(128.0 * (2**layer.shift_a + 2**layer.shift_b) + rounding_half(s))
                step.scale_a, step.scale_b = 2.0 ** (layer.shift_a - s), 2.0 ** (layer.shift_b - s)
                step.half = rounding_half(s) * 2.0**-s
            steps.append(step)
        return steps

    def fresh_state(self, batch_size: int, device=None) -> dict[int, Tensor]:
        """Zero history ``[B, P, C]`` (``[B, P]`` int64 PCM for ``log_spectrum``) for every layer with
        ``history > 0``, keyed by layer index."""
        return {i: torch.zeros(batch_size, layer.history, dtype=torch.int64, device=device)
                if layer.op == Op.LOG_SPECTRUM  # reads the PCM as [B, P + T] integers
                else torch.zeros(batch_size, layer.history, self.channels[layer.inputs[0]], device=device)
                for i, layer in enumerate(self.layers) if layer.history}

    def run(self, pcm: Tensor, state: dict[int, Tensor] | None = None) -> Tensor:
        """Args:
            pcm (Tensor): [B, T] int16 values (any dtype holding them).
            state (dict | None): from :meth:`fresh_state`, updated in place; ``None``: offline.

        Returns:
            Tensor: z [B, T // hop, D] float32 holding the int8 values.
        """
        state = self.fresh_state(pcm.shape[0], pcm.device) if state is None else state
        steps = self.steps
        if torch.get_float32_matmul_precision() != "highest":  # float32 products may round: float64 only
            self._steps64 = self._steps64 or self._build(force64=True)
            steps = self._steps64
        t = {0: pcm.float().unsqueeze(-1) if self.float_input else None}  # [B, T, 1]
        for i, step in enumerate(steps):
            layer = step.layer
            if step.skip:
                t[layer.output] = t[layer.inputs[0]]
                continue
            # log_spectrum reads the PCM as [B, T] int64, every other op [B, T, C] float
            x = pcm.long() if layer.op == Op.LOG_SPECTRUM else t[layer.inputs[0]]
            if layer.history:
                x = torch.cat([state[i], x], dim=1)
                state[i] = x.narrow(1, x.shape[1] - layer.history, layer.history)
            t[layer.output] = _KERNELS[layer.op](step, x, t)
        return t[self.output]


def _requantized(step: _Step, acc: Tensor) -> Tensor:
    acc = acc.floor_().clamp_(step.lo, 127.0)
    return acc if step.dtype == torch.float32 else acc.float()


def _as(step: _Step, x: Tensor) -> Tensor:
    return x if x.dtype == step.dtype else x.to(step.dtype)


def _taps(step: _Step, x: Tensor) -> Tensor:
    """x [B, P + T, C] -> [B, F, C, k] (a view): tap ``j`` of output ``f`` is ``x[f stride + j dilation]``."""
    layer, x = step.layer, x.contiguous()
    b, length, c = x.shape
    k = step.weight.shape[-1] if layer.op == Op.DEPTHWISE else step.weight.shape[0] // c
    frames = (length - (k - 1) * layer.dilation - 1) // layer.stride + 1
    return x.as_strided((b, frames, c, k), (length * c, layer.stride * c, 1, layer.dilation * c))


def _pointwise(step: _Step, x: Tensor, t: dict) -> Tensor:
    b, n, c = x.shape
    acc = torch.addmm(step.bias, _as(step, x.reshape(b * n, c)), step.weight)
    return _requantized(step, acc).view(b, n, -1)


def _depthwise(step: _Step, x: Tensor, t: dict) -> Tensor:
    return _requantized(step, (_taps(step, _as(step, x)) * step.weight).sum(-1).add_(step.bias))


def _conv1d(step: _Step, x: Tensor, t: dict) -> Tensor:
    taps = _taps(step, _as(step, x))  # [B, F, C_in, k]
    b, f = taps.shape[:2]
    acc = torch.addmm(step.bias, taps.reshape(b * f, -1), step.weight)
    return _requantized(step, acc).view(b, f, -1)


def _residual_add(step: _Step, x: Tensor, t: dict) -> Tensor:
    acc = (_as(step, x) * step.scale_a).add_(_as(step, t[step.layer.inputs[1]]), alpha=step.scale_b)
    return _requantized(step, acc.add_(step.half))


def _log_spectrum(step: _Step, x: Tensor, t: dict) -> Tensor:
    layer = step.layer
    affine = tuple(int(v) for v in layer.bias)
    return log_spectrum_torch(x, layer.history + layer.stride, layer.stride, affine).float()


_KERNELS = {Op.POINTWISE: _pointwise, Op.DEPTHWISE: _depthwise, Op.CONV1D: _conv1d,
            Op.RESIDUAL_ADD: _residual_add, Op.RELU: lambda step, x, t: x.clamp(min=0.0),
            Op.LOG_SPECTRUM: _log_spectrum}
