"""The server decoder as ONNX: codes in, audio out, for a browser (onnxruntime-web) or any runtime.

ONNX has no inverse real FFT that every runtime runs, so the export rewrites the iSTFT head with
fixed linear maps that compute the same numbers::

    codes [B, n_q, F] -> sum of codebook rows (Gather) -> ConvNeXt trunk -> Linear -> (log|X|, phase)
        -> Re, Im = |X| cos, |X| sin -> frames = Re @ C + Im @ S (the irfft as two [bins, n_fft] matrices,
           window folded in) -> overlap-add as a ConvTranspose1d with an identity kernel, stride hop
        -> the decoder's delay removed -> wav [B, 1, F * hop]

Notebook: book/07_deployment.md
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinycodec.modules.server_decoder import HarmonicNoiseHead

__all__ = ["DecoderExport", "export_decoder_onnx", "check_decoder_onnx"]


class DecoderExport(nn.Module):
    """``codes [B, n_q, F] (int64) -> wav [B, 1, F * hop]``: the model's offline decode, ONNX-friendly.

    Args:
        model (CodecModel): a model with a server decoder (``decoder.head`` an ``ISTFTHead``).

    Raises:
        ValueError: the model's decoder is not a server decoder.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        head = getattr(model.decoder, "head", None)
        if isinstance(head, HarmonicNoiseHead):  # its harmonic source has no ONNX rewrite here
            raise ValueError("a harmonic-plus-noise decoder head (decoder_head='hn') does not export to ONNX: "
                             "only the inverse-STFT head does")
        if head is None or not hasattr(head, "proj"):
            raise ValueError("only a server decoder (ConvNeXt + inverse-STFT head) exports to ONNX here; "
                             f"this model's decoder is {type(model.decoder).__name__}")
        self.decoder, self.head = model.decoder, head
        # [n_q, K, D] codebooks: decoding is a Gather per level and a sum
        self.register_buffer("codebooks", torch.stack([layer.embed for layer in model.quantizer.layers]))
        n, bins = head.n_fft, head.bins
        k, t = torch.arange(bins, dtype=torch.float64)[:, None], torch.arange(n, dtype=torch.float64)[None]
        scale = torch.full((bins, 1), 2.0 / n, dtype=torch.float64)
        scale[0] = scale[-1] = 1.0 / n  # DC and Nyquist appear once in a real signal's spectrum
        angle = 2 * math.pi * k * t / n
        window = head.window.double()
        self.register_buffer("cos_basis", (scale * torch.cos(angle) * window).float())  # [bins, n_fft]
        self.register_buffer("sin_basis", (-scale * torch.sin(angle) * window).float())
        self.register_buffer("ola", torch.eye(n)[:, None, :])  # [n_fft, 1, n_fft] identity kernel
        self.hop, self.n_fft, self.delay = head.hop_length, n, int(model.decoder.delay)

    def forward(self, codes: Tensor, levels: Tensor | None = None) -> Tensor:
        """Args: codes (LongTensor): [B, n_q, F]; levels (Tensor | None): [n_q] weights of the levels,
        1.0 to decode a level and 0.0 to leave it out (the first ``n`` ones: the bitrate at ``n``
        codebooks, from one graph). Returns: Tensor: [B, 1, F * hop]."""
        n_q = codes.shape[1]
        rows = [F.embedding(codes[:, i], self.codebooks[i]) for i in range(n_q)]  # [B, F, D] each
        if levels is not None:
            rows = [r * levels[i] for i, r in enumerate(rows)]
        q = sum(rows).transpose(1, 2)  # [B, D, F]
        p = self.head.proj(self.decoder.trunk(q).transpose(1, 2))  # [B, F, 2 bins]
        bins = self.head.bins
        mag = torch.exp(p[..., :bins].clamp(max=8.0))
        phase = p[..., bins:]
        frames = (mag * torch.cos(phase)) @ self.cos_basis + (mag * torch.sin(phase)) @ self.sin_basis  # [B, F, n_fft]
        y = F.conv_transpose1d(frames.transpose(1, 2), self.ola, stride=self.hop)  # [B, 1, (F - 1) hop + n_fft]
        n = codes.shape[-1] * self.hop
        return y[..., self.delay: self.delay + n]


class _WithLevels(nn.Module):
    def __init__(self, inner: DecoderExport) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, codes: Tensor, levels: Tensor) -> Tensor:
        return self.inner(codes, levels)


def export_decoder_onnx(model: nn.Module, path: str | Path, n_q: int | None = None, levels_input: bool = False) -> Path:
    """Write the decoder of ``model`` for ``n_q`` codebooks (default all) to ``path``: input ``codes``
    [B, n_q, F] int64 (and with ``levels_input`` a float ``levels`` [n_q], see :meth:`DecoderExport.forward`:
    one graph for every bitrate), output ``wav`` [B, 1, F * hop]; batch and time axes dynamic."""
    from tinycodec.export.onnx import export_module

    module = DecoderExport(model).eval()
    n_q = n_q or model.quantizer.num_quantizers
    example = torch.zeros(1, n_q, 16, dtype=torch.long)
    axes = {"codes": {0: "B", 2: "F"}, "wav": {0: "B", 2: "T"}}
    if not levels_input:
        return export_module(module, path, example, ["codes"], ["wav"], axes, fold_pads=False)
    return export_module(_WithLevels(module).eval(), path, (example, torch.ones(n_q)), ["codes", "levels"],
                         ["wav"], axes, fold_pads=False)


def check_decoder_onnx(model: nn.Module, path: str | Path, codes: Tensor, n_levels: int | None = None) -> float:
    """Largest |difference| between the ONNX decoder (onnxruntime) and ``model.decode`` on ``codes``
    (for a graph with a ``levels`` input: on their first ``n_levels`` levels, the others switched off)."""
    from tinycodec.export.onnx import onnx_session

    session = onnx_session(path)
    feed = {"codes": codes.cpu().numpy().astype(np.int64)}
    n = codes.shape[1]
    if "levels" in {i.name for i in session.get_inputs()}:
        n = n_levels or codes.shape[1]
        feed["levels"] = (np.arange(codes.shape[1]) < n).astype(np.float32)
    (wav,) = session.run(["wav"], feed)
    with torch.no_grad():
        ref = model.decode(codes[:, :n])
    return float((torch.from_numpy(wav) - ref).abs().max())
