"""Audio <-> ``.tcz`` bytes through a codec model, with the model identified by name and weights hash.

Notebook: book/05_bitrate.md
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from tinycodec.bitstream.container import read_tcz, write_tcz
from tinycodec.bitstream.errors import BitstreamError


def weights_hash(model) -> bytes:
    """First 8 bytes of sha256 over the state dict (names, dtypes, shapes and raw bytes, sorted by name).

    Two models hash equal exactly when every parameter and buffer is bit-identical, so a file
    encoded by one set of weights is refused by a decoder holding another.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(_uint8()).numpy().tobytes())
    return h.digest()[:8]


def _uint8():
    import torch

    return torch.uint8


def model_id(model) -> str:
    """The id stored in files: ``model.model_id`` if set (the CLI sets the preset name), else the family."""
    return str(getattr(model, "model_id", None) or getattr(model, "family", "") or type(model).__name__.lower())


def bits_per_code(codebook_size: int) -> int:
    """``ceil(log2(codebook_size))``: bits a bit-packed index takes."""
    return max(1, math.ceil(math.log2(int(codebook_size))))


def encode_bytes(model, wav, n_q: int | None = None, tables=None, embed_tables: bool = False) -> bytes:
    """Encode one waveform to ``.tcz`` bytes.

    Args:
        model: a codec model (``encode``, ``hop_length``, ``sample_rate``, ``config.codebook_size``).
        wav (Tensor): [1, 1, T] or [T] float in [-1, 1] at ``model.sample_rate``.
        n_q: quantizers to keep (default all).
        tables (EntropyTables | None): entropy-code with these tables, else bit-pack.
        embed_tables: store the tables in the file.

    Returns:
        bytes: the file.
    """
    import torch

    wav = torch.as_tensor(wav, dtype=torch.float32)
    wav = wav.reshape(1, 1, -1) if wav.dim() == 1 else wav
    if wav.dim() != 3 or wav.shape[:2] != (1, 1):
        raise ValueError(f"wav must be [1, 1, T] or [T], got {tuple(wav.shape)}")
    with torch.inference_mode():
        codes = model.encode(wav, n_q)  # [1, n_q, F]
    return write_tcz(
        codes, model_id=model_id(model), weights_hash=weights_hash(model), sample_rate=model.sample_rate,
        hop_length=model.hop_length, length=wav.shape[-1], bits=bits_per_code(model.config.codebook_size),
        tables=tables, embed_tables=embed_tables,
    )


def check_model(header, model) -> None:
    """Raise ``BitstreamError`` unless ``model`` is the one (name, weights, rates) that wrote ``header``."""
    mid, whash = model_id(model), weights_hash(model)
    if header.model_id != mid or header.weights_hash != whash:
        raise BitstreamError(
            f"wrong model: the file was encoded with model {header.model_id!r} (weights {header.weights_hash.hex()}), "
            f"the decoder has {mid!r} (weights {whash.hex()})"
        )
    if header.sample_rate != model.sample_rate or header.hop_length != model.hop_length:
        raise BitstreamError(f"wrong model: file is {header.sample_rate} Hz / hop {header.hop_length}, "
                             f"model is {model.sample_rate} Hz / hop {model.hop_length}")
    if header.n_q > model.config.num_quantizers or header.bits != bits_per_code(model.config.codebook_size):
        raise BitstreamError(f"wrong model: file has n_q={header.n_q}, {header.bits} bits per code; model has "
                             f"{model.config.num_quantizers} quantizers of {model.config.codebook_size} codes")


def decode_bytes(data: bytes, model, tables=None):
    """Decode ``.tcz`` bytes with the model that wrote them.

    Args:
        data: the file.
        model: the same model (checked by id and weights hash).
        tables (EntropyTables | None): the model's tables, for entropy-coded files without embedded ones.

    Returns:
        (Tensor, int): waveform [1, 1, length] and its sample rate.

    Raises:
        BitstreamError: malformed or corrupted file, or a different model.
    """
    import torch

    header, codes = read_tcz(data, tables)
    check_model(header, model)
    if int(np.max(codes, initial=0)) >= model.config.codebook_size:
        raise BitstreamError(f"code index {int(codes.max())} out of range for codebook_size "
                             f"{model.config.codebook_size}")
    with torch.inference_mode():
        wav = model.decode(torch.from_numpy(codes), length=header.length)
    return wav, header.sample_rate
