"""Loopback TCP demo: the device sends bitstream ``Packet``s, the server decodes and conceals losses.

Wire format: a sequence of frames, each ``u32 length (little-endian) + body``. The first body is
a hello (``HELLO``: sync ``b"TH"``, version, sample_rate, hop_length, n_q, bits,
frames_per_packet, total samples, weights hash), so the server refuses a client whose model
differs; every later body is one ``tinycodec.bitstream.Packet``. The client can drop or corrupt
packets on purpose (``loss_rate``, ``corrupt_rate``) to simulate a lossy radio link: the server
detects a gap from the sequence number and a damaged packet from its CRC, and conceals the missing
frames by repeating the last good frame's codes with a decaying gain (silence after a few
frames), so a lost packet costs a glitch, never a crash, and the output keeps its length.
Only loopback addresses are accepted: this is a demo, not a service.

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import ipaddress
import logging
import math
import socket
import struct
import time
from pathlib import Path

import numpy as np
import torch

from tinycodec.bitstream import BitstreamError, Packet, bits_per_code, weights_hash
from tinycodec.streaming.source import hop_chunks

logger = logging.getLogger(__name__)

DEFAULT_PORT = 7341
HELLO = struct.Struct("<2sBIHBBHI8s")  # sync, version, sample_rate, hop, n_q, bits, frames/packet, T, hash
HELLO_SYNC = b"TH"
HELLO_VERSION = 1
LENGTH = struct.Struct("<I")
MAX_FRAME_BYTES = 1 << 20


def check_loopback(host: str) -> str:
    """Raise ValueError unless ``host`` is a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"host must be a loopback address (127.0.0.1, ::1, localhost), got {host!r}")
    return host


def _send_frame(sock: socket.socket, body: bytes) -> None:
    sock.sendall(LENGTH.pack(len(body)) + body)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """``n`` bytes, or None on a clean EOF before the first byte."""
    buf = bytearray()
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            if buf:
                raise ConnectionError(f"connection closed mid-frame ({len(buf)} of {n} bytes)")
            return None
        buf += part
    return bytes(buf)


def _recv_frame(sock: socket.socket) -> bytes | None:
    head = _recv_exact(sock, LENGTH.size)
    if head is None:
        return None
    (size,) = LENGTH.unpack(head)
    if size > MAX_FRAME_BYTES:
        raise ConnectionError(f"frame of {size} bytes exceeds the {MAX_FRAME_BYTES} byte limit")
    body = _recv_exact(sock, size)
    if body is None:
        raise ConnectionError("connection closed after a frame header")
    return body


class Concealer:
    """Stateful decoder that fills sequence gaps: repeat the last good codes with a decaying gain.

    Args:
        model: codec model, inside its ``streaming(1)`` block (the caller opens it).
        n_q (int): quantizers per frame.
        decay (float): gain factor per concealed frame (0.5: -6 dB per frame).
        max_frames (int): after this many consecutive concealed frames, output silence.
    """

    def __init__(self, model, n_q: int, decay: float = 0.5, max_frames: int = 5) -> None:
        self.model, self.n_q, self.decay, self.max_frames = model, n_q, decay, max_frames
        self.last: torch.Tensor | None = None  # [1, n_q, 1] last good frame
        self.run = 0  # consecutive concealed frames so far
        self.concealed = 0

    @torch.no_grad()
    def good(self, codes: torch.Tensor) -> torch.Tensor:
        """Decode received codes [1, n_q, F] -> [F * hop_length]."""
        self.last, self.run = codes[..., -1:], 0
        return self.model.decode(codes)[0, 0]

    @torch.no_grad()
    def conceal(self, frames: int) -> torch.Tensor:
        """Audio for ``frames`` lost frames -> [frames * hop_length]."""
        hop = self.model.hop_length
        self.concealed += frames
        if self.last is None:  # nothing heard yet: silence, decoder state untouched
            return torch.zeros(frames * hop)
        wav = self.model.decode(self.last.expand(-1, -1, frames))[0, 0]
        k = torch.arange(self.run + 1, self.run + frames + 1, dtype=torch.float32)
        gain = torch.where(k <= self.max_frames, self.decay ** k, torch.zeros(()))
        self.run += frames
        return wav * gain.repeat_interleave(hop)


