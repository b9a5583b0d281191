"""The deployed encoder: a SEANet encoder computed with the firmware's integer arithmetic, in torch.

The microcontroller does not run the float encoder: it runs int8 weights, power-of-two
exponents, int32 accumulators, round-half-up right shifts and saturation
(:mod:`tinycodec.export.int8`, mirrored by the C firmware). A decoder trained on the *float*
encoder's codes hears other codes from the device. :class:`Int8ExactEncoder` closes that gap:
its forward is that very integer arithmetic, carried in float64 (every value is an integer below
2**31, so float64 holds it exactly), so ``model.encode`` of a model built with
``encoder_int8=True`` returns the device's codes, bit for bit.

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

from tinycodec.modules.graph import extract_graph
from tinycodec.modules.streaming import State, StreamingModule

PCM_EXPONENT = 15  # int16 PCM: real = q / 32768


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

    @property
    def graph(self) -> list[dict]:
        """The flat layers (op, inputs, output, conv, history, name) of the wrapped encoder."""
        return self._graph

    @property
    def output_exponent(self) -> int:
        """Exponent of the embedding ``z``."""
        return int(self.exponents[self._graph[-1]["output"]])

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
                if layer.op in ("conv1d", "depthwise", "pointwise"):
                    e_x, e_y = int8.exponents[layer.inputs[0]], int8.exponents[layer.output]
                    self.weight_exponents[i] = layer.shift - e_x + e_y

    def integer_weights(self, i: int) -> tuple[Tensor, Tensor | None]:
        """Layer ``i``'s int8 weights [C_out, C_in/groups, k] and int32 bias [C_out] (float64 holding
        integers; ``None`` without bias), with straight-through gradients to the float weights."""
        layer, e_w = self._graph[i], int(self.weight_exponents[i])
        conv = layer["conv"]
        e_x = int(self.exponents[layer["inputs"][0]])
        training = self.training and torch.is_grad_enabled()
        dtype = torch.float32 if training else torch.float64
        # inference reuses the integers until a weight or an exponent changes (an in-place update bumps
        # a tensor's version, a move or a load gives it new storage): quantizing every weight on every
        # streaming call was a fifth of the encoder's time
        key = (e_w, e_x, conv.weight._version, conv.weight.data_ptr(),
               None if conv.bias is None else (conv.bias._version, conv.bias.data_ptr()))
        cache = self.__dict__.setdefault("_integer_cache", {})
        if not training and i in cache and cache[i][0] == key:
            return cache[i][1]
        wq = ste_round(ste_clamp(conv.weight.to(dtype) * 2.0**e_w, -128, 127))
        bq = None if conv.bias is None else ste_round(conv.bias.double() * 2.0 ** (e_x + e_w)).to(dtype)
        if not training:
            cache[i] = (key, (wq.detach(), None if bq is None else bq.detach()))
        return wq, bq

    # -- forward ---------------------------------------------------------------------------
    def _init_streaming_state(self, batch_size: int) -> _Int8State:
        return _Int8State(batch_size)

    def integer_forward(self, wav: Tensor) -> Tensor:
        """Args: wav (Tensor): [B, 1, T] float in [-1, 1] (T a multiple of the hop when streaming).

        Returns:
            Tensor: z [B, D, T // hop] holding the int8 values (float64; float32 when training).
        """
        state, persistent = self._get_state(wav.shape[0])
        # inference: float64 holds every int32 accumulator exactly. Training (QAT): float32 is 2-3x
        # faster and still exact below 2**24, which only a loud first conv exceeds (then off by less
        # than one unit before its right shift of 10+ bits): gradients do not need more
        dtype = torch.float32 if (self.training and torch.is_grad_enabled()) else torch.float64
        pcm = torch.round(wav.detach().to(dtype) * 32768.0).clamp(-32768, 32767)
        exps = [int(e) for e in self.exponents]
        t = {0: pcm}
        for i, layer in enumerate(self._graph):
            op, ins, out = layer["op"], layer["inputs"], layer["output"]
            x = t[ins[0]]
            if layer["history"]:
                prev = state.history.get(i)
                if prev is None:
                    prev = x.new_zeros(x.shape[0], x.shape[1], layer["history"])
                x = torch.cat([prev, x], dim=-1)
                if persistent:
                    state.history[i] = x[..., x.shape[-1] - layer["history"]:].detach()
            if op == "relu":
                y = x.clamp(min=0)
            elif op == "log_spectrum":
                y = self._log_spectrum(x, exps[out])
            elif op == "residual_add":
                e_a, e_b, e_y = exps[ins[0]], exps[ins[1]], exps[out]
                e_m = max(e_a, e_b)
                acc = x * 2.0 ** (e_m - e_a) + t[ins[1]] * 2.0 ** (e_m - e_b)
                y = requantize(acc, e_m - e_y)
            else:
                conv = layer["conv"]
                wq, bq = self.integer_weights(i)
                acc = F.conv1d(x, wq, bq, conv.stride, 0, conv.dilation, conv.groups)
                y = requantize(acc, exps[ins[0]] + int(self.weight_exponents[i]) - exps[out])
            t[out] = y
        return t[self._graph[-1]["output"]]

    def _log_spectrum(self, x: Tensor, e_y: int) -> Tensor:
        """The spectral frontend, computed by the int8 reference itself (it has no weights, so no
        gradient: ``x`` [B, 1, P + T] integer PCM -> [B, bins, T // hop] int8 values)."""
        from tinycodec.modules.int8_spectrum import log_spectrum

        spec = self._graph[0]["module"]
        q = log_spectrum(x.detach().cpu().numpy().astype("int64"), spec.n_fft, spec.hop, spec.int8_affine(e_y))
        return torch.from_numpy(q).to(device=x.device, dtype=x.dtype)

    def forward(self, wav: Tensor) -> Tensor:
        """Args: wav (Tensor): [B, 1, T]. Returns: Tensor: z [B, D, T // hop] float32, the device's
        int8 embedding in real units (exact: int8 times a power of two)."""
        return (self.integer_forward(wav) * 2.0 ** -self.output_exponent).float()
