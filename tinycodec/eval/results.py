"""An evaluation's results: one row per clip and codec, means per category, the JSON file, tables.

:class:`EvalResult` is what :func:`tinycodec.eval.evaluate.evaluate` returns and ``tinycodec eval
--json`` writes (the format is in that module's docstring); :func:`category_means` turns clip rows into
the per-category means. Reading, combining and comparing results needs no model and no audio.

Notebook: book/05_bitrate.md
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["EvalResult", "category_means", "METRICS", "HIGHER_IS_BETTER"]

METRICS = ("log_mel", "mr_stft", "si_sdr", "pesq_wb", "stoi")
HIGHER_IS_BETTER = {"log_mel": False, "mr_stft": False, "si_sdr": True, "pesq_wb": True, "stoi": True}


def category_means(rows: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """``{category: {codec: {n_clips, duration_s (total), bitrate (duration-weighted), metric means}}}``.

    NaN values (a PESQ that found no speech) are left out of a metric's mean.
    """
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["category"], r["codec"]), []).append(r)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (cat, codec), rs in groups.items():
        dur = sum(r["duration_s"] for r in rs)
        entry = {
            "n_clips": len(rs),
            "duration_s": dur,
            # bits over seconds of the whole category, so long clips weigh what they cost
            "bitrate": sum(r["bitrate"] * r["duration_s"] for r in rs) / dur,
            "nominal_bitrate": float(np.mean([r["nominal_bitrate"] for r in rs])),
        }
        for m in METRICS:
            vals = [r[m] for r in rs if m in r and not math.isnan(r[m])]
            if vals:
                entry[m] = float(np.mean(vals))
        out.setdefault(cat, {})[codec] = entry
    return out


@dataclass
class EvalResult:
    """Per-clip rows and per-category means of an evaluation (see the module docstring for the JSON).

    Attributes:
        model: model id (``None`` for baselines only).
        n_q: quantizers used.
        sample_rate: Hz of every clip and metric.
        data_dir: the evaluated folder.
        split: ``None`` or the split evaluated.
        clip_seconds: crop length, ``None`` for whole files.
        clips: one dict per clip and codec.
    """

    model: str | None
    n_q: int | None
    sample_rate: int
    data_dir: str
    split: str | None
    clip_seconds: float | None
    clips: list[dict] = field(default_factory=list)
    # {row name of a model: weights_stamp}: the weights each model row measured (provenance.stale_models)
    weights: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def codecs(self) -> list[str]:
        return list(dict.fromkeys(r["codec"] for r in self.clips))

    @property
    def categories(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{category: {codec: means}}`` (``category_means``)."""
        return category_means(self.clips)

    def to_dict(self) -> dict:
        return {
            "format": "tinycodec-eval",
            "version": 1,
            "model": self.model,
            "n_q": self.n_q,
            "sample_rate": self.sample_rate,
            "data_dir": self.data_dir,
            "split": self.split,
            "clip_seconds": self.clip_seconds,
            "codecs": self.codecs,
            "metrics": list(METRICS),
            "categories": self.categories,
            "clips": self.clips,
            "weights": self.weights,
        }

    @classmethod
    def from_json(cls, path: str | Path) -> EvalResult:
        """Read a file written by ``to_json`` (e.g. benchmarks/quality.json); ``null`` reads as NaN."""
        data = json.loads(Path(path).read_text())
        if data.get("format") != "tinycodec-eval":
            raise ValueError(f"{path}: not a tinycodec eval JSON (format {data.get('format')!r})")
        clips = [{k: (math.nan if v is None else v) for k, v in row.items()} for row in data["clips"]]
        return cls(data["model"], data["n_q"], data["sample_rate"], data["data_dir"], data["split"],
                   data["clip_seconds"], clips, dict(data.get("weights", {})))

    def to_json(self, path: str | Path) -> Path:
        """Write ``to_dict()`` as JSON (NaN written as ``null``)."""

        def clean(x):
            if isinstance(x, float) and math.isnan(x):
                return None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, list):
                return [clean(v) for v in x]
            return x

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(clean(self.to_dict()), indent=1) + "\n")
        return path

    @classmethod
    def combine(cls, results: list[EvalResult]) -> EvalResult:
        """One result holding the rows of several evaluations of the same clips (several models).

        Rows of a codec already present (the baselines, run once per evaluation) are kept once.

        Raises:
            ValueError: the results were not run on the same folder, split, sample rate and crop.
        """
        if not results:
            raise ValueError("combine needs at least one EvalResult")
        first = results[0]
        key = (first.data_dir, first.split, first.sample_rate, first.clip_seconds)
        for r in results[1:]:
            if (r.data_dir, r.split, r.sample_rate, r.clip_seconds) != key:
                raise ValueError(
                    "can only combine evaluations of the same clips: "
                    f"{(r.data_dir, r.split, r.sample_rate, r.clip_seconds)} != {key}")
        clips, seen = [], set()
        for r in results:
            new = [c for c in r.codecs if c not in seen]
            clips += [row for row in r.clips if row["codec"] in new]
            seen.update(new)
        models = [r.model for r in results if r.model]
        n_qs = {r.n_q for r in results if r.model}
        weights = {k: v for r in reversed(results) for k, v in r.weights.items()}  # the first result wins, as rows do
        return cls(", ".join(dict.fromkeys(models)) or None, n_qs.pop() if len(n_qs) == 1 else None,
                   first.sample_rate, first.data_dir, first.split, first.clip_seconds, clips, weights)

    def compare(self, codec: str, reference: str, category: str, metrics=None) -> list[dict]:
        """Does ``codec`` beat ``reference`` in ``category``? One dict per metric both have.

        Args:
            codec, reference: row names, e.g. ``"tiny_nq4"`` and ``"codec2_3200"``.
            metrics: metrics to compare (default: every metric both rows have).

        Returns:
            list of ``{"metric", "codec", "reference", "better"}`` (``better``: ``codec`` is strictly
            better, in the metric's own direction).

        Raises:
            KeyError: the category or a row is not in this result (the message lists what is).
        """
        cats = self.categories
        if category not in cats:
            raise KeyError(f"no category {category!r} (have {list(cats)})")
        rows = cats[category]
        for name in (codec, reference):
            if name not in rows:
                raise KeyError(f"no codec {name!r} in {category!r} (have {list(rows)})")
        metrics = [m for m in (metrics or METRICS) if m in rows[codec] and m in rows[reference]]
        out = []
        for m in metrics:
            a, b = rows[codec][m], rows[reference][m]
            out.append({"metric": m, "codec": a, "reference": b, "better": a > b if HIGHER_IS_BETTER[m] else a < b})
        return out

    def to_markdown(self) -> str:
        """One Markdown table per category: a row per codec, bitrate in kbit/s and every metric."""
        parts = []
        for cat, codecs in self.categories.items():
            cols = [m for m in METRICS if any(m in e for e in codecs.values())]
            arrows = [m + (" ↑" if HIGHER_IS_BETTER[m] else " ↓") for m in cols]
            head = ["codec", "clips", "kbit/s", *arrows]
            lines = [f"**{cat}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for codec, e in sorted(codecs.items(), key=lambda kv: kv[1]["bitrate"]):
                cells = [codec, str(e["n_clips"]), f"{e['bitrate'] / 1000:.2f}"]
                cells += [f"{e[m]:.3f}" if m in e else "" for m in cols]
                lines.append("| " + " | ".join(cells) + " |")
            parts.append("\n".join(lines))
        return "\n\n".join(parts) + "\n"

    def summary_table(self, specs: list[str], baselines: tuple[str, ...] = ("codec2_3200", "opus_6k")) -> str:
        """The headline table (README, model comparison): one row per model, then the baselines.

        Columns: nominal kbit/s, speech log-mel, PESQ-WB, STOI and nature log-mel, the numbers the
        project's quality targets name.

        Args:
            specs: ``NAME`` (its deepest row, e.g. ``tiny_nq4``) or ``NAME@N`` (the row ``NAME_nqN``),
                in the order wanted.
            baselines: baseline rows appended when present (``codec2_3200`` prints as "Codec 2 3200").

        Raises:
            KeyError: a spec has no speech row here (the message lists the rows there are).
        """
        speech = self.categories.get("speech", {})
        nature = self.categories.get("nature", {})

        def row_of(spec: str) -> str:
            name, _, nq = spec.partition("@")
            rows = [k for k in speech if k.rpartition("_nq")[0] == name and (not nq or k == f"{name}_nq{nq}")]
            if not rows:
                raise KeyError(f"no speech row for {spec!r} (have {sorted(speech)})")
            return max(rows, key=lambda k: int(k.rpartition("_nq")[2]))

        rows = [(f"`{spec}`", row_of(spec)) for spec in specs]
        rows += [(b.replace("codec2_", "Codec 2 ").replace("opus_", "Opus "), b) for b in baselines if b in speech]
        lines = ["| model | kbit/s | speech log-mel ↓ | PESQ-WB ↑ | STOI ↑ | nature log-mel ↓ |",
                 "|---|---|---|---|---|---|"]
        for label, key in rows:
            s, n = speech[key], nature.get(key, {})
            cells = [label, f"{s['nominal_bitrate'] / 1000:.2f}", f"{s['log_mel']:.3f}", f"{s['pesq_wb']:.3f}",
                     f"{s['stoi']:.3f}", f"{n['log_mel']:.3f}" if "log_mel" in n else ""]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"
