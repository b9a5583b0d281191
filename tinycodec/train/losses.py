"""Training losses: multi-scale mel reconstruction, hinge adversarial, feature matching.

SoundStream's generator objective is

    L_G = w_adv * L_adv + w_feat * L_feat + w_rec * L_rec + w_commit * L_commit

    L_rec  = sum over s in 2^6..2^11 of  mean |S_s(x) - S_s(y)|
                                       + sqrt(s / 2) * mean_t || log S_s(x)_t - log S_s(y)_t ||_2
    L_adv  = mean over discriminators k of mean relu(1 - D_k(y))              (hinge, generator)
    L_D    = mean over k of mean relu(1 - D_k(x)) + mean relu(1 + D_k(y))      (hinge, discriminator)
    L_feat = mean over k and layers l of mean |D_k^l(x) - D_k^l(y)|

with ``S_s`` a 64-band mel spectrogram with window ``s`` and hop ``s / 4``, ``x`` the input and
``y`` the reconstruction. The sqrt(s/2) factor balances the log term, whose per-frame norm
grows more slowly with the window than the linear term.

A harmonic-plus-noise decoder (``decoder_head="hn"``) can also be taught its pitch (:class:`PitchLoss`):

    L_f0 = mean over voiced target frames of |log2 f0_pred - log2 f0_target|  +  BCE(voicing logit, voiced)

with the target's f0 and voicing from :func:`tinycodec.modules.harmonic.estimate_f0`.

Notebook: book/04_training.md
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinycodec.audio import log_mel, mel_filterbank
from tinycodec.modules.harmonic import estimate_f0

__all__ = ["LossWeights", "MultiScaleMelLoss", "PitchLoss", "discriminator_hinge_loss", "generator_hinge_loss",
           "feature_matching_loss", "mel_distance"]


@dataclass
class LossWeights:
    """Weights of the generator loss terms (SoundStream's defaults)."""

    adversarial: float = 1.0
    feature: float = 100.0
    reconstruction: float = 1.0
    commitment: float = 1.0
    stft: float = 0.0  # multi-resolution linear + log magnitude STFT loss (spectral_losses; 0: off)
    complex: float = 0.0  # compressed complex STFT loss (spectral_losses; 0: off)
    phase: float = 0.0  # anti-wrapping phase losses (spectral_losses; 0: off)
    f0: float = 0.0  # pitch and voicing of a harmonic-plus-noise decoder head (PitchLoss; 0: off)


class MultiScaleMelLoss(nn.Module):
    """Multi-scale mel reconstruction loss (windows ``2**min_exp .. 2**max_exp``).

    Filterbanks and windows are built once per window size and kept as buffers, so a step
    only runs the STFTs.

    Args:
        sample_rate (int): Hz.
        n_mels (int): bands per scale (64). Small windows have fewer FFT bins than bands;
            their empty bands are zero for both signals and cost nothing.
        min_exp, max_exp (int): window sizes ``2**min_exp .. 2**max_exp`` (6..11).
        eps (float): floor inside the log (silence stays finite).
    """

    def __init__(self, sample_rate: int, n_mels: int = 64, min_exp: int = 6, max_exp: int = 11,
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.sample_rate, self.n_mels, self.eps = sample_rate, n_mels, eps
        self.windows = [2**e for e in range(min_exp, max_exp + 1)]
        for s in self.windows:
            self.register_buffer(f"fb_{s}", mel_filterbank(s, n_mels, sample_rate), persistent=False)
            self.register_buffer(f"window_{s}", torch.hann_window(s), persistent=False)

    def mel(self, wav: Tensor, s: int) -> Tensor:
        """Magnitude mel spectrogram at window ``s``: wav [B, 1, T] -> [B, n_mels, frames]."""
        spec = torch.stft(wav.reshape(-1, wav.shape[-1]).float(), s, s // 4, window=getattr(self, f"window_{s}"),
                          center=True, pad_mode="reflect", return_complex=True).abs()
        return torch.einsum("bkf,km->bmf", spec, getattr(self, f"fb_{s}"))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Args:
            x (Tensor): [B, 1, T] target audio.
            y (Tensor): [B, 1, T] reconstruction.

        Returns:
            Tensor: scalar loss (sum over scales).
        """
        total = x.new_zeros((), dtype=torch.float32)
        for s in self.windows:
            mx, my = self.mel(x, s), self.mel(y, s)
            l1 = (mx - my).abs().mean()
            d = torch.log(mx.clamp_min(self.eps)) - torch.log(my.clamp_min(self.eps))
            # per-frame L2 over bands (vector_norm's gradient at a zero frame is 0, not NaN)
            l2 = torch.linalg.vector_norm(d, dim=1).mean()
            total = total + l1 + math.sqrt(s / 2) * l2
        return total


class PitchLoss(nn.Module):
    """Pitch and voicing of a harmonic-plus-noise head against the target's (see the module docstring).

    Decoder frame ``f`` synthesises the decoder's output samples ``[f hop, f hop + n_fft)``; offline its
    output lags the target by ``delay`` samples, so the frame is centred at target sample
    ``f hop + n_fft / 2 - delay``: the target is shifted by that ``offset`` before the tracker (whose
    frame ``f`` is centred at ``f hop``) reads it.

    Args:
        sample_rate (int): Hz.
        hop_length (int): samples per decoder frame.
        offset (int): ``n_fft // 2 - delay`` of the decoder, in samples.
    """

    def __init__(self, sample_rate: int, hop_length: int, offset: int) -> None:
        super().__init__()
        self.sample_rate, self.hop_length, self.offset = sample_rate, hop_length, offset

    def forward(self, x: Tensor, f0: Tensor, voicing: Tensor) -> Tensor:
        """Args:
            x (Tensor): [B, 1, T] target audio (aligned with the reconstruction).
            f0 (Tensor): [B, F] the head's f0 in Hz (``head.last_f0``).
            voicing (Tensor): [B, F] the head's voicing logits (``head.last_voicing``).

        Returns:
            Tensor: scalar, the L1 of log2 f0 over voiced frames plus the voicing BCE.
        """
        x = x.reshape(x.shape[0], -1).float()
        T, s = x.shape[-1], self.offset
        shifted = F.pad(x[:, s:], (0, s)) if s >= 0 else F.pad(x, (-s, 0))[:, :T]
        target, voiced = estimate_f0(shifted, self.sample_rate, self.hop_length)
        n = min(target.shape[1], f0.shape[1])
        target, voiced, f0, voicing = target[:, :n], voiced[:, :n], f0[:, :n].float(), voicing[:, :n].float()
        pitch = ((torch.log2(f0) - torch.log2(target)).abs() * voiced).sum() / voiced.sum().clamp_min(1.0)
        return pitch + F.binary_cross_entropy_with_logits(voicing, voiced)


def generator_hinge_loss(fake_logits: list[Tensor]) -> Tensor:
    """Hinge loss of the generator: mean over discriminators of ``mean relu(1 - D(y))``."""
    return torch.stack([torch.relu(1 - f).mean() for f in fake_logits]).mean()


def discriminator_hinge_loss(real_logits: list[Tensor], fake_logits: list[Tensor]) -> Tensor:
    """Hinge loss of the discriminator: ``mean relu(1 - D(x)) + mean relu(1 + D(y))``, averaged over discriminators."""
    terms = [torch.relu(1 - r).mean() + torch.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits)]
    return torch.stack(terms).mean()


def feature_matching_loss(real_features: list[list[Tensor]], fake_features: list[list[Tensor]]) -> Tensor:
    """L1 between discriminator features of real and decoded audio, averaged over layers and discriminators.

    The real features are targets: pass them detached (computed under ``torch.no_grad``).
    """
    per_disc = [torch.stack([(r - f).abs().mean() for r, f in zip(rs, fs)]).mean()
                for rs, fs in zip(real_features, fake_features)]
    return torch.stack(per_disc).mean()


@torch.no_grad()
def mel_distance(x: Tensor, y: Tensor, sample_rate: int, n_fft: int = 1024, hop_length: int = 256,
                 n_mels: int = 64) -> float:
    """Validation metric: mean absolute log-mel difference (natural log, 64 bands).

    Args:
        x (Tensor): [B, 1, T] reference.
        y (Tensor): [B, 1, T] reconstruction.

    Returns:
        float: 0 for identical signals; about 1 means a factor e of level error on average.
    """
    kw = dict(n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, power=1.0)
    return float((log_mel(x.float(), sample_rate, **kw) - log_mel(y.float(), sample_rate, **kw)).abs().mean())
