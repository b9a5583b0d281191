"""Int8 reference encoder: exactly the integer arithmetic of the C firmware, in numpy.

Every tensor is an integer array with a power-of-two scale, ``real = q * 2**-e`` (``e`` is the
tensor's *exponent*). Weights are int8 (one exponent per layer), accumulators int32, biases int32
at the accumulator exponent ``e_x + e_w``. A layer's output goes back to int8 by
:func:`requantize`: an arithmetic right shift by ``e_x + e_w - e_y`` with round-half-up, then
saturation to [-128, 127]. The input is PCM int16 (``e = 15``), so the first conv reads 16-bit
samples. The residual VQ searches int8 codebooks with integer squared L2 distances. These rules,
the op set (:class:`~tinycodec.modules.int8_ops.Op`) and the layer rows (:class:`Int8Layer`) are
defined once in :mod:`tinycodec.modules.int8_ops`; this module holds the kernels, one per op.

The spectral encoder (``encoder="stft"``) starts with ``log_spectrum`` instead (its integer FFT and
table log live in :mod:`tinycodec.modules.int8_spectrum`, shared with the int8-exact training
encoder; the C twin is ``tc_log_spectrum``).

Each kernel below has a C twin of the same name in ``firmware/components/tinycodec_encoder``
(house style rule 9); the C code must produce the very same integers. Every kernel asserts that
its int32 accumulators cannot overflow, so agreement here means agreement on the device.

Streaming: a conv keeps the last ``P = k_eff - stride`` input samples of each channel as its
state (a delay line); the offline path is the streaming path run once from a zero state, so
whole-signal == frame-by-frame by construction (checked in tests/test_export_int8.py).

Notebook: book/07_deployment.md
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinycodec.modules.int8_ops import PCM_EXPONENT, Int8Layer, Op, pcm_from_float, requantize
from tinycodec.modules.int8_spectrum import check_int32, log_spectrum

__all__ = ["PCM_EXPONENT", "Int8Encoder", "Int8Layer", "Op", "codebook_norms", "conv1d", "depthwise", "pointwise",
           "relu", "requantize", "residual_add", "rvq_search"]

def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0) on int8 values (the exponent is unchanged)."""
    return np.maximum(x, 0)


def _taps(x: np.ndarray, kernel: int, stride: int, dilation: int) -> list[np.ndarray]:
    """For x [C, P + T] (history first), tap ``k`` of every output frame: ``k`` arrays [C, F]."""
    k_eff = (kernel - 1) * dilation + 1
    n_out = (x.shape[1] - k_eff) // stride + 1
    return [x[:, k * dilation: k * dilation + (n_out - 1) * stride + 1: stride] for k in range(kernel)]


def conv1d(x: np.ndarray, w: np.ndarray, b: np.ndarray, shift: int, stride: int = 1,
           dilation: int = 1) -> np.ndarray:
    """Standard conv (the first layer, on int16 PCM): ``requantize(b + sum_k W_k x_k)``.

    Args:
        x (ndarray): [C_in, P + T] input with ``P = k_eff - stride`` history samples first.
        w (ndarray): [C_out, C_in, k] int8.
        b (ndarray): [C_out] int32 at exponent ``e_x + e_w``.
        shift (int): ``e_x + e_w - e_y``.

    Returns:
        ndarray: [C_out, T // stride] int8 values.
    """
    acc = np.broadcast_to(b.astype(np.int64)[:, None], (w.shape[0], 1)).copy()
    for k, xk in enumerate(_taps(x, w.shape[2], stride, dilation)):
        acc = acc + w[:, :, k].astype(np.int64) @ xk.astype(np.int64)
    check_int32(acc, "conv1d")
    return requantize(acc, shift)


def depthwise(x: np.ndarray, w: np.ndarray, shift: int, stride: int = 1, dilation: int = 1) -> np.ndarray:
    """Depthwise conv (no bias): channel ``c`` is ``requantize(sum_k w[c, k] x[c, t*s + k*d])``.

    Args:
        x (ndarray): [C, P + T] int8 with history first.
        w (ndarray): [C, k] int8.

    Returns:
        ndarray: [C, T // stride] int8 values.
    """
    acc = 0
    for k, xk in enumerate(_taps(x, w.shape[1], stride, dilation)):
        acc = acc + w[:, k, None].astype(np.int64) * xk.astype(np.int64)
    check_int32(acc, "depthwise")
    return requantize(acc, shift)


