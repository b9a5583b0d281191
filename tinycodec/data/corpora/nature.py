"""The ``nature`` corpus: ambience and animal recordings shipped in three Debian game-data packages.

    nature/megaglest/<tileset>/...  megaglest-data  tilesets/*/sounds: day/night birdsong, rain, wind, owl, wolf  CC-BY-SA-3.0
    nature/widelands/...            widelands-data  sound/animals + critters: birds, crickets, frog, wolves, stag GPL-2.0-or-later
    nature/0ad/...                  0ad-data        public.zip audio/ambient + audio/actor/fauna                  CC-BY-SA-3.0

Tilesets share recordings, so files are de-duplicated by content hash (the first path wins).
0ad-data is a 1.38 GB download (unpacked twice on disk while extracting); leave it out with
``fetch("nature", sources=("megaglest", "widelands"))``.

Notebook: book/01_data.md
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from tinycodec.data.corpora.apt import apt_download, convert_tree, deb_extract, deb_version
from tinycodec.data.corpora.manifest import Entry

log = logging.getLogger(__name__)

PACKAGES = {"megaglest": "megaglest-data", "widelands": "widelands-data", "0ad": "0ad-data"}
LICENCES = {"megaglest": "CC-BY-SA-3.0", "widelands": "GPL-2.0-or-later", "0ad": "CC-BY-SA-3.0"}
AUDIO = (".ogg", ".wav", ".flac")
ZERO_AD_PREFIXES = ("audio/ambient/", "audio/actor/fauna/")  # soundscapes, weather, water, animals


def _unique(paths: list[Path]) -> list[Path]:
    seen, out = set(), []
    for p in paths:
        h = hashlib.sha1(p.read_bytes()).hexdigest()
        if h not in seen:
            seen.add(h)
            out.append(p)
    return out


def _audio(base: Path, pattern: str) -> list[Path]:
    return sorted(p for p in base.glob(pattern) if p.suffix.lower() in AUDIO and p.is_file())


def build(
    root: Path,
    cache: Path,
    sample_rate: int = 16_000,
    sources=("megaglest", "widelands", "0ad"),
    threads: int = 4,
) -> list[Entry]:
    unknown = set(sources) - set(PACKAGES)
    if unknown:
        raise ValueError(f"unknown nature sources {sorted(unknown)}; choose from {list(PACKAGES)}")
    debs = apt_download([PACKAGES[s] for s in sources], cache / "debs")
    entries: list[Entry] = []
    for src in sources:
        deb = debs[PACKAGES[src]]
        base = deb_extract(deb, cache / "x" / deb.stem)
        meta = dict(base=base, category="nature", source_package=deb_version(deb), licence=LICENCES[src])
        if src == "megaglest":
            tilesets = base / "usr/share/games/megaglest/tilesets"
            files = _unique(_audio(tilesets, "*/sounds/*"))
            pairs = [(p, f"nature/megaglest/{p.parts[-3]}/{p.stem}.wav") for p in files]
        elif src == "widelands":
            data = base / "usr/share/games/widelands/data"
            files = _unique(_audio(data, "sound/animals/*") + _audio(data, "world/critters/**/*"))
            pairs = [(p, f"nature/widelands/{p.stem}.wav") for p in files]
        else:
            pairs = _zero_ad(base, cache / "x" / "0ad-audio")
            meta["base"] = cache / "x" / "0ad-audio"
        entries += convert_tree(pairs, root, sample_rate, f"nature {src}", threads, **meta)
    return entries


def _zero_ad(base: Path, out: Path) -> list[tuple[Path, str]]:
    """Unzip the nature audio out of 0ad's ``public.zip``; returns (file, output rel) pairs."""
    zips = sorted(base.glob("**/public.zip"))
    if not zips:
        raise RuntimeError(f"0ad-data: no public.zip found under {base}")
    pairs = []
    with zipfile.ZipFile(zips[0]) as zf:
        members = [m for m in zf.namelist() if m.startswith(ZERO_AD_PREFIXES) and m.lower().endswith(AUDIO)]
        for m in tqdm(members, desc="unzip 0ad audio", unit="file"):
            dst = out / m
            if not dst.is_file():
                zf.extract(m, out)
            pairs.append((dst, f"nature/0ad/{Path(m).relative_to('audio').with_suffix('.wav').as_posix()}"))
    return pairs
