"""The ``demo`` corpus: real MIT-licensed clips shipped inside two wheels, plus synthetic birdsong.

``pip download --no-deps`` fetches the wheels (no install); the audio is read straight out of the
zip files, mixed to mono, resampled to 16 kHz and written as WAV:

    speech/pyannote_sample.wav   pyannote.audio 4.0.7  pyannote/audio/sample/sample.wav  30 s, 2 speakers
    speech/onsen_thank_you.wav   onsen 0.1.1           onsen/assets/thank_you.wav         1.9 s, one voice
    speech/onsen_welcome.wav     onsen 0.1.1           onsen/assets/welcome.wav           1.4 s, one voice
    nature/onsen_water.wav       onsen 0.1.1           onsen/assets/water.wav             67 s, rain/water
    synthetic/birds_XX.wav       tinycodec.data.synth  seed XX                            12 x 5 s

(onsen's ``bell.wav`` is neither speech nor nature and is left out.)

Notebook: book/01_data.md
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import soundfile as sf
import torch
from tqdm.auto import tqdm

from tinycodec.audio import resample
from tinycodec.data.corpora.manifest import Entry, write_audio
from tinycodec.data.synth import NatureConfig, synth_nature

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
WHEELS = {"onsen": "0.1.1", "pyannote.audio": "4.0.7"}
# (wheel file prefix, member inside the wheel, output file, category)
CLIPS = [
    ("pyannote_audio", "pyannote/audio/sample/sample.wav", "speech/pyannote_sample.wav", "speech"),
    ("onsen", "onsen/assets/thank_you.wav", "speech/onsen_thank_you.wav", "speech"),
    ("onsen", "onsen/assets/welcome.wav", "speech/onsen_welcome.wav", "speech"),
    ("onsen", "onsen/assets/water.wav", "nature/onsen_water.wav", "nature"),
]
# synthetic clips: SNR (dB of birds over ambience) and ambience layers cycle with the seed
N_SYNTH, SYNTH_SECONDS = 12, 5.0
SNRS = (0.0, 5.0, 10.0, 20.0)
BEDS = (("wind", "insects"), ("stream",), ("rain",), ("wind", "stream", "insects"))


def pip_download(requirements: list[str], dest: Path) -> list[Path]:
    """``pip download --no-deps`` into ``dest``; returns the wheel paths.

    Raises:
        RuntimeError: pip failed (no network, no index); the message names the packages and pip's error.
    """
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(dest),
        *requirements,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise RuntimeError(
            f"pip download of {' '.join(requirements)} failed (is the package index reachable?): {tail}"
        )
    return sorted(dest.glob("*.whl"))


def build(root: Path, cache: Path) -> list[Entry]:
    """Fetch the wheels, extract and convert the clips, generate the synthetic set."""
    reqs = [f"{k}=={v}" for k, v in WHEELS.items()]
    wheels = {p.name.split("-")[0].lower(): p for p in cache.glob("*.whl")}
    if not all(k.replace(".", "_") in wheels for k in WHEELS):
        wheels = {p.name.split("-")[0].lower(): p for p in pip_download(reqs, cache)}
    entries = []
    for prefix, member, rel, category in tqdm(CLIPS, desc="demo: real clips", unit="clip"):
        pkg = "pyannote.audio" if prefix == "pyannote_audio" else prefix
        with zipfile.ZipFile(wheels[prefix]) as zf:
            data, sr = sf.read(io.BytesIO(zf.read(member)), dtype="float32", always_2d=True)
        wav = resample(torch.from_numpy(data.T.copy()).mean(0, keepdim=True), sr, SAMPLE_RATE)
        entries.append(
            write_audio(
                root,
                rel,
                wav,
                SAMPLE_RATE,
                category=category,
                source_package=f"{pkg}=={WHEELS[pkg]}",
                original_path=member,
                licence="MIT",
            )
        )
    for seed in tqdm(range(N_SYNTH), desc="demo: synthetic birdsong", unit="clip"):
        cfg = NatureConfig(
            sample_rate=SAMPLE_RATE,
            duration=SYNTH_SECONDS,
            snr_db=SNRS[seed % len(SNRS)],
            ambience=BEDS[seed % len(BEDS)],
            n_calls=3 + seed % 4,
        )
        wav, _ = synth_nature(seed, cfg)
        entries.append(
            write_audio(
                root,
                f"synthetic/birds_{seed:02d}.wav",
                wav,
                SAMPLE_RATE,
                category="synthetic",
                source_package="tinycodec.data.synth",
                original_path=f"seed={seed} snr_db={cfg.snr_db:g} ambience={'+'.join(cfg.ambience)}",
                licence="CC0-1.0",
            )
        )
    return entries
