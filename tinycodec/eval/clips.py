"""The clips an evaluation runs on: audio files of a folder, their category and split, loaded and cropped.

Categories come from ``data_dir/manifest.csv`` (its ``file`` and ``category`` columns) when it
exists, else from the first folder level under ``data_dir`` (files directly in it are ``"other"``).
A folder with more than ``TRAINING_CORPUS_FILES`` audio files is a training corpus: with
``split="auto"`` only its test split is used, ``AudioFolder``'s split by a hash of each file's
relative path (train 90 % / val 5 % / test 5 %), or by the whole speakers and recordings a
``splits.json`` in the folder names (``tinycodec.data.folder.split_of``).

Notebook: book/05_bitrate.md
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

TRAINING_CORPUS_FILES = 100  # more audio files than this: "auto" evaluates the test split only


@dataclass
class Clip:
    """One evaluation clip.

    Attributes:
        file: path relative to the data folder (forward slashes).
        category: e.g. ``speech``, ``nature``.
        wav (Tensor): [1, 1, T] float at the model's sample rate.
    """

    file: str
    category: str
    wav: torch.Tensor


def _manifest_categories(root: Path) -> dict[str, str]:
    path = root / "manifest.csv"
    if not path.exists():
        return {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"file", "category"} <= set(reader.fieldnames):
            return {}
        return {row["file"].replace("\\", "/"): row["category"] for row in reader}


def _audio_files(root: Path) -> list[str]:
    """Relative paths of every audio file under ``root``, sorted; hidden files and folders skipped."""
    from tinycodec.audio import AUDIO_EXTENSIONS

    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    rels = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):  # corpora are often linked in
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(AUDIO_EXTENSIONS):
                rels.append(Path(dirpath, name).relative_to(root).as_posix())
    return sorted(rels)


def resolve_split(data_dir: str | Path, split: str | None, n_files: int | None = None) -> str | None:
    """``"auto"`` -> ``"test"`` for a training corpus (over ``TRAINING_CORPUS_FILES`` files), else None."""
    from tinycodec.data.folder import SPLITS

    if split == "auto":
        n_files = len(_audio_files(Path(data_dir))) if n_files is None else n_files
        return "test" if n_files > TRAINING_CORPUS_FILES else None
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be None, 'auto' or one of {list(SPLITS)}, got {split!r}")
    return split


def list_clips(data_dir: str | Path, categories=None, split: str | None = "auto") -> list[tuple[str, str]]:
    """The audio files of a folder with their category, sorted by path.

    Args:
        data_dir: folder of audio (recursively; hidden files and folders are skipped).
        categories: keep only these categories (default: all).
        split: ``None`` (all files), ``"train"``/``"val"``/``"test"`` (``AudioFolder``'s split: ``splits.json`` or path hash)
            or ``"auto"``: ``"test"`` when the folder holds more than ``TRAINING_CORPUS_FILES`` files.

    Returns:
        list of ``(relative path, category)``.

    Raises:
        FileNotFoundError: ``data_dir`` does not exist, or no audio file matches.
    """
    from tinycodec.data.folder import load_split_rules, split_of

    root = Path(data_dir)
    rels = _audio_files(root)
    split = resolve_split(root, split, len(rels))
    if split is not None:
        rules = load_split_rules(root)
        rels = [r for r in rels if split_of(r, rules) == split]
    manifest = _manifest_categories(root)
    out = []
    for rel in rels:
        cat = manifest.get(rel) or (rel.split("/", 1)[0] if "/" in rel else "other")
        if categories is None or cat in categories:
            out.append((rel, cat))
    if not out:
        raise FileNotFoundError(
            f"no audio files in {root}"
            + (f" for categories {list(categories)}" if categories else "")
            + (f" in split {split!r}" if split else "")
        )
    return out


def load_clip(path: str | Path, sample_rate: int, seconds: float | None = None) -> torch.Tensor:
    """One audio file as a clip [1, T] at ``sample_rate`` (mono), cropped to ``seconds`` from the start."""
    from tinycodec.audio import load

    wav, _ = load(path, sample_rate)
    return wav if seconds is None else wav[:, : int(round(seconds * sample_rate))]


def load_clips(
    data_dir: str | Path,
    sample_rate: int,
    categories=None,
    split: str | None = "auto",
    max_clips: int | None = None,
    clip_seconds: float | None = None,
) -> list[Clip]:
    """Load the clips of ``list_clips`` at ``sample_rate`` (mono), cropped to ``clip_seconds`` from the start.

    Args:
        max_clips: at most this many clips per category, spread evenly over the category's
            sorted paths (so a cap still samples every speaker and source folder).
    """
    root = Path(data_dir)
    listed = list_clips(root, categories, split)
    if max_clips is not None:
        per_cat: dict[str, list] = {}
        for rel, cat in listed:
            per_cat.setdefault(cat, []).append((rel, cat))
        listed = []
        for items in per_cat.values():
            step = max(1, len(items) / max_clips)
            listed += [items[int(i * step)] for i in range(min(max_clips, len(items)))]
    clips = []
    for rel, cat in listed:
        wav = load_clip(root / rel, sample_rate, clip_seconds)  # [1, T]
        if wav.shape[-1] == 0:
            log.warning("skipping %s: no samples", rel)
            continue
        clips.append(Clip(rel, cat, wav[None]))
    return clips
