"""The server and a client run by one call: ``serve`` (the command line's ``tinycodec serve``) and
``loopback`` (one round trip on 127.0.0.1, for tests and the book).

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import logging
import queue
import time
from pathlib import Path

from tinycodec.streaming.client import send_file
from tinycodec.streaming.net import StreamServer
from tinycodec.streaming.protocol import DEFAULT_PORT, Limits, ProtocolError

__all__ = ["loopback", "serve"]

logger = logging.getLogger(__name__)


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
