"""The loopback streaming protocol: framing, the hello, the server's limits, and their checks.

Wire format: a sequence of frames, each ``u32 length (little-endian) + body``. The first body is
a hello (``HELLO``, 25 bytes); every later body is one ``tinycodec.bitstream.Packet``.

| offset | size | type  | hello field                                                   |
|-------:|-----:|-------|---------------------------------------------------------------|
| 0      | 2    | bytes | sync ``b"TH"``                                                |
| 2      | 1    | u8    | version (2: hash = encoder hash; 1: hash of all weights)      |
| 3      | 4    | u32   | sample_rate                                                   |
| 7      | 2    | u16   | hop_length                                                    |
| 9      | 1    | u8    | n_q                                                           |
| 10     | 1    | u8    | bits per code                                                 |
| 11     | 2    | u16   | frames per packet                                             |
| 13     | 4    | u32   | total samples T (0: unknown, bounded by ``max_seconds``)      |
| 17     | 8    | bytes | model hash                                                    |

Every field is checked against the server's model and ``Limits`` before anything is allocated
for the stream; a bad one raises ``ProtocolError`` whose message is the one-line reason the
server logs when it closes the connection.

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import ipaddress
import math
import socket
import struct
from dataclasses import dataclass

from tinycodec.bitstream import BitstreamError, Packet, bits_per_code, encoder_hash, weights_hash
from tinycodec.bitstream.packet import MAX_PACKET_FRAMES

DEFAULT_PORT = 7341
HELLO = struct.Struct("<2sBIHBBHI8s")  # sync, version, sample_rate, hop, n_q, bits, frames/packet, T, hash
HELLO_SYNC = b"TH"
HELLO_VERSION = 2  # the hash names the encoder + codebooks (any decoder of that encoder serves it)
LENGTH = struct.Struct("<I")


class ProtocolError(BitstreamError):
    """A client broke the protocol or a limit; the message is the reason its connection was closed."""


@dataclass(frozen=True)
class Limits:
    """What one client may ask of the server. Every field bounds memory or time.

    Attributes:
        max_clients: connections served at once; more are closed at once ("server full").
        hello_timeout: seconds for the whole hello, from the accept.
        frame_timeout: seconds for each whole frame (length + body), not per ``recv``.
        max_seconds: longest stream (declared or not) in seconds of audio.
        min_speed: a stream must arrive at least this fast (audio seconds per second): the
            connection's deadline is ``frame_timeout + duration / min_speed``.
        max_gap_frames: longest sequence gap concealed; a larger jump closes the connection.
        max_frames_per_packet: largest ``frames per packet`` a hello may announce.
        max_pending_frames: received but not yet decoded frames per client before the server stops
            reading from it (backpressure through TCP).
        max_tick_frames: frames per client in one batched decoder call.
    """

    max_clients: int = 16
    hello_timeout: float = 5.0
    frame_timeout: float = 10.0
    max_seconds: float = 600.0
    min_speed: float = 0.5
    max_gap_frames: int = 250
    max_frames_per_packet: int = 64
    max_pending_frames: int = 512
    max_tick_frames: int = 16

    def __post_init__(self) -> None:
        if min(self.max_clients, self.max_gap_frames, self.max_frames_per_packet, self.max_pending_frames,
               self.max_tick_frames) < 1 or min(self.hello_timeout, self.frame_timeout, self.max_seconds,
                                                 self.min_speed) <= 0:
            raise ValueError(f"every limit must be positive: {self}")
        if self.max_frames_per_packet > MAX_PACKET_FRAMES:
            raise ValueError(f"max_frames_per_packet must be <= {MAX_PACKET_FRAMES}")


@dataclass(frozen=True)
class Hello:
    """The first frame of a stream (see the table in the module docstring)."""

    sample_rate: int
    hop_length: int
    n_q: int
    bits: int
    frames_per_packet: int
    total: int  # samples; 0: unknown
    model_hash: bytes
    version: int = HELLO_VERSION

    def pack(self) -> bytes:
        return HELLO.pack(HELLO_SYNC, self.version, self.sample_rate, self.hop_length, self.n_q, self.bits,
                          self.frames_per_packet, self.total, self.model_hash)

    @classmethod
    def for_model(cls, model, n_q: int, frames_per_packet: int, total: int) -> Hello:
        """The hello a client holding ``model`` sends."""
        return cls(model.sample_rate, model.hop_length, n_q, bits_per_code(model.config.codebook_size),
                   frames_per_packet, total, bytes.fromhex(encoder_hash(model)))

    @classmethod
    def parse(cls, body: bytes) -> Hello:
        """Raises ``ProtocolError`` unless ``body`` is a hello of a known version."""
        if len(body) != HELLO.size or body[:2] != HELLO_SYNC:
            raise ProtocolError(f"the first frame is not a hello ({len(body)} bytes, starts {bytes(body[:2])!r})")
        _, version, sr, hop, n_q, bits, fpp, total, mhash = HELLO.unpack(body)
        if version not in (1, HELLO_VERSION):
            raise ProtocolError(f"unsupported hello version {version}")
        return cls(sr, hop, n_q, bits, fpp, total, mhash, version)


class ModelInfo:
    """What the server checks a hello against, computed once per server."""

    def __init__(self, model) -> None:
        self.sample_rate, self.hop_length = model.sample_rate, model.hop_length
        self.num_quantizers, self.codebook_size = model.num_quantizers, model.config.codebook_size
        self.bits = bits_per_code(self.codebook_size)
        self.delay = getattr(model, "delay", 0)  # samples the decoder's output lags its codes
        self.hashes = {1: weights_hash(model), HELLO_VERSION: bytes.fromhex(encoder_hash(model))}


def check_hello(hello: Hello, info: ModelInfo, limits: Limits) -> int:
    """Validate a hello against the model and the limits.

    Returns:
        int: the most frames the stream may bring (declared, or ``max_seconds`` when unknown).

    Raises:
        ProtocolError: another model, or a field out of range (the message names it).
    """
    mine = info.hashes[hello.version]
    if (hello.sample_rate, hello.hop_length, hello.model_hash) != (info.sample_rate, info.hop_length, mine):
        raise ProtocolError(f"client model (sr={hello.sample_rate}, hop={hello.hop_length}, hash="
                            f"{hello.model_hash.hex()}) does not match the server's (sr={info.sample_rate}, "
                            f"hop={info.hop_length}, hash={mine.hex()})")
    if not 1 <= hello.n_q <= info.num_quantizers or hello.bits != info.bits:
        raise ProtocolError(f"hello asks for n_q={hello.n_q}, {hello.bits} bits; the model has "
                            f"1..{info.num_quantizers} quantizers of {info.bits} bits")
    if not 1 <= hello.frames_per_packet <= limits.max_frames_per_packet:
        raise ProtocolError(f"hello announces {hello.frames_per_packet} frames per packet "
                            f"(limit {limits.max_frames_per_packet})")
    max_samples = int(limits.max_seconds * info.sample_rate)
    if hello.total > max_samples:
        raise ProtocolError(f"hello declares {hello.total / info.sample_rate:.1f} s of audio "
                            f"(limit {limits.max_seconds:g} s)")
    return math.ceil((hello.total or max_samples) / info.hop_length)


def check_packet(packet: Packet, hello: Hello, codebook_size: int) -> None:
    """Raise ``ProtocolError`` unless ``packet`` fits the hello (n_q, bits, frames) and the codebooks."""
    if packet.n_q != hello.n_q or packet.bits != hello.bits or packet.frames > hello.frames_per_packet:
        raise ProtocolError(f"packet {packet.seq} has n_q={packet.n_q}, bits={packet.bits}, "
                            f"{packet.frames} frames; the hello said n_q={hello.n_q}, bits={hello.bits}, "
                            f"<= {hello.frames_per_packet} frames")
    if packet.codes.size and int(packet.codes.max()) >= codebook_size:
        raise ProtocolError(f"packet {packet.seq} has code {int(packet.codes.max())}, "
                            f"out of range for codebook_size {codebook_size}")


def max_body(hello: Hello) -> int:
    """Largest frame body a client may send after ``hello``: a full packet."""
    return Packet.size(hello.frames_per_packet, hello.n_q, hello.bits)


def check_loopback(host: str) -> str:
    """Raise ValueError unless ``host`` is a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"host must be a loopback address (127.0.0.1, ::1, localhost), got {host!r}")
    return host


def send_frame(sock: socket.socket, body: bytes) -> None:
    """Blocking send of one ``length + body`` frame."""
    sock.sendall(LENGTH.pack(len(body)) + body)
