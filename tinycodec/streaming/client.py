"""The device side of the loopback demo: encode audio frame by frame and send wire packets.

The client sends a hello, waits for the server's ``OK`` (or its one-line reason to refuse), then
one wire packet per ``frames_per_packet`` frames (:mod:`tinycodec.streaming.protocol`). When the
server cuts the stream (a deadline, eviction), the next send fails and the client reads the
reason the server sent before closing: every refusal reaches the user as one line.

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import torch

from tinycodec.audio.source import hop_chunks
from tinycodec.bitstream import bits_per_code
from tinycodec.streaming.protocol import (
    DEFAULT_PORT,
    WIRE_MAX_FRAMES,
    Hello,
    StreamRefused,
    check_loopback,
    pack_wire,
    read_reply,
    reason_after_failure,
    send_frame,
)


def connect(host: str, port: int, hello: Hello, timeout: float) -> socket.socket:
    """Open a connection, send ``hello`` and wait for the server's ``OK``.

    Raises:
        ConnectionRefusedError: no server listens there (the message says where).
        StreamRefused: the server refused the stream; the message is its reason.
    """
    check_loopback(host)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        raise ConnectionRefusedError(f"no tinycodec server at {host}:{port} (connection refused)") from None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small packets: no Nagle delay
        send_frame(sock, hello.pack())
        read_reply(sock)
    except (BrokenPipeError, ConnectionResetError) as exc:
        reason = reason_after_failure(sock)
        sock.close()
        raise StreamRefused(reason or f"the server closed the connection ({exc.strerror})") from None
    except TimeoutError:
        sock.close()
        raise TimeoutError(f"no reply to the hello from {host}:{port} within {timeout:g} s") from None
    except BaseException:
        sock.close()
        raise
    return sock


def send_packet(sock: socket.socket, body: bytes) -> None:
    """Send one packet; a server that cut the stream raises ``StreamRefused`` with its reason."""
    try:
        sock.sendall(body)
    except (BrokenPipeError, ConnectionResetError) as exc:
        reason = reason_after_failure(sock)
        raise StreamRefused(reason or f"the server closed the connection ({exc.strerror})") from None


def send_file(path, host: str = "127.0.0.1", port: int = DEFAULT_PORT, model=None, *, n_q: int | None = None,
              frames_per_packet: int = 1, loss_rate: float = 0.0, corrupt_rate: float = 0.0, seed: int = 0,
              realtime: bool = False, max_duration: float | None = None, timeout: float = 10.0) -> dict:
    """Device side: encode an audio file (or waveform [T]) frame by frame and send wire packets.

    Args:
        path: audio file, or a waveform Tensor [T] at ``model.sample_rate``.
        host, port: the server (loopback only).
        model: codec model (its own instance: it is put in streaming mode while sending).
        n_q (int | None): quantizers to send (default all).
        frames_per_packet (int): frames per packet, 1..128: each packet costs 5 bytes of overhead
            and its first frame waits ``frames_per_packet - 1`` hops for the last one.
        loss_rate (float): probability of dropping each packet (simulated loss, seeded).
        corrupt_rate (float): probability of flipping a payload byte (the server sees a CRC error).
        seed (int): seeds the loss simulation.
        realtime (bool): send at the pace of the audio, like a microphone.
        max_duration (float | None): hard limit in seconds.
        timeout (float): socket timeout in seconds.

    Returns:
        dict: ``packets`` sent, ``dropped``, ``corrupted``, ``bytes`` (packets on the wire),
        ``samples``, ``frames``, ``local_port``.

    Raises:
        ConnectionRefusedError: no server at ``host:port``.
        StreamRefused: the server refused or cut the stream (the message is its reason).
    """
    if model is None:
        raise ValueError("send_file needs a model (the same encoder as the server's)")
    if not (0.0 <= loss_rate < 1.0 and 0.0 <= corrupt_rate < 1.0):
        raise ValueError(f"loss_rate and corrupt_rate must be in [0, 1), got {loss_rate}, {corrupt_rate}")
    if not 1 <= frames_per_packet <= WIRE_MAX_FRAMES:
        raise ValueError(f"frames_per_packet must be in 1..{WIRE_MAX_FRAMES}, got {frames_per_packet}")
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
    with connect(host, port, Hello.for_model(model, n_q, frames_per_packet, wav.numel()), timeout) as sock:
        sent["local_port"] = sock.getsockname()[1]
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
                body = pack_wire(seq, codes, bits, last=nxt is None)
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
                send_packet(sock, body)
                sent["packets"] += 1
                sent["bytes"] += len(body)
    return sent
