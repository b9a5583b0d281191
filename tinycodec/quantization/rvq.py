"""Residual vector quantization (RVQ) with quantizer dropout and usage statistics.

Quantizer ``i`` codes the residual left by quantizers ``0..i-1``; decoding sums the
selected codes, so the first ``n`` codes of a frame are a coarser description of it
and ``codes[:, :n]`` decodes at ``n / n_q`` of the bitrate. Quantizer dropout
(SoundStream) trains that property: each example draws ``n_q`` uniformly in
``[1, N_q]`` and uses only its first ``n_q`` quantizers.

Notebook: book/03_quantization.md
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinycodec.quantization.vq import EMAVectorQuantizer


@dataclass
class QuantizerStats:
    """Per-quantizer statistics of one forward pass.

    Attributes:
        usage (Tensor): [N_q] fraction of codes used at least once.
        perplexity (Tensor): [N_q] ``exp(entropy)`` of the code histogram (max ``codebook_size``).
        commitment (Tensor): [N_q] commitment loss of each quantizer.
        n_q (Tensor): [B] number of quantizers each example used.
        replaced (Tensor): [N_q] codes re-seeded as dead by this pass (training only, else 0).
    """

    usage: Tensor
    perplexity: Tensor
    commitment: Tensor
    n_q: Tensor
    replaced: Tensor | None = None


def code_statistics(indices: Tensor, codebook_size: int) -> tuple[float, float]:
    """Usage fraction and perplexity of a flat LongTensor of codes (negatives ignored)."""
    indices = indices[indices >= 0]
    if indices.numel() == 0:
        return 0.0, 0.0
    hist = torch.bincount(indices.reshape(-1), minlength=codebook_size).float()
    p = hist / hist.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return float((hist > 0).float().mean()), float(entropy.exp())


class ResidualVectorQuantizer(nn.Module):
    """``num_quantizers`` EMA quantizers applied to successive residuals.

    Args:
        dim (int): D.
        num_quantizers (int): N_q.
        codebook_size (int): K of every quantizer.
        quantizer_dropout (bool): draw ``n_q ~ U{1..N_q}`` per example in training.
        decay, epsilon, kmeans_init, kmeans_iters, threshold_ema_dead_code, dead_code_window:
            see :class:`EMAVectorQuantizer`.
    """

    def __init__(self, dim: int, num_quantizers: int, codebook_size: int, quantizer_dropout: bool = False,
                 decay: float = 0.99, epsilon: float = 1e-5, kmeans_init: bool = True, kmeans_iters: int = 10,
                 threshold_ema_dead_code: float = 2.0, dead_code_window: float = 32.0) -> None:
        super().__init__()
        self.dim, self.num_quantizers, self.codebook_size = dim, num_quantizers, codebook_size
        self.quantizer_dropout = quantizer_dropout
        self.layers = nn.ModuleList(
            EMAVectorQuantizer(dim, codebook_size, decay, epsilon, kmeans_init, kmeans_iters,
                               threshold_ema_dead_code, dead_code_window)
            for _ in range(num_quantizers)
        )
        self.last_stats: QuantizerStats | None = None

    @property
    def bits_per_frame(self) -> float:
        """``N_q * log2(K)`` bits for one frame at full bitrate."""
        return self.num_quantizers * math.log2(self.codebook_size)

    def _check_n_q(self, n_q: int | None) -> int:
        n_q = self.num_quantizers if n_q is None else n_q
        if not 1 <= n_q <= self.num_quantizers:
            raise ValueError(f"n_q must be in [1, {self.num_quantizers}], got {n_q}")
        return n_q

    def sample_n_q(self, batch_size: int, device: torch.device | None = None) -> Tensor:
        """[B] LongTensor: ``n_q`` per example, uniform in ``[1, N_q]`` (the dropout draw)."""
        return torch.randint(1, self.num_quantizers + 1, (batch_size,), device=device)

    def encode(self, z: Tensor, n_q: int | None = None) -> Tensor:
        """Args: z (Tensor): [B, D, F]; n_q (int | None): first ``n_q`` quantizers (default all).

        Returns:
            LongTensor: codes [B, n_q, F].
        """
        residual, codes = z, []
        for layer in itertools.islice(self.layers, self._check_n_q(n_q)):  # a ModuleList slice builds a module
            idx = layer.encode(residual)
            residual = residual - layer.decode(idx)
            codes.append(idx)
        return torch.stack(codes, dim=1)

    def decode(self, codes: Tensor) -> Tensor:
        """Args: codes (LongTensor): [B, n, F] with ``n <= N_q`` (the first ``n`` levels).

        Returns:
            Tensor: [B, D, F] sum of the selected codes.
        """
        if codes.dim() != 3:
            raise ValueError(f"codes must be [B, n_q, F], got shape {tuple(codes.shape)}")
        self._check_n_q(codes.shape[1])
        out = None
        for i in range(codes.shape[1]):  # summed as [B, F, D] and transposed once (a streaming call's
            q = F.embedding(codes[:, i], self.layers[i].embed)  # cost is per op, not per number)
            out = q if out is None else out + q
        return out.transpose(1, 2)

    def forward(self, z: Tensor, n_q: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Quantize ``z``; training mode updates codebooks and applies quantizer dropout.

        Args:
            z (Tensor): [B, D, F] encoder output.
            n_q (int | None): fixed number of quantizers (overrides dropout).

        Returns:
            tuple: quantized [B, D, F] (straight-through gradient), codes LongTensor
            [B, n, F] (``-1`` where an example dropped that quantizer), commitment loss
            (scalar, sum over quantizers). Statistics go to ``self.last_stats``.
        """
        B = z.shape[0]
        if n_q is not None:
            per_example = torch.full((B,), self._check_n_q(n_q), device=z.device, dtype=torch.long)
        elif self.training and self.quantizer_dropout:
            per_example = self.sample_n_q(B, z.device)
        else:
            per_example = torch.full((B,), self.num_quantizers, device=z.device, dtype=torch.long)
        n_levels = int(per_example.max())
        residual, quantized = z, torch.zeros_like(z)
        codes, commits, usage, perplexity, replaced = [], [], [], [], []
        for i, layer in enumerate(self.layers[:n_levels]):
            mask = per_example > i  # [B]
            q, idx, commit = layer(residual, mask)
            replaced.append(layer.last_replaced if self.training else 0)
            m = mask[:, None, None].to(z.dtype)
            # accumulate hard codes; one straight-through at the end keeps d(out)/dz = I
            quantized = quantized + q.detach() * m
            residual = residual - q.detach() * m
            idx = torch.where(mask[:, None], idx, torch.full_like(idx, -1))
            codes.append(idx)
            commits.append(commit)
            u, p = code_statistics(idx, self.codebook_size)
            usage.append(u)
            perplexity.append(p)
        quantized = z + (quantized - z).detach()
        commitment = torch.stack(commits)
        replaced += [0] * (self.num_quantizers - len(replaced))
        self.last_stats = QuantizerStats(torch.tensor(usage), torch.tensor(perplexity),
                                         commitment.detach(), per_example, torch.tensor(replaced))
        return quantized, torch.stack(codes, dim=1), commitment.sum()
