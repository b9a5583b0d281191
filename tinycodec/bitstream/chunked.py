"""Audio <-> ``.tcz`` bytes a chunk of frames at a time, with the model's streaming state.

Encoding and decoding run ``with model.streaming(1):`` over chunks of ``chunk_frames`` frames, so
memory is a constant (one chunk's activations) plus the result, whatever the file's length, and
the output equals the whole-file path (streaming == offline by construction; the codes are the
same, the audio agrees to float rounding). Every entry point takes ``max_seconds``: a longer
input or file is refused with ``LimitError`` before any work.

Notebook: book/05_bitrate.md
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from tinycodec.bitstream.container import iter_codes, read_tcz_header, write_tcz
from tinycodec.bitstream.errors import AudioInputError, BitstreamError, LimitError
from tinycodec.bitstream.model_io import bits_per_code, check_model, encoder_hash, model_id

DEFAULT_MAX_SECONDS = 600.0  # 10 minutes: the API's and the CLI's default limit (None: no limit)
CHUNK_FRAMES = 256  # frames per model call: 4 s at 62.5 Hz, a few MB of activations


def check_duration(header, max_seconds: float | None) -> None:
    """Raise ``LimitError`` if ``header`` declares more audio (samples or frames) than ``max_seconds``."""
    if max_seconds is None:
        return
    seconds = max(header.length, (header.num_frames - 1) * header.hop_length) / header.sample_rate
    if seconds > max_seconds:
        raise LimitError(f"the file declares {seconds:.1f} s of audio, more than max_seconds={max_seconds:g} "
                         "(pass a larger max_seconds / --max-seconds to decode it)")


def encode_codes(model, source, n_q: int | None = None, *, max_seconds: float | None = DEFAULT_MAX_SECONDS,
                 chunk_frames: int = CHUNK_FRAMES) -> tuple[Tensor, int]:
    """Encode any source chunk by chunk.

    Args:
        model: codec model, not inside a ``streaming()`` block.
        source: waveform [T] / [1, T] / [1, 1, T] at ``model.sample_rate``, an audio file path
            (read in blocks, see ``tinycodec.audio.source.iter_source``) or an iterable of chunks.
        n_q (int | None): quantizers to keep (default all).
        max_seconds (float | None): refuse longer inputs (``LimitError``); ``None``: no limit.
        chunk_frames (int): frames per encoder call.

    Returns:
        (LongTensor, int): codes [1, n_q, ceil(T / hop_length)] (as ``model.encode(wav)``) and T.

    Raises:
        AudioInputError: NaN or Inf samples (the message gives the first position).
        LimitError: more than ``max_seconds`` of audio.
    """
    from tinycodec.audio.source import hop_chunks

    limit = None if max_seconds is None else int(max_seconds * model.sample_rate)
    parts, length = [], 0
    with torch.inference_mode(), model.streaming(1):
        for chunk, valid in hop_chunks(source, model.hop_length, model.sample_rate, chunk_frames,
                                       None if limit is None else limit + 1):
            bad = ~torch.isfinite(chunk)
            if bad.any():
                raise AudioInputError(f"audio contains NaN or Inf (first at sample {length + int(bad.nonzero()[0])})")
            length += valid
            if limit is not None and length > limit:
                raise LimitError(f"the audio is longer than max_seconds={max_seconds:g} "
                                 "(pass a larger max_seconds / --max-seconds)")
            parts.append(model.encode(chunk.view(1, 1, -1), n_q))
    n_q = n_q or model.num_quantizers
    codes = torch.cat(parts, dim=-1) if parts else torch.zeros(1, n_q, 0, dtype=torch.long)
    return codes, length


def to_tcz(model, codes, length: int, tables=None, embed_tables: bool = False) -> bytes:
    """Codes [1, n_q, F] of ``model`` -> ``.tcz`` bytes (version 2: the header names the encoder hash)."""
    return write_tcz(codes, model_id=model_id(model), model_hash=bytes.fromhex(encoder_hash(model)),
                     sample_rate=model.sample_rate, hop_length=model.hop_length, length=length,
                     bits=bits_per_code(model.config.codebook_size), tables=tables, embed_tables=embed_tables)


def encode_bytes(model, wav, n_q: int | None = None, tables=None, embed_tables: bool = False, *,
                 max_seconds: float | None = DEFAULT_MAX_SECONDS) -> bytes:
    """Encode one waveform (or any source of :func:`encode_codes`) to ``.tcz`` bytes.

    Args:
        model: a codec model (``encode``, ``streaming``, ``hop_length``, ``sample_rate``, ``config``).
        wav: [1, 1, T] or [T] float in [-1, 1] at ``model.sample_rate``, a path, or chunks.
        n_q: quantizers to keep (default all).
        tables (EntropyTables | None): entropy-code with these tables, else bit-pack.
        embed_tables: store the tables in the file.
        max_seconds: refuse longer audio (``None``: no limit).

    Returns:
        bytes: the file.
    """
    if isinstance(wav, (Tensor, np.ndarray)):
        wav = torch.as_tensor(wav, dtype=torch.float32)
        if wav.dim() != 1 and (wav.dim() != 3 or wav.shape[:2] != (1, 1)):
            raise AudioInputError(f"wav must be [1, 1, T] or [T], got {tuple(wav.shape)}")
    codes, length = encode_codes(model, wav, n_q, max_seconds=max_seconds)
    return to_tcz(model, codes, length, tables, embed_tables)


def iter_decode_bytes(data: bytes, model, tables=None, *, max_seconds: float | None = DEFAULT_MAX_SECONDS,
                      chunk_frames: int = CHUNK_FRAMES) -> Iterator[Tensor]:
    """Decode ``.tcz`` bytes chunk by chunk: memory is one chunk, whatever the file's length.

    Args:
        data: the file.
        model: a model that can decode it (``check_model``), not inside a ``streaming()`` block.
        tables (EntropyTables | None): the model's tables, for entropy-coded files without embedded ones.
        max_seconds: refuse files declaring more audio (``None``: no limit).
        chunk_frames: frames per decoder call.

    Yields:
        Tensor: consecutive pieces [L_i] of the waveform; together ``header.length`` samples.

    Raises:
        BitstreamError: malformed or corrupted file, another encoder, out-of-range codes;
            ``LimitError`` if longer than ``max_seconds``.
    """
    data = bytes(data)
    header = read_tcz_header(data)
    check_duration(header, max_seconds)
    check_model(header, model)
    left, k = header.length, model.config.codebook_size

    def pieces() -> Iterator[Tensor]:
        for codes in iter_codes(data, tables, chunk_frames):
            if codes.size and int(codes.max()) >= k:
                raise BitstreamError(f"code index {int(codes.max())} out of range for codebook_size {k}")
            yield model.decode(torch.from_numpy(codes)[None])

    with torch.inference_mode(), model.streaming(1):
        for wav in model.align_stream(pieces()):  # a delayed server decoder's lag removed
            wav = wav[0, 0, :left]
            left -= wav.numel()
            yield wav
            if left <= 0:
                break


def decode_bytes(data: bytes, model, tables=None, *, max_seconds: float | None = DEFAULT_MAX_SECONDS):
    """Decode ``.tcz`` bytes (chunk by chunk, into one preallocated output).

    Args:
        data: the file.
        model: a model with the file's encoder (version 2) or the model that wrote it (version 1).
        tables (EntropyTables | None): the model's tables, for entropy-coded files without embedded ones.
        max_seconds: refuse files declaring more audio (``None``: no limit).

    Returns:
        (Tensor, int): waveform [1, 1, length] and its sample rate.

    Raises:
        BitstreamError: malformed or corrupted file, or a model with another encoder;
            ``LimitError`` if longer than ``max_seconds``.
    """
    from tinycodec.bitstream.model_io import check_model

    header = read_tcz_header(bytes(data))
    check_duration(header, max_seconds)
    check_model(header, model)  # before any memory is spent on what the header declares
    # the pieces as they decode: memory follows the audio the payload really holds, never the length a
    # header claims (a few bytes could otherwise declare hours)
    pieces = [piece.reshape(-1) for piece in iter_decode_bytes(data, model, tables, max_seconds=max_seconds)]
    out = torch.cat(pieces) if pieces else torch.zeros(0)
    return out[: header.length].reshape(1, 1, -1), header.sample_rate
