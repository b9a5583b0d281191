"""How much of the spectrum do the codes carry? Two measurements that need no trained decoder.

1. **Envelope oracles.** The true mel envelope of the input at the codec's frame rate (hop 256 at
   16 kHz, 62.5 Hz), with ``n_mels`` bands, unquantized, spread back over the FFT bins with the
   filterbank's pseudo-inverse and given a phase by Griffin-Lim. ``n_mels = 1`` keeps only the
   loudness of each frame; ``n_mels = 0`` keeps the whole magnitude spectrum. Scoring these with the
   codec metrics (PESQ-WB, STOI, log-mel) draws a curve: what an envelope of ``n`` bands is worth.
   A codec whose decoder scores below the one-band point carries about what a loudness meter does.
2. **A linear probe of the codes.** Ridge regression from a model's quantized embeddings (one
   ``D``-vector per frame, optionally with its neighbours) to the *shape* of the frame's log-mel
   spectrum (each frame minus its own mean, so loudness is not counted), fitted on training clips
   and scored (R^2) on held-out ones. Any decoder can use at most what the codes hold; a probe
   that explains little of the shape says the encoder is what to improve, not the decoder.

Notebook: book/04_training.md (the server decoders); ``benchmarks/bench_code_information.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tinycodec.audio import mel_filterbank

__all__ = ["griffin_lim", "mel_envelope_oracle", "log_mel_frames", "code_features", "ridge_r2"]


def griffin_lim(magnitude: Tensor, n_fft: int, hop_length: int, iters: int = 64, seed: int = 0) -> Tensor:
    """A waveform whose STFT magnitude approaches ``magnitude`` (Griffin and Lim 1984).

    Args:
        magnitude (Tensor): [n_fft // 2 + 1, frames], of ``torch.stft(..., center=True)`` with a Hann window.
        n_fft, hop_length (int): the STFT's.
        iters (int): projections onto consistent spectrograms.
        seed (int): the random starting phase (the result is deterministic for a seed).

    Returns:
        Tensor: [(frames - 1) * hop_length] float32.
    """
    window = torch.hann_window(n_fft, dtype=magnitude.dtype)
    g = torch.Generator().manual_seed(seed)
    phase = torch.exp(2j * torch.pi * torch.rand(magnitude.shape, generator=g, dtype=magnitude.dtype))
    for _ in range(iters):
        y = torch.istft(magnitude * phase, n_fft, hop_length, window=window)
        spec = torch.stft(y, n_fft, hop_length, window=window, return_complex=True)
        phase = spec / spec.abs().clamp_min(1e-8)
    return torch.istft(magnitude * phase, n_fft, hop_length, window=window)


@torch.no_grad()
def mel_envelope_oracle(wav: Tensor, sample_rate: int, n_mels: int, n_fft: int = 1024, hop_length: int = 256,
                        iters: int = 64, seed: int = 0) -> Tensor:
    """``wav`` rebuilt from its own ``n_mels``-band mel envelope at ``hop_length`` (0: the whole magnitude).

    Args:
        wav (Tensor): (T,) mono.
        sample_rate (int): Hz.
        n_mels (int): bands kept (1: loudness only); 0 keeps every FFT bin.
        n_fft, hop_length (int): analysis STFT (defaults: 64 ms windows at the 16 kHz codecs' frame rate).
        iters, seed: Griffin-Lim's.

    Returns:
        Tensor: (T,) float32, the same length as ``wav``.
    """
    if n_mels < 0:
        raise ValueError(f"n_mels must be >= 0 (0: the full magnitude), got {n_mels}")
    x = wav.reshape(-1).float()
    window = torch.hann_window(n_fft)
    mag = torch.stft(x, n_fft, hop_length, window=window, return_complex=True).abs()
    if n_mels:
        fb = mel_filterbank(n_fft, n_mels, sample_rate)  # [bins, mels]
        mag = (torch.linalg.pinv(fb).T @ (fb.T @ mag)).clamp_min(0)
    y = griffin_lim(mag, n_fft, hop_length, iters, seed)[: x.numel()]
    return torch.nn.functional.pad(y, (0, x.numel() - y.numel()))


def log_mel_frames(wav: Tensor, sample_rate: int, hop_length: int, n_mels: int = 40) -> Tensor:
    """Log-mel spectrum of each codec frame: [F, n_mels] for ``F = T // hop_length`` frames.

    Frame ``f`` is analysed with a ``2 * hop_length`` Hann window centred on the end of block ``f``
    (the last sample the encoder's frame ``f`` has heard).
    """
    x = wav.reshape(-1).float()
    n_fft = 2 * hop_length
    spec = torch.stft(x, n_fft, hop_length, window=torch.hann_window(n_fft), return_complex=True).abs()
    mel = mel_filterbank(n_fft, n_mels, sample_rate).T @ spec  # [n_mels, T // hop + 1]
    return torch.log(mel + 1e-5).T[1: x.numel() // hop_length + 1]


@torch.no_grad()
def code_features(model, wav: Tensor, context: int = 0) -> Tensor:
    """The model's quantized embeddings per frame, [F, D * (2 context + 1)] (neighbours concatenated,
    zero beyond the clip's ends), for ``F = T // hop_length`` whole frames of ``wav`` (T,)."""
    hop = model.hop_length
    x = wav.reshape(1, 1, -1)[..., : wav.numel() // hop * hop].float()
    q = model.quantizer.decode(model.encode(x))[0].T  # [F, D]
    if context:
        padded = torch.nn.functional.pad(q, (0, 0, context, context))
        q = torch.cat([padded[i: i + q.shape[0]] for i in range(2 * context + 1)], dim=1)
    return q


def ridge_r2(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, lam: float = 1e-2) -> float:
    """R^2 on the test set of a ridge regression ``y ~ x`` fitted on the training set (features
    standardised on the training set, intercept unpenalised in effect, ``lam`` per training row).

    Returns:
        float: ``1 - SSE / SST`` over every output column (SST about the training mean).
    """
    xt, yt, xe, ye = (t.double() for t in (x_train, y_train, x_test, y_test))
    mu, sd = xt.mean(0), xt.std(0) + 1e-6
    a = torch.cat([(xt - mu) / sd, torch.ones(len(xt), 1, dtype=xt.dtype)], 1)
    b = torch.cat([(xe - mu) / sd, torch.ones(len(xe), 1, dtype=xe.dtype)], 1)
    w = torch.linalg.solve(a.T @ a + lam * len(a) * torch.eye(a.shape[1], dtype=a.dtype), a.T @ yt)
    sse = ((b @ w - ye) ** 2).sum()
    sst = ((ye - yt.mean(0)) ** 2).sum()
    return float(1 - sse / sst)
