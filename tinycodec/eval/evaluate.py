"""Evaluate a codec on a folder of audio: every metric per clip and per category, next to baselines.

    data_dir/<category>/**/*.wav --load at model.sample_rate, crop--> ref [1, 1, T]
        model: encode(n_q) -> decode -> est        baselines: opus_*, codec2_* -> est
        metrics(ref, est): log_mel, mr_stft, si_sdr (+ pesq_wb, stoi for "speech")
        bitrate: measured bits / clip duration
                       |
    EvalResult: clips (one row per clip and codec) -> means per (codec, category)

Categories come from ``data_dir/manifest.csv`` (its ``file`` and ``category`` columns) when it
exists, else from the first folder level under ``data_dir`` (files directly in it are
``"other"``). A folder with more than ``TRAINING_CORPUS_FILES`` audio files is taken to be a
training corpus and, with ``split="auto"``, only its test split is evaluated: ``AudioFolder``'s
split by a hash of each file's relative path (train 90 % / val 5 % / test 5 %), so a model trained
with ``AudioFolder(root, split="train")`` is never scored on a file it saw. A small folder (the
demo corpus) is evaluated whole. Clip listing and loading live in ``tinycodec.eval.clips``.

The bitrate of a tinycodec row is what the bit-packed ``.tcz`` payload costs for the clip:
``F * n_q * ceil(log2 codebook_size) / duration`` with ``F`` whole frames (the padded last frame
counts, as it does for Codec 2); baselines report their measured payload bitrate
(``tinycodec.eval.baselines``).

JSON format (``EvalResult.to_json``, ``tinycodec eval --json OUT``)::

    {
      "format": "tinycodec-eval", "version": 1,
      "model": "tiny",              # model id (shipped name, preset or checkpoint family)
      "n_q": 4, "sample_rate": 16000,
      "data_dir": "data/demo", "split": null,   # null: all files; "test": AudioFolder's hash split
      "clip_seconds": null,         # clips cropped to this many seconds from their start (null: whole)
      "codecs": ["tiny_nq4", "opus_6k", ...],
      "metrics": ["log_mel", "mr_stft", "si_sdr", "pesq_wb", "stoi"],
      "categories": {               # means over the clips of a category, per codec
        "speech": {"tiny_nq4": {"n_clips": 3, "duration_s": 33.2, "bitrate": 2251.0,
                                "nominal_bitrate": 2250.0, "log_mel": 1.23, ..., "stoi": 0.81}, ...},
        "nature": {"tiny_nq4": {..., no "pesq_wb" / "stoi"}, ...}
      },
      "clips": [                    # one row per clip and codec
        {"file": "speech/pyannote_sample.wav", "category": "speech", "codec": "tiny_nq4",
         "duration_s": 30.0, "bitrate": 2250.0, "nominal_bitrate": 2250.0,
         "log_mel": 1.2, "mr_stft": 3.4, "si_sdr": -20.1, "pesq_wb": 1.1, "stoi": 0.5}, ...
      ]
    }

Metric directions: ``log_mel`` and ``mr_stft`` are distances (lower is better); ``si_sdr`` (dB),
``pesq_wb`` (MOS 1-4.64) and ``stoi`` (0-1) are higher-is-better. A PESQ that cannot be computed
(no speech found) is ``NaN`` in the row and left out of the mean.

Notebook: book/05_bitrate.md
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tinycodec.eval.clips import TRAINING_CORPUS_FILES, Clip, list_clips, load_clips, resolve_split

__all__ = [
    "EvalResult",
    "evaluate",
    "evaluate_clips",
    "category_means",
    "score",
    "run_model",
    "codec_name",
    "row_name_of_file",
    "Clip",
    "list_clips",
    "load_clips",
    "resolve_split",
    "TRAINING_CORPUS_FILES",
    "METRICS",
]

log = logging.getLogger(__name__)

SPEECH_CATEGORY = "speech"  # the category that also gets PESQ-WB and STOI
METRICS = ("log_mel", "mr_stft", "si_sdr", "pesq_wb", "stoi")
HIGHER_IS_BETTER = {"log_mel": False, "mr_stft": False, "si_sdr": True, "pesq_wb": True, "stoi": True}


def score(ref: torch.Tensor, est: torch.Tensor, sample_rate: int, speech: bool) -> dict[str, float]:
    """``tinycodec.eval.metrics.all_metrics``, with a PESQ that finds no speech recorded as NaN, not raised."""
    from tinycodec.eval import metrics

    out = {
        "log_mel": metrics.log_mel_distance(ref, est, sample_rate),
        "mr_stft": metrics.multi_resolution_stft_distance(ref, est),
        "si_sdr": metrics.si_sdr(ref, est),
    }
    if speech:
        try:
            out["pesq_wb"] = metrics.pesq_wb(ref, est, sample_rate)
        except RuntimeError as exc:
            if "PESQ failed" not in str(exc):
                raise  # the package is missing: a setup error, not a property of the clip
            log.warning("%s", exc)
            out["pesq_wb"] = float("nan")
        out["stoi"] = metrics.stoi(ref, est, sample_rate)
    return out


def codec_name(model, n_q: int) -> str:
    """Row name of a tinycodec model at ``n_q`` quantizers, e.g. ``tiny_nq4``."""
    from tinycodec.bitstream import model_id

    return f"{model_id(model)}_nq{n_q}"


def run_model(model, wav: torch.Tensor, n_q: int) -> tuple[torch.Tensor, float, float]:
    """Encode and decode one clip.

    Args:
        wav (Tensor): [1, 1, T] at ``model.sample_rate``.

    Returns:
        (est [1, 1, T], measured bit/s of the bit-packed payload, nominal bit/s).
    """
    from tinycodec.bitstream import bits_per_code

    with torch.inference_mode():
        codes = model.encode(wav, n_q)  # [1, n_q, F]
        est = model.decode(codes, length=wav.shape[-1])
    duration = wav.shape[-1] / model.sample_rate
    bits = codes.shape[-1] * n_q * bits_per_code(model.config.codebook_size)
    return est, bits / duration, model.bitrate(n_q)


def row_name_of_file(path: str | Path) -> str:
    """Row name of a weights file: its stem, after its folder's name when the stem is generic.

    ``checkpoints/reference_tiny/step_00001500.pt`` -> ``reference_tiny_step_00001500``;
    ``build/mine.safetensors`` -> ``mine``.
    """
    path = Path(path)
    generic = path.stem in ("best", "last", "model") or path.stem.startswith("step_")
    return f"{path.parent.name}_{path.stem}" if generic and path.parent.name else path.stem


def evaluate_clips(
    model,
    clips: list[Clip],
    n_q: int | None = None,
    baselines=False,
    progress: bool = True,
    sample_rate: int | None = None,
    label: str | None = None,
) -> list[dict]:
    """Rows for every clip and codec (the model at ``n_q``, and the baselines).

    Args:
        model: a codec model, or ``None`` for baselines only (then pass ``sample_rate``).
        clips: from ``load_clips`` at the model's sample rate.
        baselines: ``True`` for every baseline in ``tinycodec.eval.baselines.BASELINES``, or a list of names.
        label: row name of the model (default: its id, e.g. ``tiny``); ``_nq{n_q}`` is appended.

    Returns:
        list of dicts: ``file, category, codec, duration_s, bitrate, nominal_bitrate`` and the metrics.
    """
    from tinycodec.eval.baselines import BASELINES, run_baseline

    names = list(BASELINES) if baselines is True else list(baselines or [])
    sample_rate = model.sample_rate if model is not None else sample_rate
    if sample_rate is None:
        raise ValueError("evaluate_clips needs a model or a sample_rate")
    if model is not None:
        n_q = n_q or model.config.num_quantizers
        if not 1 <= n_q <= model.config.num_quantizers:
            raise ValueError(f"n_q must be in 1..{model.config.num_quantizers} for this model, got {n_q}")
    rows = []
    for clip in tqdm(clips, desc="evaluate", unit="clip", disable=not progress):
        sr = sample_rate
        speech = clip.category == SPEECH_CATEGORY
        base = {"file": clip.file, "category": clip.category, "duration_s": clip.wav.shape[-1] / sr}
        if model is not None:
            est, rate, nominal = run_model(model, clip.wav, n_q)
            rows.append(
                {
                    **base,
                    "codec": f"{label}_nq{n_q}" if label else codec_name(model, n_q),
                    "bitrate": rate,
                    "nominal_bitrate": nominal,
                    **score(clip.wav, est, sr, speech),
                }
            )
        for name in names:
            res = run_baseline(name, clip.wav.reshape(1, -1), sr)
            rows.append(
                {
                    **base,
                    "codec": name,
                    "bitrate": res.bitrate,
                    "nominal_bitrate": res.nominal_bitrate,
                    **score(clip.wav.reshape(1, -1), res.wav, sr, speech),
                }
            )
    return rows


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


def evaluate(
    model_spec_or_model,
    data_dir: str | Path,
    categories=None,
    baselines=False,
    max_clips: int | None = None,
    clip_seconds: float | None = None,
    n_q: int | None = None,
    split: str | None = "auto",
    progress: bool = True,
    name: str | None = None,
) -> EvalResult:
    """Evaluate a codec (and optionally Opus and Codec 2) on the audio in ``data_dir``.

    Args:
        model_spec_or_model: a model, or a spec for ``tinycodec.load_model`` (shipped name, preset
            (random weights), ``.safetensors`` or ``.pt`` checkpoint).
        data_dir: folder of audio, one sub-folder per category (or a ``manifest.csv``).
        categories: evaluate only these categories.
        baselines: ``True`` for Opus 6/8/12 kbit/s and Codec 2 3200/2400/1200, or a list of names.
        max_clips: at most this many clips per category.
        clip_seconds: crop every clip to its first ``clip_seconds`` seconds.
        n_q: quantizers (default all).
        split: see ``list_clips`` (``"auto"``: the test split of a training corpus).
        progress: show a tqdm bar.
        name: row name (default: the shipped name or model id; for a file, its name, so that two
            checkpoints of one family get two rows, e.g. ``reference_tiny_step_00001500_nq4``).

    Returns:
        EvalResult
    """
    from tinycodec.bitstream import model_id
    from tinycodec.pretrained import load_model

    model = (
        load_model(model_spec_or_model)
        if isinstance(model_spec_or_model, (str, Path))
        else model_spec_or_model
    )
    model = model.eval()
    if name is None and isinstance(model_spec_or_model, (str, Path)) and Path(model_spec_or_model).is_file():
        name = row_name_of_file(model_spec_or_model)
    n_q = n_q or model.config.num_quantizers
    resolved = resolve_split(data_dir, split)
    clips = load_clips(data_dir, model.sample_rate, categories, resolved, max_clips, clip_seconds)
    rows = evaluate_clips(model, clips, n_q, baselines, progress, label=name)
    from tinycodec.eval.provenance import weights_stamp

    return EvalResult(
        model=name or model_id(model),
        n_q=n_q,
        sample_rate=model.sample_rate,
        data_dir=str(data_dir),
        split=resolved,
        clip_seconds=clip_seconds,
        clips=rows,
        weights={name or model_id(model): weights_stamp(model)},
    )