def pointwise(x: np.ndarray, w: np.ndarray, b: np.ndarray, shift: int) -> np.ndarray:
    """1x1 conv: ``requantize(b + W x)`` for x [C_in, T], w [C_out, C_in] int8, b [C_out] int32."""
    acc = b.astype(np.int64)[:, None] + w.astype(np.int64) @ x.astype(np.int64)
    check_int32(acc, "pointwise")
    return requantize(acc, shift)


def residual_add(a: np.ndarray, b: np.ndarray, shift_a: int, shift_b: int, shift: int) -> np.ndarray:
    """``requantize((a << shift_a) + (b << shift_b), shift)``: both operands aligned to the finer
    of their two exponents, summed in int32, then brought to the output exponent."""
    acc = (a.astype(np.int64) << shift_a) + (b.astype(np.int64) << shift_b)
    check_int32(acc, "residual_add")
    return requantize(acc, shift)


def codebook_norms(codebooks: np.ndarray, cb_shifts: np.ndarray) -> np.ndarray:
    """``||c_k||^2 << s_i`` of int8 codebooks [n_q, K, D] -> [n_q, K] int32 (computed once at init)."""
    cb = codebooks.astype(np.int64)
    norms = (cb * cb).sum(-1) << np.asarray(cb_shifts, dtype=np.int64)[:, None]
    check_int32(norms, "codebook_norms")
    return norms


def rvq_search(z: np.ndarray, codebooks: np.ndarray, norms: np.ndarray, z_shift: int,
               cb_shifts: np.ndarray) -> np.ndarray:
    """Residual VQ in integers: nearest codeword by squared L2, ties -> lowest index.

    The residual ``r`` (int16) lives at exponent ``e_v = e_z + z_shift``; codebook ``i`` (int8,
    exponent ``e_v - s_i``) is ``c << s_i`` there. ``||r - (c << s)||^2 = ||r||^2 +
    2**s * ((||c||^2 << s) - 2 r.c)`` and ``||r||^2`` does not depend on the code, so the argmin of
    the int64 score ``(||c||^2 << s) - 2 r.c`` (r.c in int32) is exactly the L2 argmin.
    Twin of the C ``rvq_search`` for one frame (the C residual is stored permuted for SMLAD).

    Args:
        z (ndarray): [D, F] int8 encoder output.
        codebooks (ndarray): [n_q, K, D] int8.
        norms (ndarray): [n_q, K] ``||c||^2 << s_i`` from :func:`codebook_norms`.
        z_shift (int): ``e_v - e_z >= 0``.
        cb_shifts (ndarray): [n_q] ``s_i >= 0``.

    Returns:
        ndarray: [n_q, F] int64 codes.
    """
    r = z.astype(np.int64) << z_shift  # [D, F]
    codes = []
    for cb, norm, s in zip(codebooks.astype(np.int64), norms, cb_shifts, strict=True):
        if np.abs(r).max(initial=0) > 32767:
            raise OverflowError("rvq_search: residual leaves int16")
        dot = cb @ r  # [K, F]
        check_int32(dot, "rvq_search dot")
        score = norm[:, None] - 2 * dot
        idx = score.argmin(0)  # first minimum: ties -> lowest index
        codes.append(idx)
        r = r - (cb[idx].T << int(s))
    return np.stack(codes)


KERNELS = {  # Op -> kernel(layer, x with its history, every tensor so far)
    Op.CONV1D: lambda layer, x, t: conv1d(x, layer.weight, layer.bias, layer.shift, layer.stride, layer.dilation),
    Op.DEPTHWISE: lambda layer, x, t: depthwise(x, layer.weight, layer.shift, layer.stride, layer.dilation),
    Op.POINTWISE: lambda layer, x, t: pointwise(x, layer.weight, layer.bias, layer.shift),
    Op.RELU: lambda layer, x, t: relu(x),
    Op.RESIDUAL_ADD: lambda layer, x, t: residual_add(x, t[layer.inputs[1]], layer.shift_a, layer.shift_b, layer.shift),
    Op.LOG_SPECTRUM: lambda layer, x, t: log_spectrum(x, layer.history + layer.stride, layer.stride,
                                                      tuple(int(v) for v in layer.bias)),
}


