"""Classic-codec baselines: Opus (opus-tools) and Codec 2 (codec2) run through their command-line tools.

Each baseline encodes a waveform to a temporary file, decodes it back to the input's sample rate
and length, and reports the *measured* bitrate: codec payload bytes x 8 / input duration. For
Opus the payload excludes the Ogg container (page headers, OpusHead/OpusTags), which
``file_bitrate`` includes; Codec 2's ``.bit`` files are bare frames, so the two agree.

| name        | tool              | nominal   | note                                         |
|-------------|-------------------|-----------|----------------------------------------------|
| opus_6k     | opusenc / opusdec | 6 kbit/s  | Opus's floor; VBR, SILK wideband             |
| opus_8k     | opusenc / opusdec | 8 kbit/s  |                                              |
| opus_12k    | opusenc / opusdec | 12 kbit/s |                                              |
| codec2_3200 | c2enc / c2dec     | 3.2 kbit/s| 8 kHz narrowband, 20 ms frames               |
| codec2_2400 | c2enc / c2dec     | 2.4 kbit/s| 8 kHz, 20 ms frames                          |
| codec2_1200 | c2enc / c2dec     | 1.2 kbit/s| 8 kHz, 40 ms frames                          |

Notebook: book/05_bitrate.md
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# name -> (codec, nominal bit/s)
BASELINES: dict[str, tuple[str, int]] = {
    "opus_6k": ("opus", 6000),
    "opus_8k": ("opus", 8000),
    "opus_12k": ("opus", 12000),
    "codec2_3200": ("codec2", 3200),
    "codec2_2400": ("codec2", 2400),
    "codec2_1200": ("codec2", 1200),
}
_DEBIAN_PACKAGE = {"opusenc": "opus-tools", "opusdec": "opus-tools", "c2enc": "codec2", "c2dec": "codec2"}
CODEC2_SAMPLE_RATE = 8000
# Codec 2's decoder output lags its input by about 19 ms (152 samples at 8 kHz) in modes 3200, 2400
# and 1200: measured as the shift that maximises STOI on the demo's real speech (a plateau
# from 17.5 to 20 ms). STOI compares frames in place, so the lag is removed before returning.
CODEC2_DELAY = 152


@dataclass
class BaselineResult:
    """A decoded waveform and what it cost.

    Attributes:
        name: baseline name (``opus_6k``, ...).
        wav (Tensor): decoded audio, the input's shape and sample rate.
        sample_rate: Hz.
        nominal_bitrate: the rate asked for, bit/s.
        bitrate: measured codec payload bit/s (``payload_bytes * 8 / duration``).
        file_bitrate: measured bit/s of the whole encoded file, container included.
        payload_bytes: codec payload size.
        delay: samples (at ``sample_rate``) removed from the start of the decoded audio to align it.
    """

    name: str
    wav: torch.Tensor
    sample_rate: int
    nominal_bitrate: float
    bitrate: float
    file_bitrate: float
    payload_bytes: int
    delay: int = 0


def list_baselines() -> list[str]:
    return list(BASELINES)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pkg = _DEBIAN_PACKAGE[name]
        raise RuntimeError(f"{name} not found on PATH: install the Debian package {pkg} "
                           f"(apt-get install --no-install-recommends {pkg})")
    return path


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")


def _mono(wav) -> tuple[torch.Tensor, tuple[int, ...]]:
    wav = torch.as_tensor(wav, dtype=torch.float32)
    if wav.dim() == 0 or wav.numel() != wav.shape[-1]:
        raise ValueError(f"baselines take one mono waveform ([T], [1, T] or [1, 1, T]), got {tuple(wav.shape)}")
    return wav.reshape(-1), tuple(wav.shape)


def _fit_length(x: torch.Tensor, length: int) -> torch.Tensor:
    """Trim or zero-pad to ``length`` (codecs round to whole frames)."""
    return x[:length] if x.numel() >= length else torch.nn.functional.pad(x, (0, length - x.numel()))


def ogg_packet_sizes(data: bytes) -> list[int]:
    """Sizes of the packets in an Ogg stream (lacing values joined across 255-byte segments)."""
    sizes, pos, cur = [], 0, 0
    while pos < len(data):
        if data[pos : pos + 4] != b"OggS" or pos + 27 > len(data):
            raise RuntimeError(f"malformed Ogg page at byte {pos}")
        nseg = data[pos + 26]
        lacing = data[pos + 27 : pos + 27 + nseg]
        for value in lacing:
            cur += value
            if value < 255:
                sizes.append(cur)
                cur = 0
        pos += 27 + nseg + sum(lacing)
    return sizes


def opus(wav, sample_rate: int, bitrate: int = 6000, cbr: bool = False) -> BaselineResult:
    """Opus at ``bitrate`` bit/s (20 ms frames) via ``opusenc`` / ``opusdec``; opusdec removes the pre-skip.

    Args:
        wav (Tensor): [T], [1, T] or [1, 1, T] float in [-1, 1].
        sample_rate: Hz of ``wav`` (opusenc resamples to 48 kHz inside; opusdec back to this rate).
        bitrate: bit/s; 6000 is Opus's floor.
        cbr: hard constant bitrate; the default VBR spends less than ``bitrate`` on pauses
            (about 4.3 kbit/s at 6 kbit/s on the demo's conversational speech).
    """
    from tinycodec.audio import load, save

    enc, dec = _tool("opusenc"), _tool("opusdec")
    x, shape = _mono(wav)
    with tempfile.TemporaryDirectory() as tmp:
        src, coded, out = Path(tmp) / "in.wav", Path(tmp) / "x.opus", Path(tmp) / "out.wav"
        save(src, x[None], sample_rate)
        mode = ["--hard-cbr"] if cbr else []
        _run([enc, "--quiet", "--bitrate", f"{bitrate / 1000:g}", *mode, str(src), str(coded)])
        _run([dec, "--quiet", "--rate", str(sample_rate), str(coded), str(out)])
        data = coded.read_bytes()
        y, _ = load(out, sample_rate)
    duration = x.numel() / sample_rate
    payload = sum(ogg_packet_sizes(data)[2:])  # skip the OpusHead and OpusTags header packets
    return BaselineResult(
        name=f"opus_{bitrate // 1000}k", wav=_fit_length(y.reshape(-1), x.numel()).reshape(shape),
        sample_rate=sample_rate, nominal_bitrate=float(bitrate), bitrate=payload * 8 / duration,
        file_bitrate=len(data) * 8 / duration, payload_bytes=payload,
    )


def codec2(wav, sample_rate: int, mode: int = 3200, align: bool = True) -> BaselineResult:
    """Codec 2 in ``mode`` (3200, 2400, 1600, 1400, 1300, 1200) via ``c2enc`` / ``c2dec``.

    The input is resampled to 8 kHz, zero-padded to whole frames, coded as raw s16, decoded and
    resampled back to ``sample_rate`` with ``tinycodec.audio.resample``. The measured bitrate counts
    the padding frames, so a short clip measures slightly above nominal (+2 % at 2 s).

    Args:
        wav (Tensor): [T], [1, T] or [1, 1, T] float in [-1, 1].
        sample_rate: Hz of ``wav``.
        mode: Codec 2 mode, its nominal bit/s.
        align: remove the decoder's ``CODEC2_DELAY`` (the end is zero-padded to the input length).
    """
    from tinycodec.audio import resample

    enc, dec = _tool("c2enc"), _tool("c2dec")
    x, shape = _mono(wav)
    x8 = resample(x, sample_rate, CODEC2_SAMPLE_RATE)
    # c2enc drops a final partial frame: pad to whole 40 ms frames (every mode's frame divides
    # 320 samples) past the decoder delay, so the whole input comes back and is paid for
    delay = CODEC2_DELAY if align else 0
    x8 = torch.nn.functional.pad(x8, (0, -(-(x8.numel() + delay) // 320) * 320 - x8.numel()))
    pcm = np.clip(np.round(x8.numpy() * 32767), -32768, 32767).astype("<i2")
    with tempfile.TemporaryDirectory() as tmp:
        src, coded, out = Path(tmp) / "in.raw", Path(tmp) / "x.bit", Path(tmp) / "out.raw"
        src.write_bytes(pcm.tobytes())
        _run([enc, str(mode), str(src), str(coded)])  # a .bit name: bare frames, no .c2 header
        _run([dec, str(mode), str(coded), str(out)])
        payload = coded.stat().st_size
        y8 = np.frombuffer(out.read_bytes(), dtype="<i2").astype(np.float32) / 32768
    y = resample(torch.from_numpy(y8[delay:].copy()), CODEC2_SAMPLE_RATE, sample_rate)
    duration = x.numel() / sample_rate
    return BaselineResult(
        name=f"codec2_{mode}", wav=_fit_length(y, x.numel()).reshape(shape), sample_rate=sample_rate,
        nominal_bitrate=float(mode), bitrate=payload * 8 / duration, file_bitrate=payload * 8 / duration,
        payload_bytes=payload, delay=round(delay * sample_rate / CODEC2_SAMPLE_RATE),
    )


def run_baseline(name: str, wav, sample_rate: int) -> BaselineResult:
    """Run baseline ``name`` (see ``BASELINES``) on one waveform."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {list(BASELINES)}")
    codec, rate = BASELINES[name]
    return opus(wav, sample_rate, rate) if codec == "opus" else codec2(wav, sample_rate, rate)
