"""The loopback streaming protocol: framing, the hello, the server's replies, its limits and their checks.

A client opens with a hello framed as ``u32 length (little-endian) + body`` (``HELLO``, 25 bytes):

| offset | size | type  | hello field                                                   |
|-------:|-----:|-------|---------------------------------------------------------------|
| 0      | 2    | bytes | sync ``b"TH"``                                                |
| 2      | 1    | u8    | version (3: wire packets; 2: framed ``Packet``s; 1: 2 with the hash of all weights) |
| 3      | 4    | u32   | sample_rate                                                   |
| 7      | 2    | u16   | hop_length                                                    |
| 9      | 1    | u8    | n_q                                                           |
| 10     | 1    | u8    | bits per code                                                 |
| 11     | 2    | u16   | frames per packet                                             |
| 13     | 4    | u32   | total samples T (0: unknown, bounded by ``max_seconds``)      |
| 17     | 8    | bytes | model hash (the encoder's, versions 2 and 3)                  |

After a version-3 hello every packet is a *wire packet*: the hello already fixed n_q, bits and the
frames per packet, and TCP already frames and checks the bytes, so a packet carries only what a
receiver cannot know (5 bytes of overhead, against 22 for a framed ``tinycodec.bitstream.Packet``):

| offset | size | type  | wire packet field                                              |
|-------:|-----:|-------|----------------------------------------------------------------|
| 0      | 2    | u16   | sequence number mod 2**16 (the receiver extends it; gaps are bounded) |
| 2      | 1    | u8    | bit 7: last packet of the stream; bits 0-6: frames - 1          |
| 3      | n    | bytes | codes, frame-major, ``bits`` each: n = ceil(frames * n_q * bits / 8) |
| 3 + n  | 2    | u16   | CRC-16/CCITT of the bytes before (a damaged packet is dropped and concealed) |

Versions 1 and 2 send each packet as a framed ``Packet`` (``u32 length + Packet``); the server
still accepts them.

The server answers a hello with one framed reply: ``b"OK"`` (the stream is accepted) or ``b"NO"`` +
a one-line UTF-8 reason, after which it closes the connection. It sends the same ``NO`` + reason
before it closes any connection for a reason (a broken rule, a deadline, eviction), so a client
always learns why.

Every hello field is checked against the server's model and ``Limits`` before anything is
allocated for the stream; a bad one raises ``ProtocolError`` whose message is the reason.

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import binascii
import ipaddress
import math
import socket
import struct
from dataclasses import dataclass

import numpy as np

from tinycodec.bitstream import BitstreamError, Packet, bits_per_code, encoder_hash, weights_hash
from tinycodec.bitstream.packing import pack_codes, packed_size, unpack_codes

DEFAULT_PORT = 7341
HELLO = struct.Struct("<2sBIHBBHI8s")  # sync, version, sample_rate, hop, n_q, bits, frames/packet, T, hash
HELLO_SYNC = b"TH"
HELLO_VERSION = 3  # wire packets; the hash names the encoder + codebooks (any decoder of that encoder serves it)
LENGTH = struct.Struct("<I")
WIRE_HEAD = struct.Struct("<HB")  # seq mod 2**16, flags (bit 7: last, bits 0-6: frames - 1)
WIRE_CRC = struct.Struct("<H")
WIRE_LAST = 0x80
WIRE_MAX_FRAMES = 128
REPLY_OK, REPLY_NO = b"OK", b"NO"
MAX_REASON = 400  # bytes of a reason the server sends (longer ones are cut)


class ProtocolError(BitstreamError):
    """A client broke the protocol or a limit; the message is the reason its connection was closed."""


class StreamRefused(ProtocolError):
    """The server refused or cut this client; the message is the server's one-line reason."""