class StreamServer:
    """Decoder server on a loopback address; ``port=0`` picks a free port (see ``.port``).

    Args:
        model: codec model with the same weights as the client's (checked by hash).
        host (str): loopback address.
        port (int): TCP port (0: any free one).
        timeout (float): seconds to wait for a client or for the next frame.
        decay, max_conceal_frames: see :class:`Concealer`.
    """

    def __init__(self, model, host: str = "127.0.0.1", port: int = DEFAULT_PORT, timeout: float = 10.0,
                 decay: float = 0.5, max_conceal_frames: int = 5) -> None:
        self.model, self.timeout = model, timeout
        self.decay, self.max_conceal_frames = decay, max_conceal_frames
        family = socket.AF_INET6 if ":" in check_loopback(host) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(1)
        self.sock.settimeout(timeout)
        self.host, self.port = host, self.sock.getsockname()[1]
        self._hash = weights_hash(model)

    def __enter__(self) -> StreamServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def handle_one(self) -> dict:
        """Accept one client and decode its stream.

        Returns:
            dict: ``wav`` (Tensor [T]), ``sample_rate``, ``packets``, ``lost_packets`` (gaps),
            ``crc_errors``, ``late``, ``concealed_frames``, ``concealed_spans`` (list of (first frame,
            frames)), ``time_to_first_audio`` (s after the hello), ``total_time``.

        Raises:
            TimeoutError: no client, or a client went silent, within ``timeout``.
            ValueError: the client's model does not match (hash, rate or hop).
        """
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(self.timeout)
            return self._decode_connection(conn)

    def _decode_connection(self, conn: socket.socket) -> dict:
        model, hop = self.model, self.model.hop_length
        hello = _recv_frame(conn)
        if hello is None or len(hello) != HELLO.size or hello[:2] != HELLO_SYNC:
            raise ValueError("client did not start with a valid hello")
        _, version, sr, c_hop, n_q, bits, fpp, total, whash = HELLO.unpack(hello)
        if version != HELLO_VERSION or sr != model.sample_rate or c_hop != hop or whash != self._hash:
            raise ValueError(f"client model (sr={sr}, hop={c_hop}, hash={whash.hex()}) does not match the "
                             f"server's (sr={model.sample_rate}, hop={hop}, hash={self._hash.hex()})")
        t0 = time.perf_counter()
        total_frames = math.ceil(total / hop) if total else None
        out: list[torch.Tensor] = []
        stats = dict(packets=0, lost_packets=0, crc_errors=0, late=0)
        ttfa, expected, frames_out, spans = None, 0, 0, []
        with model.streaming(1):
            cc = Concealer(model, n_q, self.decay, self.max_conceal_frames)
            while True:
                body = _recv_frame(conn)
                if body is None:
                    break
                try:
                    packet = Packet.from_bytes(body)
                except BitstreamError as exc:  # damaged: drop it, the next sequence number shows the gap
                    stats["crc_errors"] += 1
                    logger.debug("dropping damaged packet: %s", exc)
                    continue
                if packet.seq < expected:  # arrived after its frames were concealed
                    stats["late"] += 1
                    continue
                if packet.n_q != n_q or packet.bits != bits:
                    raise ValueError(f"packet {packet.seq} has n_q={packet.n_q}, bits={packet.bits}; "
                                     f"hello said n_q={n_q}, bits={bits}")
                if packet.seq > expected:
                    stats["lost_packets"] += packet.seq - expected
                    gap = (packet.seq - expected) * fpp
                    spans.append((frames_out, gap))
                    out.append(cc.conceal(gap))
                    frames_out += gap
                out.append(cc.good(torch.from_numpy(packet.codes)[None]))
                frames_out += packet.frames
                stats["packets"] += 1
                expected = packet.seq + 1
                if ttfa is None:
                    ttfa = time.perf_counter() - t0
                if packet.last:
                    break
            if total_frames is not None and frames_out < total_frames:  # the tail was lost
                stats["lost_packets"] += math.ceil((total_frames - frames_out) / fpp)
                spans.append((frames_out, total_frames - frames_out))
                out.append(cc.conceal(total_frames - frames_out))
        wav = torch.cat(out) if out else torch.zeros(0)
        if total:
            wav = wav[:total]
        return dict(wav=wav, sample_rate=model.sample_rate, concealed_frames=cc.concealed, concealed_spans=spans,
                    time_to_first_audio=ttfa, total_time=time.perf_counter() - t0, **stats)


def serve(model, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, clients: int = 1,
          output: str | Path | None = None, timeout: float = 60.0, ready=None) -> list[dict]:
    """Run a decoder server for ``clients`` connections, one after the other.

    Args:
        model: codec model (same weights as the clients').
        host, port: loopback address to listen on (``port=0``: any free port).
        clients (int): connections to serve before returning.
        output: if given, write each client's audio as WAV (``out.wav``, ``out_1.wav``, ...).
        timeout (float): seconds to wait for each client and each frame.
        ready: called with the bound port once listening (e.g. to start a client thread).

    Returns:
        list[dict]: one :meth:`StreamServer.handle_one` result per client.
    """
    results = []
    with StreamServer(model, host, port, timeout) as server:
        if ready is not None:
            ready(server.port)
        for i in range(clients):
            result = server.handle_one()
            if output is not None:
                from tinycodec.audio import save

                path = Path(output)
                path = path if i == 0 else path.with_name(f"{path.stem}_{i}{path.suffix}")
                save(path, result["wav"][None], result["sample_rate"])
                result["path"] = str(path)
            results.append(result)
    return results


