"""The deployed int8 encoder as an ONNX-exportable module that keeps the device's codes.

:class:`Int8GraphExport` computes the int8 reference's integers (:mod:`tinycodec.export.int8`) with
operators every ONNX runtime has, exactly:

* convs: float32 ``Conv`` on integer values, weights scaled by ``2**-shift`` and the bias plus half a
  step by the same power of two, then ``Floor`` and ``Clip`` (the requantization of
  :class:`~tinycodec.modules.int8_runner.Int8Runner`); exact while every partial sum is an integer
  below ``2**24``, which :class:`Int8GraphExport` checks per layer (a layer beyond it is refused);
* ``log_spectrum``: the integer FFT in int64 ``Mul``/``Add``/``Concat``; each arithmetic right
  shift is ``(x - (x mod 2**k)) / 2**k`` (``Mod`` with the divisor's sign, then an exact division),
  ``floor(log2 v)`` a float estimate corrected both ways against a table of powers of two;
* the residual VQ: the integer search of :func:`~tinycodec.export.int8.rvq_search` in float64
  (every score is an integer below ``2**53``), ``ArgMin`` keeps the lowest index on ties.

Notebook: book/07_deployment.md
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinycodec.export.int8 import Int8Encoder, codebook_norms
from tinycodec.modules.int8_ops import PCM_SCALE, Op, fused_relus, rounding_half
from tinycodec.modules.int8_spectrum import (
    AFFINE_BITS,
    HANN_BITS,
    LOG_BITS,
    LOG_LUT_BITS,
    TWIDDLE_BITS,
    spectrum_tables,
)

FLOAT32_EXACT = 2**24


def floor_shift(x: Tensor, k: int) -> Tensor:
    """``x >> k`` (arithmetic, i.e. floor division by ``2**k``) of int64 ``x`` with ops ONNX has."""
    return torch.div(x - torch.remainder(x, 2**k), 2**k, rounding_mode="trunc")


class _Spectrum(nn.Module):
    """``log_spectrum`` for ``n_fft`` a multiple of the hop: [B, P + T] int64 -> [B, bins, F] float."""

    def __init__(self, n_fft: int, hop: int, affine) -> None:
        super().__init__()
        if n_fft % hop:
            raise ValueError(f"the ONNX log_spectrum needs n_fft ({n_fft}) a multiple of the hop ({hop})")
        tab = spectrum_tables(n_fft)
        self.n_fft, self.hop, self.affine = n_fft, hop, tuple(int(v) for v in affine)
        self.register_buffer("hann", torch.from_numpy(tab["hann"].astype(np.int64)))
        self.register_buffer("log_lut", torch.from_numpy(tab["log_lut"].astype(np.int64)))
        self.register_buffer("pow2", 2 ** torch.arange(63, dtype=torch.int64))
        self.stages = []
        half = 1
        while half < n_fft:
            wr = tab["tw_re"][:: n_fft // (2 * half)][:half].astype(np.int64)
            wi = tab["tw_im"][:: n_fft // (2 * half)][:half].astype(np.int64)
            self.register_buffer(f"wr{half}", torch.from_numpy(wr))
            self.register_buffer(f"wi{half}", torch.from_numpy(wi))
            self.stages.append(half)
            half *= 2

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        blocks = x.reshape(b, -1, self.hop)  # [B, F + r - 1, hop]
        r = self.n_fft // self.hop
        n_frames = blocks.shape[1] - (r - 1)
        frames = torch.cat([blocks[:, j: j + n_frames] for j in range(r)], dim=-1)  # [B, F, N]
        re = floor_shift(frames * self.hann + (1 << (HANN_BITS - 1)), HANN_BITS).reshape(-1, self.n_fft, 1)
        im = torch.zeros_like(re)
        for half in self.stages:  # Stockham order, as int8_spectrum.fft_int_torch
            rows = re.shape[1] // 2
            er, orr, ei, oi = re[:, :rows], re[:, rows:], im[:, :rows], im[:, rows:]
            wr, wi = getattr(self, f"wr{half}"), getattr(self, f"wi{half}")
            tr = floor_shift(orr * wr - oi * wi + (1 << (TWIDDLE_BITS - 1)), TWIDDLE_BITS)
            ti = floor_shift(orr * wi + oi * wr + (1 << (TWIDDLE_BITS - 1)), TWIDDLE_BITS)
            re, im = torch.cat([er + tr, er - tr], -1), torch.cat([ei + ti, ei - ti], -1)
        bins = self.n_fft // 2 + 1
        re, im = re[:, 0, :bins], im[:, 0, :bins]
        floor_int, a, c = self.affine
        v = re * re + im * im + floor_int
        m = torch.floor(torch.log2(v.double())).long()
        m = m + (v >= self.pow2[m + 1]).long() - (self.pow2[m] > v).long()  # exact floor(log2 v)
        lut = self.log_lut[torch.div(v, self.pow2[m - LOG_LUT_BITS], rounding_mode="trunc") - (1 << LOG_LUT_BITS)]
        q = floor_shift((m * (1 << LOG_BITS) + lut) * a + c, AFFINE_BITS)
        return q.double().clamp(-128, 127).float().reshape(b, n_frames, bins).transpose(1, 2)


class Int8GraphExport(nn.Module):
    """wav [B, 1, T] float -> (codes [B, n_q, F] int64, embeddings [B, D, F] float32 in real units),
    the int8 reference's codes, offline from a zero state, in ONNX-exportable ops.

    Args:
        enc (Int8Encoder): e.g. :func:`~tinycodec.export.int8_quantize.int8_encoder_of` of a deployed model.
    """

    def __init__(self, enc: Int8Encoder) -> None:
        super().__init__()
        self.enc, self.hop_length = enc, enc.hop_length
        self.fused = fused_relus(enc.layers, enc.output)
        self.e_z = int(enc.exponents[enc.output]) if enc.exponents else 0
        for i, layer in enumerate(enc.layers):
            x_max = PCM_SCALE if layer.inputs[0] == 0 else 128.0
            if layer.op.is_conv:
                w = layer.weight.astype(np.float64)
                w = w[:, None, :] if layer.op == Op.DEPTHWISE else w[:, :, None] if layer.op == Op.POINTWISE else w
                b = np.zeros(w.shape[0]) if layer.bias is None else layer.bias.astype(np.float64)
                half = rounding_half(layer.shift)
                bound = np.abs(w).reshape(w.shape[0], -1).sum(1).max() * x_max + np.abs(b).max() + half
                if bound > FLOAT32_EXACT:
                    raise ValueError(f"{layer.name}: partial sums up to {bound:.3g} leave float32's integers; "
                                     "this layer has no exact float32 ONNX form")
                self.register_buffer(f"w{i}", torch.tensor(w * 2.0**-layer.shift, dtype=torch.float32))
                self.register_buffer(f"b{i}", torch.tensor((b + half) * 2.0**-layer.shift, dtype=torch.float32))
            elif layer.op == Op.LOG_SPECTRUM:
                self.add_module(f"spec{i}", _Spectrum(layer.history + layer.stride, layer.stride, layer.bias))
            elif layer.op == Op.RESIDUAL_ADD and 128.0 * (2**layer.shift_a + 2**layer.shift_b) > FLOAT32_EXACT:
                raise ValueError(f"{layer.name}: the aligned sum leaves float32's integers")
        self.register_buffer("codebooks", torch.from_numpy(enc.codebooks.astype(np.float64)))
        self.register_buffer("norms", torch.from_numpy(codebook_norms(enc.codebooks, enc.cb_shifts).astype(np.float64)))
        self.cb_scales = [float(2**int(s)) for s in enc.cb_shifts]

    def _layer(self, i: int, x: Tensor, t: dict) -> Tensor:
        layer, lo = self.enc.layers[i], 0.0 if self.fused[i] else -128.0
        if layer.op == Op.RELU:
            return x.clamp(min=0.0)
        if layer.op == Op.LOG_SPECTRUM:
            return getattr(self, f"spec{i}")(F.pad(x[:, 0], (layer.history, 0)).long())
        if layer.op == Op.RESIDUAL_ADD:
            s = layer.shift
            acc = x * 2.0 ** (layer.shift_a - s) + t[layer.inputs[1]] * 2.0 ** (layer.shift_b - s)
            return torch.floor(acc + rounding_half(s) * 2.0**-s).clamp(lo, 127.0)
        groups = x.shape[1] if layer.op == Op.DEPTHWISE else 1
        acc = F.conv1d(F.pad(x, (layer.history, 0)), getattr(self, f"w{i}"), getattr(self, f"b{i}"), layer.stride,
                       0, layer.dilation, groups)
        return torch.floor(acc).clamp(lo, 127.0)

    def forward(self, wav: Tensor) -> tuple[Tensor, Tensor]:
        wav = F.pad(wav, (0, (-wav.shape[-1]) % self.hop_length))  # offline zero-padding, as model.encode
        t = {0: torch.round(wav * PCM_SCALE).clamp(-32768.0, 32767.0)}  # [B, 1, T]
        for i, layer in enumerate(self.enc.layers):
            if i and self.fused[i - 1]:  # a ReLU folded into the layer before
                t[layer.output] = t[layer.inputs[0]]
                continue
            t[layer.output] = self._layer(i, t[layer.inputs[0]], t)
        z = t[self.enc.output]  # [B, D, F] int8 values
        return self.search(z), z * 2.0**-self.e_z

    def search(self, z: Tensor) -> Tensor:
        """:func:`~tinycodec.export.int8.rvq_search` on every frame: z [B, D, F] -> codes [B, n_q, F]."""
        b = z.shape[0]
        r = z.double().transpose(1, 2).reshape(-1, z.shape[1]) * float(2**self.enc.z_shift)  # [B F, D]
        codes = []
        for level, scale in enumerate(self.cb_scales):
            cb = self.codebooks[level]  # [K, D]
            idx = torch.argmin(self.norms[level] - 2.0 * (r @ cb.T), dim=1)  # first minimum: lowest index
            r = r - cb[idx] * scale
            codes.append(idx.reshape(b, -1))
        return torch.stack(codes, 1)


def int8_onnx_supported(enc: Int8Encoder) -> str | None:
    """``None`` when :class:`Int8GraphExport` can represent ``enc`` exactly, else why not."""
    try:
        Int8GraphExport(enc)
    except ValueError as exc:
        return str(exc)
    return None