@dataclass(frozen=True)
class Limits:
    """What one client may ask of the server. Every field bounds memory or time.

    A connection is first *waiting* (for its hello), then a *stream* (it holds a decoder slot).
    Like a web server's slow-client handling, nothing idle keeps a place that a working client
    needs. Waiting is cheap (a socket), so many connections may wait, each at most
    ``hello_timeout``; beyond ``max_waiting`` a new one evicts the oldest. When ``max_clients``
    streams are open, a new stream evicts the one furthest behind real time (by more than
    ``evict_lag`` seconds plus one packet), and only when none is behind is it refused ("server full").

    Attributes:
        max_clients: streams served at once.
        max_waiting: connections that have not finished their hello yet.
        hello_timeout: seconds for the whole hello, from the accept.
        frame_timeout: seconds for each whole packet, not per ``recv``; also the slack of ``min_speed``.
        max_seconds: longest stream (declared or not) in seconds of audio.
        min_speed: a stream must keep bringing audio at least this fast (audio seconds per second):
            it is cut once the audio received falls more than ``frame_timeout`` seconds of wall
            time short of ``min_speed`` times the time since its hello.
        evict_lag: seconds a stream may fall behind real time (plus one packet) before a new
            stream may take its slot when all are taken.
        max_gap_frames: longest sequence gap concealed; a larger jump closes the connection.
        max_frames_per_packet: largest ``frames per packet`` a hello may announce.
        max_pending_frames: received but not yet decoded frames per client before the server stops
            reading from it (backpressure through TCP; the time waiting does not count against the client).
        max_tick_frames: frames per client in one batched decoder call.
    """

    max_clients: int = 128  # batched decoding: about a hundred real-time streams per server core
    max_waiting: int = 256
    hello_timeout: float = 2.0
    frame_timeout: float = 10.0
    max_seconds: float = 600.0
    min_speed: float = 0.5
    evict_lag: float = 1.0
    max_gap_frames: int = 250
    max_frames_per_packet: int = 64
    max_pending_frames: int = 512
    max_tick_frames: int = 16

    def __post_init__(self) -> None:
        if min(self.max_clients, self.max_waiting, self.max_gap_frames, self.max_frames_per_packet,
               self.max_pending_frames, self.max_tick_frames) < 1 or min(
                   self.hello_timeout, self.frame_timeout, self.max_seconds, self.min_speed, self.evict_lag) <= 0:
            raise ValueError(f"every limit must be positive: {self}")
        if self.max_frames_per_packet > WIRE_MAX_FRAMES:
            raise ValueError(f"max_frames_per_packet must be <= {WIRE_MAX_FRAMES}")


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
    def for_model(cls, model, n_q: int, frames_per_packet: int, total: int, version: int = HELLO_VERSION) -> Hello:
        """The hello a client holding ``model`` sends (``version`` 2: framed ``Packet``s follow)."""
        return cls(model.sample_rate, model.hop_length, n_q, bits_per_code(model.config.codebook_size),
                   frames_per_packet, total, bytes.fromhex(encoder_hash(model)), version)

    @classmethod
    def parse(cls, body: bytes) -> Hello:
        """Raises ``ProtocolError`` unless ``body`` is a hello of a known version."""
        if len(body) != HELLO.size or body[:2] != HELLO_SYNC:
            raise ProtocolError(f"the first frame is not a hello ({len(body)} bytes, starts {bytes(body[:2])!r})")
        _, version, sr, hop, n_q, bits, fpp, total, mhash = HELLO.unpack(body)
        if version not in (1, 2, HELLO_VERSION):
            raise ProtocolError(f"unsupported hello version {version}")
        return cls(sr, hop, n_q, bits, fpp, total, mhash, version)


class ModelInfo:
    """What the server checks a hello against, computed once per server."""

    def __init__(self, model) -> None:
        self.sample_rate, self.hop_length = model.sample_rate, model.hop_length
        self.num_quantizers, self.codebook_size = model.num_quantizers, model.config.codebook_size
        self.bits = bits_per_code(self.codebook_size)
        self.delay = getattr(model, "delay", 0)  # samples the decoder's output lags its codes
        enc = bytes.fromhex(encoder_hash(model))
        self.hashes = {1: weights_hash(model), 2: enc, HELLO_VERSION: enc}


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
    """Raise ``ProtocolError`` unless a version 1-2 ``packet`` fits the hello (n_q, bits, frames) and the codebooks."""
    if packet.n_q != hello.n_q or packet.bits != hello.bits or packet.frames > hello.frames_per_packet:
        raise ProtocolError(f"packet {packet.seq} has n_q={packet.n_q}, bits={packet.bits}, "
                            f"{packet.frames} frames; the hello said n_q={hello.n_q}, bits={hello.bits}, "
                            f"<= {hello.frames_per_packet} frames")
    if packet.codes.size and int(packet.codes.max()) >= codebook_size:
        raise ProtocolError(f"packet {packet.seq} has code {int(packet.codes.max())}, "
                            f"out of range for codebook_size {codebook_size}")


