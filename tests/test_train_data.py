"""tinycodec.train.data: the validation clips every run is judged on."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch

from tinycodec.data.folder import AudioFolder
from tinycodec.train.data import validation_clips

SR = 16000


def _write(path, seconds_silent: float, seconds_heard: float, freq: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds_heard * SR)) / SR
    heard = 0.3 * np.sin(2 * np.pi * freq * t)
    sf.write(path, np.concatenate([np.zeros(int(seconds_silent * SR)), heard]).astype(np.float32), SR)


def test_validation_clips_are_heard_and_spread_over_categories(tmp_path):
    # "nature" sorts first and has more files; every file starts with 2 s of silence
    for i in range(6):
        _write(tmp_path / "nature" / f"rec_{i}.wav", 2.0, 1.0, 300 + 50 * i)
    for i in range(3):
        _write(tmp_path / "speech" / f"voice_{i}.wav", 2.0, 1.0, 1000 + 100 * i)
    folder = AudioFolder(tmp_path, SR, 1.0, split=None)
    clips = validation_clips(folder, 4)
    assert clips.shape == (4, 1, SR)
    rms = clips.pow(2).mean(dim=-1).sqrt().flatten()
    assert (rms > 0.1).all(), rms  # the heard second, not the silent start
    dominant = torch.fft.rfft(clips.flatten(1)).abs().argmax(dim=-1)  # Hz at 1 s clips
    speech = (dominant >= 1000).sum().item()
    assert speech == 2, dominant  # two per category, although nature has twice the files
    again = validation_clips(folder, 4)
    assert torch.equal(clips, again)  # fixed: every validation sees the same clips


def test_fewer_files_than_clips_gives_distinct_windows(tmp_path):
    _write(tmp_path / "speech" / "only.wav", 0.0, 3.0, 437.3)  # not whole cycles per second
    folder = AudioFolder(tmp_path, SR, 1.0, split=None)
    clips = validation_clips(folder, 3)
    assert clips.shape == (3, 1, SR)
    assert not torch.equal(clips[0], clips[1]) and not torch.equal(clips[1], clips[2])


def test_files_left_out_of_a_training_corpus_are_reported(tmp_path, caplog):
    import logging

    import numpy as np
    import soundfile as sf

    from tinycodec.train.data import open_folders

    rng = np.random.default_rng(0)
    for i in range(3):
        sf.write(tmp_path / f"good_{i}.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    sf.write(tmp_path / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    (tmp_path / "broken.wav").write_bytes(b"RIFF....not audio")
    with caplog.at_level(logging.INFO, logger="tinycodec.train.data"):
        train, _ = open_folders(str(tmp_path), 16000, 0.25, 0.25)
    summary = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "left out" in r.getMessage()]
    assert len(summary) == 1 and summary[0].startswith("2 file(s)")
    listed = {r.getMessage() for r in caplog.records if r.levelno == logging.INFO}
    assert any("silent.wav" in m for m in listed) and any("broken.wav" in m for m in listed)
