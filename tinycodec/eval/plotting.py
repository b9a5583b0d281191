"""Plots the chapters share: waveforms, spectrograms, codes. matplotlib is imported lazily.

Notebook: book/00_introduction.md (and every chapter that looks at sound).
"""

from __future__ import annotations

import numpy as np
import torch


def _as_numpy(wav) -> np.ndarray:
    """[T], [1, T] or [1, 1, T] tensor/array -> float numpy [T]."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().numpy()
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim > 1:
        wav = wav.reshape(-1, wav.shape[-1])[0]
    return wav


def spectrogram_db(wav, n_fft: int = 512, hop_length: int = 128, floor_db: float = -90.0) -> np.ndarray:
    """Magnitude spectrogram in dB re full scale.

    Args:
        wav (Tensor | ndarray): [T] or [1, T] float in [-1, 1].
        n_fft (int): FFT size (Hann window of the same length).
        hop_length (int): samples between frames.
        floor_db (float): lowest value returned (silence would otherwise be -inf).

    Returns:
        ndarray: [n_fft // 2 + 1, frames] in dB.
    """
    x = torch.from_numpy(_as_numpy(wav))
    spec = torch.stft(x, n_fft, hop_length, window=torch.hann_window(n_fft), return_complex=True).abs()
    db = 20 * torch.log10(spec / (n_fft / 4) + 1e-12)  # a full-scale sine reads about 0 dB
    return db.clamp_min(floor_db).numpy()


def plot_waveform_and_spectrogram(wav, sample_rate: int, title: str = "", n_fft: int = 512, axes=None):
    """Waveform above its spectrogram, sharing the time axis.

    Args:
        wav (Tensor | ndarray): [T] or [1, T] float in [-1, 1].
        sample_rate (int): samples per second.
        title (str): figure title.
        n_fft (int): FFT size of the spectrogram.
        axes: optional pair of matplotlib axes to draw into.

    Returns:
        matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    x = _as_numpy(wav)
    if axes is None:
        fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True, height_ratios=[1, 2])
    else:
        fig = axes[0].figure
    t = np.arange(len(x)) / sample_rate
    axes[0].plot(t, x, lw=0.5)
    axes[0].set_ylabel("amplitude")
    peak = float(np.abs(x).max()) if len(x) else 1.0
    axes[0].set_ylim(-1.1 * max(peak, 1e-3), 1.1 * max(peak, 1e-3))  # quiet clips stay visible
    hop = n_fft // 4
    db = spectrogram_db(x, n_fft, hop)
    extent = [0, len(x) / sample_rate, 0, sample_rate / 2000]
    im = axes[1].imshow(db, origin="lower", aspect="auto", extent=extent, cmap="magma", vmin=-90, vmax=0)
    axes[1].set_ylabel("frequency (kHz)")
    axes[1].set_xlabel("time (s)")
    fig.colorbar(im, ax=list(axes), label="dB", fraction=0.03, pad=0.01)
    if title:
        fig.suptitle(title)
    return fig


def plot_quality_vs_bitrate(result, metrics=("log_mel", "stoi", "pesq_wb"), categories=None, axes=None):
    """Each codec of an evaluation as a point at (measured kbit/s, metric), one panel per category and metric.

    Learned codecs (rows named ``*_nqN``) are filled circles joined per model across ``n_q``;
    baselines are open markers (Opus squares, Codec 2 triangles), so "better at fewer bits" is
    up-left (or down-left for distances).

    Args:
        result (tinycodec.eval.evaluate.EvalResult): e.g. ``EvalResult.from_json("benchmarks/quality.json")``.
        metrics: metrics to plot; a panel is left out where a category has none of a metric (PESQ for nature).
        categories: categories to plot (default: all).
        axes: optional flat sequence of matplotlib axes, one per panel.

    Returns:
        matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    from tinycodec.eval.evaluate import HIGHER_IS_BETTER

    cats = result.categories
    panels = [(c, m) for c in (categories or list(cats)) for m in metrics
              if any(m in e for e in cats[c].values())]
    if axes is None:
        cols = min(3, len(panels))
        fig, axes = plt.subplots((len(panels) + cols - 1) // cols, cols, figsize=(4.2 * cols, 3.4 * ((len(panels) + cols - 1) // cols)),
                                 squeeze=False, constrained_layout=True)
        axes = axes.ravel()
    fig = axes[0].figure
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax, (cat, metric) in zip(axes, panels):
        rows = {k: e for k, e in cats[cat].items() if metric in e}
        models: dict[str, list[tuple[float, float, str]]] = {}
        for name, e in rows.items():
            kbps = e["bitrate"] / 1000
            if "_nq" in name:
                model = name.rsplit("_nq", 1)[0]
                models.setdefault(model, []).append((kbps, e[metric], name))
            else:
                marker = "s" if name.startswith("opus") else "^"
                ax.scatter([kbps], [e[metric]], marker=marker, facecolors="none", edgecolors="0.35", s=45)
                ax.annotate(name, (kbps, e[metric]), fontsize=7, color="0.35", xytext=(3, 3), textcoords="offset points")
        for model, pts in models.items():
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=6, label=model)
            for kbps, value, name in pts:
                ax.annotate(name, (kbps, value), fontsize=7, xytext=(3, -9), textcoords="offset points")
        arrow = "higher is better" if HIGHER_IS_BETTER[metric] else "lower is better"
        ax.set(title=f"{cat}: {metric}", xlabel="measured kbit/s", ylabel=f"{metric} ({arrow})")
        ax.grid(alpha=0.3)
        if models:
            ax.legend(fontsize=7, loc="best")
    return fig
