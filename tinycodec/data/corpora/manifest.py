"""Corpus manifests: one CSV row per audio file, plus a size record that makes fetches idempotent.

``manifest.csv`` columns: file (relative to the corpus root), category, source_package,
original_path, licence, duration_s, sample_rate. Beside it, ``.fetch_state.json`` records the
recipe and every file's byte size: a second fetch that finds both, with all sizes matching, does
nothing.

Notebook: book/01_data.md
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import soundfile as sf

from tinycodec.audio import save

MANIFEST = "manifest.csv"
STATE = ".fetch_state.json"
COLUMNS = ("file", "category", "source_package", "original_path", "licence", "duration_s", "sample_rate")


@dataclass
class Entry:
    """One manifest row."""

    file: str  # path relative to the corpus root, forward slashes
    category: str  # speech | nature | synthetic | environment | ...
    source_package: str  # e.g. "onsen==0.1.1" (pip), "megaglest-data_3.13.0-3" (apt), a URL
    original_path: str  # path of the file inside its package or archive
    licence: str  # SPDX identifier where one exists
    duration_s: float
    sample_rate: int


def write_audio(root: Path, rel: str, wav, sample_rate: int, **meta) -> Entry:
    """Save ``wav`` ([1, T]) as 16-bit WAV at ``root / rel`` and return its manifest row."""
    save(root / rel, wav, sample_rate)
    return Entry(file=rel, duration_s=round(wav.shape[-1] / sample_rate, 3), sample_rate=sample_rate, **meta)


def entry_for_file(root: Path, rel: str, **meta) -> Entry:
    """Manifest row for a file already on disk (e.g. written by ffmpeg)."""
    i = sf.info(str(root / rel))
    return Entry(file=rel, duration_s=round(i.frames / i.samplerate, 3), sample_rate=i.samplerate, **meta)


def write_manifest(root: Path, entries: list[Entry], recipe: str) -> Path:
    """Write ``manifest.csv`` and the size record; return the manifest path."""
    root = Path(root)
    entries = sorted(entries, key=lambda e: e.file)
    path = root / MANIFEST
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for e in entries:
            w.writerow(asdict(e))
    sizes = {e.file: (root / e.file).stat().st_size for e in entries}
    (root / STATE).write_text(json.dumps({"recipe": recipe, "sizes": sizes}, indent=1))
    return path


def read_manifest(path: str | Path) -> list[Entry]:
    """Rows of a ``manifest.csv`` (or of the one inside a corpus folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    names = [f.name for f in fields(Entry)]
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [
        Entry(
            **{k: r[k] for k in names}
            | {"duration_s": float(r["duration_s"]), "sample_rate": int(r["sample_rate"])}
        )
        for r in rows
    ]


def is_up_to_date(root: Path, recipe: str) -> bool:
    """True when the manifest and size record exist and every listed file has its recorded size."""
    root = Path(root)
    try:
        state = json.loads((root / STATE).read_text())
    except (OSError, ValueError):
        return False
    if state.get("recipe") != recipe or not (root / MANIFEST).is_file():
        return False
    for rel, size in state.get("sizes", {}).items():
        p = root / rel
        if not p.is_file() or p.stat().st_size != size:
            return False
    return bool(state.get("sizes"))


def totals(entries: list[Entry]) -> dict[str, dict[str, float]]:
    """Files and hours per category, e.g. ``{"speech": {"files": 3, "hours": 0.01}}``."""
    out: dict[str, dict[str, float]] = {}
    for e in entries:
        t = out.setdefault(e.category, {"files": 0, "hours": 0.0})
        t["files"] += 1
        t["hours"] += e.duration_s / 3600
    return {k: {"files": v["files"], "hours": round(v["hours"], 3)} for k, v in sorted(out.items())}
