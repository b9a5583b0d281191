"""Losses that see what a mel loss does not: linear-frequency magnitude and phase.

A mel loss pools the FFT bins of each band, so the harmonics between band centres and the phase of
every bin are free: a decoder trained on it alone buzzes and smears. Two extra objectives:

    L_stft    = mean over resolutions r of  || |X_r| - |Y_r| ||_F / || |X_r| ||_F      (spectral convergence)
                                            + mean | log |X_r| - log |Y_r| |               (log magnitude)
    L_complex = mean over r of  mean | |X_r|^c e^{i phi_x} - |Y_r|^c e^{i phi_y} |^2      (compressed complex)
    L_phase = mean_w AW(phi_y - phi_x)                      instantaneous phase
            + mean_w AW(d_f phi_y - d_f phi_x)              group delay (difference along frequency)
            + mean_w AW(d_t phi_y - d_t phi_x)              instantaneous frequency (difference along time)

with ``AW(a) = |a - 2 pi round(a / 2 pi)|`` the anti-wrapping distance (phase differences near
+-pi are the same angle), ``X_r, Y_r`` STFTs of target and decoded audio, and ``mean_w`` a mean
weighted by ``|X| |Y|`` (detached): bins where either signal is silent carry no phase worth
matching, and the weight cancels the ``1 / |Y|`` in the gradient of an angle, so quiet bins cannot
blow up a step. The phase terms follow the anti-wrapping losses of APNet / MP-SENet.

The compressed complex term is kept apart: where the phase cannot be predicted from the codes (noise,
unvoiced speech), a squared complex error is smallest for a *quieter* output, so it trades level for
phase; the anti-wrapping terms do not (their weights are detached).

Notebook: book/04_training.md
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["CompressedComplexLoss", "MultiResolutionSTFTLoss", "PhaseLoss", "anti_wrap"]


def anti_wrap(a: Tensor) -> Tensor:
    """``|a - 2 pi round(a / 2 pi)|``: the distance of an angle difference to 0, in ``[0, pi]``."""
    return (a - 2 * math.pi * torch.round(a / (2 * math.pi))).abs()


class _STFTs(nn.Module):
    """Hann-window STFTs at several ``(n_fft, hop)`` resolutions, windows kept as buffers."""

    def __init__(self, resolutions: tuple[tuple[int, int], ...]) -> None:
        super().__init__()
        if not resolutions:
            raise ValueError("at least one (n_fft, hop) resolution is needed")
        for n_fft, hop in resolutions:
            if not 0 < hop <= n_fft:
                raise ValueError(f"resolution (n_fft={n_fft}, hop={hop}) needs 0 < hop <= n_fft")
        self.resolutions = tuple((int(n), int(h)) for n, h in resolutions)
        for n_fft, _ in self.resolutions:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def stft(self, wav: Tensor, n_fft: int, hop: int) -> Tensor:
        """wav [B, 1, T] -> complex [B, n_fft // 2 + 1, frames]."""
        return torch.stft(wav.reshape(-1, wav.shape[-1]).float(), n_fft, hop, window=getattr(self, f"window_{n_fft}"),
                          center=True, pad_mode="reflect", return_complex=True)


class MultiResolutionSTFTLoss(_STFTs):
    """Spectral convergence + log magnitude at several resolutions.

    Args:
        resolutions: ``(n_fft, hop)`` pairs (default 256/64, 512/128, 1024/256).
        eps (float): floor inside logs and roots (silence stays finite, gradients bounded).
    """

    def __init__(self, resolutions=((256, 64), (512, 128), (1024, 256)), eps: float = 1e-5) -> None:
        super().__init__(resolutions)
        self.eps = eps

    def magnitude(self, spec: Tensor) -> Tensor:
        """|z| through sqrt(re^2 + im^2 + eps^2): no infinite gradient at an exactly zero bin."""
        return torch.sqrt(spec.real.square() + spec.imag.square() + self.eps**2)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Args: x, y (Tensor): [B, 1, T] target and decoded audio. Returns: Tensor: scalar (mean over resolutions)."""
        total = x.new_zeros((), dtype=torch.float32)
        for n_fft, hop in self.resolutions:
            mx, my = self.magnitude(self.stft(x, n_fft, hop)), self.magnitude(self.stft(y, n_fft, hop))
            convergence = torch.linalg.vector_norm(mx - my) / torch.linalg.vector_norm(mx)
            total = total + convergence + (mx.log() - my.log()).abs().mean()
        return total / len(self.resolutions)


class CompressedComplexLoss(MultiResolutionSTFTLoss):
    """Mean squared distance of power-law compressed complex spectra, ``|X|^c e^{i phi}``, at several resolutions.

    Args:
        resolutions: ``(n_fft, hop)`` pairs (default 256/64, 512/128, 1024/256).
        compress (float): exponent ``c`` (0.3, as in speech enhancement).
        eps (float): floor inside the root.
    """

    def __init__(self, resolutions=((256, 64), (512, 128), (1024, 256)), compress: float = 0.3,
                 eps: float = 1e-5) -> None:
        super().__init__(resolutions, eps)
        self.compress = compress

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Args: x, y (Tensor): [B, 1, T] target and decoded audio. Returns: Tensor: scalar (mean over resolutions)."""
        total = x.new_zeros((), dtype=torch.float32)
        for n_fft, hop in self.resolutions:
            X, Y = self.stft(x, n_fft, hop), self.stft(y, n_fft, hop)
            cx = X * (self.magnitude(X) ** (self.compress - 1))  # |X|^c e^{i phi_x}
            cy = Y * (self.magnitude(Y) ** (self.compress - 1))
            total = total + (cx - cy).abs().square().mean()
        return total / len(self.resolutions)


class PhaseLoss(_STFTs):
    """Anti-wrapping instantaneous-phase, group-delay and instantaneous-frequency losses.

    Args:
        resolutions: ``(n_fft, hop)`` pairs (default 512/128: the resolution of the oracle-phase study).
    """

    def __init__(self, resolutions=((512, 128),)) -> None:
        super().__init__(resolutions)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Args: x, y (Tensor): [B, 1, T] target and decoded audio. Returns: Tensor: scalar, in ``[0, 3 pi]``."""
        total = x.new_zeros((), dtype=torch.float32)
        for n_fft, hop in self.resolutions:
            X, Y = self.stft(x, n_fft, hop), self.stft(y, n_fft, hop)
            w = (X.abs() * Y.abs()).detach()  # [B, K, F]
            px, py = torch.angle(X), torch.angle(Y + 1e-12)  # the offset keeps angle's gradient finite at 0

            def weighted(a: Tensor, weight: Tensor) -> Tensor:
                return (anti_wrap(a) * weight).sum() / weight.sum().clamp_min(1e-12)

            ip = weighted(py - px, w)
            gd = weighted(torch.diff(py, dim=1) - torch.diff(px, dim=1), torch.minimum(w[:, 1:], w[:, :-1]))
            iaf = weighted(torch.diff(py, dim=2) - torch.diff(px, dim=2), torch.minimum(w[..., 1:], w[..., :-1]))
            total = total + ip + gd + iaf
        return total / len(self.resolutions)