def send_file(path, host: str = "127.0.0.1", port: int = DEFAULT_PORT, model=None, *, n_q: int | None = None,
              frames_per_packet: int = 1, loss_rate: float = 0.0, corrupt_rate: float = 0.0, seed: int = 0,
              realtime: bool = False, max_duration: float | None = None, timeout: float = 10.0) -> dict:
    """Device side: encode an audio file (or waveform [T]) frame by frame and send packets.

    Args:
        path: audio file, or a waveform Tensor [T] at ``model.sample_rate``.
        host, port: the server (loopback only).
        model: codec model (its own instance: it is put in streaming mode while sending).
        n_q (int | None): quantizers to send (default all).
        frames_per_packet (int): frames per packet (latency vs. 18 bytes of overhead each).
        loss_rate (float): probability of dropping each packet (simulated loss, seeded).
        corrupt_rate (float): probability of flipping a payload byte (the server sees a CRC error).
        seed (int): seeds the loss simulation.
        realtime (bool): send at the pace of the audio, like a microphone.
        max_duration (float | None): hard limit in seconds.

    Returns:
        dict: ``packets`` sent, ``dropped``, ``corrupted``, ``bytes``, ``samples``, ``frames``.
    """
    check_loopback(host)
    if model is None:
        raise ValueError("send_file needs a model (the same weights as the server's)")
    if not (0.0 <= loss_rate < 1.0 and 0.0 <= corrupt_rate < 1.0):
        raise ValueError(f"loss_rate and corrupt_rate must be in [0, 1), got {loss_rate}, {corrupt_rate}")
    sr, hop = model.sample_rate, model.hop_length
    if isinstance(path, (str, Path)):
        from tinycodec.audio import load

        wav = load(path, sr)[0].reshape(-1)
    else:
        wav = torch.as_tensor(path, dtype=torch.float32).reshape(-1)
    if max_duration is not None:
        wav = wav[: int(max_duration * sr)]
    n_q = n_q or model.num_quantizers
    bits = bits_per_code(model.config.codebook_size)
    rng = np.random.default_rng(seed)
    sent = dict(packets=0, dropped=0, corrupted=0, bytes=0, samples=wav.numel(), frames=0)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one small packet per frame: no Nagle delay
        _send_frame(sock, HELLO.pack(HELLO_SYNC, HELLO_VERSION, sr, hop, n_q, bits, frames_per_packet,
                                     wav.numel(), weights_hash(model)))
        t_start, seen = time.perf_counter(), 0
        chunks = hop_chunks(wav, hop, sr, frames_per_packet)
        nxt = next(chunks, None)
        seq = 0
        with torch.no_grad(), model.streaming(1):
            while nxt is not None:
                (chunk, valid), nxt = nxt, next(chunks, None)
                seen += valid
                if realtime:
                    delay = t_start + seen / sr - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                codes = model.encode(chunk.view(1, 1, -1), n_q)[0].numpy()
                body = Packet(seq=seq, codes=codes, bits=bits, last=nxt is None).to_bytes()
                seq += 1
                sent["frames"] += codes.shape[1]
                if rng.random() < loss_rate:
                    sent["dropped"] += 1
                    continue
                if rng.random() < corrupt_rate:
                    body = bytearray(body)
                    body[len(body) // 2] ^= 0xFF
                    body = bytes(body)
                    sent["corrupted"] += 1
                _send_frame(sock, body)
                sent["packets"] += 1
                sent["bytes"] += len(body) + LENGTH.size
    return sent


def loopback(source, server_model, client_model, *, timeout: float = 10.0, **client_kwargs) -> tuple[dict, dict]:
    """One round trip on 127.0.0.1: a server thread on a free port, ``send_file`` from this thread.

    Args:
        source: audio file or waveform [T] (see :func:`send_file`).
        server_model, client_model: two instances with the same weights (each streams on its own).
        timeout (float): seconds for the server to wait for each frame.
        **client_kwargs: passed to :func:`send_file` (``loss_rate``, ``frames_per_packet``, ...).

    Returns:
        (dict, dict): the server's result (:meth:`StreamServer.handle_one`) and the client's stats.

    Raises:
        Exception: whatever the server raised (e.g. ValueError for a model mismatch).
    """
    import threading

    box: dict = {}
    with StreamServer(server_model, "127.0.0.1", 0, timeout) as server:
        def run() -> None:
            try:
                box["result"] = server.handle_one()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                box["error"] = exc

        thread = threading.Thread(target=run, name="tinycodec-server", daemon=True)
        thread.start()
        try:
            sent = send_file(source, "127.0.0.1", server.port, client_model, timeout=timeout, **client_kwargs)
        finally:
            thread.join(timeout=2 * timeout)
    if "error" in box:
        raise box["error"]
    if thread.is_alive():
        raise TimeoutError("the loopback server did not finish")
    return box["result"], sent
