"""tinycodec.audio: I/O round trips, the windowed-sinc resampler and the mel filterbank."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy import signal

from tinycodec.audio import (
    AudioError,
    load,
    log_mel,
    loudness_dbfs,
    mel_filterbank,
    mel_spectrogram,
    resample,
    save,
)

RATES = [(44100, 16000), (16000, 44100), (48000, 16000), (8000, 16000), (22050, 16000), (16000, 24000)]


def _bandlimited(
    sr: int, seconds: float = 1.0, top: float = 3000.0, seed: int = 0
) -> tuple[np.ndarray, list]:
    """A sum of random sines below ``top`` Hz, and its (freq, amp, phase) list for exact references."""
    rng = np.random.default_rng(seed)
    comps = [(rng.uniform(50, top), rng.uniform(0.05, 0.2), rng.uniform(0, 2 * np.pi)) for _ in range(8)]
    return _render(comps, sr, seconds), comps


def _render(comps, sr, seconds):
    t = np.arange(int(round(sr * seconds))) / sr
    return sum(a * np.sin(2 * np.pi * f * t + p) for f, a, p in comps)


@pytest.mark.parametrize("orig,new", RATES)
def test_resample_matches_scipy_resample_poly(orig, new):
    x, comps = _bandlimited(orig)
    y = resample(torch.tensor(x, dtype=torch.float64), orig, new).numpy()
    g = math.gcd(orig, new)
    z = signal.resample_poly(x, new // g, orig // g)
    assert y.shape == z.shape == (math.ceil(len(x) * new / orig),)
    inner = slice(len(y) // 10, len(y) - len(y) // 10)  # both filters see zero padding at the edges
    assert np.abs(y[inner] - z[inner]).max() < 5e-3
    # and against the exact continuous signal: ours is the sharper filter
    assert np.abs(y[inner] - _render(comps, new, len(x) / orig)[inner]).max() < 1e-4


def test_resample_removes_content_above_new_nyquist():
    sr = 44100
    t = np.arange(sr) / sr
    for f, bound in [(8200, 1e-5), (12000, 1e-6)]:  # above the 8 kHz Nyquist of 16 kHz
        x = torch.tensor(
            np.sin(2 * np.pi * f * t), dtype=torch.float64
        )  # float64: float32 phase noise is -70 dB
        y = resample(x, sr, 16000)
        assert y[1000:-1000].abs().max() < bound  # -100 dB or better: no alias at 7.8 / 4 kHz
    passband = resample(torch.tensor(np.sin(2 * np.pi * 6500 * t)), sr, 16000)[1000:-1000]
    assert float(passband.pow(2).mean().sqrt() * np.sqrt(2)) == pytest.approx(1.0, abs=1e-3)


def test_resample_chunking_is_exact_and_shapes_are_kept():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 20_000)  # [B, C, T]
    a = resample(x, 48000, 16000, chunk_frames=7)
    b = resample(x, 48000, 16000, chunk_frames=1 << 20)
    assert a.shape == (2, 3, math.ceil(20_000 / 3))
    assert torch.allclose(a, b, atol=1e-6)
    assert resample(x, 16000, 16000) is x
    assert resample(torch.zeros(1, 0), 44100, 16000).shape == (1, 0)
    with pytest.raises(ValueError, match="positive"):
        resample(x, 0, 16000)


def test_resample_preserves_dc_gain():
    y = resample(torch.ones(1, 8000), 8000, 44100)
    assert torch.allclose(y[:, 500:-500], torch.ones(1), atol=1e-3)


@pytest.mark.parametrize(
    "ext,subtype", [(".wav", "PCM_16"), (".flac", "PCM_16"), (".ogg", "VORBIS"), (".mp3", "MPEG_LAYER_III")]
)
def test_load_formats_mixdown_and_rate(tmp_path, ext, subtype):
    sr = 22050
    x, _ = _bandlimited(sr, 0.5, top=2000)
    stereo = np.stack([x, -0.5 * x], axis=1).astype(np.float32) * 0.5  # [T, 2]
    path = tmp_path / f"a{ext}"
    sf.write(path, stereo, sr, subtype=subtype)
    wav, got_sr = load(path)
    assert got_sr == sr and wav.shape[0] == 1 and wav.dtype == torch.float32
    tol = 1e-3 if ext in (".wav", ".flac") else 0.05  # lossy codecs
    n = min(wav.shape[-1], len(x))
    if ext in (".wav", ".flac"):
        assert np.abs(wav[0, :n].numpy() - stereo.mean(1)[:n]).max() < tol
    both, _ = load(path, mono=False)
    assert both.shape[0] == 2
    wav16, sr16 = load(path, 16000)
    assert sr16 == 16000 and abs(wav16.shape[-1] - wav.shape[-1] * 16000 / sr) <= 1


def test_save_load_round_trip_and_clipping(tmp_path):
    wav = torch.tensor([[0.0, 0.5, -0.5, 2.0, -2.0]])
    save(tmp_path / "x.wav", wav, 16000)
    back, sr = load(tmp_path / "x.wav")
    assert sr == 16000
    assert torch.allclose(back, torch.tensor([[0.0, 0.5, -0.5, 1.0, -1.0]]), atol=1e-4)


def test_load_offset_frames(tmp_path):
    x = np.arange(1000, dtype=np.float32) / 1000
    sf.write(tmp_path / "r.wav", x, 8000, subtype="FLOAT")
    wav, _ = load(tmp_path / "r.wav", offset=100, frames=10)
    assert torch.allclose(wav[0], torch.from_numpy(x[100:110]))


def test_load_errors_are_audio_errors(tmp_path):
    (tmp_path / "text.wav").write_text("this is not audio\n")
    with pytest.raises(AudioError, match="text.wav"):
        load(tmp_path / "text.wav")
    with pytest.raises(AudioError, match="missing.flac"):
        load(tmp_path / "missing.flac")
    assert issubclass(AudioError, RuntimeError)


@pytest.mark.parametrize("mel_scale,norm", [("htk", None), ("slaney", "slaney")])
def test_mel_filterbank_shape_and_coverage(mel_scale, norm):
    fb = mel_filterbank(512, 40, 16000, mel_scale=mel_scale, norm=norm)
    assert fb.shape == (257, 40)
    assert (fb >= 0).all()
    centres = fb.argmax(dim=0)
    assert (centres[1:] >= centres[:-1]).all()  # filters ordered by frequency
    if norm is None:
        peaks = fb.max(dim=0).values  # narrow low filters fall between bins, so their peaks are < 1
        assert (peaks <= 1 + 1e-6).all() and (peaks > 0.5).all()
        covered = fb.sum(dim=1)[centres[0] : centres[-1]]
        assert (covered > 0.5).all()  # neighbouring triangles overlap: no gaps between centres
    else:
        hz = torch.linspace(0, 8000, 257)
        area = (fb * (hz[1] - hz[0])).sum(dim=0)  # slaney norm: equal area (2 / bandwidth scaling)
        assert area.std() / area.mean() < 0.15


def test_mel_scales_differ_below_and_agree_in_spirit():
    htk = mel_filterbank(1024, 64, 16000, mel_scale="htk").argmax(0)
    sl = mel_filterbank(1024, 64, 16000, mel_scale="slaney").argmax(0)
    assert not torch.equal(htk, sl)
    with pytest.raises(ValueError):
        mel_filterbank(1024, 64, 16000, mel_scale="bark")


def test_mel_spectrogram_locates_a_tone():
    sr = 16000
    t = torch.arange(sr) / sr
    wav = torch.sin(2 * math.pi * 1000 * t)[None]  # [1, T]
    mel = mel_spectrogram(wav, sr, n_fft=1024, hop_length=256, n_mels=64)
    assert mel.shape == (1, 64, sr // 256 + 1)
    fb = mel_filterbank(1024, 64, sr)
    expected = int(fb[int(1000 / (sr / 1024))].argmax())  # the filter that owns the 1 kHz bin
    assert abs(int(mel[0].mean(-1).argmax()) - expected) <= 1
    lm = log_mel(torch.zeros(2, 1, 4000), sr, n_mels=32)
    assert lm.shape == (2, 1, 32, 4000 // 256 + 1) and torch.isfinite(lm).all()
    assert torch.allclose(lm, torch.full_like(lm, math.log(1e-5)))


def test_loudness_dbfs():
    assert float(loudness_dbfs(torch.ones(1, 100))) == pytest.approx(0.0, abs=1e-4)
    assert float(loudness_dbfs(0.1 * torch.ones(100))) == pytest.approx(-20.0, abs=1e-3)
    assert float(loudness_dbfs(torch.zeros(10))) == -120.0


# The optional extra: torchaudio is a reference here, never a dependency (it cannot import with the
# CPU torch we pin; it does on the GPU machine). This is the one skip the suite allows.
def import_torchaudio():
    """torchaudio, or a skip saying why not: not installed, or installed for another torch, whose
    compiled extension fails to load with an ``OSError`` (``importorskip`` lets that through)."""
    try:
        import torchaudio
    except ModuleNotFoundError as exc:
        if exc.name != "torchaudio":  # a module torchaudio itself needs: broken, not absent
            raise
        pytest.skip("torchaudio is not installed")
    except (ImportError, OSError) as exc:
        pytest.skip(f"torchaudio is installed but cannot load with this torch: {exc}")
    return torchaudio


def test_a_torchaudio_that_cannot_load_is_a_skip(tmp_path, monkeypatch):
    fake = tmp_path / "torchaudio"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise OSError('libtorchaudio.so: undefined symbol: _ZN3c10')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "torchaudio", raising=False)
    with pytest.raises(pytest.skip.Exception, match="cannot load with this torch: libtorchaudio.so"):
        import_torchaudio()
    (fake / "__init__.py").write_text("import torchaudio_missing_dependency\n")
    with pytest.raises(ModuleNotFoundError, match="torchaudio_missing_dependency"):  # broken: not skipped
        import_torchaudio()


def test_matches_torchaudio_where_it_imports():
    ta = import_torchaudio()
    x = torch.tensor(_bandlimited(44100)[0], dtype=torch.float32)[None]
    ref = ta.functional.resample(
        x, 44100, 16000, resampling_method="sinc_interp_kaiser", beta=14.769656459379492
    )
    assert torch.allclose(resample(x, 44100, 16000), ref, atol=1e-5)
    fb_ref = ta.functional.melscale_fbanks(513, 0.0, 8000.0, 80, 16000, norm="slaney", mel_scale="slaney")
    assert torch.allclose(
        mel_filterbank(1024, 80, 16000, norm="slaney", mel_scale="slaney"), fb_ref, atol=1e-6
    )
    mel_ref = ta.transforms.MelSpectrogram(16000, n_fft=1024, hop_length=256, n_mels=80)(x[:, :16000])
    assert torch.allclose(mel_spectrogram(x[:, :16000], 16000), mel_ref, rtol=1e-4, atol=1e-4)
