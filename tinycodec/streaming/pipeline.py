"""A two-thread streaming codec pipeline that yields events as audio becomes available.

::

    source ──► HopBuffer ──► [device thread]  ──codes──► [server thread] ──audio──► consumer
               (hop multiples)  model.encode    queue(N)   model.decode   queue(N)  (generator)

The device thread encodes chunk by chunk (stateful, ``model.streaming(1)``), the server
thread decodes chunk by chunk; both queues are bounded, so a slow consumer blocks the
decoder, which blocks the encoder (backpressure) instead of letting memory grow. Encoder
and decoder hold disjoint streaming states, so they run concurrently on one model and the
output equals the offline ``decode(encode(wav))``. Every blocking call has a timeout and
checks a stop flag: closing the generator early, or an exception in either thread, stops
both threads, and the exception is re-raised in the consumer.

Events (dicts):

- ``{"type": "codes", "codes": LongTensor [1, n_q, F_chunk], "chunk_num": k}``
- ``{"type": "audio_chunk", "data": Tensor [L_chunk], "chunk_num": k, "time": s}``
- ``{"type": "stats", ...}`` every ``stats_every`` chunks and once at the end
- ``{"type": "complete", "time_to_first_audio": s, "total_time": s, "rtf": x, ...}``; also
  ``compute_rtf`` (encode + decode seconds per audio second), ``first_chunk_compute_ms`` (the
  compute part of the time to first audio), ``max_queue_depth``, ``truncated``, and what the
  chunks would cost as packets of the loopback protocol (one chunk = one wire packet of
  ``chunk_frames`` frames, :func:`tinycodec.streaming.protocol.wire_size`): ``wire_bytes``,
  ``wire_kbps``

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from tinycodec.audio.source import hop_chunks
from tinycodec.bitstream import bits_per_code
from tinycodec.streaming.protocol import wire_size

logger = logging.getLogger(__name__)

_END = object()  # sentinel: the stream ended normally
_POLL_S = 0.02  # how often a blocked thread rechecks the stop flag


class StreamTimeout(TimeoutError):
    """No progress in the pipeline for longer than the allowed timeout."""


@dataclass
class _Shared:
    """State the three threads share: the stop flag, the first error and counters."""

    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    error_side: str = ""
    max_depth: dict = field(default_factory=lambda: {"codes": 0, "audio": 0})
    encode_s: float = 0.0
    decode_s: float = 0.0
    input_samples: int = 0
    truncated: bool = False
    blocked_puts: int = 0
    first_ms: dict = field(default_factory=dict)  # compute of chunk 0: {"encode": ms, "decode": ms}

    def fail(self, side: str, exc: BaseException) -> None:
        if self.error is None:
            self.error, self.error_side = exc, side
        self.stop.set()


def _put(q: queue.Queue, item, shared: _Shared, name: str) -> bool:
    """Blocking put that gives up when the pipeline stops; False if it gave up."""
    first = True
    while not shared.stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
        except queue.Full:
            if first:
                shared.blocked_puts += 1  # backpressure: the downstream side is slower
                first = False
            continue
        shared.max_depth[name] = max(shared.max_depth[name], q.qsize())
        return True
    return False


def _get(q: queue.Queue, shared: _Shared):
    """Blocking get that gives up (returns ``_END``) when the pipeline stops."""
    while not shared.stop.is_set():
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    return _END


def _device(model, source, codes_q, shared: _Shared, *, n_q, chunk_frames, max_samples, realtime) -> None:
    """Encoder thread: chunks of whole frames -> codes, paced like a microphone if ``realtime``."""
    try:
        torch.set_grad_enabled(False)  # grad mode is per thread
        sr, t_start, seen = model.sample_rate, time.perf_counter(), 0
        for k, (chunk, valid) in enumerate(hop_chunks(source, model.hop_length, sr, chunk_frames, max_samples)):
            if shared.stop.is_set():
                return
            seen += valid
            if realtime:  # the chunk exists only once its last sample has been "recorded"
                delay = t_start + seen / sr - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            t0 = time.perf_counter()
            codes = model.encode(chunk.view(1, 1, -1), n_q)
            dt = time.perf_counter() - t0
            shared.encode_s += dt
            shared.first_ms.setdefault("encode", 1e3 * dt)
            shared.input_samples = seen
            if not _put(codes_q, (k, codes, valid), shared, "codes"):
                return
        shared.truncated = max_samples is not None and seen >= max_samples
        _put(codes_q, _END, shared, "codes")
    except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
        shared.fail("encoder (device)", exc)


def _server(model, codes_q, audio_q, shared: _Shared) -> None:
    """Decoder thread: codes -> audio, trimmed to the real samples of each chunk."""
    try:
        torch.set_grad_enabled(False)
        while True:
            item = _get(codes_q, shared)
            if item is _END:
                _put(audio_q, _END, shared, "audio")
                return
            k, codes, valid = item
            t0 = time.perf_counter()
            wav = model.decode(codes)[0, 0, :valid]
            dt = time.perf_counter() - t0
            shared.decode_s += dt
            shared.first_ms.setdefault("decode", 1e3 * dt)
            if not _put(audio_q, (k, codes, wav), shared, "audio"):
                return
    except BaseException as exc:  # noqa: BLE001
        shared.fail("decoder (server)", exc)


def stream(model, source, *, n_q: int | None = None, chunk_frames: int = 1, max_duration: float = 60.0,
           queue_size: int = 8, realtime: bool = False, timeout: float = 10.0,
           stats_every: int = 50) -> Iterator[dict]:
    """Stream ``source`` through ``model``: encoder and decoder in two threads, events out.

    Args:
        model: a codec model (``encode``, ``decode``, ``streaming``, ``hop_length``, ``sample_rate``).
            It must not be inside a ``streaming()`` block already.
        source: waveform [T] / [1, T] / [1, 1, T], audio file path, or an iterable of chunks of any
            length (buffered into ``chunk_frames * hop_length`` samples by ``HopBuffer``).
        n_q (int | None): quantizers to use (default all).
        chunk_frames (int): frames per chunk, i.e. per packet on a wire; 1 gives the lowest latency
            (one hop), more frames share one packet's overhead and one call's fixed cost.
        max_duration (float): hard limit in seconds of input audio; the rest is ignored.
        queue_size (int): bound of each queue (chunks); memory is O(queue_size) chunks.
        realtime (bool): pace the input like a microphone (sleep until each chunk "exists").
        timeout (float): seconds without any progress before ``StreamTimeout``.
        stats_every (int): emit a ``stats`` event every this many chunks (and one at the end).

    Yields:
        dict: events, see the module docstring. ``audio_chunk`` data concatenated equals
        ``model.decode(model.encode(wav, n_q), length=T)`` for the (possibly truncated) input; for a
        delayed server decoder (``model.delay > 0``) it is that audio ``model.delay`` samples late
        (the latency a listener hears), ending ``model.delay`` samples before its end.

    Raises:
        Exception: whatever the encoder or decoder thread raised (re-raised here).
        StreamTimeout: no chunk for ``timeout`` seconds.
    """
    if queue_size < 1:
        raise ValueError(f"queue_size must be >= 1, got {queue_size}")
    shared = _Shared()
    codes_q: queue.Queue = queue.Queue(maxsize=queue_size)
    audio_q: queue.Queue = queue.Queue(maxsize=queue_size)
    max_samples = None if max_duration is None else int(max_duration * model.sample_rate)
    threads = [
        threading.Thread(target=_device, name="tinycodec-encoder", daemon=True, args=(model, source, codes_q, shared),
                         kwargs=dict(n_q=n_q, chunk_frames=chunk_frames, max_samples=max_samples, realtime=realtime)),
        threading.Thread(target=_server, name="tinycodec-decoder", daemon=True, args=(model, codes_q, audio_q, shared)),
    ]

    def stats(n_chunks: int, out_samples: int) -> dict:
        return {"type": "stats", "chunks": n_chunks, "audio_seconds": out_samples / model.sample_rate,
                "encode_ms_per_chunk": 1e3 * shared.encode_s / max(n_chunks, 1),
                "decode_ms_per_chunk": 1e3 * shared.decode_s / max(n_chunks, 1),
                "queue_depth": {"codes": codes_q.qsize(), "audio": audio_q.qsize()},
                "max_queue_depth": dict(shared.max_depth), "blocked_puts": shared.blocked_puts}

    with model.streaming(1):
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        try:
            n_chunks = out_samples = wire_bytes = 0
            bits = bits_per_code(model.config.codebook_size)
            ttfa = None
            last_progress = time.perf_counter()
            while True:
                try:
                    item = audio_q.get(timeout=_POLL_S)
                except queue.Empty:
                    if shared.error is not None:
                        break
                    if time.perf_counter() - last_progress > timeout:
                        raise StreamTimeout(f"no audio for {timeout:.1f} s (encoder or source stalled)") from None
                    continue
                if item is _END:
                    break
                now = time.perf_counter()
                k, codes, wav = item
                if ttfa is None:
                    ttfa = now - t0
                wire_bytes += wire_size(codes.shape[-1], codes.shape[1], bits)
                yield {"type": "codes", "codes": codes, "chunk_num": k}
                yield {"type": "audio_chunk", "data": wav, "chunk_num": k, "time": now - t0}
                n_chunks, out_samples = n_chunks + 1, out_samples + wav.numel()
                if stats_every and n_chunks % stats_every == 0:
                    yield stats(n_chunks, out_samples)
                last_progress = time.perf_counter()  # a slow consumer is not a stalled pipeline
            if shared.error is not None:
                shared.error.add_note(f"raised in the streaming {shared.error_side} thread")
                raise shared.error
            total = time.perf_counter() - t0
            audio_s = out_samples / model.sample_rate
            yield stats(n_chunks, out_samples)
            yield {"type": "complete", "time_to_first_audio": ttfa, "total_time": total,
                   "rtf": total / audio_s if audio_s else float("nan"),
                   "compute_rtf": (shared.encode_s + shared.decode_s) / audio_s if audio_s else float("nan"),
                   "audio_seconds": audio_s, "chunks": n_chunks, "truncated": shared.truncated,
                   "max_queue_depth": dict(shared.max_depth), "first_chunk_compute_ms": dict(shared.first_ms),
                   "wire_bytes": wire_bytes, "wire_kbps": 8e-3 * wire_bytes / audio_s if audio_s else float("nan")}
        finally:
            shared.stop.set()  # early close, error or normal end: release both threads
            wait = max(1.0, timeout)
            for t in threads:
                t.join(timeout=wait)
                if t.is_alive():  # stuck inside the source or the model: a daemon, it dies with the process
                    logger.warning("streaming thread %s did not stop within %.1f s", t.name, wait)


def stream_to_tensor(model, source, **kwargs) -> tuple[torch.Tensor, dict]:
    """Run :func:`stream` to the end.

    Returns:
        (Tensor, dict): the decoded audio [T] and the ``complete`` event.
    """
    chunks, done = [], {}
    for event in stream(model, source, **kwargs):
        if event["type"] == "audio_chunk":
            chunks.append(event["data"])
        elif event["type"] == "complete":
            done = event
    return (torch.cat(chunks) if chunks else torch.zeros(0)), done