def max_body(hello: Hello) -> int:
    """Largest frame body a version 1-2 client may send after ``hello``: a full ``Packet``."""
    return Packet.size(hello.frames_per_packet, hello.n_q, hello.bits)


# -- wire packets (version 3) -----------------------------------------------------------------
def wire_size(frames: int, n_q: int, bits: int) -> int:
    """Bytes of a wire packet: ``5 + ceil(frames * n_q * bits / 8)``."""
    return WIRE_HEAD.size + packed_size(frames * n_q, bits) + WIRE_CRC.size


def pack_wire(seq: int, codes: np.ndarray, bits: int, last: bool = False) -> bytes:
    """One wire packet of codes [n_q, frames] (1 <= frames <= 128), sequence number ``seq`` (mod 2**16)."""
    frames = codes.shape[1]
    if not 1 <= frames <= WIRE_MAX_FRAMES:
        raise ValueError(f"a wire packet holds 1..{WIRE_MAX_FRAMES} frames, got {frames}")
    body = WIRE_HEAD.pack(seq & 0xFFFF, (WIRE_LAST if last else 0) | (frames - 1)) + pack_codes(codes.T, bits)
    return body + WIRE_CRC.pack(binascii.crc_hqx(body, 0))


def wire_head(head: bytes) -> tuple[int, int, bool]:
    """``(seq mod 2**16, frames, last)`` of a wire packet's first 3 bytes."""
    seq, flags = WIRE_HEAD.unpack(head)
    return seq, (flags & 0x7F) + 1, bool(flags & WIRE_LAST)


def unpack_wire(head: bytes, rest: bytes, n_q: int, bits: int) -> np.ndarray:
    """Codes [n_q, frames] of a wire packet (``head``: its 3 bytes, ``rest``: payload + CRC).

    Raises:
        BitstreamError: the CRC does not match (a damaged packet) or ``rest`` has the wrong size.
    """
    frames = wire_head(head)[1]
    if len(rest) != packed_size(frames * n_q, bits) + WIRE_CRC.size:
        raise BitstreamError(f"wire packet of {frames} frames has {len(rest)} bytes after its header")
    payload = rest[:-WIRE_CRC.size]
    if binascii.crc_hqx(payload, binascii.crc_hqx(head, 0)) != WIRE_CRC.unpack(rest[-WIRE_CRC.size:])[0]:
        raise BitstreamError("wire packet CRC-16 mismatch (corrupted)")
    return unpack_codes(payload, bits, frames * n_q).reshape(frames, n_q).T


# -- replies (server -> client) ---------------------------------------------------------------
def reply(reason: str | None = None) -> bytes:
    """The framed reply: ``OK``, or ``NO`` + ``reason`` (one line, at most ``MAX_REASON`` bytes)."""
    body = REPLY_OK if reason is None else REPLY_NO + " ".join(reason.split()).encode()[:MAX_REASON]
    return LENGTH.pack(len(body)) + body


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_reply(sock: socket.socket) -> None:
    """Wait for the server's reply to a hello (with the socket's timeout).

    Raises:
        StreamRefused: the server answered ``NO``, or closed without a reply; the message says why.
        TimeoutError / OSError: no reply in time, or the connection failed.
    """
    head = _recv_exact(sock, LENGTH.size)
    if len(head) < LENGTH.size:
        raise StreamRefused("the server closed the connection without a reply")
    (size,) = LENGTH.unpack(head)
    if size > len(REPLY_NO) + MAX_REASON:
        raise StreamRefused(f"the server's reply is {size} bytes: not a tinycodec server?")
    body = _recv_exact(sock, size)
    if body == REPLY_OK:
        return
    if body[:2] == REPLY_NO:
        raise StreamRefused(body[2:].decode(errors="replace"))
    raise StreamRefused(f"unexpected reply from the server: {body[:16]!r}")


def reason_after_failure(sock: socket.socket) -> str | None:
    """The server's ``NO`` reason once a send failed (it cut the stream), if it sent one."""
    try:
        sock.settimeout(1.0)
        read_reply(sock)
    except StreamRefused as exc:
        return str(exc)
    except OSError:
        return None
    return None


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
