"""Audio from Debian packages without installing them: ``apt-get download`` + ``dpkg-deb -x``.

Also the decoders the recipes share: soundfile + ``tinycodec.audio.resample`` for WAV/OGG/FLAC,
and ffmpeg (or PyAV) for G.722, which libsndfile does not read.

Notebook: book/01_data.md
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile as sf
import torch
from tqdm.auto import tqdm

from tinycodec.audio import load, save
from tinycodec.data.corpora.manifest import Entry

log = logging.getLogger(__name__)

_updated = False  # run `apt-get update` at most once per process


def _need(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} not found: {why}")
    return path


def _tail(proc: subprocess.CompletedProcess) -> str:
    return " | ".join((proc.stderr or proc.stdout or "").strip().splitlines()[-3:])


def apt_download(packages: list[str], dest: Path) -> dict[str, Path]:
    """Download ``.deb`` files of ``packages`` into ``dest`` (cached); returns package -> deb path.

    Raises:
        RuntimeError: apt-get is missing (not Debian/Ubuntu) or a download failed (network, unknown package).
    """
    global _updated
    _need("apt-get", "this recipe takes audio from Debian packages (Debian/Ubuntu only)")
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    for pkg in tqdm(packages, desc="apt-get download", unit="pkg"):
        found = sorted(dest.glob(f"{pkg}_*.deb"))
        if not found:
            proc = subprocess.run(["apt-get", "download", pkg], cwd=dest, capture_output=True, text=True)
            if proc.returncode != 0 and not _updated and os.geteuid() == 0:
                # stale or empty package lists are the usual cause: refresh once and retry
                log.info("apt-get download %s failed; running apt-get update", pkg)
                subprocess.run(["apt-get", "update"], capture_output=True, text=True)
                _updated = True
                proc = subprocess.run(["apt-get", "download", pkg], cwd=dest, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(
                    f"apt-get download {pkg} failed (is the Debian mirror reachable?): {_tail(proc)}"
                )
            found = sorted(dest.glob(f"{pkg}_*.deb"))
            if not found:
                raise RuntimeError(f"apt-get download {pkg} wrote no .deb into {dest}")
        out[pkg] = found[-1]
    return out


def deb_version(deb: Path) -> str:
    """``name_version`` of a .deb file name (``klettres-data_4:22.12.3-1``)."""
    return urllib.parse.unquote(deb.name).rsplit("_", 1)[0]


def deb_extract(deb: Path, dest: Path) -> Path:
    """``dpkg-deb -x deb dest`` once (a marker file makes it idempotent); returns ``dest``."""
    _need("dpkg-deb", "needed to unpack Debian packages (apt-get install dpkg)")
    marker = dest / ".extracted"
    if marker.is_file() and marker.read_text() == deb.name:
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dpkg-deb -x {deb.name} failed: {_tail(proc)}")
    marker.write_text(deb.name)
    return dest


G722_DECODER_MISSING = "decoding G.722 needs ffmpeg (apt-get install ffmpeg) or PyAV (pip install av)"


def g722_decoder_available() -> bool:
    """Whether :func:`decode_g722` can run here (ffmpeg on the PATH, or PyAV importable)."""
    import importlib.util
    import shutil

    return shutil.which("ffmpeg") is not None or importlib.util.find_spec("av") is not None


def decode_g722(src: Path, dst: Path, sample_rate: int = 16_000) -> None:
    """G.722 (raw, 16 kHz) to mono WAV at ``sample_rate``, with ffmpeg or else PyAV."""
    if shutil.which("ffmpeg"):
        cmd = [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "g722",
            "-i",
            str(src),
            "-ac",
            "1",
            "-ar",
            str(sample_rate),
            str(dst),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg could not decode {src}: {_tail(proc)}")
        return
    try:
        import av
    except ImportError as exc:
        raise RuntimeError(G722_DECODER_MISSING) from exc
    import numpy as np

    with av.open(str(src), format="g722") as container:
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
        rate = container.streams.audio[0].rate
    x = np.concatenate(frames).astype(np.float32)
    if x.dtype.kind == "i" or np.abs(x).max() > 1.5:
        x = x / 32768.0
    from tinycodec.audio import resample

    save(dst, resample(torch.from_numpy(x)[None], rate, sample_rate), sample_rate)


def convert_tree(
    files: list[tuple[Path, str]],
    root: Path,
    sample_rate: int,
    desc: str,
    threads: int = 4,
    **meta,
) -> list[Entry]:
    """Decode ``(source file, output rel path)`` pairs to mono WAV at ``sample_rate`` in parallel.

    Files that fail to decode are logged and left out (a recipe should not die on one bad asset).
    ``meta`` fills the manifest (category, source_package, licence); ``original_path`` is taken
    relative to the extraction folder by the caller via ``meta['base']``.
    """
    base: Path = meta.pop("base")

    def one(item: tuple[Path, str]) -> Entry | None:
        src, rel = item
        dst = root / rel
        try:
            if not (dst.is_file() and dst.stat().st_size > 44):  # converted by an interrupted run
                dst.parent.mkdir(parents=True, exist_ok=True)
                if src.suffix.lower() == ".g722":
                    decode_g722(src, dst, sample_rate)
                else:
                    wav, _ = load(src, sample_rate)  # mono mixdown + windowed-sinc resampling
                    save(dst, wav, sample_rate)

            i = sf.info(str(dst))
            if i.frames == 0:  # a few game assets are empty: nothing to learn from
                dst.unlink()
                log.warning("skipping %s: no audio frames", src)
                return None
            return Entry(
                file=rel,
                original_path=src.relative_to(base).as_posix(),
                duration_s=round(i.frames / i.samplerate, 3),
                sample_rate=i.samplerate,
                **meta,
            )
        except Exception as exc:
            log.warning("skipping %s: %s", src, exc)
            return None

    with ThreadPoolExecutor(threads) as pool:
        results = list(tqdm(pool.map(one, files), total=len(files), desc=desc, unit="file"))
    return [e for e in results if e is not None]
