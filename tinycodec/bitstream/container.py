"""The ``.tcz`` file container: a 72-byte header, a payload of indices, a CRC32 trailer.

The layout is documented as a table in ``tinycodec.bitstream``. Reading checks, in order: magic,
version, total size against the declared payload size, CRC32, then every field's range; so a
damaged file fails with the most specific message, and never allocates more than its own size
suggests. ``iter_codes`` hands the codes out a chunk of frames at a time (memory O(chunk) for
both payload kinds), ``read_tcz`` is that, concatenated.

Version 2 (written now) stores the *encoder hash* (``encoder_hash``: encoder + codebooks) in the
8-byte hash field, so any decoder trained for that encoder decodes the file; version 1 files
stored the hash of all weights and still read (they decode with the model that wrote them).

Notebook: book/05_bitrate.md
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from tinycodec.bitstream import entropy
from tinycodec.bitstream.errors import BitstreamError
from tinycodec.bitstream.packing import pack_codes, packed_size, unpack_codes

MAGIC = b"TCZ1"
VERSION = 2  # written; 1 (hash of all weights) still reads
SUPPORTED_VERSIONS = (1, 2)
FLAG_ENTROPY = 1  # payload is rANS-coded, not bit-packed
FLAG_TABLES = 2  # entropy tables are embedded at the start of the payload
_KNOWN_FLAGS = FLAG_ENTROPY | FLAG_TABLES
HEADER = struct.Struct("<4sBBH32s8sIHBBIIII")
HEADER_SIZE = HEADER.size  # 72
TRAILER_SIZE = 4  # CRC32
MODEL_ID_SIZE = 32
MAX_N_Q = 64
MAX_BITS = 20  # codebooks up to 2**20 entries (the entropy coder's limit too)
MAX_SYMBOLS = 1 << 24  # n_q * frames: 11.6 h of 8 x 50 Hz codes, 128 MiB as int64, <= ~20 s of rANS decoding
MAX_SAMPLE_RATE = 384_000


@dataclass(frozen=True)
class TczHeader:
    """The decoded, validated header of a ``.tcz`` file (see the layout table)."""

    model_id: str  # preset or family name, ASCII, at most 32 bytes
    model_hash: bytes  # 8 bytes; version 2: encoder + codebooks (encoder_hash), 1: all weights (weights_hash)
    sample_rate: int
    hop_length: int  # samples per frame
    n_q: int
    bits: int  # bits per code index: ceil(log2(codebook_size))
    num_frames: int
    length: int  # original number of samples; the decoder trims to it
    flags: int = 0
    tables_crc: int = 0  # CRC32 of the entropy tables' bytes; 0 when bit-packed
    payload_size: int = 0
    version: int = VERSION

    @property
    def hash_kind(self) -> str:
        """What ``model_hash`` identifies: ``"encoder"`` (version 2) or ``"weights"`` (version 1)."""
        return "weights" if self.version == 1 else "encoder"

    @property
    def entropy_coded(self) -> bool:
        return bool(self.flags & FLAG_ENTROPY)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def duration(self) -> float:
        """Seconds of audio the frames cover: ``num_frames / frame_rate``."""
        return self.num_frames / self.frame_rate

    @property
    def nominal_bitrate(self) -> float:
        """``n_q * bits * frame_rate`` in bit/s: the bit-packed payload rate."""
        return self.n_q * self.bits * self.frame_rate


def _encode_model_id(model_id: str) -> bytes:
    raw = model_id.encode("ascii", errors="strict") if model_id.isascii() else None
    if raw is None or len(raw) > MODEL_ID_SIZE or b"\0" in raw:
        raise ValueError(f"model id must be ASCII, at most {MODEL_ID_SIZE} bytes, got {model_id!r}")
    return raw.ljust(MODEL_ID_SIZE, b"\0")


def write_tcz(
    codes,
    *,
    model_id: str,
    model_hash: bytes,
    sample_rate: int,
    hop_length: int,
    length: int,
    bits: int,
    tables: entropy.EntropyTables | None = None,
    embed_tables: bool = False,
    version: int = VERSION,
) -> bytes:
    """Serialise one item's codes to a ``.tcz`` byte string.

    Args:
        codes (Tensor | ndarray): [n_q, F] or [1, n_q, F] ints in ``[0, 2**bits)``.
        model_id: preset or family name (ASCII, <= 32 bytes).
        model_hash: 8 bytes: ``bytes.fromhex(encoder_hash(model))`` (version 2), or
            ``weights_hash(model)`` for a version-1 file.
        sample_rate, hop_length: the model's rates; ``frame_rate = sample_rate / hop_length``.
        length: original number of samples T.
        bits: bits per index.
        tables: entropy tables; when given the payload is rANS-coded, else bit-packed.
        embed_tables: store ``tables`` in the file, so it decodes without the model's tables.
        version: container version; 1 only to write files as earlier releases did.

    Returns:
        bytes: header + payload + CRC32; bit-packed, ``len = 76 + ceil(n_q * bits * F / 8)``.
    """
    c = codes.detach().cpu().numpy() if hasattr(codes, "detach") else np.asarray(codes)
    if c.ndim == 3 and c.shape[0] == 1:
        c = c[0]
    if c.ndim != 2:
        raise ValueError(f"codes must be [n_q, F] or [1, n_q, F], got shape {tuple(np.shape(codes))}")
    n_q, num_frames = c.shape
    if not 1 <= n_q <= MAX_N_Q or not 1 <= bits <= MAX_BITS or n_q * num_frames > MAX_SYMBOLS:
        raise ValueError(f"unsupported n_q={n_q}, bits={bits}, frames={num_frames}")
    if len(model_hash) != 8:
        raise ValueError(f"model_hash must be 8 bytes, got {len(model_hash)}")
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"version must be one of {SUPPORTED_VERSIONS}, got {version}")
    if not 0 <= length <= num_frames * hop_length:
        raise ValueError(f"length {length} does not fit in {num_frames} frames of {hop_length} samples")
    flags, tables_crc = 0, 0
    if tables is None:
        payload = pack_codes(c.T, bits)  # frame-major, like the entropy coder's symbol order
    else:
        if tables.n_q < n_q or tables.codebook_size > (1 << bits):
            raise ValueError(f"tables for n_q={tables.n_q} cannot code n_q={n_q} with {bits} bits")
        if tables.n_q > n_q:  # fewer quantizers used than fitted: the first n_q tables apply
            tables = entropy.EntropyTables(tables.freqs[:n_q], tables.prob_bits)
        flags, tables_crc = FLAG_ENTROPY, tables.digest()
        payload = entropy.encode(c, tables)
        if embed_tables:
            blob = tables.to_bytes()
            payload = struct.pack("<I", len(blob)) + blob + payload
            flags |= FLAG_TABLES
    head = HEADER.pack(
        MAGIC, version, flags, 0, _encode_model_id(model_id), bytes(model_hash), int(sample_rate),
        int(hop_length), n_q, int(bits), num_frames, int(length), tables_crc, len(payload),
    )
    body = head + payload
    return body + struct.pack("<I", zlib.crc32(body))


def read_tcz_header(data: bytes) -> TczHeader:
    """Parse and validate the header (and the whole file's CRC32).

    Raises:
        BitstreamError: wrong magic or version, truncated, trailing bytes, CRC mismatch or a field
            out of range; the message says which.
    """
    data = memoryview(bytes(data)) if not isinstance(data, (bytes, bytearray)) else data
    if len(data) < 4 or bytes(data[:4]) != MAGIC:
        raise BitstreamError(f"not a .tcz file: magic {bytes(data[:4])!r}, expected {MAGIC!r}")
    if len(data) < 5:
        raise BitstreamError("truncated .tcz file: no version byte")
    if data[4] not in SUPPORTED_VERSIONS:
        raise BitstreamError(f"unsupported .tcz version {data[4]}, this reader supports versions "
                             f"{', '.join(map(str, SUPPORTED_VERSIONS))}")
    if len(data) < HEADER_SIZE + TRAILER_SIZE:
        raise BitstreamError(f"truncated .tcz file: {len(data)} bytes, the header alone is {HEADER_SIZE}")
    (_, version, flags, reserved, model_raw, whash, sample_rate, hop_length, n_q, bits,
     num_frames, length, tables_crc, payload_size) = HEADER.unpack_from(data)
    expected = HEADER_SIZE + payload_size + TRAILER_SIZE
    if len(data) < expected:
        raise BitstreamError(f"truncated .tcz file: {len(data)} bytes, header declares {expected}")
    if len(data) > expected:
        raise BitstreamError(f".tcz file has {len(data) - expected} trailing bytes after the CRC")
    crc = struct.unpack_from("<I", data, expected - TRAILER_SIZE)[0]
    if zlib.crc32(data[: expected - TRAILER_SIZE]) != crc:
        raise BitstreamError("CRC32 mismatch: the .tcz file is corrupted")
    problems = []
    if flags & ~_KNOWN_FLAGS or (flags & FLAG_TABLES and not flags & FLAG_ENTROPY):
        problems.append(f"unknown flags 0x{flags:02x}")
    if reserved:
        problems.append(f"reserved field is {reserved}, must be 0")
    model_id = model_raw.rstrip(b"\0")
    if b"\0" in model_id or not model_id.isascii():
        problems.append(f"model id {model_raw!r} is not NUL-padded ASCII")
    if not 1 <= sample_rate <= MAX_SAMPLE_RATE or hop_length < 1:
        problems.append(f"sample_rate={sample_rate}, hop_length={hop_length}")
    if not 1 <= n_q <= MAX_N_Q or not 1 <= bits <= MAX_BITS:
        problems.append(f"n_q={n_q} (1..{MAX_N_Q}), bits={bits} (1..{MAX_BITS})")
    if n_q * num_frames > MAX_SYMBOLS:
        problems.append(f"{n_q} x {num_frames} codes exceed the limit of {MAX_SYMBOLS}")
    if length > num_frames * hop_length:
        problems.append(f"length {length} exceeds {num_frames} frames x {hop_length} samples")
    if not flags & FLAG_ENTROPY and payload_size != packed_size(n_q * num_frames, bits):
        problems.append(f"bit-packed payload {payload_size} bytes, expected {packed_size(n_q * num_frames, bits)}")
    if not flags & FLAG_ENTROPY and tables_crc:
        problems.append("bit-packed file carries an entropy-table CRC")
    if problems:
        raise BitstreamError("invalid .tcz header: " + "; ".join(problems))
    return TczHeader(
        model_id=model_id.decode("ascii"), model_hash=bytes(whash), sample_rate=sample_rate,
        hop_length=hop_length, n_q=n_q, bits=bits, num_frames=num_frames, length=length, flags=flags,
        tables_crc=tables_crc, payload_size=payload_size, version=version,
    )


def iter_codes(data: bytes, tables: entropy.EntropyTables | None = None,
               chunk_frames: int = 256) -> Iterator[np.ndarray]:
    """Parse a ``.tcz`` byte string and hand out its codes a chunk of frames at a time.

    Args:
        data: the whole file (its header was validated by ``read_tcz_header``; checked again here).
        tables: the model's entropy tables, needed for entropy-coded files without embedded tables.
        chunk_frames: frames per yielded chunk (a multiple of 8 keeps bit-packed chunks byte-aligned).

    Yields:
        ndarray: codes [n_q, f] int64, ``f <= chunk_frames``; all chunks together hold ``num_frames``.

    Raises:
        BitstreamError: anything malformed, entropy tables missing, degenerate or not the ones used
            to encode; a corrupted entropy payload is found after its last chunk.
    """
    header = read_tcz_header(data)
    payload = memoryview(data)[HEADER_SIZE : HEADER_SIZE + header.payload_size]
    n_q, num_frames, bits = header.n_q, header.num_frames, header.bits
    chunk_frames = max(8, int(chunk_frames) // 8 * 8)
    if not header.entropy_coded:
        for f0 in range(0, num_frames, chunk_frames):  # f0 * n_q * bits is a whole number of bytes
            f, offset = min(chunk_frames, num_frames - f0), f0 * n_q * bits // 8
            part = bytes(payload[offset : offset + packed_size(f * n_q, bits)])
            yield np.ascontiguousarray(unpack_codes(part, bits, f * n_q).reshape(f, n_q).T)
        return
    if header.flags & FLAG_TABLES:
        if len(payload) < 4:
            raise BitstreamError("embedded entropy tables truncated")
        size = struct.unpack_from("<I", payload)[0]
        if size > len(payload) - 4:
            raise BitstreamError(f"embedded entropy tables declare {size} bytes, payload has {len(payload) - 4}")
        tables = entropy.EntropyTables.from_bytes(bytes(payload[4 : 4 + size]), max_symbols=1 << bits)
        payload = payload[4 + size :]
    if tables is None:
        raise BitstreamError("entropy-coded .tcz file needs the model's entropy tables (none given)")
    if tables.n_q > n_q:
        tables = entropy.EntropyTables(tables.freqs[:n_q], tables.prob_bits)
    if tables.n_q != n_q:
        raise BitstreamError(f"entropy tables have {tables.n_q} levels, the file has n_q={n_q}")
    if tables.codebook_size > (1 << bits):
        raise BitstreamError(f"entropy tables have {tables.codebook_size} symbols, the file's {bits}-bit codes "
                             f"have {1 << bits}")
    if tables.digest() != header.tables_crc:
        raise BitstreamError(
            f"entropy tables do not match the file (file expects tables CRC 0x{header.tables_crc:08x}, "
            f"got 0x{tables.digest():08x} for n_q={tables.n_q})"
        )
    for symbols in entropy.iter_decode(bytes(payload), tables, n_q * num_frames, chunk_frames * n_q):
        yield np.ascontiguousarray(symbols.reshape(-1, n_q).T)


def read_tcz(data: bytes, tables: entropy.EntropyTables | None = None) -> tuple[TczHeader, np.ndarray]:
    """Parse a ``.tcz`` byte string.

    Args:
        data: the whole file.
        tables: the model's entropy tables, needed for entropy-coded files without embedded tables.

    Returns:
        (TczHeader, ndarray): the header and codes [1, n_q, F] int64.

    Raises:
        BitstreamError: anything malformed, or entropy tables missing or not the ones used to encode.
    """
    data = bytes(data)
    header = read_tcz_header(data)
    chunks = list(iter_codes(data, tables, max(8, header.num_frames)))
    codes = np.concatenate([np.zeros((header.n_q, 0), np.int64), *chunks], axis=1)
    return header, codes[None]
