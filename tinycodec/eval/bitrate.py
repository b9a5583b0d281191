"""Bitrate analysis: nominal bitrate, codebook entropy, entropy-coded size, quality against bitrate.

    nominal  = n_q * log2(codebook_size) * frame_rate          (bit/s, every index costs log2 K)
    entropy  = sum_q H(codebook q) * frame_rate                 (bit/s, an ideal static coder)
    coded    = len(tinycodec.bitstream.entropy.encode(codes, tables)) * 8 / duration   (what rANS really spends)

Tables fitted on the very audio they code ("fitted on self") measure the empirical entropy, a
lower bound no shipped model reaches; tables fitted on other audio ("held out", as shipped with a
model) pay the cross-entropy, which is what a decoder elsewhere really sees. Both are reported.

Notebook: book/05_bitrate.md
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

# codec name prefix -> family, for tables and plots
FAMILIES = {"opus": "opus", "codec2": "codec2"}


def _config(model_or_preset):
    if isinstance(model_or_preset, str):
        from tinycodec.models.config import get_preset

        return get_preset(model_or_preset)
    return getattr(model_or_preset, "config", model_or_preset)


def nominal_bitrate(model_or_preset, n_q: int | None = None) -> float:
    """``n_q * log2(codebook_size) * frame_rate`` in bit/s (``model.bitrate(n_q)``).

    Args:
        model_or_preset: a model, a ``CodecConfig`` or a preset name (no weights are built).
        n_q: quantizers (default all).
    """
    return float(_config(model_or_preset).bitrate(n_q))


def bitrate_table(presets: list[str] | None = None) -> list[dict]:
    """One row per preset: rates, codebook, bits per index and the nominal bitrate at every n_q.

    Returns:
        list of dicts: ``preset, family, sample_rate, hop_length, frame_rate, codebook_size,
        bits_per_index, num_quantizers, bitrate_per_quantizer, bitrate`` (bit/s at all quantizers).
    """
    from tinycodec.models.config import list_presets

    rows = []
    for name in presets or list_presets():
        c = _config(name)
        rows.append(
            {
                "preset": name,
                "family": c.family,
                "sample_rate": c.sample_rate,
                "hop_length": c.hop_length,
                "frame_rate": c.frame_rate,
                "codebook_size": c.codebook_size,
                "bits_per_index": math.log2(c.codebook_size),
                "num_quantizers": c.num_quantizers,
                "bitrate_per_quantizer": c.bitrate(1),
                "bitrate": c.bitrate(),
            }
        )
    return rows


def encode_clips(model, wavs, n_q: int | None = None) -> list[np.ndarray]:
    """Codes of every clip: wavs [1, 1, T] (or ``Clip``) at the model's rate -> list of [n_q, F] int64."""
    out = []
    with torch.inference_mode():
        for w in wavs:
            w = getattr(w, "wav", w)
            out.append(model.encode(w.reshape(1, 1, -1), n_q)[0].numpy().astype(np.int64))
    return out


def codebook_entropy(model, wavs, n_q: int | None = None) -> dict:
    """Empirical entropy of each codebook on real audio, next to its nominal ``log2 K`` bits.

    Args:
        model: codec model.
        wavs: clips [1, 1, T] at ``model.sample_rate`` (or ``Clip`` objects).
        n_q: quantizers (default all).

    Returns:
        dict: ``entropy_bits`` [n_q] bits per index, ``usage`` and ``perplexity`` [n_q],
        ``nominal_bits`` (log2 K), ``frames``, ``entropy_bitrate`` and ``nominal_bitrate`` (bit/s).
    """
    from tinycodec.eval.metrics import codebook_usage

    codes = np.concatenate(encode_clips(model, wavs, n_q), axis=-1)  # [n_q, F total]
    k = model.config.codebook_size
    use = codebook_usage(codes, k)
    return {
        "entropy_bits": use["entropy_bits"],
        "usage": use["usage"],
        "perplexity": use["perplexity"],
        "nominal_bits": math.log2(k),
        "frames": int(codes.shape[-1]),
        "entropy_bitrate": float(use["entropy_bits"].sum() * model.frame_rate),
        "nominal_bitrate": nominal_bitrate(model, codes.shape[0]),
    }


