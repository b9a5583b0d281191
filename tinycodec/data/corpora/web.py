"""Internet corpora (ESC-50, LibriSpeech): resumable download, checksum, extraction, manifest.

Downloads go to ``<root>/.cache/<archive>.part`` and resume with an HTTP ``Range`` request after
an interruption. LibriSpeech archives are checked against published SHA-256 sums (the values
torchaudio ships). ESC-50 comes from GitHub's ``master`` archive, which has no stable published
checksum: its SHA-256 is recorded in ``<root>/.cache/checksums.json`` on the first download and
every later download is verified against it (trust on first use). Files are kept as they come
(ESC-50 44.1 kHz WAV, LibriSpeech 16 kHz FLAC): ``AudioFolder`` resamples on the fly.

URLs can be overridden (a mirror, or the local server of the tests) with ``fetch(name, url=...)``
or the environment variables ``TINYCODEC_ESC50_URL`` / ``TINYCODEC_LIBRISPEECH_URL``.

Notebook: book/01_data.md
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
from tqdm.auto import tqdm

from tinycodec.data.corpora.manifest import Entry


@dataclass(frozen=True)
class Source:
    url: str
    archive: str  # file name in the cache
    sha256: str | None  # None: recorded on first download
    licence: str
    audio_glob: str  # audio files after extraction, relative to the root
    env: str  # environment variable that overrides the URL


SOURCES = {
    "esc50": Source(
        "https://github.com/karolpiczak/ESC-50/archive/master.zip",
        "ESC-50-master.zip",
        None,
        "CC-BY-NC-3.0",
        "ESC-50-master/audio/*.wav",
        "TINYCODEC_ESC50_URL",
    ),
    "librispeech": Source(
        "https://www.openslr.org/resources/12/test-clean.tar.gz",
        "test-clean.tar.gz",
        "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
        "CC-BY-4.0",
        "LibriSpeech/test-clean/*/*/*.flac",
        "TINYCODEC_LIBRISPEECH_URL",
    ),
    "librispeech-dev": Source(
        "https://www.openslr.org/resources/12/dev-clean.tar.gz",
        "dev-clean.tar.gz",
        "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
        "CC-BY-4.0",
        "LibriSpeech/dev-clean/*/*/*.flac",
        "TINYCODEC_LIBRISPEECH_URL",
    ),
}
# ESC-50 targets come in five groups of ten classes; the first two are animals and natural soundscapes
ESC50_GROUPS = ("nature", "nature", "environment", "environment", "environment")


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: Path, sha256: str | None = None, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part``; verify ``sha256`` if given.

    Raises:
        RuntimeError: the network failed (the message names the URL) or the checksum does not match.
    """
    if dest.is_file() and (sha256 is None or sha256_of(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    pos = part.stat().st_size if part.is_file() else 0
    req = urllib.request.Request(
        url,
        headers={"Range": f"bytes={pos}-", "User-Agent": "tinycodec"} if pos else {"User-Agent": "tinycodec"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            if pos and resp.status != 206:  # the server ignored Range: start over
                pos = 0
            total = resp.headers.get("Content-Length")
            total = int(total) + pos if total is not None else None
            with (
                part.open("ab" if pos else "wb") as fh,
                tqdm(total=total, initial=pos, unit="B", unit_scale=True, desc=dest.name) as bar,
            ):
                while block := resp.read(1 << 20):
                    fh.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and pos:  # range not satisfiable: the .part is already complete
            pass
        else:
            raise RuntimeError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeError(
            f"download of {url} failed: {reason} (no network? a rerun resumes; or pass url= a mirror)"
        ) from exc
    if sha256 is not None:
        got = sha256_of(part)
        if got != sha256:
            part.unlink()
            raise RuntimeError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {got}; the partial file was removed"
            )
    part.replace(dest)
    return dest


def extract(archive: Path, dest: Path) -> None:
    """Unpack a .zip or .tar(.gz) into ``dest`` (members may not escape ``dest``)."""
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for m in tqdm(zf.infolist(), desc=f"extract {archive.name}", unit="file"):
                if Path(m.filename).is_absolute() or ".." in Path(m.filename).parts:
                    raise RuntimeError(f"{archive.name}: unsafe member {m.filename}")
                zf.extract(m, dest)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            for m in tqdm(members, desc=f"extract {archive.name}", unit="file"):
                if Path(m.name).is_absolute() or ".." in Path(m.name).parts:
                    raise RuntimeError(f"{archive.name}: unsafe member {m.name}")
                tf.extract(m, dest, **kwargs)
    else:
        raise RuntimeError(f"{archive} is neither a zip nor a tar archive")


def build(
    root: Path, cache: Path, dataset: str, url: str | None = None, sha256: str | None = None
) -> list[Entry]:
    src = SOURCES[dataset]
    url = url or os.environ.get(src.env) or src.url
    expected = sha256 or (src.sha256 if url == src.url else None)
    sums_path = cache / "checksums.json"
    sums = json.loads(sums_path.read_text()) if sums_path.is_file() else {}
    expected = expected or sums.get(url)  # trust on first use for archives without a published sum
    archive = download(url, cache / src.archive, expected)
    sums[url] = sha256_of(archive)
    sums_path.write_text(json.dumps(sums, indent=1))
    marker = root / f".extracted_{src.archive}"
    if not (marker.is_file() and marker.read_text() == sums[url]):
        extract(archive, root)
        marker.write_text(sums[url])
    groups = _esc50_groups(root) if dataset == "esc50" else {}
    entries = []
    for p in tqdm(sorted(root.glob(src.audio_glob)), desc=f"{dataset}: manifest", unit="file"):
        rel = p.relative_to(root).as_posix()
        i = sf.info(str(p))
        entries.append(
            Entry(
                file=rel,
                category=groups.get(p.name, "speech" if "librispeech" in dataset else "environment"),
                source_package=url,
                original_path=rel,
                licence=src.licence,
                duration_s=round(i.frames / i.samplerate, 3),
                sample_rate=i.samplerate,
            )
        )
    if not entries:
        raise RuntimeError(f"{dataset}: no audio matching {src.audio_glob} in the archive from {url}")
    return entries


def _esc50_groups(root: Path) -> dict[str, str]:
    meta = root / "ESC-50-master/meta/esc50.csv"
    if not meta.is_file():
        return {}
    with meta.open(newline="") as fh:
        return {r["filename"]: ESC50_GROUPS[int(r["target"]) // 10] for r in csv.DictReader(fh)}
