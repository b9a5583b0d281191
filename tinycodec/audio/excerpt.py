"""Audible excerpts: pick the part of a clip where something happens, and players that say how loud.

Recordings often open with seconds of room noise (the demo conversation is at about -70 dBFS for
its first 6 s), so "the first 4 seconds" can be silence. ``active_excerpt`` chooses the start by
energy instead::

    frame levels (dBFS, 50 ms)   -70 -71 -45 -70 ... -38 -23 -25 -32 -31 ... -29
    active (>= loud - 30 dB)       .   .   x   .  ...   x   x   x   x   x  ...   x
    window of `seconds`:                              [=========================]
                     the earliest window holding >= 90 % of the most active frames any window
                     holds, moved to its first active frame

``player`` wraps IPython's ``Audio``: the browser player still normalizes its samples, but the
``<audio>`` element carries the clip's level *before* normalization, so a check of the executed
book (``python tools/book.py audio``) can refuse a player that would play silence made loud.

Notebook: book/01_data.md
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "AUDIBLE_RMS_DBFS",
    "ACTIVE_FRAME_DBFS",
    "MIN_ACTIVE_FRACTION",
    "frame_levels_dbfs",
    "active_start",
    "active_excerpt",
    "loudness_report",
    "is_audible",
    "player",
]

# the loudness floor every player of the book must clear (levels before normalization)
AUDIBLE_RMS_DBFS = -45.0  # RMS of the whole clip; quiet room noise is about -70
ACTIVE_FRAME_DBFS = -50.0  # a 50 ms frame at or above this level counts as "something happens"
MIN_ACTIVE_FRACTION = 0.25  # at least a quarter of the clip must be active frames


def frame_levels_dbfs(wav: Tensor, sample_rate: int, frame_seconds: float = 0.05) -> Tensor:
    """RMS level of consecutive frames in dBFS (0 dBFS = RMS 1), channels and batch pooled.

    Args:
        wav (Tensor): [..., T] float in [-1, 1].
        sample_rate (int): samples per second.
        frame_seconds (float): frame length; a last partial frame is dropped.

    Returns:
        Tensor: [n_frames] levels floored at -120 dB (empty when T is shorter than one frame).
    """
    frame = max(1, int(round(frame_seconds * sample_rate)))
    x = wav.detach().float().reshape(-1, wav.shape[-1])  # (channels, T)
    n = x.shape[-1] // frame
    power = x[:, : n * frame].reshape(x.shape[0], n, frame).pow(2).mean(dim=(0, 2))  # (n,)
    return (10 * torch.log10(power.clamp_min(1e-12))).clamp_min(-120.0)


def active_start(wav: Tensor, sample_rate: int, seconds: float, range_db: float = 30.0,
                 floor_dbfs: float = -60.0, frame_seconds: float = 0.05, tolerance: float = 0.9) -> int:
    """First sample of the window of ``seconds`` where the clip is active (energy-based).

    A frame is active when its level is within ``range_db`` of the clip's loud level (the 95th
    percentile of frame levels) and above ``floor_dbfs``. Of all windows, the earliest one that
    holds at least ``tolerance`` times the largest number of active frames any window holds wins,
    and starts at its first active frame (as far as the clip's end allows): leading silence is
    skipped, a lone click in the silence does not start the excerpt, and a clip that is active
    from its first frame starts at 0.

    Args:
        wav (Tensor): [..., T].
        sample_rate (int): samples per second.
        seconds (float): excerpt length.
        range_db (float): dynamic range below the loud level that still counts as active.
        floor_dbfs (float): absolute level below which nothing counts as active.
        frame_seconds (float): analysis frame length.
        tolerance (float): fraction of the best window's active frames the chosen one needs.

    Returns:
        int: start sample; 0 when the clip is no longer than ``seconds`` or has no active frame.
    """
    total, length = wav.shape[-1], int(round(seconds * sample_rate))
    if length <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    if total <= length:
        return 0
    frame = max(1, int(round(frame_seconds * sample_rate)))
    levels = frame_levels_dbfs(wav, sample_rate, frame_seconds)
    if levels.numel() == 0:
        return 0
    loud = float(torch.quantile(levels, 0.95))
    active = (levels >= max(loud - range_db, floor_dbfs)).float()
    if not bool(active.any()):
        return 0
    # active frames in every window of `width` frames starting at frame i (a running sum)
    width = max(1, min(length // frame, levels.numel()))
    csum = torch.cat([active.new_zeros(1), active.cumsum(0)])
    counts = csum[width:] - csum[:-width]  # [n - width + 1]
    # the last window that still fits in the clip: its start in frames
    last = (total - length) // frame
    counts = counts[: last + 1]
    first = int(torch.nonzero(counts >= tolerance * counts.max() - 1e-6).flatten()[0])
    # then skip what silence the tolerance let in: start at the window's first active frame
    onset = first + int(torch.nonzero(active[first:]).flatten()[0])
    return min(onset, last) * frame


def active_excerpt(wav: Tensor, sample_rate: int, seconds: float, **kwargs) -> Tensor:
    """The ``seconds`` of ``wav`` where something is heard (see :func:`active_start`).

    Args:
        wav (Tensor): [..., T].
        sample_rate (int): samples per second.
        seconds (float): excerpt length; the whole clip when it is shorter.
        **kwargs: passed to :func:`active_start`.

    Returns:
        Tensor: [..., min(T, seconds * sample_rate)], a view of ``wav``.
    """
    start = active_start(wav, sample_rate, seconds, **kwargs)
    return wav[..., start : start + int(round(seconds * sample_rate))]


def loudness_report(wav: Tensor, sample_rate: int) -> dict[str, float]:
    """Levels of a clip as a listener would judge it, before any playback normalization.

    A constant offset (DC) is inaudible: the levels are measured after removing the clip's mean,
    so a player of DC alone (a click when it starts) reports silence.

    Returns:
        dict: ``rms_dbfs`` (whole clip, DC removed), ``peak_dbfs`` (DC removed), ``dc`` (the mean
        that was removed) and ``active_fraction`` (share of 50 ms frames at or above ``ACTIVE_FRAME_DBFS``).
    """
    x = wav.detach().float()
    dc = float(x.mean()) if x.numel() else 0.0
    x = x - x.mean(dim=-1, keepdim=True) if x.numel() else x
    rms = float(x.pow(2).mean().sqrt()) if x.numel() else 0.0
    peak = float(x.abs().max()) if x.numel() else 0.0
    levels = frame_levels_dbfs(x, sample_rate)
    fraction = float((levels >= ACTIVE_FRAME_DBFS).float().mean()) if levels.numel() else 0.0
    return {
        "rms_dbfs": 20 * math.log10(max(rms, 1e-6)),
        "peak_dbfs": 20 * math.log10(max(peak, 1e-6)),
        "active_fraction": fraction,
        "dc": dc,
    }


def is_audible(report: dict[str, float]) -> bool:
    """Whether a :func:`loudness_report` clears the book's loudness floor."""
    return report["rms_dbfs"] >= AUDIBLE_RMS_DBFS and report["active_fraction"] >= MIN_ACTIVE_FRACTION


def player(wav, sample_rate: int):
    """An IPython ``Audio`` player whose ``<audio>`` element records the clip's level.

    The browser normalizes the samples as IPython always does; the attributes
    ``data-tinycodec-rms-dbfs``, ``data-tinycodec-active-fraction`` and
    ``data-tinycodec-audible`` hold :func:`loudness_report` of the samples *before* that.

    Args:
        wav (Tensor | ndarray): [T] or [1, T] (mono) float in [-1, 1].
        sample_rate (int): samples per second.

    Returns:
        IPython.display.Audio: displays as the annotated player.
    """
    from IPython.display import Audio

    samples = torch.as_tensor(wav).detach().float().cpu().reshape(-1)
    report = loudness_report(samples, sample_rate)

    class _Player(Audio):
        def _repr_html_(self) -> str:
            attrs = (f'data-tinycodec-rms-dbfs="{report["rms_dbfs"]:.1f}" '
                     f'data-tinycodec-active-fraction="{report["active_fraction"]:.2f}" '
                     f'data-tinycodec-audible="{str(is_audible(report)).lower()}" ')
            return super()._repr_html_().replace("<audio ", "<audio " + attrs, 1)

    audio = _Player(samples.numpy(), rate=sample_rate)
    audio.loudness = report
    return audio