@dataclass
class EntropyReport:
    """Sizes of the same codes under four codings, in bits (``*_bitrate``: bit/s).

    Attributes:
        symbols: indices measured (n_q x frames).
        seconds: audio they stand for.
        packed_bits: bit-packed size, ``ceil(log2 K)`` bits per index (the ``.tcz`` payload).
        entropy_bits: empirical (plug-in) entropy of the measured codes.
        self_coded_bits: rANS output with tables fitted on the measured codes themselves.
        heldout_ideal_bits: cross-entropy of the measured codes under tables fitted on other codes.
        heldout_coded_bits: rANS output with those held-out tables (what a shipped model spends).
    """

    symbols: int
    seconds: float
    packed_bits: int
    entropy_bits: float
    self_coded_bits: int
    heldout_ideal_bits: float
    heldout_coded_bits: int

    def bitrates(self) -> dict[str, float]:
        """Every size as bit/s."""
        return {
            k.replace("_bits", "_bitrate"): v / self.seconds
            for k, v in asdict(self).items()
            if k.endswith("_bits")
        }

    def savings(self) -> dict[str, float]:
        """Fraction of the packed size saved by each entropy coding (0.2 = 20 % smaller)."""
        return {k: 1 - getattr(self, k) / self.packed_bits for k in ("self_coded_bits", "heldout_coded_bits")}


def entropy_coded_size(fit_codes, eval_codes, codebook_size: int, frame_rate: float) -> EntropyReport:
    """Measure the rANS coder on ``eval_codes`` with tables fitted on ``fit_codes`` and on themselves.

    Args:
        fit_codes: [n_q, F] / [B, n_q, F] or a list of [n_q, F_i] arrays: where shipped tables come from.
        eval_codes: the same forms: the codes that are measured.
        codebook_size: K.
        frame_rate: frames per second (to turn frames into seconds).
    """
    from tinycodec.bitstream import bits_per_code, entropy

    def frames(c):  # -> [n_q, F]: items laid end to end
        c = np.asarray(c.detach().cpu() if hasattr(c, "detach") else c)
        return c if c.ndim == 2 else c.transpose(1, 0, 2).reshape(c.shape[1], -1)

    def cat(c):
        return np.concatenate([frames(x) for x in c], axis=-1) if isinstance(c, (list, tuple)) else frames(c)

    fit, ev = cat(fit_codes), cat(eval_codes)  # [n_q, F]
    own = entropy.fit_tables(ev, codebook_size)
    shipped = entropy.fit_tables(fit, codebook_size)
    return EntropyReport(
        symbols=int(ev.size),
        seconds=ev.shape[-1] / frame_rate,
        packed_bits=int(ev.size * bits_per_code(codebook_size)),
        entropy_bits=entropy.entropy_bits(ev, codebook_size),
        self_coded_bits=8 * len(entropy.encode(ev, own)),
        heldout_ideal_bits=shipped.ideal_bits(ev),
        heldout_coded_bits=8 * len(entropy.encode(ev, shipped)),
    )


def entropy_report(model, wavs, n_q: int | None = None, fit_fraction: float = 0.5) -> EntropyReport:
    """``entropy_coded_size`` on real audio: each clip's first ``fit_fraction`` of frames fits the
    held-out tables, its remaining frames are measured (so every clip's sound is in both parts)."""
    codes = encode_clips(model, wavs, n_q)
    cut = [max(1, int(c.shape[-1] * fit_fraction)) for c in codes]
    fit = [c[:, :k] for c, k in zip(codes, cut)]
    ev = [c[:, k:] for c, k in zip(codes, cut) if c.shape[-1] > k]
    return entropy_coded_size(fit, ev, model.config.codebook_size, model.frame_rate)


def _family(codec: str) -> str:
    return next((fam for prefix, fam in FAMILIES.items() if codec.startswith(prefix)), "tinycodec")


