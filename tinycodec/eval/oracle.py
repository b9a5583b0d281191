"""Where the quality goes: oracle decodes that replace one part of the codec by the truth.

For a clip ``x`` and its decode ``y`` at ``n_q`` codebooks:

    codes            y = decoder(quantize_{n_q}(encoder(x)))       what ships
    latent           decoder(encoder(x))                           no quantization: what the codes cost
    oracle phase     iSTFT(|Y| e^{i angle X})                      the decoder's magnitude, the true phase
    oracle magnitude iSTFT(|X| e^{i angle Y})                      the true magnitude, the decoder's phase

(STFT with a 512-point Hann window, hop 128.) The gap between ``codes`` and ``latent`` is the cost of
quantization; the gap between ``codes`` and ``oracle phase`` is what the decoder's phase costs, and
between ``codes`` and ``oracle magnitude`` what its magnitude (fine structure included) costs.

Notebook: book/05_bitrate.md
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["DECODES", "oracle_decodes", "oracle_scores", "summarize_oracle"]

DECODES = ("codes", "latent", "oracle_phase", "oracle_magnitude")
N_FFT, HOP = 512, 128


def _stft(wav: Tensor) -> Tensor:
    """wav [B, 1, T] -> complex [B, N_FFT // 2 + 1, frames]."""
    window = torch.hann_window(N_FFT, device=wav.device)
    return torch.stft(wav.reshape(-1, wav.shape[-1]).float(), N_FFT, HOP, window=window, center=True,
                      return_complex=True)


def _istft(spec: Tensor, length: int) -> Tensor:
    window = torch.hann_window(N_FFT, device=spec.device)
    return torch.istft(spec, N_FFT, HOP, window=window, center=True, length=length).unsqueeze(1)


@torch.no_grad()
def oracle_decodes(model, wav: Tensor, n_q: int | None = None) -> dict[str, Tensor]:
    """The four decodes of ``wav`` (see the module docstring), each [B, 1, T].

    Args:
        model: a codec model (``encoder``, ``quantizer``, ``synthesize``, ``pad_for_delay``).
        wav (Tensor): [B, 1, T] float in [-1, 1] at ``model.sample_rate``.
        n_q (int | None): codebooks of the ``codes`` decode (default all).

    Raises:
        ValueError: ``wav`` is not [B, 1, T], or ``n_q`` is out of range.
    """
    if wav.dim() != 3 or wav.shape[1] != 1:
        raise ValueError(f"wav must be [B, 1, T], got shape {tuple(wav.shape)}")
    n_q = n_q or model.quantizer.num_quantizers
    if not 1 <= n_q <= model.quantizer.num_quantizers:
        raise ValueError(f"n_q must be in 1..{model.quantizer.num_quantizers}, got {n_q}")
    length = wav.shape[-1]
    z = model.encoder(model.pad_for_delay(wav))  # [B, D, F]
    decoded = model.synthesize(model.quantizer.decode(model.quantizer.encode(z, n_q)))[..., :length]
    latent = model.synthesize(z)[..., :length]
    X, Y = _stft(wav), _stft(decoded)
    phase_x, phase_y = torch.polar(torch.ones_like(X.real), X.angle()), torch.polar(torch.ones_like(Y.real), Y.angle())
    return {
        "codes": decoded,
        "latent": latent,
        "oracle_phase": _istft(Y.abs() * phase_x, length),
        "oracle_magnitude": _istft(X.abs() * phase_y, length),
    }


def oracle_scores(model, clips, n_qs=None, speech: bool = True, progress: bool = False) -> list[dict]:
    """PESQ-WB, STOI and log-mel of every oracle decode of every clip at every ``n_q``.

    Args:
        model: a codec model in eval mode.
        clips: :class:`tinycodec.eval.clips.Clip` objects (``wav`` [1, 1, T] at the model's rate).
        n_qs: numbers of codebooks (default: 1..all).
        speech (bool): also score PESQ-WB and STOI (speech metrics).
        progress (bool): a tqdm bar over the clips.

    Returns:
        list[dict]: one row per clip, ``n_q`` and decode: ``file``, ``category``, ``n_q``, ``decode``
        and the metrics.
    """
    from tqdm.auto import tqdm

    from tinycodec.eval.metrics import log_mel_distance, pesq_wb, stoi

    n_qs = list(n_qs or range(1, model.quantizer.num_quantizers + 1))
    sr, rows = model.sample_rate, []
    for clip in tqdm(clips, desc="oracle", disable=not progress):
        ref = clip.wav.reshape(1, 1, -1).float()
        for n_q in n_qs:
            for decode, out in oracle_decodes(model, ref, n_q).items():
                if decode == "latent" and n_q != n_qs[-1]:
                    continue  # the latent decode does not depend on n_q: scored once
                row = {"file": clip.file, "category": clip.category, "n_q": n_q if decode != "latent" else None,
                       "decode": decode, "log_mel": log_mel_distance(ref, out, sr)}
                if speech:
                    row |= {"pesq_wb": pesq_wb(ref, out, sr), "stoi": stoi(ref, out, sr)}
                rows.append(row)
    return rows


def summarize_oracle(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Means over clips: ``{"DECODE@N": {metric: mean, "n_clips": n}}`` (``latent`` without ``@N``)."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        key = row["decode"] if row["n_q"] is None else f"{row['decode']}@{row['n_q']}"
        groups.setdefault(key, []).append(row)
    out = {}
    for key, members in groups.items():
        metrics = [k for k in members[0] if k not in ("file", "category", "n_q", "decode")]
        means = {}
        for k in metrics:
            vals = [r[k] for r in members if r.get(k) is not None and not math.isnan(r[k])]
            means[k] = sum(vals) / len(vals) if vals else math.nan
        out[key] = means | {"n_clips": len(members)}
    return out
