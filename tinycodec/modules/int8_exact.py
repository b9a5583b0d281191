"""The deployed encoder: a SEANet or spectral encoder computed with the firmware's integer arithmetic.

The microcontroller does not run the float encoder: it runs int8 weights, power-of-two
exponents, int32 accumulators, round-half-up right shifts and saturation (the rules of
:mod:`tinycodec.modules.int8_ops`, run by :mod:`tinycodec.export.int8` and mirrored by the C
firmware). A decoder trained on the *float* encoder's codes hears other codes from the device.
:class:`Int8ExactEncoder` closes that gap: its forward is that very integer arithmetic, so
``model.encode`` of a model built with ``encoder_int8=True`` returns the device's codes, bit for bit.
At inference it runs the int8 layers (:meth:`Int8ExactEncoder.integer_layers`, computed once per
weight change) on :class:`~tinycodec.modules.int8_runner.Int8Runner`'s fast exact kernels.

For quantization-aware training the float weights stay the parameters: rounding, saturation
and requantization pass gradients straight through (identity inside the int8 range, zero where
they saturate), so fine-tuning learns weights whose *integer* encoder is good. The exponents
(one per tensor, one per weight) are buffers fixed at calibration::

    conv:   acc = conv(x_q, round(sat8(w * 2**e_w))) + round(b * 2**(e_x + e_w))
            y_q = sat8(floor((acc + 2**(s - 1)) / 2**s)),   s = e_x + e_w - e_y
    add:    y_q = requant(a_q * 2**(e_m - e_a) + b_q * 2**(e_m - e_b), e_m - e_y)
    relu:   y_q = max(x_q, 0)                        real value of any tensor: x_q * 2**-e_x
    log_spectrum (spectral encoder): the integer FFT + table log of the int8 reference, no weights

Streaming keeps, like the C encoder, the last ``k_eff - stride`` inputs of each conv, so a
chunked run equals the offline run exactly.

Notebook: book/07_deployment.md
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from tinycodec.modules.graph import GraphLayer, extract_graph
from tinycodec.modules.int8_ops import (
    PCM_SCALE,
    Int8Layer,
    Op,
    build_layer,
    conv_shift,
    quantize_conv,
    residual_shifts,
)
from tinycodec.modules.int8_runner import Int8Runner
from tinycodec.modules.int8_spectrum import log_spectrum_torch
from tinycodec.modules.prepared import tensor_key
from tinycodec.modules.streaming import State, StreamingModule


def ste_round(x: Tensor) -> Tensor:
    """``round(x)`` (half to even, like numpy) with an identity gradient."""
    return x + (torch.round(x) - x).detach()


def ste_clamp(x: Tensor, lo: float, hi: float) -> Tensor:
    """``clamp(x, lo, hi)``: gradient 1 inside, 0 where it saturates."""
    return x.clamp(lo, hi)


def requantize(acc: Tensor, shift: int) -> Tensor:
    """int32 accumulator -> int8 values, exactly as :func:`tinycodec.export.int8.requantize`,
    with a straight-through gradient of ``2**-shift`` inside the int8 range.

    Args:
        acc (Tensor): float64 holding integers.
        shift (int): right shift (``<= 0``: left shift, no rounding).
    """
    if shift > 0:
        hard = torch.floor((acc + 2.0 ** (shift - 1)) * 2.0**-shift)
    else:
        hard = acc.clamp(-129, 128) * 2.0 ** min(-shift, 8)
    hard = hard.clamp(-128, 127)
    if not acc.requires_grad:
        return hard
    soft = (acc * 2.0**-shift).clamp(-128, 127)
    return soft + (hard - soft).detach()


@dataclass
class _Int8State(State):
    history: dict[int, Tensor] = field(default_factory=dict)  # layer index -> [B, C, P] integer inputs
    runner: dict[int, Tensor] = field(default_factory=dict)  # the same, time-major, for Int8Runner


class Int8ExactEncoder(StreamingModule):
    """Wraps a float SEANet or spectral encoder (ReLU, no ELU) and runs it in exact int8 arithmetic.

    Args:
        encoder (nn.Module): the float encoder; its parameters stay this module's parameters.

    Buffers (set by :meth:`calibrate_from`):
        exponents (LongTensor): [n_tensors] exponent ``e`` of every graph tensor (``real = q 2**-e``).
        weight_exponents (LongTensor): [n_layers] exponent of each conv's weights (0 for others).
    """

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.float_encoder = encoder
        self._graph, self.channels = extract_graph(encoder)
        self.register_buffer("exponents", torch.zeros(len(self.channels), dtype=torch.long))
        self.register_buffer("weight_exponents", torch.zeros(len(self._graph), dtype=torch.long))
        self._deployed: tuple | None = None  # (key, int8 layers, runner, e_z): see integer_layers

    @property
    def graph(self) -> list[GraphLayer]:
        """The flat float layers of the wrapped encoder."""
        return self._graph

    @property
    def output_exponent(self) -> int:
        """Exponent of the embedding ``z``."""
        return int(self.exponents[self._graph[-1].output])

    # -- calibration ---------------------------------------------------------------------
    def calibrate_from(self, int8) -> None:
        """Take the exponents of an :class:`~tinycodec.export.int8.Int8Encoder` made from this
        very encoder (same graph), so that this module computes exactly what it computes."""
        if len(int8.layers) != len(self._graph):
            raise ValueError(f"int8 encoder has {len(int8.layers)} layers, this graph {len(self._graph)}")
        with torch.no_grad():
            for k, e in int8.exponents.items():
                self.exponents[k] = int(e)
            for i, layer in enumerate(int8.layers):
                if layer.op.is_conv:  # shift = e_x + e_w - e_y
                    e_x, e_y = int8.exponents[layer.inputs[0]], int8.exponents[layer.output]
                    self.weight_exponents[i] = layer.shift - e_x + e_y

    def integer_weights(self, i: int) -> tuple[Tensor, Tensor | None]:
        """Layer ``i``'s int8 weights [C_out, C_in/groups, k] and int32 bias [C_out] (``None`` without
        bias), holding integers (float32 when training, float64 otherwise), with straight-through
        gradients to the float weights: the rule of :func:`~tinycodec.modules.int8_ops.quantize_conv`."""
        conv, e_w = self._graph[i].conv, int(self.weight_exponents[i])
        e_x = int(self.exponents[self._graph[i].inputs[0]])
        dtype = torch.float32 if (self.training and torch.is_grad_enabled()) else torch.float64
        wq = ste_round(ste_clamp(conv.weight.to(dtype) * 2.0**e_w, -128, 127))
        bq = None if conv.bias is None else ste_round(conv.bias.double() * 2.0 ** (e_x + e_w)).to(dtype)
        return wq, bq

    def _deployed_key(self) -> tuple:
        """What the integer layers depend on: every weight and exponent tensor (an in-place update
        bumps a tensor's version, a move or a load gives it new storage)."""
        tensors = [self._buffers["exponents"], self._buffers["weight_exponents"]]
        tensors += [p for g in self._graph if g.conv is not None for p in g.conv._parameters.values() if p is not None]
        return tensor_key(tensors)

    @torch.no_grad()
    def integer_layers(self) -> list[Int8Layer]:
        """The int8 layers of this encoder (the firmware's table, before its C-only rewrites), built
        once by :func:`~tinycodec.modules.int8_ops.build_layer` and rebuilt only when a weight or an
        exponent changes; :meth:`integer_forward` runs them at inference."""
        return self._deployed_model()[1]

    def _deployed_model(self) -> tuple:
        key = self._deployed_key()
        if self._deployed is None or self._deployed[0] != key:
            exps = {k: int(e) for k, e in enumerate(self.exponents)}
            layers = []
            for i, g in enumerate(self._graph):
                weights = None
                if g.op.is_conv:
                    e_w = int(self.weight_exponents[i])
                    bias = None if g.conv.bias is None else g.conv.bias.detach().double().cpu().numpy()
                    weights = (*quantize_conv(g.conv.weight.detach().double().cpu().numpy(), bias,
                                              exps[g.inputs[0]], e_w), e_w)
                layers.append(build_layer(g, exps, weights))
            runner = Int8Runner(layers, self.channels, self.exponents.device)
            self._deployed = (key, layers, runner, exps[self._graph[-1].output])
        return self._deployed

    # -- forward ---------------------------------------------------------------------------
    def _init_streaming_state(self, batch_size: int) -> _Int8State:
        return _Int8State(batch_size)

    def integer_forward(self, wav: Tensor) -> Tensor:
        """Args: wav (Tensor): [B, 1, T] float in [-1, 1] (T a multiple of the hop when streaming).

        Returns:
            Tensor: z [B, D, T // hop] holding the int8 values (float32).
        """
        if not (self.training and torch.is_grad_enabled()):
            return self._fast_forward(wav, real=False)
        # quantization-aware training: float32 is exact below 2**24, which only a loud first conv
        # exceeds (then off by less than one unit before its right shift of 10+ bits): gradients
        # do not need more
        state, persistent = self._get_state(wav.shape[0])
        pcm = torch.round(wav.detach().float() * PCM_SCALE).clamp(-32768, 32767)
        exps = [int(e) for e in self.exponents]
        t = {0: pcm}
        for i, layer in enumerate(self._graph):
            op, ins, out = layer.op, layer.inputs, layer.output
            x = t[ins[0]]
            if layer.history:
                prev = state.history.get(i)
                if prev is None:
                    prev = x.new_zeros(x.shape[0], x.shape[1], layer.history)
                x = torch.cat([prev, x], dim=-1)
                if persistent:
                    state.history[i] = x[..., x.shape[-1] - layer.history:].detach()
            if op == Op.RELU:
                y = x.clamp(min=0)
            elif op == Op.LOG_SPECTRUM:
                y = self._log_spectrum(x, exps[out])
            elif op == Op.RESIDUAL_ADD:
                shift_a, shift_b, shift = residual_shifts(exps[ins[0]], exps[ins[1]], exps[out])
                y = requantize(x * 2.0**shift_a + t[ins[1]] * 2.0**shift_b, shift)
            else:
                conv = layer.conv
                wq, bq = self.integer_weights(i)
                acc = F.conv1d(x, wq, bq, conv.stride, 0, conv.dilation, conv.groups)
                y = requantize(acc, conv_shift(exps[ins[0]], int(self.weight_exponents[i]), exps[out]))
            t[out] = y
        return t[self._graph[-1].output]

    def _fast_forward(self, wav: Tensor, real: bool = True) -> Tensor:
        """The inference path: the int8 layers on :class:`Int8Runner` (bit-identical, no gradient);
        ``real``: z in real units (int8 times ``2**-e_z``), float32 [B, D, F]."""
        state, persistent = self._get_state(wav.shape[0])
        _, _, runner, e_z = self._deployed_model()
        pcm = torch.round(wav.detach()[:, 0].double() * PCM_SCALE).clamp_(-32768, 32767)
        history = state.runner if persistent else None
        if persistent and not history:
            history.update(runner.fresh_state(wav.shape[0], wav.device))
        z = runner.run(pcm, history).transpose(1, 2)
        return z * 2.0**-e_z if real else z

    def _log_spectrum(self, x: Tensor, e_y: int) -> Tensor:
        """The spectral frontend's integers (no weights, so no gradient: ``x`` [B, 1, P + T] integer
        PCM -> [B, bins, T // hop] int8 values)."""
        spec = self._graph[0].spectrum
        q = log_spectrum_torch(x.detach()[:, 0].long(), spec.n_fft, spec.hop, spec.int8_affine(e_y))
        return q.transpose(1, 2).to(x.dtype)

    def forward(self, wav: Tensor) -> Tensor:
        """Args: wav (Tensor): [B, 1, T]. Returns: Tensor: z [B, D, T // hop] float32, the device's
        int8 embedding in real units (exact: int8 times a power of two)."""
        if not (self.training and torch.is_grad_enabled()):
            return self._fast_forward(wav)
        return (self.integer_forward(wav) * 2.0 ** -self.output_exponent).float()