def quality_vs_bitrate(
    models, clips, n_q_list=None, baselines=True, sample_rate: int = 16000, progress: bool = True
) -> list[dict]:
    """Quality and measured bitrate of tinycodec models at several n_q, next to Opus and Codec 2.

    Args:
        models: a model, a list of models / specs, or a dict ``{label: model or spec}``.
        clips: ``tinycodec.eval.evaluate.Clip`` list at ``sample_rate`` (``load_clips``); resampled for a
            model at another rate.
        n_q_list: quantizer counts to try (those above a model's ``num_quantizers`` are skipped);
            default every count from 1 to ``num_quantizers``.
        baselines: ``True`` (all), a list of baseline names, or ``False``.
        sample_rate: Hz of ``clips`` (the baselines run at this rate).

    Returns:
        list of dicts, one per codec and category: ``codec, family, model, n_q, category, n_clips,
        bitrate, nominal_bitrate`` and the metric means (``tinycodec.eval.evaluate.category_means``).
    """
    from tinycodec.audio import resample
    from tinycodec.eval.clips import Clip
    from tinycodec.eval.evaluate import category_means, evaluate_clips
    from tinycodec.pretrained import load_model

    if isinstance(models, dict):
        items = list(models.items())
    else:
        items = [
            (m if isinstance(m, str) else None, m)
            for m in (models if isinstance(models, (list, tuple)) else [models])
        ]
    rows_all, meta = [], {}
    for label, spec in items:
        model = load_model(spec) if isinstance(spec, str) else spec.eval()
        mclips = (
            clips
            if model.sample_rate == sample_rate
            else [Clip(c.file, c.category, resample(c.wav, sample_rate, model.sample_rate)) for c in clips]
        )
        top = model.config.num_quantizers
        for n_q in [n for n in (n_q_list or range(1, top + 1)) if n <= top]:
            rows = evaluate_clips(model, mclips, n_q, progress=progress)
            for r in rows:
                if label is not None:
                    r["codec"] = f"{label}_nq{n_q}"
                meta[r["codec"]] = (label or r["codec"].rsplit("_nq", 1)[0], n_q)
            rows_all += rows
    if baselines:
        rows_all += evaluate_clips(
            None, clips, baselines=baselines, progress=progress, sample_rate=sample_rate
        )
    out = []
    for cat, codecs in category_means(rows_all).items():
        for codec, e in codecs.items():
            model, n_q = meta.get(codec, (None, None))
            out.append(
                {
                    "codec": codec,
                    "family": _family(codec) if codec not in meta else "tinycodec",
                    "model": model,
                    "n_q": n_q,
                    "category": cat,
                    **e,
                }
            )
    return sorted(out, key=lambda r: (r["category"], r["bitrate"]))


def listening_set(models, wav: torch.Tensor, n_q_list=None, baselines=True, sample_rate: int = 16000) -> dict:
    """Decoded versions of one clip for A/B listening: ``{"original": wav, codec name: wav, ...}``.

    Args:
        models: as in ``quality_vs_bitrate`` (a dict gives the row labels).
        wav (Tensor): [1, 1, T] at ``sample_rate``.
        n_q_list: quantizer counts (default all of each model).
        baselines: ``True``, a list of baseline names, or ``False``.

    Returns:
        dict: name -> [T] float tensor at ``sample_rate``, ordered by bitrate within each family.
    """
    from tinycodec.audio import resample
    from tinycodec.eval.baselines import BASELINES, run_baseline
    from tinycodec.eval.evaluate import run_model
    from tinycodec.pretrained import load_model

    wav = wav.reshape(1, 1, -1)
    out = {"original": wav.reshape(-1)}
    items = (
        list(models.items())
        if isinstance(models, dict)
        else [(None, m) for m in (models if isinstance(models, (list, tuple)) else [models])]
    )
    for label, spec in items:
        model = load_model(spec) if isinstance(spec, str) else spec.eval()
        x = wav if model.sample_rate == sample_rate else resample(wav, sample_rate, model.sample_rate)
        label = label or getattr(model, "model_id", model.family)
        top = model.config.num_quantizers
        for n_q in [n for n in (n_q_list or range(1, top + 1)) if n <= top]:
            est = run_model(model, x, n_q)[0].reshape(-1)
            out[f"{label}_nq{n_q}"] = (
                est if model.sample_rate == sample_rate else resample(est, model.sample_rate, sample_rate)
            )
    for name in list(BASELINES) if baselines is True else list(baselines or []):
        out[name] = run_baseline(name, wav.reshape(1, -1), sample_rate).wav.reshape(-1)
    return out


