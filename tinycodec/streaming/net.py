"""Loopback TCP demo: devices send wire packets, one server decodes them all, concealing losses.

::

    client 1 --hello, packets--\\                       /--> Session 1 --\\
    client 2 --hello, packets---> asyncio (one thread) ---> Session 2 ---> ticker --> BatchDecoder
    client N --hello, packets--/   limits, deadlines   \\--> Session N --/   (one decoder call per tick,
                                                                          in one worker thread)

The wire format and the limits are in :mod:`tinycodec.streaming.protocol`, the device side in
:mod:`tinycodec.streaming.client`, ``serve`` and ``loopback`` (server and client in one call) in
:mod:`tinycodec.streaming.serving`. The server decodes up to ``Limits.max_clients`` streams at once.
A connection must finish its hello within ``hello_timeout``, then each whole packet within
``frame_timeout`` (not single ``recv`` calls), and keep bringing audio at ``min_speed`` or more; one
sweeper task checks every deadline a few times a second, so a packet costs no timer. Idle places
go to working clients: a new connection evicts the oldest one still without a hello when
``max_waiting`` wait, and a new stream evicts the one furthest behind real time when all
``max_clients`` slots are taken; only when none is behind is it refused ("server full"). Every
header field is checked before anything is allocated; a client that breaks a rule, or is evicted,
gets the one-line reason (also logged) and the server goes on.
Decoding is batched: every tick, the frames all clients have sent go through the decoder in one
call (:class:`tinycodec.streaming.batch.BatchDecoder`), with one torch thread (more threads only
oversubscribe a small machine). Only loopback addresses are accepted: this is a demo, not a service.

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import queue
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass

import torch

from tinycodec.streaming.batch import BatchDecoder
from tinycodec.streaming.client import send_file
from tinycodec.streaming.protocol import (
    DEFAULT_PORT,
    HELLO,
    HELLO_VERSION,
    LENGTH,
    WIRE_HEAD,
    Hello,
    Limits,
    ModelInfo,
    ProtocolError,
    StreamRefused,
    check_hello,
    check_loopback,
    max_body,
    reply,
    wire_size,
)
from tinycodec.streaming.session import Session

__all__ = ["DEFAULT_PORT", "Limits", "ProtocolError", "StreamRefused", "StreamServer", "check_loopback", "send_file"]

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


@dataclass(eq=False)
class _Conn:
    """One connection's place on the server: its deadline and, once a stream, how far it got.

    Times are the event loop's clock (seconds).
    """

    peer: object
    task: asyncio.Task
    opened: float
    deadline: float  # the hello, then each whole packet, must be complete by then
    session: Session | None = None
    base: float = 0.0  # the stream's clock: its hello, moved on by the time the server made it wait
    frame_s: float = 0.0
    packet_s: float = 0.0
    paused: float | None = None  # since when the server stopped reading it (backpressure)
    cut: str | None = None  # why the server ended it (a deadline, eviction)

    def behind(self, now: float) -> float:
        """Seconds the stream's received audio lags real time since its hello (the server's waits excluded)."""
        return (now if self.paused is None else self.paused) - self.base - self.session.frames_received * self.frame_s


class StreamServer:
    """Decoder server on a loopback address; ``port=0`` picks a free port (see ``.port``).

    The socket is bound at construction; serving starts with ``start()`` (or ``with``) in a
    background thread and runs until ``close()``. Finished streams come out of ``next_result()``.

    Args:
        model: codec model with the clients' encoder (checked by hash); used by this server alone.
        host (str): loopback address.
        port (int): TCP port (0: any free one).
        timeout (float): seconds allowed for each packet (``Limits.frame_timeout``) unless ``limits`` is given.
        decay, max_conceal_frames: concealment, see :class:`tinycodec.streaming.session.Session`.
        limits (Limits | None): slots, deadlines and sizes (default ``Limits(frame_timeout=timeout)``).
        torch_threads (int | None): torch threads while serving (restored on close); None leaves them.
        tick (float | None): least seconds between the starts of two decoder calls (default one
            hop): frames that arrive meanwhile join the next call, so a lightly loaded server pays a
            call's fixed cost once per hop, not once per packet; a server whose calls take longer
            than a tick is never slowed by it. (A tick of one packet period, 4 hops, was measured
            to add more latency than it saved CPU: ``benchmarks/bench_server.py``.)

    Attributes:
        rejected (deque): the last 256 ``(peer, reason)`` of connections closed before a valid hello
            (refused, evicted while waiting, or broken); ``rejections`` counts them all.
        evictions (int): connections and streams evicted to make room for a new one.
        decoder (BatchDecoder): ``calls`` and ``frames`` count the batched decoding.
    """

    def __init__(self, model, host: str = "127.0.0.1", port: int = DEFAULT_PORT, timeout: float = 10.0,
                 decay: float = 0.5, max_conceal_frames: int = 5, *, limits: Limits | None = None,
                 torch_threads: int | None = 1, tick: float | None = None) -> None:
        self.model, self.decay, self.max_conceal_frames = model.eval(), decay, max_conceal_frames
        self.limits = limits or Limits(frame_timeout=timeout)
        self.info = ModelInfo(model)
        self.tick = self.info.hop_length / self.info.sample_rate if tick is None else tick
        self.decoder = BatchDecoder(model)
        family = socket.AF_INET6 if ":" in check_loopback(host) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.rejected: deque = deque(maxlen=256)
        self.rejections = self.evictions = 0
        self._results: queue.Queue = queue.Queue()
        self._torch_threads, self._old_threads = torch_threads, None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._sessions: set[Session] = set()
        self._waiting: set[_Conn] = set()  # connections without a hello yet
        self._streams: set[_Conn] = set()  # connections holding a stream slot
        self._opening = 0  # slots reserved while a stream's decoder state is being made
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

    @property
    def streams(self) -> int:
        """Streams holding a slot now."""
        return len(self._streams)

    @property
    def waiting(self) -> int:
        """Connections waiting for their hello now."""
        return len(self._waiting)

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
        tasks = [asyncio.create_task(self._ticker(pool)), asyncio.create_task(self._sweeper())]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            server.close()
            pool.shutdown(wait=False, cancel_futures=True)

    def _reject(self, peer, reason: str) -> None:
        self.rejected.append((peer, reason))
        self.rejections += 1
        logger.warning("closing %s: %s", peer, reason)

    def _cut(self, conn: _Conn, reason: str) -> None:
        """End ``conn`` now with ``reason`` (its handler reports it, the client receives it)."""
        if conn.cut is None:
            conn.cut = reason
            self._waiting.discard(conn)
            self._streams.discard(conn)
            conn.task.cancel()

    async def _sweeper(self) -> None:
        """Every deadline of every connection, checked a few times a second (no timer per packet)."""
        lim, loop = self.limits, asyncio.get_running_loop()
        period = min(0.1, lim.hello_timeout / 10, lim.frame_timeout / 10)
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for c in [c for c in self._waiting if now > c.deadline]:
                self._cut(c, f"no complete hello within {lim.hello_timeout:g} s")
            for c in list(self._streams):
                if c.paused is not None:  # the server is not reading it: no deadline runs
                    continue
                if now > c.deadline:
                    self._cut(c, f"no complete frame within {lim.frame_timeout:g} s")
                elif now > c.base + lim.frame_timeout + c.session.frames_received * c.frame_s / lim.min_speed:
                    self._cut(c, f"stream slower than {lim.min_speed:g}x real time: "
                                 f"{c.session.frames_received * c.frame_s:.2f} s of audio in {now - c.base:.1f} s")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lim, loop = self.limits, asyncio.get_running_loop()
        now = loop.time()
        conn = _Conn(writer.get_extra_info("peername"), asyncio.current_task(), now, now + lim.hello_timeout)
        self._last_activity = time.monotonic()
        self._active += 1
        if len(self._waiting) >= lim.max_waiting:  # the oldest waiting connection makes room
            self.evictions += 1
            self._cut(min(self._waiting, key=lambda c: c.opened),
                      f"evicted: no hello yet while {lim.max_waiting} connections were waiting for one")
        self._waiting.add(conn)
        session, reason, cancelled = None, None, False
        try:
            try:
                session = await self._open(conn, reader, writer)
                await self._stream(conn, session, reader)
            except asyncio.CancelledError:
                if conn.cut is None:  # the server is closing: no result, no decoding
                    cancelled = True
                    raise
                asyncio.current_task().uncancel()
                reason = conn.cut
        except ProtocolError as exc:
            reason = str(exc)
        except (ConnectionError, OSError) as exc:
            reason = f"connection lost: {exc}"
        finally:
            self._waiting.discard(conn)
            self._streams.discard(conn)
            if cancelled:
                self._sessions.discard(session)  # the decoder goes with the server
            elif session is None:
                self._reject(conn.peer, reason or "closed")
            else:
                await self._finish(session, reason)
            if reason and not cancelled:  # the client learns why, then the connection closes
                writer.write(reply(reason))
                loop.call_later(1.0, writer.transport.abort)  # a client that never reads cannot hold it
            writer.close()
            self._active -= 1
            self._last_activity = time.monotonic()

    async def _open(self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Session:
        """Read and check the hello, find a slot (evicting a stream behind real time), reply ``OK``."""
        lim, loop = self.limits, asyncio.get_running_loop()
        body = await _read_frame(reader, HELLO.size)
        if body is None:
            raise ProtocolError("closed before the hello")
        hello = Hello.parse(body)
        max_frames = check_hello(hello, self.info, lim)
        self._waiting.discard(conn)
        if len(self._streams) + self._opening >= lim.max_clients:
            now = loop.time()
            victim = max(self._streams, key=lambda c: c.behind(now), default=None)
            if victim is None or victim.behind(now) <= lim.evict_lag + victim.packet_s:
                raise ProtocolError(f"server full ({lim.max_clients} stream slots taken, none behind real time)")
            self.evictions += 1
            self._cut(victim, f"evicted: {victim.behind(now):.1f} s behind real time while the server was full")
        self._opening += 1
        try:
            sid = await loop.run_in_executor(self._pool, self.decoder.open)
        finally:
            self._opening -= 1
        session = Session(hello, max_frames, lim, self.info.hop_length, self.info.sample_rate,
                          self.info.codebook_size, sid, self.decay, self.max_conceal_frames, conn.peer,
                          delay=self.info.delay)
        self._sessions.add(session)
        conn.session, conn.frame_s = session, self.info.hop_length / self.info.sample_rate
        conn.packet_s = hello.frames_per_packet * conn.frame_s
        conn.base = loop.time()
        conn.deadline = conn.base + lim.frame_timeout
        self._streams.add(conn)
        writer.write(reply())
        return session

    async def _stream(self, conn: _Conn, session: Session, reader: asyncio.StreamReader) -> None:
        """Packets in until the last one or a clean EOF; deadlines are the sweeper's."""
        lim, loop, hello = self.limits, asyncio.get_running_loop(), session.hello
        wire = hello.version >= HELLO_VERSION
        limit = max_body(hello)
        rest = [0] + [wire_size(f, hello.n_q, hello.bits) - WIRE_HEAD.size for f in range(1, hello.frames_per_packet + 1)]
        while True:
            if wire:
                try:
                    head = await reader.readexactly(WIRE_HEAD.size)
                except asyncio.IncompleteReadError as exc:
                    if not exc.partial:
                        return  # clean EOF: a lost last packet, or a client that stopped
                    raise ProtocolError("connection closed inside a packet header") from None
                frames = (head[2] & 0x7F) + 1
                if frames > hello.frames_per_packet:
                    raise ProtocolError(f"packet of {frames} frames; the hello said <= {hello.frames_per_packet}")
                try:
                    body = await reader.readexactly(rest[frames])
                except asyncio.IncompleteReadError as exc:
                    raise ProtocolError(f"connection closed mid-frame ({len(exc.partial)} of {rest[frames]} "
                                        f"bytes)") from None
                last = session.receive_wire(head, body)
            else:
                body = await _read_frame(reader, limit)
                if body is None:
                    return
                last = session.receive(body)
            conn.deadline = loop.time() + lim.frame_timeout
            self._work.set()
            if last:
                return
            if session.pending_frames > lim.max_pending_frames:  # backpressure: stop reading
                conn.paused = loop.time()
                while session.pending_frames > lim.max_pending_frames:
                    await session.drained()
                now = loop.time()
                conn.base += now - conn.paused  # the server's wait is not the client's slowness
                conn.paused, conn.deadline = None, now + lim.frame_timeout
                self._last_activity = time.monotonic()

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
        loop, last = asyncio.get_running_loop(), -math.inf
        while True:
            await self._work.wait()
            self._work.clear()
            self._last_activity = time.monotonic()
            while True:
                if (wait := last + self.tick - loop.time()) > 0:
                    await asyncio.sleep(wait)  # let more frames join this call
                last = loop.time()
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
