"""Shared test setup: fixtures every test module may ask for (tests never import each other).

- ``speech_like``: a seeded source-filter "speech" signal generator (``speech_like(seconds, sample_rate, seed)``);
- ``codec``, ``speech``: the shipped ``transformer_tiny`` as a ``TinyCodec``, 2 s of demo speech;
- ``corpus``: a tiny training corpus of noisy chirps (one per test module);
- ``tiny_config``: ``tiny_config(corpus, out, **overrides)``, a one-step ``TrainConfig`` of a tiny model;
- ``make_corpus``, ``tiny_model_overrides``: the corpus maker and the tiny model's config overrides.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import lfilter


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tests run many small tensor operations: on a 2-core machine one torch thread is several
    times faster and steadier than two (intra-op threading costs more than it saves here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- signals ------------------------------------------------------------------------------
_VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (640, 1190, 2390)]


def speech_like_signal(seconds: float = 3.0, sample_rate: int = 16000, seed: int = 0) -> torch.Tensor:
    """Source-filter 'speech': a jittered 100-140 Hz pulse train through vowel formants, in
    syllables of ~180 ms with pauses, plus short noise bursts for fricatives. Returns [T]."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = 120 + 15 * np.sin(2 * np.pi * 0.7 * t) + 2 * rng.standard_normal(n).cumsum() / np.sqrt(n)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    source = sum(np.sin(k * phase) / k for k in range(1, 40))
    out = np.zeros(n)
    pos = int(0.2 * sample_rate)
    while pos < n - sample_rate // 10:
        length = int(rng.uniform(0.12, 0.25) * sample_rate)
        seg = source[pos : pos + length]
        for formant, bw in zip(_VOWELS[rng.integers(len(_VOWELS))], (80, 100, 120)):
            r = np.exp(-np.pi * bw / sample_rate)
            seg = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * formant / sample_rate), r * r], seg)
        env = np.hanning(len(seg))
        out[pos : pos + len(seg)] += seg * env
        if rng.random() < 0.3:  # a fricative after the vowel
            burst = lfilter([1, -0.9], [1], rng.standard_normal(sample_rate // 12)) * 0.05
            end = min(n, pos + len(seg) + burst.size)
            out[pos + len(seg) : end] += burst[: end - pos - len(seg)]
        pos += len(seg) + int(rng.uniform(0.03, 0.08) * sample_rate)
        if rng.random() < 0.15:
            pos += int(0.3 * sample_rate)  # a pause between phrases
    return torch.from_numpy((0.5 * out / np.abs(out).max()).astype(np.float32))


@pytest.fixture(scope="session")
def speech_like():
    """The seeded speech-like signal generator: ``speech_like(seconds, sample_rate, seed) -> [T]``."""
    return speech_like_signal


# -- the shipped transformer codec and real speech ------------------------------------------
@pytest.fixture(scope="session")
def codec():
    """The shipped ``transformer_tiny`` behind ``TinyCodec``."""
    from tinycodec.codec import TinyCodec

    return TinyCodec(model_path="transformer_tiny")


@pytest.fixture(scope="session")
def speech() -> torch.Tensor:
    """2 s of demo speech at 16 kHz, [T]."""
    from tinycodec.audio import load

    wav, _ = load(Path(__file__).resolve().parents[1] / "data" / "demo" / "speech" / "pyannote_sample.wav", 16000)
    return wav[0, 16000:48000]


# -- a tiny training setup ----------------------------------------------------------------
TINY = {"C": 2, "D": 16, "codebook_size": 16, "num_quantizers": 2}
# the tiny discriminator, as DiscriminatorConfig fields (tinycodec.train is imported only by tests that train)
TINY_DISC = dict(wave_channels=4, wave_max_channels=16, wave_downsample_layers=2,
                 stft_channels=4, stft_n_fft=256, stft_hop_length=64)


def make_train_corpus(root: Path, n_train: int = 6, sample_rate: int = 16000, seconds: float = 1.0) -> Path:
    """Noisy chirps: ``n_train`` files in the train split and one in the val split."""
    from tinycodec.data.folder import split_of

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    n_tr = n_val = i = 0
    while n_tr < n_train or n_val < 1:
        name = f"clip_{i:03d}.wav"
        i += 1
        split = split_of(name)
        if (split == "train" and n_tr >= n_train) or (split == "val" and n_val >= 1) or split == "test":
            continue
        f0 = rng.uniform(200, 2000)
        wav = 0.4 * np.sin(2 * np.pi * (f0 + 300 * t) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(root / name, wav.astype(np.float32), sample_rate)
        n_tr, n_val = n_tr + (split == "train"), n_val + (split == "val")
    return root


def make_tiny_config(corpus: Path, out: Path, **kw):
    """A ``TrainConfig``: one step of a tiny model on ``corpus``, checkpoints under ``out``."""
    from tinycodec.train import TrainConfig
    from tinycodec.train.discriminators import DiscriminatorConfig

    base = dict(model="tinystream", preset="ultra_tiny", audio_dir=str(corpus), batch_size=4, audio_length=0.25,
                val_clips=2, val_length=0.25, model_overrides=dict(TINY), disc=DiscriminatorConfig(**TINY_DISC),
                checkpoint_dir=str(out / "ckpt"), log_dir=None, max_steps=1, log_interval=1, val_interval=1000,
                save_interval=1000, progress=False, seed=0, num_threads=1)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_train_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(corpus, out, **overrides) -> TrainConfig``: one step of a tiny model, no logging."""
    return make_tiny_config


@pytest.fixture(scope="session")
def make_corpus():
    """``make_corpus(root, n_train=6, sample_rate=16000, seconds=1.0) -> root``: noisy chirps."""
    return make_train_corpus


@pytest.fixture
def tiny_model_overrides():
    """The tiny model's ``model_overrides`` (a fresh dict)."""
    return dict(TINY)