def markdown_table(rows: list[dict], columns: list[str], formats: dict[str, str] | None = None) -> str:
    """A Markdown table of ``columns`` from ``rows`` (``formats``: column -> format spec, e.g. ``".2f"``)."""
    formats = formats or {}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c, "")
            cells.append(
                ""
                if v is None or v == "" or (isinstance(v, float) and math.isnan(v))
                else format(v, formats.get(c, ""))
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_bits_per_codebook(info: dict, ax=None, label: str | None = None):
    """Bar chart of ``codebook_entropy(...)``: empirical entropy per codebook against the nominal bits."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(5, 3))[1]
    h = np.asarray(info["entropy_bits"])
    q = np.arange(1, h.size + 1)
    ax.bar(q, h, color="C0", label=label or "empirical entropy")
    ax.axhline(info["nominal_bits"], color="C3", ls="--", label=f"nominal log2 K = {info['nominal_bits']:g}")
    ax.set(
        xlabel="codebook (quantizer level)",
        ylabel="bits per index",
        xticks=q,
        ylim=(0, info["nominal_bits"] * 1.15),
    )
    ax.legend(loc="lower right", fontsize=8)
    return ax


# label offsets tried in turn (points from the marker) with their alignment: right, left, above, below
_LABEL_SPOTS = [((3, 3), "left", "bottom"), ((3, -3), "left", "top"), ((-3, 3), "right", "bottom"),
                ((-3, -3), "right", "top"), ((0, 5), "center", "bottom"), ((0, -5), "center", "top")]


def _place_labels(ax, labels, pad: float = 2.0) -> int:
    """Annotate points without overlaps: each label takes the first of ``_LABEL_SPOTS`` that
    clears the labels placed so far and every marker, inside the axes if it can; a label with
    no free spot is left out (the line's order still tells the points apart).

    Args:
        ax: matplotlib axes, already holding the points.
        labels (list[tuple[float, float, str]]): (x, y, text) in data coordinates.
        pad (float): pixels kept free around each box.

    Returns:
        int: how many labels were left out.
    """
    ax.autoscale_view()
    frame = ax.get_window_extent()
    markers = [ax.transData.transform((x, y)) for x, y, _ in labels]
    taken = [(mx - 4, my - 4, mx + 4, my + 4) for mx, my in markers]  # boxes in display pixels

    def clash(b, own):  # b overlaps a taken box (but its own marker), with `pad` to spare
        return any(b[0] < t[2] + pad and t[0] < b[2] + pad and b[1] < t[3] + pad and t[1] < b[3] + pad
                   for i, t in enumerate(taken) if i != own)

    left_out = 0
    for own, (x, y, tag) in enumerate(labels):
        free = []
        for offset, ha, va in _LABEL_SPOTS:
            text = ax.annotate(tag, (x, y), fontsize=7, xytext=offset, textcoords="offset points", ha=ha, va=va)
            e = text.get_window_extent()
            box = (e.x0, e.y0, e.x1, e.y1)
            text.remove()
            if not clash(box, own):
                inside = frame.x0 <= box[0] and box[2] <= frame.x1 and frame.y0 <= box[1] and box[3] <= frame.y1
                free.append((not inside, offset, ha, va, box))
        if not free:
            left_out += 1
            continue
        _, offset, ha, va, box = min(free, key=lambda f: f[0])  # first free spot, inside the axes first
        ax.annotate(tag, (x, y), fontsize=7, xytext=offset, textcoords="offset points", ha=ha, va=va)
        taken.append(box)
    return left_out


def plot_quality_vs_bitrate(rows: list[dict], metric: str, category: str, ax=None):
    """Line of ``metric`` against measured kbit/s per model or family, from ``quality_vs_bitrate`` rows.

    Each point is labelled with its ``n_q`` (models) or nominal rate (baselines) where the label
    fits without covering another; the legend gives each model's ``n_q`` range, and ``n_q``
    grows with bitrate along its line.
    """
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    sel = [r for r in rows if r["category"] == category and metric in r]
    groups: dict[str, list[dict]] = {}
    for r in sel:
        groups.setdefault(r["model"] or r["family"], []).append(r)
    markers = {"opus": "s", "codec2": "^"}
    labels = []
    for name, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["bitrate"])
        x, y = [r["bitrate"] / 1000 for r in rs], [r[metric] for r in rs]
        n_qs = [r["n_q"] for r in rs if r["n_q"]]
        label = f"{name} (n_q {min(n_qs)}-{max(n_qs)})" if len(set(n_qs)) > 1 else name
        ax.plot(x, y, marker=markers.get(rs[0]["family"], "o"), label=label)
        labels += [(xi, yi, f"n_q={r['n_q']}" if r["n_q"] else r["codec"].split("_")[-1])
                   for r, xi, yi in zip(rs, x, y)]
    ax.set(xlabel="measured kbit/s", ylabel=metric, title=category)
    _place_labels(ax, labels)
    ax.legend(fontsize=8)
    return ax
