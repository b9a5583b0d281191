"""Audio I/O, band-limited resampling and mel spectra, in soundfile and torch alone.

torchaudio cannot be imported with the CPU torch we pin (every wheel links CUDA), so the three
pieces a codec pipeline needs live here: ``load``/``save`` through soundfile (WAV, FLAC, OGG, MP3),
a windowed-sinc resampler (``resample``) and a mel filterbank with ``mel_spectrogram``/``log_mel``.
Each matches torchaudio's defaults closely enough to swap (checked in tests where it imports).

Notebook: book/01_data.md
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

__all__ = [
    "AudioError",
    "info",
    "load",
    "save",
    "resample",
    "resample_kernel",
    "mel_filterbank",
    "mel_spectrogram",
    "log_mel",
    "loudness_dbfs",
]

# File endings ``AudioFolder`` scans; soundfile decodes all of them (MP3 needs libsndfile >= 1.1).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")


class AudioError(RuntimeError):
    """A file that cannot be decoded as audio (missing, truncated, not audio, unsupported)."""


def info(path: str | Path) -> sf._SoundFileInfo:
    """Header of an audio file (sample rate, channels, frames) without decoding the samples.

    Raises:
        AudioError: the file is missing or its header cannot be parsed.
    """
    try:
        return sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise AudioError(f"cannot read audio header of {path}: {_reason(exc)}") from exc


def load(
    path: str | Path,
    sample_rate: int | None = None,
    mono: bool = True,
    *,
    offset: int = 0,
    frames: int = -1,
) -> tuple[torch.Tensor, int]:
    """Decode an audio file to float32, optionally mixed to mono and resampled.

    Args:
        path: WAV, FLAC, OGG/Vorbis/Opus or MP3 file.
        sample_rate: target rate in Hz; ``None`` keeps the file's rate.
        mono: average the channels into one (a mixdown, not a channel pick).
        offset: first frame to read, at the file's own rate.
        frames: number of frames to read at the file's rate (``-1``: to the end).

    Returns:
        (wav, sr): wav (Tensor) [C, T] float32 in about [-1, 1] (C = 1 when ``mono``), and its rate.

    Raises:
        AudioError: unreadable, truncated or non-audio file, with the file and the reason.
    """
    try:
        data, sr = sf.read(str(path), start=offset, frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"cannot decode {path}: {_reason(exc)}") from exc
    wav = torch.from_numpy(np.ascontiguousarray(data.T))  # [C, T]
    if mono and wav.shape[0] > 1:
        wav = wav.mean(dim=0, keepdim=True)
    if sample_rate is not None and sample_rate != sr:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return wav, int(sr)


def save(path: str | Path, wav: torch.Tensor | np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write ``wav`` ([C, T] or [T], float in [-1, 1]) to ``path``; the format follows the suffix.

    Samples are clipped to [-1, 1] first, because PCM_16 would otherwise wrap around.
    """
    path = Path(path)
    x = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    x = np.clip(np.atleast_2d(x).astype(np.float32), -1.0, 1.0).T  # soundfile wants [T, C]
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, int(sample_rate), subtype=subtype)
    return path


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return text[:200]


# --------------------------------------------------------------------------------------------
# Resampling: windowed sinc, polyphase by the reduced ratio new/orig.
#
#   input  x[n] at orig_sr   ->  y[m] = sum_n x[n] * h(m/new_sr - n/orig_sr)
#
# With g = gcd(orig_sr, new_sr), orig = orig_sr / g and new = new_sr / g, the output phases repeat
# every ``new`` outputs / ``orig`` inputs, so one conv1d with ``new`` filters and stride ``orig``
# computes everything: filter k holds h sampled at the offsets of output phase k.
# --------------------------------------------------------------------------------------------

_MAX_KERNEL = 32_000_000  # filter taps x phases; coprime odd rates (44101 Hz) would need gigabytes


@functools.lru_cache(maxsize=32)
def _sinc_kernel(orig: int, new: int, lowpass_filter_width: int, rolloff: float, beta: float):
    base_freq = min(orig, new) * rolloff  # cutoff, below the lower Nyquist to leave a transition band
    width = math.ceil(lowpass_filter_width * orig / base_freq)
    if new * (2 * width + orig) > _MAX_KERNEL:
        raise ValueError(f"resampling ratio {new}/{orig} is too irregular for a polyphase kernel")
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None, :] / orig  # [1, K]
    t = torch.arange(0, -new, -1, dtype=torch.float64)[:, None] / new + idx  # [new, K]
    t = (t * base_freq).clamp(-lowpass_filter_width, lowpass_filter_width)
    # Kaiser window over the +/- lowpass_filter_width zero crossings of the sinc
    window = torch.special.i0(beta * torch.sqrt(1 - (t / lowpass_filter_width) ** 2)) / torch.special.i0(
        torch.tensor(beta, dtype=torch.float64)
    )
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    kernel = sinc * window * (base_freq / orig)  # [new, K], unit DC gain per phase
    return kernel[:, None, :].float(), width  # [new, 1, K]


