"""Loopback TCP demo: devices send bitstream ``Packet``s, one server decodes them all, concealing losses.

::

    client 1 --hello, packets--\\                       /--> Session 1 --\\
    client 2 --hello, packets---> asyncio (one thread) ---> Session 2 ---> ticker --> BatchDecoder
    client N --hello, packets--/   limits, deadlines   \\--> Session N --/   (one decoder call per tick,
                                                                          in one worker thread)

The wire format and the limits are in :mod:`tinycodec.streaming.protocol`. The server serves up to
``Limits.max_clients`` clients at once; each must finish its hello within ``hello_timeout`` and
each later frame within ``frame_timeout`` (whole frames, not single ``recv`` calls), and its whole
stream by a deadline set by its length. Every header field is checked before anything is allocated;
a client that breaks a rule is disconnected with a logged one-line reason and the server goes on.
Decoding is batched: every tick, the frames all clients have sent go through the decoder in one
call (:class:`tinycodec.streaming.batch.BatchDecoder`), with one torch thread (more threads only
oversubscribe a small machine). Only loopback addresses are accepted: this is a demo, not a service.

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import socket
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from tinycodec.audio.source import hop_chunks
from tinycodec.bitstream import Packet, bits_per_code
from tinycodec.streaming.batch import BatchDecoder
from tinycodec.streaming.protocol import (
    DEFAULT_PORT,
    HELLO,
    LENGTH,
    Hello,
    Limits,
    ModelInfo,
    ProtocolError,
    check_hello,
    check_loopback,
    max_body,
    send_frame,
)
from tinycodec.streaming.session import Session

__all__ = ["DEFAULT_PORT", "Limits", "ProtocolError", "StreamServer", "check_loopback", "loopback", "send_file",
           "serve"]

logger = logging.getLogger(__name__)


async def _read_frame(reader: asyncio.StreamReader, limit: int) -> bytes | None:
    """One frame body; None on a clean EOF before its first byte. The length is checked first."""
    try:
        head = await reader.readexactly(LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise ProtocolError(f"connection closed inside a frame header ({len(exc.partial)} of 4 bytes)") from None
    (size,) = LENGTH.unpack(head)
    if size > limit:
        raise ProtocolError(f"frame of {size} bytes exceeds the {limit} byte limit")
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError(f"connection closed mid-frame ({len(exc.partial)} of {size} bytes)") from None


class StreamServer:
    """Decoder server on a loopback address; ``port=0`` picks a free port (see ``.port``).

    The socket is bound at construction; serving starts with ``start()`` (or ``with``) in a
    background thread and runs until ``close()``. Finished streams come out of ``next_result()``.

    Args:
        model: codec model with the clients' encoder (checked by hash); used by this server alone.
        host (str): loopback address.
        port (int): TCP port (0: any free one).
        timeout (float): seconds allowed for each frame (``Limits.frame_timeout``) unless ``limits`` is given.
        decay, max_conceal_frames: concealment, see :class:`tinycodec.streaming.session.Session`.
        limits (Limits | None): connection cap, deadlines and sizes (default ``Limits(frame_timeout=timeout)``).
        torch_threads (int | None): torch threads while serving (restored on close); None leaves them.

    Attributes:
        rejected (deque): the last 256 ``(peer, reason)`` of connections closed before a valid hello;
            ``rejections`` counts them all.
        decoder (BatchDecoder): ``calls`` and ``frames`` count the batched decoding.
    """

    def __init__(self, model, host: str = "127.0.0.1", port: int = DEFAULT_PORT, timeout: float = 10.0,
                 decay: float = 0.5, max_conceal_frames: int = 5, *, limits: Limits | None = None,
                 torch_threads: int | None = 1) -> None:
        self.model, self.decay, self.max_conceal_frames = model.eval(), decay, max_conceal_frames
        self.limits = limits or Limits(frame_timeout=timeout)
        self.info = ModelInfo(model)
        self.decoder = BatchDecoder(model)
        family = socket.AF_INET6 if ":" in check_loopback(host) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.rejected: deque = deque(maxlen=256)
        self.rejections = 0
        self._results: queue.Queue = queue.Queue()
        self._torch_threads, self._old_threads = torch_threads, None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._sessions: set[Session] = set()
        self._active = 0
        self._last_activity = time.monotonic()

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> StreamServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> StreamServer:
        """Serve in a background thread (idempotent)."""
        if self._thread is None:
            if self._torch_threads:
                self._old_threads = torch.get_num_threads()
                torch.set_num_threads(self._torch_threads)
            self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="tinycodec-server",
                                            daemon=True)
            self._thread.start()
            self._ready.wait(5.0)
        return self

    def close(self) -> None:
        """Stop serving, drop open connections, release the port."""
        if self._thread is not None and self._loop is not None and self._stop is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop has already ended
                pass
            self._thread.join(timeout=5.0)
        self.sock.close()
        if self._old_threads is not None:
            torch.set_num_threads(self._old_threads)
            self._old_threads = None

    @property
    def active_connections(self) -> int:
        return self._active

    def next_result(self, idle_timeout: float | None = None) -> dict:
        """The next finished stream (see :meth:`Session.result`), in finishing order.

        Args:
            idle_timeout: give up when no connection has been open or active for this many seconds.

        Raises:
            TimeoutError: nothing finished and the server stayed idle for ``idle_timeout``.
        """
        self.start()
        while True:
            try:
                return self._results.get(timeout=0.05)
            except queue.Empty:
                idle = time.monotonic() - self._last_activity
                if idle_timeout is not None and self._active == 0 and idle > idle_timeout:
                    raise TimeoutError(f"no client streamed within {idle_timeout:g} s") from None

    def handle_one(self) -> dict:
        """Serve until one stream finishes; its result (``next_result`` with the frame timeout as idle limit)."""
        return self.next_result(self.limits.frame_timeout)

    # -- the event loop --------------------------------------------------------------------
    async def _main(self) -> None:
        self._loop, self._stop, self._work = asyncio.get_running_loop(), asyncio.Event(), asyncio.Event()
        # the decoder and its states are used from this one worker thread only
        self._pool = pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tinycodec-decoder")
        server = await asyncio.start_server(self._handle, sock=self.sock)
        ticker = asyncio.create_task(self._ticker(pool))
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            ticker.cancel()
            server.close()
            pool.shutdown(wait=False, cancel_futures=True)

    def _reject(self, peer, reason: str) -> None:
        self.rejected.append((peer, reason))
        self.rejections += 1
        logger.warning("closing %s: %s", peer, reason)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        self._last_activity = time.monotonic()
        if self._active >= self.limits.max_clients:
            self._reject(peer, f"server full ({self.limits.max_clients} connections)")
            writer.transport.abort()
            return
        self._active += 1
        session, reason, cancelled = None, None, False
        try:
            try:
                body = await asyncio.wait_for(_read_frame(reader, HELLO.size), self.limits.hello_timeout)
            except asyncio.TimeoutError:
                raise ProtocolError(f"no complete hello within {self.limits.hello_timeout:g} s") from None
            if body is None:
                raise ProtocolError("closed before the hello")
            hello = Hello.parse(body)
            max_frames = check_hello(hello, self.info, self.limits)
            sid = await asyncio.get_running_loop().run_in_executor(self._pool, self.decoder.open)
            session = Session(hello, max_frames, self.limits, self.info.hop_length, self.info.sample_rate,
                              self.info.codebook_size, sid, self.decay, self.max_conceal_frames, peer,
                              delay=self.info.delay)
            self._sessions.add(session)
            await self._stream(session, reader, max_frames)
        except ProtocolError as exc:
            reason = str(exc)
        except (ConnectionError, OSError) as exc:
            reason = f"connection lost: {exc}"
        except asyncio.CancelledError:  # the server is closing: no result, no decoding
            cancelled = True
            raise
        finally:
            if cancelled:
                self._sessions.discard(session)  # the decoder goes with the server
            elif session is None:
                self._reject(peer, reason or "closed")
            else:
                await self._finish(session, reason)
            if reason:
                writer.transport.abort()
            else:
                writer.close()
            self._active -= 1
            self._last_activity = time.monotonic()

    async def _stream(self, session: Session, reader: asyncio.StreamReader, max_frames: int) -> None:
        loop, lim = asyncio.get_running_loop(), self.limits
        seconds = max_frames * self.info.hop_length / self.info.sample_rate
        deadline = loop.time() + lim.frame_timeout + seconds / lim.min_speed
        limit = max_body(session.hello)
        while True:
            wait = min(lim.frame_timeout, deadline - loop.time())
            if wait <= 0:
                raise ProtocolError(f"stream slower than {lim.min_speed:g}x real time (deadline passed)")
            try:
                body = await asyncio.wait_for(_read_frame(reader, limit), wait)
            except asyncio.TimeoutError:
                raise ProtocolError(f"no complete frame within {wait:.1f} s") from None
            if body is None:  # clean EOF: a lost last packet, or a client that stopped
                return
            self._last_activity = time.monotonic()
            last = session.receive(body)
            self._work.set()
            if last:
                return
            while session.pending_frames > lim.max_pending_frames:  # backpressure: stop reading
                await session.drained()

    async def _finish(self, session: Session, reason: str | None) -> None:
        session.finish(reason)
        self._work.set()
        await session.drained()
        self._sessions.discard(session)
        await asyncio.get_running_loop().run_in_executor(self._pool, self.decoder.close, session.sid)
        result = session.result()
        if reason:
            logger.warning("stream from %s cut after %d packets: %s", session.peer, result["packets"], reason)
        self._results.put(result)

    async def _ticker(self, pool) -> None:
        """Whenever there is work: one batched decoder call for every session's next chunk."""
        loop = asyncio.get_running_loop()
        while True:
            await self._work.wait()
            self._work.clear()
            while True:
                jobs = [(s, job) for s in list(self._sessions)
                        if (job := s.next_job(self.limits.max_tick_frames)) is not None]
                if not jobs:
                    break
                try:
                    outs = await loop.run_in_executor(pool, self.decoder.decode,
                                                      [(s.sid, codes) for s, (codes, _) in jobs])
                except Exception as exc:  # noqa: BLE001 - a decoder failure ends these streams, not the server
                    logger.exception("decoder failed")
                    for s, _ in jobs:
                        s.abandon(f"decoder failed: {exc}")
                    continue
                for (s, (_, gains)), wav in zip(jobs, outs):
                    s.deliver(wav, gains)


