"""Fixtures for tests and the book: a folder of pathological audio files with known outcomes.

``write_pathological_folder(root)`` writes files that break naive loaders (empty, truncated, text
with a .wav name, NaN/Inf samples, silence, 5 ms, 8 channels, odd rates) and returns, for each
file name, the reason ``AudioFolder`` must give for skipping it, or ``None`` when it must be used.

Notebook: book/01_data.md
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["write_pathological_folder"]


def tone(sr: int, seconds: float, f: float = 440.0, channels: int = 1, amp: float = 0.5) -> np.ndarray:
    """A sine, [T, channels] float32 (soundfile layout)."""
    t = np.arange(int(sr * seconds)) / sr
    x = amp * np.sin(2 * np.pi * f * t)
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def write_pathological_folder(root: Path) -> dict[str, str | None]:
    """Write the pathological files under ``root``; returns name -> expected skip-reason prefix (None: used)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sub = root / "nested" / "deeper"
    sub.mkdir(parents=True, exist_ok=True)
    sf.write(root / "ok_16k.wav", tone(16000, 1.0), 16000)
    sf.write(root / "ok_8k.wav", tone(8000, 1.0), 8000)
    sf.write(root / "ok_44k.flac", tone(44100, 1.0, f=1000.0), 44100)
    sf.write(sub / "ok_48k.ogg", tone(48000, 1.0), 48000)
    sf.write(root / "eight_channels.wav", tone(48000, 0.8, channels=8), 48000)
    sf.write(root / "short_but_ok.wav", tone(16000, 0.1), 16000)  # shorter than the crop: padded
    sf.write(root / "full.wav", tone(16000, 1.0), 16000)
    data = (root / "full.wav").read_bytes()
    (root / "full.wav").unlink()
    (root / "truncated.wav").write_bytes(
        data[: len(data) // 2]
    )  # header claims more: libsndfile reads what is there
    sf.write(root / "f.flac", tone(16000, 1.0), 16000)
    flac = (root / "f.flac").read_bytes()
    (root / "f.flac").unlink()
    (root / "truncated.flac").write_bytes(flac[: len(flac) // 2])
    (root / "zero_length.wav").write_bytes(b"")
    (root / "text.wav").write_text("RIFF? no, just a text file with an audio extension\n")
    (root / "junk.mp3").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    sf.write(root / "no_frames.wav", np.zeros((0, 1), np.float32), 16000)
    nan = tone(16000, 0.5)
    nan[100] = np.nan
    sf.write(sub / "nan.wav", nan, 16000, subtype="FLOAT")
    inf = tone(16000, 0.5)
    inf[200] = np.inf
    sf.write(root / "inf.wav", inf, 16000, subtype="FLOAT")
    sf.write(root / "silent.wav", np.zeros((16000, 1), np.float32), 16000)
    sf.write(root / "five_ms.wav", tone(16000, 0.005), 16000)
    (root / "notes.txt").write_text("not scanned")
    sf.write(root / ".hidden.wav", tone(16000, 1.0), 16000)  # hidden: ignored
    return {
        "ok_16k.wav": None,
        "ok_8k.wav": None,
        "ok_44k.flac": None,
        "ok_48k.ogg": None,
        "eight_channels.wav": None,
        "short_but_ok.wav": None,
        "truncated.wav": None,
        "truncated.flac": "unreadable",
        "zero_length.wav": "empty file",
        "text.wav": "unreadable",
        "junk.mp3": "unreadable",
        "no_frames.wav": "no audio frames",
        "nan.wav": "non-finite",
        "inf.wav": "non-finite",
        "silent.wav": "silent",
        "five_ms.wav": "too short",
    }
