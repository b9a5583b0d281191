"""Corpus recipes: ``fetch(name, to)`` downloads, converts and writes a manifest, idempotently.

Each recipe module has ``build(root, cache, **options) -> list[Entry]``; ``fetch`` skips the build
when the manifest and every file it lists are already there with their recorded sizes.

    demo         real clips from two wheels + synthetic birdsong   ~3 MB    MIT / CC0
    speech       asterisk G.722 prompts, fillets-ng, klettres (apt) ~250 MB  CC-BY-SA-3.0 / GPL-2
    nature       megaglest, widelands, 0ad ambience/animals (apt)   ~2 GB    CC-BY-SA-3.0 / GPL-2+
    esc50        ESC-50 environmental sounds (GitHub archive)      ~600 MB  CC-BY-NC-3.0
    librispeech  LibriSpeech test-clean (openslr.org)              ~350 MB  CC-BY-4.0

Notebook: book/01_data.md
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from tinycodec.data.corpora.manifest import MANIFEST, is_up_to_date, read_manifest, totals, write_manifest

__all__ = ["Recipe", "RECIPES", "fetch", "list_recipes"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """A fetchable corpus."""

    name: str
    module: str  # module with ``build(root, cache, **options)``
    download: str  # rough download size
    licence: str
    description: str
    options: tuple[tuple[str, object], ...] = ()  # keyword arguments passed to ``build``


RECIPES = {
    r.name: r
    for r in [
        Recipe(
            "demo",
            "tinycodec.data.corpora.demo",
            "12 MB",
            "MIT, CC0-1.0",
            "pyannote.audio sample + onsen clips (pip wheels) and 12 synthetic birdsong clips; the book's default",
        ),
        Recipe(
            "speech",
            "tinycodec.data.corpora.speech",
            "250 MB",
            "CC-BY-SA-3.0, CC-BY-3.0, GPL-2",
            "asterisk G.722 prompts (en es fr it ru), fillets-ng voices (cs nl), klettres letters: ~6.5 h (apt)",
        ),
        Recipe(
            "nature",
            "tinycodec.data.corpora.nature",
            "2 GB",
            "CC-BY-SA-3.0, GPL-2+",
            "megaglest tileset ambience, widelands animals, 0ad soundscapes/animals: ~45 min (apt)",
        ),
        Recipe(
            "voices",
            "tinycodec.data.corpora.voices",
            "none (espeak-ng)",
            "GPL-3.0-or-later (espeak-ng output)",
            "out-of-domain check set: 8 synthetic voices x 2 sentences in 7 languages, never trained on",
        ),
        Recipe(
            "esc50",
            "tinycodec.data.corpora.web",
            "600 MB",
            "CC-BY-NC-3.0 (clips CC-BY / CC0)",
            "ESC-50: 2000 environmental clips x 5 s, 50 classes (GitHub archive)",
            (("dataset", "esc50"),),
        ),
        Recipe(
            "librispeech",
            "tinycodec.data.corpora.web",
            "350 MB",
            "CC-BY-4.0",
            "LibriSpeech test-clean: 5.4 h read English, FLAC 16 kHz (openslr.org)",
            (("dataset", "librispeech"),),
        ),
        Recipe(
            "librispeech-dev",
            "tinycodec.data.corpora.web",
            "340 MB",
            "CC-BY-4.0",
            "LibriSpeech dev-clean: 5.4 h read English, FLAC 16 kHz (openslr.org)",
            (("dataset", "librispeech-dev"),),
        ),
    ]
}


def list_recipes() -> list[Recipe]:
    """All recipes, in the order ``tinycodec data list`` shows them."""
    return list(RECIPES.values())


def fetch(name: str, to: str | Path | None = None, force: bool = False, **options) -> Path:
    """Fetch corpus ``name`` into ``to`` (default ``data/<name>``); return its ``manifest.csv``.

    A second call finds the manifest and the files with their recorded sizes and returns at once
    ("up to date"); ``force=True`` deletes the listed files and rebuilds them. Downloads are cached
    in ``<to>/.cache``; an interrupted build resumes, keeping the files it already converted.

    Raises:
        ValueError: unknown recipe name.
        RuntimeError: a download or tool failed (no network, apt or ffmpeg missing), naming what failed.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown corpus {name!r}; choose from: {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    root = Path(to) if to is not None else Path("data") / name
    # options (e.g. sample_rate, sources) are part of the identity: changing them rebuilds
    key = name if not options else f"{name} {json.dumps(options, sort_keys=True, default=list)}"
    if not force and is_up_to_date(root, key):
        log.info("%s: up to date (%s)", name, root / MANIFEST)
        return root / MANIFEST
    root.mkdir(parents=True, exist_ok=True)
    if force and (root / MANIFEST).is_file():
        # rebuild from the cached downloads: converted files would otherwise be kept as resumable work
        for e in read_manifest(root / MANIFEST):
            (root / e.file).unlink(missing_ok=True)
    t0 = time.perf_counter()
    build = importlib.import_module(recipe.module).build
    entries = build(root, root / ".cache", **dict(recipe.options), **options)
    if not entries:
        raise RuntimeError(f"{name}: the recipe produced no audio files")
    path = write_manifest(root, entries, key)
    log.info(
        "%s: %d files in %.1f s -> %s %s", name, len(entries), time.perf_counter() - t0, path, totals(entries)
    )
    return path


def summary(manifest: str | Path) -> dict:
    """Files and hours per category of a fetched corpus (reads its manifest)."""
    return totals(read_manifest(manifest))