def serve(model, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, clients: int = 1,
          output: str | Path | None = None, timeout: float = 60.0, ready=None,
          limits: Limits | None = None) -> list[dict]:
    """Run a decoder server until ``clients`` streams ended cleanly, or none came for ``timeout`` s.

    Args:
        model: codec model (the clients' encoder).
        host, port: loopback address to listen on (``port=0``: any free port).
        clients (int): clean streams to serve before returning (cut streams are logged, not counted).
        output: if given, write each clean stream's audio as WAV (``out.wav``, ``out_1.wav``, ...).
        timeout (float): return early when no client is connected for this many seconds.
        ready: called with the bound port once listening (e.g. to start a client thread).
        limits (Limits | None): per-client limits (default ``Limits()``).

    Returns:
        list[dict]: one :meth:`Session.result` per clean stream (fewer than ``clients`` after a timeout).
    """
    results = []
    with StreamServer(model, host, port, limits=limits) as server:
        if ready is not None:
            ready(server.port)
        while len(results) < clients:
            try:
                result = server.next_result(idle_timeout=timeout)
            except TimeoutError:
                logger.warning("no client within %g s: stopping after %d of %d streams", timeout, len(results),
                               clients)
                break
            if result["error"] is not None:
                continue
            if output is not None:
                from tinycodec.audio import save

                i, path = len(results), Path(output)
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
        timeout (float): socket timeout in seconds.

    Returns:
        dict: ``packets`` sent, ``dropped``, ``corrupted``, ``bytes``, ``samples``, ``frames``, ``local_port``.
    """
    check_loopback(host)
    if model is None:
        raise ValueError("send_file needs a model (the same encoder as the server's)")
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
        sent["local_port"] = sock.getsockname()[1]
        send_frame(sock, Hello.for_model(model, n_q, frames_per_packet, wav.numel()).pack())
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
                send_frame(sock, body)
                sent["packets"] += 1
                sent["bytes"] += len(body) + LENGTH.size
    return sent


def loopback(source, server_model, client_model, *, timeout: float = 10.0, **client_kwargs) -> tuple[dict, dict]:
    """One round trip on 127.0.0.1: a server on a free port, ``send_file`` from this thread.

    Args:
        source: audio file or waveform [T] (see :func:`send_file`).
        server_model, client_model: two instances with the same encoder (each streams on its own).
        timeout (float): seconds allowed for each frame, and for the result after sending.
        **client_kwargs: passed to :func:`send_file` (``loss_rate``, ``frames_per_packet``, ...).

    Returns:
        (dict, dict): the server's result (:meth:`Session.result`) and the client's stats.

    Raises:
        ProtocolError: the server refused the client (e.g. another model); the message says why.
    """
    with StreamServer(server_model, "127.0.0.1", 0, timeout) as server:
        try:
            sent = send_file(source, "127.0.0.1", server.port, client_model, timeout=timeout, **client_kwargs)
        except OSError:  # the server may hang up first when it refuses the client
            sent = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, reason in list(server.rejected):
                raise ProtocolError(reason)
            try:
                result = server._results.get(timeout=0.05)
            except queue.Empty:
                continue
            if result["error"] is not None:
                raise ProtocolError(result["error"])
            return result, sent
    raise TimeoutError(f"the loopback server did not finish within {timeout:g} s")