@dataclass
class Int8Encoder:
    """The quantized encoder + residual VQ (build it with :func:`quantize_encoder`).

    Attributes:
        layers (list[Int8Layer]): the graph in execution order; tensor 0 is the PCM input.
        channels (dict[int, int]): channels of each tensor id.
        exponents (dict[int, int]): exponent of each tensor id.
        codebooks (ndarray): [n_q, K, D] int8.
        z_shift (int), cb_shifts (ndarray [n_q]): see :func:`rvq_search`.
        hop_length (int), sample_rate (int).
    """

    layers: list[Int8Layer]
    channels: dict[int, int]
    exponents: dict[int, int]
    codebooks: np.ndarray
    z_shift: int
    cb_shifts: np.ndarray
    hop_length: int
    sample_rate: int
    preset: str = ""
    states: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def n_q(self) -> int:
        return int(self.codebooks.shape[0])

    @property
    def output(self) -> int:
        """Tensor id of the embedding ``z`` [D, F]."""
        return self.layers[-1].output

    def fresh_states(self) -> dict[int, np.ndarray]:
        """Zero history for every layer with ``history > 0`` (keyed by layer index)."""
        return {i: np.zeros((self.channels[layer.inputs[0]], layer.history), dtype=np.int64)
                for i, layer in enumerate(self.layers) if layer.history}

    def reset(self) -> None:
        """Start a new stream (zero every layer's state)."""
        self.states = self.fresh_states()

    def run_graph(self, pcm: np.ndarray, states: dict[int, np.ndarray]) -> np.ndarray:
        """Run the layers on ``pcm`` [T] int16 (T a multiple of hop_length), updating ``states``.

        Returns:
            ndarray: z [D, T // hop_length] int8 values.
        """
        tensors = {0: pcm.astype(np.int64)[None, :]}
        for i, layer in enumerate(self.layers):
            x = tensors[layer.inputs[0]]
            if layer.history:
                x = np.concatenate([states[i], x], axis=1)
                states[i] = x[:, x.shape[1] - layer.history:]
            y = KERNELS[layer.op](layer, x, tensors)
            tensors[layer.output] = y
        return tensors[self.output]

    def _pcm(self, wav) -> np.ndarray:
        a = np.asarray(wav.detach().cpu() if hasattr(wav, "detach") else wav).reshape(-1)
        if a.dtype == np.int16:
            return a.astype(np.int64)
        if np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"integer audio must be int16 PCM, got {a.dtype}")
        return pcm_from_float(a)

    def search(self, z: np.ndarray) -> np.ndarray:
        """RVQ codes [n_q, F] of z [D, F]."""
        return rvq_search(z, self.codebooks, codebook_norms(self.codebooks, self.cb_shifts), self.z_shift,
                          self.cb_shifts)

    def encode(self, wav) -> np.ndarray:
        """Whole signal from a zero state.

        Args:
            wav: int16 PCM [T] or float in [-1, 1] ([T], [1, T] or [1, 1, T]; numpy or torch),
                zero-padded to a multiple of hop_length like the float model.

        Returns:
            ndarray: codes [n_q, ceil(T / hop_length)] int64.
        """
        pcm = self._pcm(wav)
        pcm = np.concatenate([pcm, np.zeros((-len(pcm)) % self.hop_length, dtype=np.int64)])
        return self.search(self.run_graph(pcm, self.fresh_states()))

    def encode_frame(self, wav) -> np.ndarray:
        """Streaming: ``wav`` holds a multiple of hop_length samples (usually one frame); the
        per-layer states carry over between calls (:meth:`reset` starts a new stream).

        Returns:
            ndarray: codes [n_q, T // hop_length].
        """
        pcm = self._pcm(wav)
        if len(pcm) % self.hop_length:
            raise ValueError(f"encode_frame needs a multiple of hop_length={self.hop_length} samples, "
                             f"got {len(pcm)}")
        if not self.states:
            self.reset()
        return self.search(self.run_graph(pcm, self.states))
