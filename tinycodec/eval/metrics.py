"""Quality metrics for decoded audio, and codebook usage statistics from codes.

Spectral distances (log-mel, multi-resolution STFT) and SI-SDR work on any audio; PESQ-WB and
STOI are speech metrics (the ``pesq`` and ``pystoi`` packages, the ``eval`` extra), imported only
when called. Every waveform metric takes a reference and an estimate, trims both to the shorter
length (codecs pad to whole frames) and returns a float averaged over the batch.

Notebook: book/05_bitrate.md
"""

from __future__ import annotations

import importlib
import math
import warnings

import numpy as np
import torch

from tinycodec.bitstream.entropy import codebook_histograms


def _require(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise RuntimeError(
            f"this metric needs the '{package}' package: pip install 'tinycodec[eval]' (or pip install {package})"
        ) from None


def _pair(ref, est) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as float tensors [N, T] with a common length."""
    ref = torch.as_tensor(ref, dtype=torch.float32)
    est = torch.as_tensor(est, dtype=torch.float32)
    n = min(ref.shape[-1], est.shape[-1])
    ref, est = ref[..., :n].reshape(-1, n), est[..., :n].reshape(-1, n)
    if ref.shape != est.shape:
        raise ValueError(f"reference and estimate batch shapes differ: {tuple(ref.shape)} vs {tuple(est.shape)}")
    return ref, est


def si_sdr(ref, est, eps: float = 1e-8) -> float:
    """Scale-invariant signal-to-distortion ratio (Le Roux et al. 2019), in dB; higher is better.

    Args:
        ref (Tensor): [..., T] reference.
        est (Tensor): [..., T'] estimate (both trimmed to min(T, T')).
    """
    ref, est = _pair(ref, est)
    ref = ref - ref.mean(-1, keepdim=True)
    est = est - est.mean(-1, keepdim=True)
    alpha = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = alpha * ref
    noise = est - target
    ratio = (target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps)
    return float((10 * torch.log10(ratio)).mean())


def log_mel_distance(ref, est, sample_rate: int, n_fft: int = 1024, hop_length: int = 256,
                     n_mels: int = 80, eps: float = 1e-5) -> float:
    """Mean absolute difference of natural-log mel spectrograms; 0 for identical audio, lower is better.

    Args:
        ref (Tensor): [..., T] reference at ``sample_rate``.
        est (Tensor): [..., T'] estimate.
    """
    from tinycodec.audio import log_mel

    ref, est = _pair(ref, est)
    kw = dict(n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, eps=eps)
    return float((log_mel(ref, sample_rate, **kw) - log_mel(est, sample_rate, **kw)).abs().mean())


def multi_resolution_stft_distance(ref, est, fft_sizes=(512, 1024, 2048), eps: float = 1e-7) -> float:
    """Spectral convergence plus log-magnitude L1, averaged over STFT resolutions (hop = n_fft / 4).

    The loss of Parallel WaveGAN (Yamamoto et al. 2020) used as a distance; 0 for identical audio.

    Args:
        ref (Tensor): [..., T] reference.
        est (Tensor): [..., T'] estimate.
    """
    ref, est = _pair(ref, est)
    total = 0.0
    for n_fft in fft_sizes:
        window = torch.hann_window(n_fft)
        mags = [torch.stft(x, n_fft, hop_length=n_fft // 4, window=window, return_complex=True).abs()
                for x in (ref, est)]
        sc = torch.linalg.norm(mags[0] - mags[1]) / (torch.linalg.norm(mags[0]) + eps)
        log_l1 = (torch.log(mags[0] + eps) - torch.log(mags[1] + eps)).abs().mean()
        total += float(sc + log_l1)
    return total / len(fft_sizes)


def _to_16k_numpy(ref, est, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    ref, est = _pair(ref, est)
    if sample_rate != 16000:
        from tinycodec.audio import resample

        ref, est = resample(ref, sample_rate, 16000), resample(est, sample_rate, 16000)
    return ref.double().numpy(), est.double().numpy()


def pesq_wb(ref, est, sample_rate: int) -> float:
    """Wideband PESQ (ITU-T P.862.2) MOS-LQO in about [1.0, 4.64]; speech only; higher is better.

    Args:
        ref (Tensor): [..., T] clean speech (resampled to 16 kHz when needed).
        est (Tensor): [..., T'] decoded speech.

    Raises:
        RuntimeError: the ``pesq`` package is missing, or PESQ finds no speech in the reference.
    """
    pesq = _require("pesq", "pesq")
    ref, est = _to_16k_numpy(ref, est, sample_rate)
    scores = []
    for r, e in zip(ref, est):
        try:
            scores.append(pesq.pesq(16000, r, e, "wb"))
        except pesq.PesqError as exc:  # NoUtterancesError on silence, BufferTooShortError under 0.25 s
            hint = ("the clip is shorter than PESQ's 0.25 s" if "Short" in type(exc).__name__
                    else "is the reference speech?")
            raise RuntimeError(f"PESQ failed ({type(exc).__name__}): {exc}; {hint}") from None
    return float(np.mean(scores))


def stoi(ref, est, sample_rate: int, extended: bool = False) -> float:
    """Short-time objective intelligibility (Taal et al. 2011) in [0, 1]; speech only; higher is better.

    Args:
        ref (Tensor): [..., T] clean speech (resampled to 16 kHz; pystoi works at 10 kHz inside).
        est (Tensor): [..., T'] decoded speech.
        extended: ESTOI instead of STOI.

    Returns:
        float: the mean over the batch; NaN where pystoi finds fewer than its 30 frames
        (384 ms) of speech after dropping silent frames: pystoi itself would return 1e-5 there,
        which as a score would read as "unintelligible" and drag every codec's mean down alike.
    """
    pystoi = _require("pystoi", "pystoi")
    ref, est = _to_16k_numpy(ref, est, sample_rate)
    scores = []
    for r, e in zip(ref, est):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = pystoi.stoi(r, e, 16000, extended=extended)
        too_short = any("Not enough STFT frames" in str(w.message) for w in caught)
        scores.append(math.nan if too_short else float(value))
    return float(np.mean(scores))


def codebook_usage(codes, codebook_size: int) -> dict[str, np.ndarray]:
    """Per-quantizer codebook statistics.

    Args:
        codes (LongTensor | ndarray): [B, n_q, F] or [n_q, F].
        codebook_size: entries per codebook (K).

    Returns:
        dict: arrays of shape [n_q]: ``usage`` (fraction of the K entries used at least once),
        ``entropy_bits`` (empirical entropy in bits per index, at most log2 K) and ``perplexity``
        (2 ** entropy: the number of equally likely entries with that entropy, at most K).
    """
    hist = codebook_histograms(codes, codebook_size).astype(np.float64)  # [n_q, K]
    p = hist / np.maximum(hist.sum(axis=1, keepdims=True), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
    return {"usage": (hist > 0).mean(axis=1), "entropy_bits": h, "perplexity": np.exp2(h)}


def all_metrics(ref, est, sample_rate: int, speech: bool = True) -> dict[str, float]:
    """Every waveform metric in one dict (PESQ-WB and STOI only when ``speech``).

    Returns:
        dict: ``log_mel``, ``mr_stft``, ``si_sdr`` and, for speech, ``pesq_wb`` and ``stoi``.
    """
    out = {
        "log_mel": log_mel_distance(ref, est, sample_rate),
        "mr_stft": multi_resolution_stft_distance(ref, est),
        "si_sdr": si_sdr(ref, est),
    }
    if speech:
        out["pesq_wb"] = pesq_wb(ref, est, sample_rate)
        out["stoi"] = stoi(ref, est, sample_rate)
    return out
