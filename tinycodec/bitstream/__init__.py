"""Bitstream: the ``.tcz`` file container, bit packing and streaming packets.

``.tcz`` file (all integers little-endian; the CRC32 is zlib's, over every byte before it):

| offset | size | type  | field                                                              |
|-------:|-----:|-------|--------------------------------------------------------------------|
| 0      | 4    | bytes | magic ``b"TCZ1"``                                                  |
| 4      | 1    | u8    | version (2; version-1 files still read)                            |
| 5      | 1    | u8    | flags: bit 0 entropy-coded (rANS), bit 1 tables embedded           |
| 6      | 2    | u16   | reserved, 0                                                        |
| 8      | 32   | bytes | model id (preset or family name), ASCII, NUL-padded                |
| 40     | 8    | bytes | model hash: v2 ``encoder_hash`` (encoder + codebooks), v1 weights  |
| 48     | 4    | u32   | sample_rate (Hz)                                                   |
| 52     | 2    | u16   | hop_length (samples per frame)                                     |
| 54     | 1    | u8    | n_q (quantizers used)                                              |
| 55     | 1    | u8    | bits per code, ceil(log2(codebook_size))                           |
| 56     | 4    | u32   | F, frame count                                                     |
| 60     | 4    | u32   | T, original length in samples (<= F * hop_length)                  |
| 64     | 4    | u32   | CRC32 of the entropy tables' bytes (0 when bit-packed)             |
| 68     | 4    | u32   | P, payload size in bytes                                           |
| 72     | P    | bytes | payload                                                            |
| 72 + P | 4    | u32   | CRC32 of bytes [0, 72 + P)                                         |

Payload, bit-packed: the F x n_q indices in frame-major order (frame 0's quantizers 0..n_q-1,
then frame 1, ...), ``bits`` bits each, MSB first, zero-padded to a byte:
``P = ceil(n_q * bits * F / 8)``, so the file is ``76 + nominal_bitrate * duration / 8`` bytes.
Payload, entropy-coded: the same symbols rANS-coded (``tinycodec.bitstream.entropy``); with bit 1 set it
starts with a u32 size and the serialised tables.

Streaming packet (``Packet``; concatenate for a byte stream):

| offset | size | type  | field                                                    |
|-------:|-----:|-------|----------------------------------------------------------|
| 0      | 2    | bytes | sync word ``b"TP"``                                      |
| 2      | 1    | u8    | version (1)                                              |
| 3      | 1    | u8    | flags: bit 0 last packet of the stream                   |
| 4      | 4    | u32   | sequence number (wraps)                                  |
| 8      | 2    | u16   | frames per packet (1..4096)                              |
| 10     | 1    | u8    | n_q                                                      |
| 11     | 1    | u8    | bits per code                                            |
| 12     | 2    | u16   | payload size P = ceil(frames * n_q * bits / 8)           |
| 14     | P    | bytes | bit-packed indices, frame-major                          |
| 14 + P | 4    | u32   | CRC32 of bytes [0, 14 + P)                               |

Any malformed input (wrong magic or version, truncation, trailing bytes, CRC mismatch, a field out
of range, a size that would need more memory than the input justifies, a degenerate entropy table,
a different encoder) raises ``BitstreamError`` with a message naming the problem; a file longer than
``max_seconds`` raises ``LimitError`` (a ``BitstreamError``). Files are encoded and decoded a chunk
of frames at a time (``tinycodec.bitstream.chunked``): memory does not grow with their length.

Notebook: book/05_bitrate.md
"""

from tinycodec.bitstream.errors import AudioInputError, BitstreamError, LimitError  # noqa: I001  (first)
from tinycodec.bitstream.container import (
    HEADER_SIZE,
    MAGIC,
    TRAILER_SIZE,
    VERSION,
    TczHeader,
    iter_codes,
    read_tcz,
    read_tcz_header,
    write_tcz,
)
from tinycodec.bitstream.model_io import (
    bits_per_code,
    check_model,
    encoder_hash,
    find_model,
    model_id,
    weights_hash,
)
from tinycodec.bitstream.chunked import (
    DEFAULT_MAX_SECONDS,
    decode_bytes,
    encode_bytes,
    encode_codes,
    iter_decode_bytes,
    to_tcz,
)
from tinycodec.bitstream.packet import PACKET_OVERHEAD, Packet, depacketize, packetize, read_packet
from tinycodec.bitstream.packing import pack_codes, packed_size, unpack_codes

__all__ = [
    "DEFAULT_MAX_SECONDS", "HEADER_SIZE", "MAGIC", "PACKET_OVERHEAD", "TRAILER_SIZE", "VERSION", "AudioInputError",
    "BitstreamError", "LimitError", "Packet", "TczHeader", "bits_per_code", "check_model", "decode_bytes",
    "depacketize", "encode_bytes", "encode_codes", "encoder_hash", "find_model", "iter_codes", "iter_decode_bytes",
    "model_id", "pack_codes", "packed_size", "packetize", "read_packet", "read_tcz", "read_tcz_header", "to_tcz",
    "unpack_codes", "weights_hash", "write_tcz",
]
