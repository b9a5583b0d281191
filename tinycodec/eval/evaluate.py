"""Evaluate a codec on a folder of audio: every metric per clip and per category, next to baselines.

    data_dir/<category>/**/*.wav --load at model.sample_rate, crop--> ref [1, 1, T]
        model: encode(n_q) -> decode -> est        baselines: opus_*, codec2_* -> est
        metrics(ref, est): log_mel, mr_stft, si_sdr (+ pesq_wb, stoi for "speech")
        bitrate: measured bits / clip duration
                       |
    EvalResult: clips (one row per clip and codec) -> means per (codec, category)   (eval.results)

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

import logging
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tinycodec.eval.clips import TRAINING_CORPUS_FILES, Clip, list_clips, load_clips, resolve_split
from tinycodec.eval.results import HIGHER_IS_BETTER, METRICS, EvalResult, category_means

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
    "HIGHER_IS_BETTER",
]

log = logging.getLogger(__name__)

SPEECH_CATEGORY = "speech"  # the category that also gets PESQ-WB and STOI


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
