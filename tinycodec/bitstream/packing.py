"""Fixed-width bit packing of code indices (vectorised numpy, exact, MSB first).

A ``bits``-bit index occupies exactly ``bits`` bits, so ``N`` codes take ``ceil(N * bits / 8)``
bytes: with ``bits = log2(codebook_size)`` that is the nominal bitrate, no more.

Notebook: book/05_bitrate.md
"""

from __future__ import annotations

import numpy as np

from tinycodec.bitstream.errors import BitstreamError

MAX_BITS = 31  # codes travel as int64; 31 keeps every value a non-negative int32 too


def packed_size(num_codes: int, bits: int) -> int:
    """Bytes that ``pack_codes`` produces for ``num_codes`` indices of ``bits`` bits each."""
    return (int(num_codes) * int(bits) + 7) // 8


def pack_codes(codes, bits: int) -> bytes:
    """Pack non-negative integers into a big-endian bit string, ``bits`` bits each.

    Args:
        codes (array-like): any shape of ints in ``[0, 2**bits)``; packed in C (row-major) order.
        bits: bits per code, 1..31.

    Returns:
        bytes: ``ceil(codes.size * bits / 8)`` bytes; the last byte is zero-padded.

    Raises:
        ValueError: ``bits`` out of range or a code does not fit in ``bits`` bits.
    """
    bits = int(bits)
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits per code must be in 1..{MAX_BITS}, got {bits}")
    if hasattr(codes, "detach"):  # a torch tensor: no torch import needed here
        codes = codes.detach().cpu().numpy()
    arr = np.asarray(codes).reshape(-1)
    if arr.size == 0:
        return b""
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"codes must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= (1 << bits):
        raise ValueError(f"codes must be in [0, {1 << bits}) for {bits} bits, got range [{lo}, {hi}]")
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    bit_matrix = ((arr[:, None] >> shifts) & 1).astype(np.uint8)  # [N, bits], MSB first
    return np.packbits(bit_matrix.reshape(-1)).tobytes()


def unpack_codes(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of ``pack_codes``.

    Args:
        data: the packed bytes; must be exactly ``packed_size(count, bits)`` long.
        bits: bits per code, 1..31.
        count: number of codes to read.

    Returns:
        ndarray: [count] int64.

    Raises:
        BitstreamError: ``data`` has the wrong length or non-zero padding bits.
    """
    bits, count = int(bits), int(count)
    if not 1 <= bits <= MAX_BITS:
        raise BitstreamError(f"bits per code must be in 1..{MAX_BITS}, got {bits}")
    if count < 0:
        raise BitstreamError(f"negative code count {count}")
    need = packed_size(count, bits)
    if len(data) != need:
        raise BitstreamError(
            f"bit-packed payload is {len(data)} bytes, expected {need} for {count} codes x {bits} bits"
        )
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if flat[count * bits :].any():
        raise BitstreamError("non-zero padding bits after the last code")
    bit_matrix = flat[: count * bits].reshape(count, bits).astype(np.int64)
    weights = np.left_shift(np.int64(1), np.arange(bits - 1, -1, -1, dtype=np.int64))
    return bit_matrix @ weights
