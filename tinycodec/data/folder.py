"""``AudioFolder``: random fixed-length crops from a folder of messy audio files, never a crash.

Every file is checked once, when the dataset is built (header, then a streaming decode of all
samples, as training will read it): unreadable, empty, non-finite, absurdly loud (peak above
``max_peak``), silent or too-short files, and files at a rate the resampler cannot convert to the
target rate, are skipped with one warning each and listed in ``dataset.skipped`` as ``(path, reason)``.
What remains decodes to finite, bounded crops, so an epoch never raises and k-means initialisation
never sees NaN. Directory symlinks are followed once per real folder: a symlink loop (or a second
link to a folder already scanned) is skipped with a warning, so no file is read twice and no file
lands in two splits. The measurements are cached in ``<root>/.tinycodec_manifest.json`` keyed by
path, size and mtime, so a large tree is scanned in full only once.

A hash of the path keeps *files* apart, but two files of one speaker land on both sides. To hold out
whole speakers or recordings, put a ``splits.json`` in the root (``data/manifests/reference_splits.json``
is ours)::

    {"test": ["speech/asterisk_it/it_IT_m_Carlo", "nature/0ad/ambient/forest_day.wav"],
     "val":  ["speech/klettres/da"]}

Each entry is a relative path prefix that matches whole path components (a folder or one file);
the longest matching entry wins and every file no entry matches trains.

    root/**/*.wav|flac|ogg|mp3 --scan--> files (ok) + skipped (path, reason)
                                  |
       split: <root>/splits.json rules (whole speakers/recordings) if present,
              else hash(relative path): train 90 % / val 5 % / test 5 %
                                  |
      __getitem__: read a window at the file's rate -> mono -> resample -> crop/pad -> [1, T]

Notebook: book/01_data.md
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm

from tinycodec.audio import AUDIO_EXTENSIONS, load, resample, resample_kernel

__all__ = ["AudioFolder", "AudioSkipWarning", "FileInfo", "SPLIT_FILE", "load_split_rules", "split_of", "SPLITS"]

log = logging.getLogger(__name__)

CACHE_NAME = ".tinycodec_manifest.json"
CACHE_VERSION = 1
SPLITS = {"train": (0.0, 0.90), "val": (0.90, 0.95), "test": (0.95, 1.0)}  # fractions of hash space
SPLIT_FILE = "splits.json"  # optional rules in a corpus root: whole speakers/recordings per split
MAX_PEAK = 16.0  # +24 dBFS: float files may exceed 1.0 a little; far beyond is broken data, not audio


class AudioSkipWarning(UserWarning):
    """A file was left out of an ``AudioFolder``; the message names the file and the reason."""


@dataclass
class FileInfo:
    """What the scan measured about one file (also the cache record)."""

    rel: str  # path relative to the root, forward slashes
    size: int  # bytes, with mtime_ns the cache key
    mtime_ns: int
    sample_rate: int = 0
    channels: int = 0
    frames: int = 0  # frames that actually decode (a truncated WAV has fewer than its header says)
    peak: float = 0.0  # max |sample| over all channels
    error: str = ""  # decode failure; empty when the file decoded


def load_split_rules(root: str | Path) -> dict[str, str] | None:
    """The ``<root>/splits.json`` rules as ``{prefix: split}``, or ``None`` when the root has none.

    ``root`` may also name the JSON file itself (e.g. ``data/manifests/reference_splits.json``).

    Raises:
        ValueError: the file is not JSON of the form ``{"test": [prefix, ...], "val": [...]}``, or a
            prefix is listed under two splits.
    """
    path = Path(root) if Path(root).suffix == ".json" else Path(root) / SPLIT_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected an object like {{\"test\": [prefix, ...]}}, got {type(raw).__name__}")
    rules: dict[str, str] = {}
    for split, prefixes in raw.items():
        if split.startswith("_"):  # "_comment" and friends document the file
            continue
        if split not in SPLITS:
            raise ValueError(f"{path}: unknown split {split!r} (use {list(SPLITS)})")
        if not isinstance(prefixes, list) or not all(isinstance(p, str) and p.strip("/") for p in prefixes):
            raise ValueError(f"{path}: {split!r} must be a list of non-empty relative path prefixes")
        for prefix in prefixes:
            key = prefix.strip("/")
            if rules.get(key, split) != split:
                raise ValueError(f"{path}: {key!r} is listed under both {rules[key]!r} and {split!r}")
            rules[key] = split
    return rules


def split_of(rel: str, rules: dict[str, str] | None = None) -> str:
    """The split of a file, stable across machines and runs.

    With ``rules`` (from ``load_split_rules``): the split of the longest prefix that matches whole
    path components of ``rel``, else ``"train"``. Without: a hash of the relative path (90/5/5 %).
    """
    if rules is not None:
        parts = rel.split("/")
        for n in range(len(parts), 0, -1):
            split = rules.get("/".join(parts[:n]))
            if split is not None:
                return split
        return "train"
    h = int(hashlib.sha1(rel.encode("utf-8")).hexdigest()[:8], 16) / 2**32
    return next(name for name, (lo, hi) in SPLITS.items() if lo <= h < hi)


def _measure(path: Path, rel: str, st: os.stat_result) -> FileInfo:
    fi = FileInfo(rel=rel, size=st.st_size, mtime_ns=st.st_mtime_ns)
    if st.st_size == 0:
        fi.error = "empty file (0 bytes)"
        return fi
    try:
        with sf.SoundFile(str(path)) as f:
            fi.sample_rate, fi.channels = f.samplerate, f.channels
            peak, frames = 0.0, 0
            # streaming decode: memory stays bounded, and a corrupt frame anywhere is found now
            for block in f.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
                if not np.isfinite(block).all():
                    fi.error = "non-finite samples (NaN or Inf)"
                    return fi
                frames += block.shape[0]
                peak = max(peak, float(np.abs(block).max(initial=0.0)))
            fi.frames, fi.peak = frames, peak
    except Exception as exc:  # libsndfile errors, RuntimeError, TypeError on odd headers...
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        fi.error = f"unreadable: {msg[:160]}"
    return fi


def _can_resample(orig_sr: int, new_sr: int) -> bool:
    """True when ``tinycodec.audio.resample`` can convert ``orig_sr`` to ``new_sr`` (its polyphase
    kernel stays bounded; coprime odd rates such as 44101 Hz would need gigabytes)."""
    if orig_sr == new_sr:
        return True
    try:
        resample_kernel(orig_sr, new_sr)
    except ValueError:
        return False
    return True


def _walk(root: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Audio files under ``root`` (hidden ones left out), following each real folder once.

    A directory symlink to a folder already scanned or claimed by a real folder (a loop, or a second
    name for the same folder) is skipped with an ``AudioSkipWarning``; so is a second link to the
    same file. (A link met in a subfolder before its target's own folder is walked wins the name.)
    """
    paths, seen_dirs, seen_files = [], set(), set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        seen_dirs.add(os.path.realpath(dirpath))
        keep = []
        # real folders claim their path before links to them do: a file keeps its own name
        for d in sorted((d for d in dirnames if not d.startswith(".")),
                        key=lambda d: (os.path.islink(os.path.join(dirpath, d)), d)):
            real = os.path.realpath(os.path.join(dirpath, d))
            if real in seen_dirs or real in _ancestors(dirpath):
                warnings.warn(f"AudioFolder: not following {os.path.join(dirpath, d)}: it leads to {real}, "
                              "a folder already scanned (symlink loop or duplicate)", AudioSkipWarning, stacklevel=3)
                continue
            seen_dirs.add(real)
            keep.append(d)
        dirnames[:] = sorted(keep)
        for f in sorted(filenames, key=lambda f: (os.path.islink(os.path.join(dirpath, f)), f)):
            if not f.lower().endswith(extensions) or f.startswith("."):
                continue
            real = os.path.realpath(os.path.join(dirpath, f))
            if real in seen_files:
                warnings.warn(f"AudioFolder: skipping {os.path.join(dirpath, f)}: the same file as {real}, "
                              "already scanned", AudioSkipWarning, stacklevel=3)
                continue
            seen_files.add(real)
            paths.append(Path(dirpath) / f)
    return paths


