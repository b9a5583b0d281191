"""Speech structure for the server decoder: a pitch tracker and a harmonic (voiced) source.

A harmonic-plus-noise head (:class:`~tinycodec.modules.server_decoder.HarmonicNoiseHead`) adds to the
iSTFT head's spectrum the spectrum of a harmonic excitation, shaped by a predicted envelope::

    x_f [dim] -> Linear -> (log-envelope [bins], a, v)      f0 = fmin (fmax / fmin)^sigmoid(a)
    e_f(t) = sum_{k: k f0 < sr/2} cos(k (phi_f + 2 pi f0 t / sr)),   t = 0 .. n_fft - 1
    H_f = sigmoid(v) exp(log-envelope) rfft(e_f * analysis window)
    phi_{f+1} = phi_f + 2 pi f0_f hop / sr  (mod 2 pi)     (the phase carried across frames and calls)

The harmonic sum has a closed form (the Dirichlet kernel), so a frame costs O(n_fft), not
O(harmonics x n_fft). The analysis window is the synthesis window's dual: after the head's synthesis
window and overlap-add, a flat envelope ``c`` gives back ``c e(t)`` exactly (no frame-rate ripple), so
``exp(log-envelope)`` is the amplitude of each harmonic in the output.

:func:`estimate_f0` is the target side: a YIN pitch tracker (de Cheveigne & Kawahara 2002) on frames
centred at ``f hop``, vectorised over the batch and the frames.

Notebook: book/04_training.md
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinycodec.modules.streaming import State, StreamingModule

__all__ = ["HarmonicSource", "estimate_f0", "harmonic_sum"]

FMIN, FMAX = 60.0, 400.0  # Hz: the pitch range of speech, for the tracker and the predicted f0


@torch.no_grad()
def estimate_f0(wav: Tensor, sample_rate: int, hop: int, fmin: float = FMIN, fmax: float = FMAX,
                threshold: float = 0.3, min_rms: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Frame-wise pitch by YIN's cumulative mean normalised difference (CMNDF).

    Frame ``f`` holds ``2 ceil(sr / fmin)`` samples centred at sample ``f hop`` (zeros outside ``wav``).
    Its period is the first lag in ``[sr / fmax, sr / fmin]`` whose CMNDF dips below ``threshold``,
    followed down to its local minimum and refined by a parabola (YIN's steps 3-5); a frame is voiced
    when that dip exists and its RMS is at least ``min_rms``.

    Args:
        wav (Tensor): [B, T] (or [B, 1, T]) float.
        sample_rate (int): Hz.
        hop (int): samples between frame centres.
        fmin, fmax (float): pitch range in Hz.
        threshold (float): CMNDF dip that counts as periodic.
        min_rms (float): quieter frames are unvoiced.

    Returns:
        tuple[Tensor, Tensor]: f0 [B, F] in Hz (the best lag's pitch, also where unvoiced), voiced [B, F]
        float in {0, 1}; ``F = T // hop``.
    """
    x = wav.reshape(wav.shape[0], -1).float()
    B, T = x.shape
    n = T // hop
    tau_max, tau_min = math.ceil(sample_rate / fmin), max(2, math.floor(sample_rate / fmax))
    width = tau_max  # YIN's integration window: one longest period
    length = width + tau_max
    if n == 0:
        return x.new_zeros(B, 0), x.new_zeros(B, 0)
    padded = F.pad(x, (length // 2, length))
    frames = padded.unfold(1, length, hop)[:, :n]  # [B, F, length], frame f centred at f hop
    frames = frames - frames.mean(-1, keepdim=True)
    # d(tau) = sum_{j<W} (x_j - x_{j+tau})^2 = E(0) + E(tau) - 2 c(tau), c by one FFT per frame
    size = 1 << (length + width - 1).bit_length()
    c = torch.fft.irfft(torch.fft.rfft(frames[..., :width], size).conj() * torch.fft.rfft(frames, size),
                        size)[..., : tau_max + 1]
    energy = F.pad(frames.square().cumsum(-1), (1, 0))  # [B, F, length + 1]
    window_energy = energy[..., width: width + tau_max + 1] - energy[..., : tau_max + 1]  # E(tau)
    d = (window_energy[..., :1] + window_energy - 2 * c).clamp_min(0)  # [B, F, tau_max + 1]
    lags = torch.arange(1, tau_max + 1, device=x.device, dtype=d.dtype)
    total = d[..., 1:].cumsum(-1)
    # d'(tau) = d(tau) tau / sum_{j<=tau} d(j), lag tau at index tau - 1 (1 where the frame is silent)
    cmndf = torch.where(total > 1e-12, d[..., 1:] * lags / total.clamp_min(1e-12), torch.ones_like(total))
    search = cmndf[..., tau_min - 1:]  # lags tau_min .. tau_max
    below = search < threshold
    first = below.int().argmax(-1, keepdim=True)  # first dip below the threshold (0 where none)
    idx = torch.arange(search.shape[-1], device=x.device)
    rising = F.pad(search[..., 1:] >= search[..., :-1], (0, 1), value=True)  # the next lag is no lower
    local_min = ((idx >= first) & rising).int().argmax(-1)  # follow the dip down to its minimum
    best = torch.where(below.any(-1), local_min, search.argmin(-1))
    # parabolic interpolation of the minimum (within half a lag)
    i0, i2 = (best - 1).clamp(0, search.shape[-1] - 1), (best + 1).clamp(0, search.shape[-1] - 1)
    y0, y1, y2 = (search.gather(-1, i[..., None])[..., 0] for i in (i0, best, i2))
    curve = y0 - 2 * y1 + y2
    shift = torch.where(curve > 1e-9, 0.5 * (y0 - y2) / curve.clamp_min(1e-9), torch.zeros_like(curve))
    shift = shift.clamp(-0.5, 0.5)
    period = (best + tau_min).to(x.dtype) + shift
    rms = frames.square().mean(-1).sqrt()
    voiced = (below.any(-1) & (rms >= min_rms)).to(x.dtype)
    return (sample_rate / period).clamp(fmin, fmax), voiced


def harmonic_sum(theta: Tensor, harmonics: Tensor) -> Tensor:
    """``sum_{k=1}^{K} cos(k theta)`` by the Dirichlet kernel, ``sin((K + 1/2) theta) / (2 sin(theta / 2)) - 1/2``.

    Args:
        theta (Tensor): angles in ``[0, 2 pi)``, any shape.
        harmonics (Tensor): ``K`` (float, whole numbers), broadcastable to ``theta``.

    Returns:
        Tensor: the sum, shaped like ``theta`` (``K`` where ``theta`` is within 1e-4 of a multiple of 2 pi).
    """
    half = torch.sin(0.5 * theta)
    near = half.abs() < 5e-5
    ratio = torch.sin((harmonics + 0.5) * theta) / (2 * torch.where(near, torch.ones_like(half), half))
    return torch.where(near, harmonics.expand_as(theta), ratio - 0.5)


# the log-envelope's learning-rate multiplier (see HarmonicSource): it moves 16x faster than its layer
ENVELOPE_RATE = 16.0


@dataclass
class _PhaseState(State):
    phase: Tensor  # [B] float64: the harmonic phase at the next frame's first sample, in [0, 2 pi)


class HarmonicSource(StreamingModule):
    """Frames -> the spectrum of a shaped harmonic excitation (see the module docstring).

    Args:
        dim (int): input channels.
        hop_length (int): samples per frame.
        n_fft (int): frame length, at least two hops (the excitation needs overlapping frames).
        sample_rate (int): Hz.
        synthesis_window (Tensor): [n_fft] the head's window after the inverse FFT (on the CPU).
        fmin, fmax (float): range of the predicted f0 in Hz.
        voicing_bias, envelope_bias (float): initial biases of the voicing logit and the log-envelope. The
            source starts near silent (each harmonic at about -130 dBFS), so a head whose iSTFT layer comes
            from a trained decoder starts where that decoder is: a louder start (-78 dBFS, envelope bias -6)
            adds a buzz to the silences that raised the flagship's validation log-mel distance from 1.00
            to 1.58; -12 adds 1 %. The log-envelope is the layer's output times ``ENVELOPE_RATE``: Adam moves
            a parameter by about the learning rate per step whatever its gradient, so without it the
            envelope's bias would need some 60,000 steps at 2e-4 to climb from -12 to a gain near 1 (a
            first run's harmonic part stayed at 1e-9 of the output's energy after 4,000 steps).

    Attributes (after each forward): ``last_f0`` [B, F] Hz and ``last_voicing`` [B, F] logits.
    """

    def __init__(self, dim: int, hop_length: int, n_fft: int, sample_rate: int, synthesis_window: Tensor,
                 fmin: float = FMIN, fmax: float = FMAX, voicing_bias: float = -3.0,
                 envelope_bias: float = -12.0) -> None:
        super().__init__()
        if n_fft < 2 * hop_length or n_fft % hop_length:
            raise ValueError(f"a harmonic source needs n_fft={n_fft} to be a multiple of at least two hops "
                             f"(hop_length={hop_length})")
        self.hop_length, self.n_fft, self.sample_rate = hop_length, n_fft, sample_rate
        self.fmin, self.fmax = float(fmin), float(fmax)
        self.bins = n_fft // 2 + 1
        self.proj = nn.Linear(dim, self.bins + 2)  # log-envelope per bin, f0 logit, voicing logit
        with torch.no_grad():
            self.proj.weight.mul_(0.1)
            self.proj.weight[: self.bins] /= ENVELOPE_RATE  # the envelope as before the multiplier
            self.proj.bias[: self.bins] = envelope_bias / ENVELOPE_RATE
            self.proj.bias[self.bins] = 0.0  # f0 at the geometric middle of the range
            self.proj.bias[self.bins + 1] = voicing_bias
        # the dual of the synthesis window: analysis x synthesis summed over the overlapping frames is 1
        s = synthesis_window.detach().to("cpu", torch.float64)
        overlap = s.reshape(-1, hop_length).square().sum(0).repeat(n_fft // hop_length)
        device = torch.empty(0).device  # (the meta device while a model is built there)
        self.register_buffer("analysis", (s / overlap).float().to(device), persistent=False)
        self.register_buffer("t", torch.arange(n_fft, dtype=torch.float32).to(device), persistent=False)
        self.last_f0: Tensor | None = None
        self.last_voicing: Tensor | None = None

    def _init_streaming_state(self, batch_size: int) -> _PhaseState:
        return _PhaseState(batch_size, self.analysis.new_zeros(batch_size, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (Tensor): [B, dim, F]. Returns: Tensor: complex [B, F, bins], the excitation's spectrum."""
        state, persistent = self._get_state(x.shape[0])
        p = self.proj(x.transpose(1, 2)).float()  # [B, F, bins + 2]
        log_env, f0_logit, voicing = ENVELOPE_RATE * p[..., : self.bins], p[..., self.bins], p[..., self.bins + 1]
        f0 = self.fmin * (self.fmax / self.fmin) ** torch.sigmoid(f0_logit)  # [B, F] Hz
        self.last_f0, self.last_voicing = f0, voicing
        # the phase at each frame's start: the carried phase plus the advances of the frames before it,
        # summed in float64 so a long file and its chunks agree
        step = (2 * math.pi * self.hop_length / self.sample_rate) * f0.detach().double()
        ends = (state.phase[:, None] + step.cumsum(1)).remainder(2 * math.pi)  # [B, F] after each frame
        starts = torch.cat([state.phase[:, None], ends[:, :-1]], 1)
        if persistent and f0.shape[1]:
            state.phase = ends[:, -1]
        omega = (2 * math.pi / self.sample_rate) * f0  # rad per sample, with its gradient
        theta = (starts.float()[..., None] + omega[..., None] * self.t).remainder(2 * math.pi)  # [B, F, n_fft]
        harmonics = torch.ceil(0.5 * self.sample_rate / f0.detach()) - 1  # k f0 < sr / 2
        excitation = harmonic_sum(theta, harmonics[..., None]) * self.analysis
        gain = torch.exp(log_env.clamp(max=8.0)) * torch.sigmoid(voicing)[..., None]
        return torch.fft.rfft(excitation, n=self.n_fft) * gain