def resample_kernel(
    orig_sr: int,
    new_sr: int,
    lowpass_filter_width: int = 64,
    rolloff: float = 0.9475937167399596,
    beta: float = 14.769656459379492,
) -> tuple[torch.Tensor, int]:
    """The polyphase filters ``resample`` applies, for plotting and inspection.

    Returns:
        (kernel, width): kernel (Tensor) [new, 1, K] with new = new_sr / gcd and K = 2 * width + orig.
    """
    g = math.gcd(int(orig_sr), int(new_sr))
    return _sinc_kernel(
        int(orig_sr) // g, int(new_sr) // g, lowpass_filter_width, float(rolloff), float(beta)
    )


def resample(
    wav: torch.Tensor,
    orig_sr: int,
    new_sr: int,
    *,
    lowpass_filter_width: int = 64,
    rolloff: float = 0.9475937167399596,
    beta: float = 14.769656459379492,
    chunk_frames: int = 4096,
) -> torch.Tensor:
    """Band-limited resampling with a Kaiser-windowed sinc (torchaudio's ``sinc_interp_kaiser``).

    The defaults are resampy's "kaiser_best" (also librosa's): 64 zero crossings, cutoff at
    0.948 of the lower Nyquist, beta 14.77. For 44.1 -> 16 kHz the pass band is flat to about
    7 kHz, the gain is about -101 dB at 8.1 kHz and below -140 dB from 8.5 kHz (book/01_data.md
    measures it). The filter length is ``2 * width + orig`` taps, so the cost is dominated by the reduced ratio, not by the width.

    Args:
        wav (Tensor): [..., T] float at ``orig_sr``.
        orig_sr: input rate in Hz (integer).
        new_sr: output rate in Hz (integer).
        lowpass_filter_width: sinc zero crossings on each side; the transition band narrows as it grows.
        rolloff: cutoff as a fraction of the lower Nyquist frequency.
        beta: Kaiser window shape: stop-band attenuation of about ``beta / 0.1102 + 8.7`` dB.
        chunk_frames: output periods computed per conv1d call, so memory stays bounded
            (about ``chunk_frames * (new + K)`` floats per channel) for hour-long files.

    Returns:
        Tensor: [..., ceil(T * new_sr / orig_sr)] at ``new_sr``.
    """
    orig_sr, new_sr = int(orig_sr), int(new_sr)
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    if orig_sr == new_sr:
        return wav
    if wav.shape[-1] == 0:
        return wav.new_zeros(*wav.shape[:-1], 0)
    g = math.gcd(orig_sr, new_sr)
    orig, new = orig_sr // g, new_sr // g
    kernel, width = _sinc_kernel(orig, new, lowpass_filter_width, float(rolloff), float(beta))
    kernel = kernel.to(device=wav.device, dtype=wav.dtype if wav.is_floating_point() else torch.float32)
    shape = wav.shape
    x = wav.reshape(-1, 1, shape[-1]).to(kernel.dtype)  # [N, 1, T]
    length = shape[-1]
    x = torch.nn.functional.pad(x, (width, width + orig))
    n_frames = length // orig + 1  # conv output periods covering the input
    k = kernel.shape[-1]
    outs = []
    for f0 in range(0, n_frames, chunk_frames):
        f1 = min(n_frames, f0 + chunk_frames)
        seg = x[..., f0 * orig : (f1 - 1) * orig + k]
        y = torch.nn.functional.conv1d(seg, kernel, stride=orig)  # [N, new, f1 - f0]
        outs.append(y.transpose(1, 2).reshape(x.shape[0], -1))
    y = torch.cat(outs, dim=-1)
    target = math.ceil(new * length / orig)
    return y[..., :target].reshape(*shape[:-1], target)


# --------------------------------------------------------------------------------------------
# Mel spectra
# --------------------------------------------------------------------------------------------