def _ancestors(dirpath: str) -> list[str]:
    """Real paths of ``dirpath`` and its parents: a link to any of them is a loop."""
    real = os.path.realpath(dirpath)
    out = [real]
    while os.path.dirname(out[-1]) != out[-1]:
        out.append(os.path.dirname(out[-1]))
    return out


class AudioFolder(torch.utils.data.Dataset):
    """Random crops of ``audio_length`` seconds from every usable audio file under ``root``.

    Args:
        root: folder scanned recursively (hidden files and folders are ignored).
        sample_rate: rate of the returned crops in Hz; other rates are resampled.
        audio_length: crop length in seconds; shorter files are zero-padded at the end.
        split: ``None`` (all files) or ``"train"``/``"val"``/``"test"``: by ``<root>/splits.json``
            when the root has one (whole speakers/recordings), else 90/5/5 % by path hash.
        peak_normalize: scale each file so its peak (measured at scan) becomes this value; ``None`` keeps gains.
        random_crop: random start per item (default: True for train/None, False (file start) for val/test).
        crops_per_file: items per file and epoch (long files deserve more than one crop).
        min_duration: files shorter than this (seconds) are skipped.
        silence_peak: files whose peak is below this (about -80 dBFS) are skipped as silent.
        max_peak: files whose peak is above this (+24 dBFS by default) are skipped as absurdly loud.
        extensions: file endings to scan.
        cache: read/write ``<root>/.tinycodec_manifest.json``.

    Attributes:
        files (list[FileInfo]): usable files of this split.
        skipped (list[tuple[str, str]]): ``(path, reason)`` for every file left out.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        RuntimeError: no usable audio file (the message lists the first skip reasons).
    """

    def __init__(
        self,
        root: str | Path,
        sample_rate: int = 16_000,
        audio_length: float = 1.0,
        split: str | None = None,
        peak_normalize: float | None = None,
        random_crop: bool | None = None,
        crops_per_file: int = 1,
        min_duration: float = 0.01,
        silence_peak: float = 1e-4,
        max_peak: float = MAX_PEAK,
        extensions: tuple[str, ...] = AUDIO_EXTENSIONS,
        cache: bool = True,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"audio folder {self.root} does not exist")
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be None or one of {list(SPLITS)}, got {split!r}")
        self.sample_rate, self.audio_length, self.split = int(sample_rate), float(audio_length), split
        self.length = int(round(audio_length * sample_rate))  # T of every returned crop
        self.peak_normalize, self.crops_per_file = peak_normalize, int(crops_per_file)
        self.random_crop = split in (None, "train") if random_crop is None else random_crop
        self.split_rules = load_split_rules(self.root)  # None: hash split
        infos = self._scan(tuple(e.lower() for e in extensions), cache)
        self.files: list[FileInfo] = []
        self.skipped: list[tuple[str, str]] = []
        for fi in infos:
            reason = fi.error
            if not reason and fi.frames == 0:
                reason = "no audio frames"
            elif not reason and fi.frames / fi.sample_rate < min_duration:
                reason = (
                    f"too short ({1000 * fi.frames / fi.sample_rate:.1f} ms < {1000 * min_duration:g} ms)"
                )
            elif not reason and fi.peak < silence_peak:
                reason = f"silent (peak {fi.peak:.2g} < {silence_peak:g})"
            elif not reason and not fi.peak <= max_peak:
                reason = f"absurd amplitude (peak {fi.peak:.3g} > {max_peak:g})"
            elif not reason and not _can_resample(fi.sample_rate, self.sample_rate):
                reason = f"sample rate {fi.sample_rate} Hz cannot be resampled to {self.sample_rate} Hz (ratio too irregular)"
            if reason:
                path = str(self.root / fi.rel)
                self.skipped.append((path, reason))
                warnings.warn(f"AudioFolder: skipping {path}: {reason}", AudioSkipWarning, stacklevel=2)
            elif split is None or split_of(fi.rel, self.split_rules) == split:
                self.files.append(fi)
        if not self.files:
            detail = "; ".join(f"{Path(p).name}: {r}" for p, r in self.skipped[:5])
            where = f" in split {split!r}" if split else ""
            raise RuntimeError(
                f"no usable audio{where} under {self.root} ({len(infos)} candidate files, "
                f"{len(self.skipped)} skipped{': ' + detail if detail else ''})"
            )

    # ---------------------------------------------------------------------------------------
    def _scan(self, extensions: tuple[str, ...], use_cache: bool) -> list[FileInfo]:
        paths = _walk(self.root, extensions)
        cache_path = self.root / CACHE_NAME
        cached: dict[str, dict] = {}
        if use_cache and cache_path.is_file():
            try:
                data = json.loads(cache_path.read_text())
                cached = data["files"] if data.get("version") == CACHE_VERSION else {}
            except (OSError, ValueError, KeyError):
                cached = {}
        infos, fresh = [], 0
        for p in tqdm(
            paths, desc=f"scanning {self.root.name}", unit="file", disable=len(paths) < 200, leave=False
        ):
            rel = p.relative_to(self.root).as_posix()
            try:
                st = p.stat()
            except OSError as exc:
                infos.append(FileInfo(rel=rel, size=0, mtime_ns=0, error=f"cannot stat: {exc.strerror}"))
                continue
            c = cached.get(rel)
            if c and c["size"] == st.st_size and c["mtime_ns"] == st.st_mtime_ns:
                infos.append(FileInfo(**c))
            else:
                infos.append(_measure(p, rel, st))
                fresh += 1
        if use_cache and (fresh or len(cached) != len(infos)):
            try:
                tmp = cache_path.with_suffix(".tmp")
                tmp.write_text(
                    json.dumps({"version": CACHE_VERSION, "files": {fi.rel: asdict(fi) for fi in infos}})
                )
                tmp.replace(cache_path)
            except OSError as exc:  # read-only corpus: scanning still works, just not cached
                log.info("cannot write %s: %s", cache_path, exc)
        self.scanned_fresh = fresh  # files decoded in this scan (0 when all came from the cache)
        return infos

    def __len__(self) -> int:
        return len(self.files) * self.crops_per_file

    @property
    def durations(self) -> list[float]:
        """Duration in seconds of each usable file (at its own rate)."""
        return [fi.frames / fi.sample_rate for fi in self.files]

    def _read(self, fi: FileInfo, start_s: float | None) -> torch.Tensor:
        sr = fi.sample_rate
        n_in = math.ceil(self.length * sr / self.sample_rate)  # crop length at the file's rate
        if start_s is None:  # random start, drawn from torch's RNG (seeded per DataLoader worker)
            start = int(torch.randint(0, max(1, fi.frames - n_in + 1), ()).item())
        else:
            start = min(int(start_s * sr), max(0, fi.frames - n_in))
        # context on both sides, longer than the resampler's filter half-length (64 zero crossings),
        # so that the zero padding at the window's edges stays outside the crop
        margin = math.ceil(70 * sr / min(sr, self.sample_rate)) if sr != self.sample_rate else 0
        lo, hi = max(0, start - margin), min(fi.frames, start + n_in + margin)
        wav, _ = load(self.root / fi.rel, offset=lo, frames=hi - lo)  # [1, t] mono mixdown
        if sr != self.sample_rate:
            wav = resample(wav, sr, self.sample_rate)
            skip = round((start - lo) * self.sample_rate / sr)
            wav = wav[:, skip : skip + self.length]
        else:
            wav = wav[:, : self.length]
        if self.peak_normalize is not None:
            wav = wav * (self.peak_normalize / fi.peak)
        if wav.shape[-1] < self.length:
            wav = torch.nn.functional.pad(wav, (0, self.length - wav.shape[-1]))
        return torch.nan_to_num(wav, nan=0.0, posinf=0.0, neginf=0.0)

    def crop(self, index: int, start_s: float | None = None) -> torch.Tensor:
        """Crop of file ``index`` starting at ``start_s`` seconds (random when ``None``): [1, T]."""
        return self._read(self.files[index], start_s)

    def __getitem__(self, index: int) -> torch.Tensor:
        """A crop, Tensor [1, T] float32 with T = audio_length * sample_rate, finite."""
        fi = self.files[index % len(self.files)]
        try:
            return self._read(fi, None if self.random_crop else 0.0)
        except Exception as exc:  # any failure here must not end the epoch
            # the file changed or vanished after the scan: warn and yield silence, the epoch goes on
            warnings.warn(
                f"AudioFolder: {fi.rel} failed after scan ({exc}); yielding silence",
                AudioSkipWarning,
                stacklevel=2,
            )
            return torch.zeros(1, self.length)

    def __repr__(self) -> str:
        hours = sum(self.durations) / 3600
        return (
            f"AudioFolder({str(self.root)!r}, split={self.split!r}, files={len(self.files)}, "
            f"skipped={len(self.skipped)}, hours={hours:.3f}, sample_rate={self.sample_rate}, T={self.length})"
        )
