"""Streaming packets: a few frames of bit-packed codes with a sequence number and a CRC32.

A packet is self-describing (n_q, bits, frames) so a receiver can parse a byte stream of
concatenated packets, detect a lost or reordered packet from the sequence number, and drop a
damaged one by its CRC. The layout is documented as a table in ``tinycodec.bitstream``.

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from tinycodec.bitstream.errors import BitstreamError
from tinycodec.bitstream.packing import pack_codes, packed_size, unpack_codes

SYNC = b"TP"
PACKET_VERSION = 1
FLAG_LAST = 1  # the last packet of a stream
PACKET_HEADER = struct.Struct("<2sBBIHBBH")  # sync, version, flags, seq, frames, n_q, bits, payload size
PACKET_HEADER_SIZE = PACKET_HEADER.size  # 14
PACKET_OVERHEAD = PACKET_HEADER_SIZE + 4  # header + CRC32
MAX_PACKET_FRAMES = 4096


@dataclass(frozen=True, eq=False)
class Packet:
    """One transport packet.

    Attributes:
        seq: sequence number (wraps at 2**32).
        codes (ndarray): [n_q, frames] ints in ``[0, 2**bits)``.
        bits: bits per index.
        last: this packet ends the stream.
    """

    seq: int
    codes: np.ndarray
    bits: int
    last: bool = False

    @property
    def n_q(self) -> int:
        return int(self.codes.shape[0])

    @property
    def frames(self) -> int:
        return int(self.codes.shape[1])

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, Packet)
            and (self.seq, self.bits, self.last) == (other.seq, other.bits, other.last)
            and np.array_equal(self.codes, other.codes)
        )

    @staticmethod
    def size(frames: int, n_q: int, bits: int) -> int:
        """Bytes of a packet: ``18 + ceil(frames * n_q * bits / 8)``."""
        return PACKET_OVERHEAD + packed_size(frames * n_q, bits)

    def to_bytes(self) -> bytes:
        codes = np.asarray(self.codes)
        if codes.ndim != 2 or not 1 <= codes.shape[0] <= 255 or not 1 <= codes.shape[1] <= MAX_PACKET_FRAMES:
            raise ValueError(f"packet codes must be [n_q<=255, 1..{MAX_PACKET_FRAMES} frames], got {codes.shape}")
        payload = pack_codes(codes.T, self.bits)  # frame-major, as in the file container
        head = PACKET_HEADER.pack(
            SYNC, PACKET_VERSION, FLAG_LAST if self.last else 0, self.seq & 0xFFFFFFFF,
            codes.shape[1], codes.shape[0], self.bits, len(payload),
        )
        return head + payload + struct.pack("<I", zlib.crc32(head + payload))

    @classmethod
    def from_bytes(cls, data: bytes) -> Packet:
        """Parse exactly one packet; raises ``BitstreamError`` if anything is wrong."""
        packet, end = read_packet(data, 0)
        if end != len(data):
            raise BitstreamError(f"{len(data) - end} trailing bytes after the packet")
        return packet


def read_packet(data: bytes, offset: int = 0) -> tuple[Packet, int]:
    """Parse the packet starting at ``offset`` of a byte stream.

    Returns:
        (Packet, int): the packet and the offset just after it.

    Raises:
        BitstreamError: bad sync word or version, truncated, CRC mismatch or inconsistent sizes.
    """
    data = bytes(data)
    head = data[offset : offset + PACKET_HEADER_SIZE]
    if len(head) < 2 or head[:2] != SYNC:
        raise BitstreamError(f"no packet sync word at offset {offset}: {head[:2]!r}, expected {SYNC!r}")
    if len(head) < PACKET_HEADER_SIZE:
        raise BitstreamError(f"truncated packet header at offset {offset}: {len(head)} bytes")
    _, version, flags, seq, frames, n_q, bits, size = PACKET_HEADER.unpack(head)
    if version != PACKET_VERSION:
        raise BitstreamError(f"unsupported packet version {version}, expected {PACKET_VERSION}")
    end = offset + PACKET_HEADER_SIZE + size + 4
    if len(data) < end:
        raise BitstreamError(f"truncated packet {seq}: needs {end - offset} bytes, {len(data) - offset} left")
    if zlib.crc32(data[offset : end - 4]) != struct.unpack_from("<I", data, end - 4)[0]:
        raise BitstreamError(f"packet CRC32 mismatch at offset {offset} (corrupted)")
    if flags & ~FLAG_LAST or not 1 <= frames <= MAX_PACKET_FRAMES or n_q < 1 or not 1 <= bits <= 31:
        raise BitstreamError(f"invalid packet fields: flags={flags}, frames={frames}, n_q={n_q}, bits={bits}")
    if size != packed_size(frames * n_q, bits):
        raise BitstreamError(f"packet payload is {size} bytes, expected {packed_size(frames * n_q, bits)}")
    payload = data[offset + PACKET_HEADER_SIZE : end - 4]
    codes = unpack_codes(payload, bits, frames * n_q).reshape(frames, n_q).T
    return Packet(seq=seq, codes=np.ascontiguousarray(codes), bits=bits, last=bool(flags & FLAG_LAST)), end


def packetize(codes, bits: int, frames_per_packet: int, first_seq: int = 0) -> list[Packet]:
    """Split codes [n_q, F] or [1, n_q, F] into packets of ``frames_per_packet`` frames (the last may be shorter)."""
    c = codes.detach().cpu().numpy() if hasattr(codes, "detach") else np.asarray(codes)
    c = c[0] if c.ndim == 3 and c.shape[0] == 1 else c
    if c.ndim != 2:
        raise ValueError(f"codes must be [n_q, F] or [1, n_q, F], got {np.shape(codes)}")
    if not 1 <= frames_per_packet <= MAX_PACKET_FRAMES:
        raise ValueError(f"frames_per_packet must be in 1..{MAX_PACKET_FRAMES}, got {frames_per_packet}")
    starts = range(0, c.shape[1], frames_per_packet)
    return [
        Packet(seq=first_seq + i, codes=c[:, s : s + frames_per_packet].astype(np.int64), bits=bits,
               last=s + frames_per_packet >= c.shape[1])
        for i, s in enumerate(starts)
    ]


def depacketize(packets: list[Packet]) -> np.ndarray:
    """Join consecutive packets back into codes [1, n_q, F].

    Raises:
        BitstreamError: a packet is missing or out of order, or n_q / bits change mid-stream.
    """
    if not packets:
        raise BitstreamError("no packets")
    first = packets[0]
    for prev, cur in zip(packets, packets[1:]):
        if cur.seq != (prev.seq + 1) & 0xFFFFFFFF:
            raise BitstreamError(f"packet sequence gap: {prev.seq} followed by {cur.seq}")
        if (cur.n_q, cur.bits) != (first.n_q, first.bits):
            raise BitstreamError(f"packet {cur.seq} has n_q={cur.n_q}, bits={cur.bits}; stream started "
                                 f"with n_q={first.n_q}, bits={first.bits}")
    return np.concatenate([p.codes for p in packets], axis=1)[None]