def _hz_to_mel(f: torch.Tensor, mel_scale: str) -> torch.Tensor:
    if mel_scale == "htk":
        return 2595.0 * torch.log10(1.0 + f / 700.0)
    # Slaney (Auditory Toolbox): linear below 1 kHz, logarithmic above
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return torch.where(f >= min_log_hz, min_log_mel + torch.log(f / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m: torch.Tensor, mel_scale: str) -> torch.Tensor:
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return torch.where(m >= min_log_mel, min_log_hz * torch.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(
    n_fft: int,
    n_mels: int,
    sample_rate: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    mel_scale: str = "htk",
    norm: str | None = None,
) -> torch.Tensor:
    """Triangular mel filters, as torchaudio's ``melscale_fbanks``.

    Args:
        n_fft: FFT size; the filters cover its ``n_fft // 2 + 1`` bins.
        n_mels: number of filters.
        sample_rate: rate of the analysed signal in Hz.
        f_min, f_max: band edges in Hz (``f_max`` defaults to Nyquist).
        mel_scale: ``"htk"`` (``2595 log10(1 + f/700)``, torchaudio's default) or ``"slaney"``
            (linear below 1 kHz, log above: librosa's default).
        norm: ``None`` (peak 1 per filter) or ``"slaney"`` (unit area, so wide high filters do
            not dominate).

    Returns:
        Tensor: [n_fft // 2 + 1, n_mels] float32; ``power_spec.T @ fb`` gives mel energies.
    """
    if mel_scale not in ("htk", "slaney"):
        raise ValueError(f"mel_scale must be 'htk' or 'slaney', got {mel_scale!r}")
    if norm not in (None, "slaney"):
        raise ValueError(f"norm must be None or 'slaney', got {norm!r}")
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    m = torch.linspace(
        float(_hz_to_mel(torch.tensor(float(f_min)), mel_scale)),
        float(_hz_to_mel(torch.tensor(float(f_max)), mel_scale)),
        n_mels + 2,
        dtype=torch.float64,
    )
    f_pts = _mel_to_hz(m, mel_scale)  # [n_mels + 2] filter edges and centres
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - freqs[:, None]  # [n_freqs, n_mels + 2]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = torch.clamp(torch.minimum(down, up), min=0.0)
    if norm == "slaney":
        fb = fb * (2.0 / (f_pts[2 : n_mels + 2] - f_pts[:n_mels]))[None, :]
    return fb.float()


@functools.lru_cache(maxsize=32)
def _shared_filterbank(*args) -> torch.Tensor:
    """``mel_filterbank(*args)`` built once per argument set; read-only for its callers."""
    return mel_filterbank(*args)


def mel_spectrogram(
    wav: torch.Tensor,
    sample_rate: int,
    n_fft: int = 1024,
    hop_length: int = 256,
    n_mels: int = 80,
    f_min: float = 0.0,
    f_max: float | None = None,
    power: float = 2.0,
    mel_scale: str = "htk",
    norm: str | None = None,
    center: bool = True,
) -> torch.Tensor:
    """Mel spectrogram with a Hann window (torchaudio ``MelSpectrogram`` defaults, htk scale).

    Args:
        wav (Tensor): [..., T] float.
        power: 1 for magnitude, 2 for power.

    Returns:
        Tensor: [..., n_mels, F] with F = T // hop_length + 1 when ``center``.
    """
    shape = wav.shape
    x = wav.reshape(-1, shape[-1])
    window = torch.hann_window(n_fft, device=wav.device, dtype=x.dtype)
    spec = torch.stft(
        x, n_fft, hop_length=hop_length, window=window, center=center, pad_mode="reflect", return_complex=True
    )
    spec = spec.abs().pow(power)  # [N, n_fft // 2 + 1, F]
    fb = _shared_filterbank(n_fft, n_mels, sample_rate, f_min, f_max, mel_scale, norm).to(spec)
    mel = torch.einsum("nkf,km->nmf", spec, fb)
    return mel.reshape(*shape[:-1], n_mels, mel.shape[-1])


def log_mel(wav: torch.Tensor, sample_rate: int, eps: float = 1e-5, **kwargs) -> torch.Tensor:
    """Natural log of ``mel_spectrogram`` floored at ``eps`` (silence stays finite).

    Returns:
        Tensor: [..., n_mels, F].
    """
    return torch.log(torch.clamp(mel_spectrogram(wav, sample_rate, **kwargs), min=eps))


def loudness_dbfs(wav: torch.Tensor, floor_db: float = -120.0) -> torch.Tensor:
    """RMS level in dB relative to a full-scale square wave (0 dBFS = RMS 1).

    Args:
        wav (Tensor): [..., T].

    Returns:
        Tensor: [...] levels in dB, floored at ``floor_db`` for silence.
    """
    rms = wav.float().pow(2).mean(dim=-1).sqrt()
    return (20 * torch.log10(rms.clamp_min(1e-12))).clamp_min(floor_db)
