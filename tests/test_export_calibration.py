"""The one calibration module of export (tinycodec.export.calibration): its audio, the recipe that
makes an untrained model exportable, and the loader every exporter uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import tinycodec.pretrained as pretrained
from tinycodec.export.calibration import (
    calibration_audio,
    calibration_clips,
    default_calib_wavs,
    export_name,
    load_for_export,
    load_pcm,
    split_clips,
    windows,
)

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"


def test_load_for_export_prepares_random_weights(monkeypatch):
    monkeypatch.setattr(pretrained, "shipped_names", lambda: [])  # as if no trained ultra_tiny shipped
    noise = (np.random.default_rng(1).standard_normal(16000 * 10) * 3000).astype(np.int16)
    with pytest.raises(ValueError, match="k-means needs 256 frames per level"):
        load_for_export("ultra_tiny", [noise[:16000 * 3]], seed=0)
    model, what = load_for_export("ultra_tiny", [noise], seed=0)
    assert "RANDOM" in what
    biases = [m.bias for m in model.encoder.modules() if isinstance(m, torch.nn.Conv1d) and m.bias is not None]
    assert biases and all(bool((b == 0).all()) for b in biases)
    # k-means codebooks: every level is used on the audio it was fitted to (random init collapses)
    wav = torch.from_numpy(noise.astype(np.float32) / 32768).reshape(1, 1, -1)
    with torch.no_grad():
        codes, z = model.encode(wav), model.encoder(wav)
    assert len(torch.unique(codes[0, 0])) > 10
    assert float(z.pow(2).mean().sqrt()) == pytest.approx(1.0, rel=1e-3)  # embeddings at RMS 1
    # the deepest level was fitted on its own frames' residuals: its codewords did not collapse
    last = model.quantizer.layers[-1].embed
    assert len(torch.unique(last, dim=0)) > last.shape[0] // 2
    assert float(last.norm(dim=1).median()) > 1e-3


def test_shipped_models_and_modules_load_as_they_are():
    model, what = load_for_export("ultra_tiny")
    assert "trained weights" in what and model.model_id == "ultra_tiny"
    same, _ = load_for_export(model)
    assert same is model
    assert export_name(model) == "tinystream" and export_name("ultra_tiny") == "ultra_tiny"
    assert export_name("runs/ckpt/last.pt") == "last"
    with pytest.raises(FileNotFoundError):
        load_for_export("no/such/file.safetensors")


def test_calibration_audio_is_read_by_the_one_clip_loader():
    files = default_calib_wavs(DEMO)
    assert files[0].parent.name == "speech" and files[-1].parent.name == "nature"
    assert calibration_audio(DEMO) == files == calibration_audio(str(DEMO))
    clips = calibration_clips(DEMO, 16000, max_seconds=1.0)
    assert len(clips) == len(files) and all(c.shape == (1, 16000) for c in clips)
    pcm = load_pcm(files[0], 16000, 1.0)
    assert pcm.dtype == np.int16 and pcm.shape == (16000,)
    calib, held = split_clips(clips)
    assert calib[0].shape[-1] + held[0].shape[-1] == 16000
    wins = windows(clips, 4000, 5)
    assert len(wins) == 5 and all(w.shape == (1, 1, 4000) for w in wins)
    with pytest.raises(FileNotFoundError, match="tinycodec data fetch demo"):
        calibration_clips(DEMO / "nope")
