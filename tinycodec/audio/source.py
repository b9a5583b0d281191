"""Audio sources for streaming, and the one helper that cuts them into hop multiples.

Streaming calls take whole frames only (house rule 7): ``HopBuffer`` is the single place
where arbitrary chunk sizes (a microphone driver's 441 samples, a file read in 1 s blocks)
become chunks of ``chunk_frames * hop_length`` samples. The last partial chunk is zero-padded
to a multiple of ``hop_length`` exactly as the offline ``encode`` pads, and carries the
number of real samples so the decoder can trim its output back to the input length.

Files are read in blocks (``read_blocks``), mixed to mono and, at another rate, resampled block by
block with the same polyphase filters as ``tinycodec.audio.resample`` (each output sample sees the
same input window), so memory stays bounded by the block size however long the file is.

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor


class HopBuffer:
    """Accumulate samples of any chunk size; hand out chunks of whole frames.

    Args:
        hop_length (int): samples per frame.
        chunk_frames (int): frames per emitted chunk.

    Example:
        >>> buf = HopBuffer(hop_length=4, chunk_frames=2)
        >>> [c.numel() for c in buf.push(torch.zeros(11))]
        [8]
        >>> chunk, valid = buf.flush(); chunk.numel(), valid
        (4, 3)
    """

    def __init__(self, hop_length: int, chunk_frames: int = 1) -> None:
        if hop_length < 1 or chunk_frames < 1:
            raise ValueError(f"hop_length and chunk_frames must be >= 1, got {hop_length}, {chunk_frames}")
        self.hop_length = hop_length
        self.chunk_size = hop_length * chunk_frames
        self._pending: list[Tensor] = []
        self._count = 0

    def __len__(self) -> int:
        """Samples waiting for a full chunk."""
        return self._count

    def push(self, samples: Tensor) -> list[Tensor]:
        """Args:
            samples (Tensor): [L] float, any L >= 0.

        Returns:
            list[Tensor]: zero or more chunks, each [chunk_frames * hop_length].
        """
        if samples.numel():
            self._pending.append(samples.reshape(-1).to(torch.float32))
            self._count += samples.numel()
        if self._count < self.chunk_size:
            return []
        flat = torch.cat(self._pending)
        n_full = flat.numel() // self.chunk_size * self.chunk_size
        chunks = list(flat[:n_full].split(self.chunk_size))
        rest = flat[n_full:]
        self._pending, self._count = ([rest], rest.numel()) if rest.numel() else ([], 0)
        return chunks

    def flush(self) -> tuple[Tensor | None, int]:
        """The remaining samples zero-padded to a multiple of ``hop_length``.

        Returns:
            (Tensor | None, int): the padded chunk [k * hop_length] (``None`` if empty) and the
            number of real samples in it.
        """
        if not self._count:
            return None, 0
        flat = torch.cat(self._pending)
        self._pending, self._count = [], 0
        pad = (-flat.numel()) % self.hop_length
        return torch.nn.functional.pad(flat, (0, pad)), flat.numel()


def _resample_blocks(blocks: Iterable[Tensor], orig_sr: int, new_sr: int) -> Iterator[Tensor]:
    """``resample(cat(blocks), orig_sr, new_sr)`` computed block by block (memory O(block + filter)).

    ``resample`` zero-pads the signal by ``width`` in front and ``width + orig`` behind and runs one
    strided conv1d (stride ``orig``, ``new`` phases): frame ``f`` reads padded samples
    ``[f * orig, f * orig + K)``. Here the frames whose window is complete are computed as soon as
    a block arrives, and the consumed samples dropped.
    """
    from tinycodec.audio import resample_kernel

    g = math.gcd(orig_sr, new_sr)
    orig, new = orig_sr // g, new_sr // g
    kernel, width = resample_kernel(orig_sr, new_sr)  # [new, 1, K]
    k = kernel.shape[-1]
    buf, frames_done, seen, emitted = torch.zeros(width), 0, 0, 0

    def run(n: int) -> Tensor:
        y = torch.nn.functional.conv1d(buf[None, None, : (n - 1) * orig + k], kernel, stride=orig)  # [1, new, n]
        return y[0].t().reshape(-1)

    for block in blocks:
        seen += block.numel()
        buf = torch.cat([buf, block])
        n = (buf.numel() - k) // orig + 1 if buf.numel() >= k else 0
        if n > 0:
            out = run(n)
            buf, frames_done, emitted = buf[n * orig:], frames_done + n, emitted + out.numel()
            yield out
    buf = torch.cat([buf, torch.zeros(width + orig)])
    n = seen // orig + 1 - frames_done
    target = math.ceil(new * seen / orig)
    if n > 0 and target > emitted:
        yield run(n)[: target - emitted]


def read_blocks(path, sample_rate: int | None = None, block_frames: int = 1 << 16) -> Iterator[Tensor]:
    """Decode an audio file block by block: mono float32 [L] pieces at ``sample_rate``.

    The pieces concatenated equal ``tinycodec.audio.load(path, sample_rate)[0][0]`` (to float
    rounding where resampled); memory is O(block_frames), not O(file).

    Raises:
        AudioError: unreadable file or a decoding error mid-file.
    """
    import soundfile as sf

    from tinycodec.audio import AudioError, _reason

    try:
        f = sf.SoundFile(str(path))
    except Exception as exc:
        raise AudioError(f"cannot decode {path}: {_reason(exc)}") from exc

    def mono_blocks() -> Iterator[Tensor]:
        try:
            for block in f.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                wav = torch.from_numpy(np.ascontiguousarray(block.T))  # [C, L]
                yield wav.mean(dim=0) if wav.shape[0] > 1 else wav[0]
        except Exception as exc:
            raise AudioError(f"cannot decode {path}: {_reason(exc)}") from exc

    with f:
        if sample_rate is None or f.samplerate == sample_rate:
            yield from mono_blocks()
        else:
            yield from _resample_blocks(mono_blocks(), f.samplerate, int(sample_rate))


def iter_source(source, sample_rate: int) -> Iterator[Tensor]:
    """Yield 1-D float32 tensors from a waveform, a file path or an iterator of chunks.

    Args:
        source: a Tensor or ndarray [T], [1, T] or [1, 1, T] (mono, at ``sample_rate``);
            a path to an audio file (read in blocks, mixed to mono, resampled to ``sample_rate``);
            or an iterable of chunks of any length (Tensors or ndarrays, mono, at ``sample_rate``).
        sample_rate (int): the model's rate.
    """
    if isinstance(source, (str, Path)):
        yield from read_blocks(source, sample_rate)
        return
    if isinstance(source, (Tensor, np.ndarray)):
        wav = torch.as_tensor(source, dtype=torch.float32)
        if wav.dim() > 1 and (wav.dim() > 3 or any(s != 1 for s in wav.shape[:-1])):
            raise ValueError(f"waveform source must be mono [T], [1, T] or [1, 1, T], got {tuple(wav.shape)}")
        yield wav.reshape(-1)
        return
    if not isinstance(source, Iterable):
        raise TypeError(f"source must be a waveform, a path or an iterable of chunks, got {type(source).__name__}")
    for chunk in source:
        chunk = torch.as_tensor(chunk, dtype=torch.float32)
        if chunk.dim() > 1 and any(s != 1 for s in chunk.shape[:-1]):
            raise ValueError(f"source chunks must be mono, got shape {tuple(chunk.shape)}")
        yield chunk.reshape(-1)


def hop_chunks(source, hop_length: int, sample_rate: int, chunk_frames: int = 1,
               max_samples: int | None = None) -> Iterator[tuple[Tensor, int]]:
    """Cut any source into chunks of whole frames.

    Args:
        source: see :func:`iter_source`.
        hop_length (int): samples per frame.
        sample_rate (int): the model's rate.
        chunk_frames (int): frames per chunk (the last chunk may hold fewer).
        max_samples (int | None): stop after this many input samples (hard duration limit).

    Yields:
        (Tensor, int): chunk [k * hop_length] float32 and its number of real samples
        (``< k * hop_length`` only for the zero-padded last chunk).
    """
    buf = HopBuffer(hop_length, chunk_frames)
    taken = 0
    for samples in iter_source(source, sample_rate):
        if max_samples is not None:
            samples = samples[: max(0, max_samples - taken)]
        taken += samples.numel()
        for chunk in buf.push(samples):
            yield chunk, chunk.numel()
        if max_samples is not None and taken >= max_samples:
            break
    chunk, valid = buf.flush()
    if chunk is not None:
        yield chunk, valid
