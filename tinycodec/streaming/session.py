"""One client's stream on the server: packets in, a queue of decoding work, audio out.

``receive`` turns each packet into work: the good frames' codes, and for a sequence gap the
concealment (repeat the last good codes with a gain decaying ``decay`` per frame, silence after
``max_conceal_frames``), so a lost packet costs a glitch and the output keeps its length. The
server's decoder takes work with ``next_job`` (a chunk of codes, batched with other clients) and
hands the audio back with ``deliver``; silence needs no decoder and is appended directly. Every
amount is bounded before it is queued: a gap by ``max_gap_frames``, the stream by the frames its
hello allows.

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque

import numpy as np
import torch

from tinycodec.bitstream import BitstreamError, Packet
from tinycodec.streaming.protocol import Hello, Limits, ProtocolError, check_packet, unpack_wire, wire_head

logger = logging.getLogger(__name__)


class Session:
    """The server side of one stream.

    Args:
        hello: the validated hello.
        max_frames (int): most frames the stream may bring (from ``check_hello``).
        limits: the server's limits.
        hop_length, sample_rate, codebook_size: the model's.
        sid (int): the stream's id in the server's ``BatchDecoder`` (``open()``).
        decay (float): gain factor per concealed frame (0.5: -6 dB per frame).
        max_conceal_frames (int): concealed frames decoded before silence.
        peer: the client's address, for the logs.
        delay (int): samples the decoder's output lags its codes (a delayed server decoder); the
            result drops them, so the received audio lines up with what was sent.
    """

    def __init__(self, hello: Hello, max_frames: int, limits: Limits, hop_length: int, sample_rate: int,
                 codebook_size: int, sid: int, decay: float = 0.5, max_conceal_frames: int = 5, peer=None,
                 delay: int = 0) -> None:
        self.hello, self.max_frames, self.limits = hello, max_frames, limits
        self.hop, self.sample_rate, self.codebook_size = hop_length, sample_rate, codebook_size
        self.sid, self.decay, self.max_conceal = sid, decay, max_conceal_frames
        self.peer, self.delay = peer, delay
        self.pending: deque = deque()  # ("codes", ndarray [n_q, f], gains ndarray [f] | None) | ("zeros", f)
        self.pending_frames = 0
        self.out: list[torch.Tensor] = []
        self.frames_planned = 0  # frames received or concealed so far
        self.frames_received = 0  # frames that arrived in packets (the client's useful rate)
        self.frames_out = 0  # frames whose audio is out
        self.latency_sum, self.latency_max = 0.0, None  # seconds, over frames out (see ``result``)
        self.expected = 0  # next sequence number
        self.last: np.ndarray | None = None  # [n_q, 1] codes of the last good frame
        self.run = 0  # consecutive concealed frames
        self.seen_last = False
        self.error: str | None = None
        self.stats = dict(packets=0, lost_packets=0, crc_errors=0, late=0)
        self.concealed, self.spans = 0, []
        self.t0, self.ttfa = time.perf_counter(), None
        self._drained = asyncio.Event()
        self._drained.set()

    # -- input ---------------------------------------------------------------------------
    def receive(self, body: bytes) -> bool:
        """Queue the work of one framed ``Packet`` (hello versions 1-2); True when it was the last.

        Raises:
            ProtocolError: a packet that contradicts the hello, a code out of range, a gap longer
                than ``max_gap_frames``, or more frames than the stream may bring.
        """
        try:
            packet = Packet.from_bytes(body)
        except BitstreamError as exc:  # damaged: drop it, the next sequence number shows the gap
            self.stats["crc_errors"] += 1
            logger.debug("%s: dropping damaged packet: %s", self.peer, exc)
            return False
        if packet.seq < self.expected:  # arrived after its frames were concealed
            self.stats["late"] += 1
            return False
        check_packet(packet, self.hello, self.codebook_size)
        return self._accept(packet.seq - self.expected, packet.codes, packet.last)

    def receive_wire(self, head: bytes, rest: bytes) -> bool:
        """Queue the work of one wire packet (hello version 3): its 3 header bytes and the rest.

        The 16-bit sequence number is read relative to the next expected one: up to 2**15 ahead
        is a gap (bounded by ``max_gap_frames``), anything else is a late packet.
        """
        seq16, frames, last = wire_head(head)
        if frames > self.hello.frames_per_packet:
            raise ProtocolError(f"packet of {frames} frames; the hello said <= {self.hello.frames_per_packet}")
        try:
            codes = unpack_wire(head, rest, self.hello.n_q, self.hello.bits)
        except BitstreamError as exc:
            self.stats["crc_errors"] += 1
            logger.debug("%s: dropping damaged packet: %s", self.peer, exc)
            return False
        ahead = (seq16 - self.expected) & 0xFFFF
        if ahead >= 0x8000:
            self.stats["late"] += 1
            return False
        if int(codes.max()) >= self.codebook_size:
            raise ProtocolError(f"packet {self.expected + ahead} has code {int(codes.max())}, "
                                f"out of range for codebook_size {self.codebook_size}")
        return self._accept(ahead, codes, last)

    def _accept(self, lost: int, codes: np.ndarray, last: bool) -> bool:
        """Queue a checked packet ``lost`` packets after the expected one (conceal the gap first)."""
        gap = lost * self.hello.frames_per_packet
        if gap > self.limits.max_gap_frames:
            raise ProtocolError(f"sequence jumps from {self.expected} to {self.expected + lost}: a gap of {gap} "
                                f"frames (limit {self.limits.max_gap_frames})")
        frames = codes.shape[1]
        if self.frames_planned + gap + frames > self.max_frames:
            raise ProtocolError(f"stream brings more than the {self.max_frames} frames its hello allows")
        if gap:
            self.stats["lost_packets"] += lost
            self.conceal(gap)
        self.last, self.run = codes[:, -1:], 0
        self._push(("codes", codes, None), frames)
        self.frames_received += frames
        self.stats["packets"] += 1
        self.expected += lost + 1
        self.seen_last = last
        return last

    def conceal(self, frames: int) -> None:
        """Queue ``frames`` concealed frames: decaying repeats of the last good codes, then silence."""
        self.spans.append((self.frames_planned, frames))
        self.concealed += frames
        k = 0 if self.last is None else min(frames, max(0, self.max_conceal - self.run))
        if k:
            gains = self.decay ** np.arange(self.run + 1, self.run + k + 1, dtype=np.float64)
            self._push(("codes", np.repeat(self.last, k, axis=1), gains.astype(np.float32)), k)
        if frames - k:
            self._push(("zeros", frames - k), frames - k)
        self.run += frames

    def finish(self, error: str | None) -> None:
        """End of input: conceal a lost tail (when the stream ended cleanly or the tail is short)."""
        self.error = error
        if self.hello.total:
            missing = self.max_frames - self.frames_planned
            if missing > 0 and (error is None and self.seen_last or missing <= self.limits.max_gap_frames):
                self.stats["lost_packets"] += math.ceil(missing / self.hello.frames_per_packet)
                self.conceal(missing)

    def _push(self, item, frames: int) -> None:
        self.pending.append(item)
        self.pending_frames += frames
        self.frames_planned += frames
        self._drained.clear()

    # -- decoding ------------------------------------------------------------------------
    def next_job(self, max_frames: int) -> tuple[torch.Tensor, np.ndarray | None] | None:
        """The next chunk to decode: (codes LongTensor [n_q, f], gains [f] or None).

        Consecutive queued packets are merged (a stream that fell behind catches up in fewer,
        larger calls), and ``f`` is the largest power of two <= ``max_frames`` that the queue
        holds, so streams at different backlogs fall into few shapes, each one batched decoder call.
        Silence at the head of the queue is appended to the output here (no decoder needed).
        """
        while self.pending and self.pending[0][0] == "zeros":
            n = self.pending.popleft()[1]
            self.out.append(torch.zeros(n * self.hop))
            self.pending_frames -= n
            self._out(n)
        if not self.pending:
            self._drained.set()
            return None
        avail = 0
        for item in self.pending:
            if item[0] != "codes" or avail >= max_frames:
                break
            avail += item[1].shape[1]
        f = 1 << (min(avail, max_frames).bit_length() - 1)
        parts, gains = [], []
        while f:
            _, codes, g = self.pending[0]
            take = min(f, codes.shape[1])
            if take < codes.shape[1]:  # split: the rest stays at the head
                self.pending[0] = ("codes", codes[:, take:], None if g is None else g[take:])
                codes, g = codes[:, :take], None if g is None else g[:take]
            else:
                self.pending.popleft()
            parts.append(codes)
            gains.append(g)
            f -= take
        codes = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        if all(g is None for g in gains):
            gain = None
        else:
            gain = np.concatenate([np.ones(c.shape[1], np.float32) if g is None else g for c, g in zip(parts, gains)])
        return torch.from_numpy(np.ascontiguousarray(codes)), gain

    def deliver(self, wav: torch.Tensor, gains: np.ndarray | None) -> None:
        """Audio [f * hop] of the chunk ``next_job`` handed out."""
        if gains is not None:
            wav = wav * torch.from_numpy(gains).repeat_interleave(self.hop)
        self.out.append(wav)
        self.pending_frames -= wav.numel() // self.hop
        self._out(wav.numel() // self.hop)
        if self.ttfa is None:
            self.ttfa = time.perf_counter() - self.t0
        if not self.pending:
            self._drained.set()

    def _out(self, n: int) -> None:
        """Account ``n`` frames out: frame k of a real-time client exists ``(k + 1) * hop`` after its
        hello, its audio leaves the decoder ``delay`` samples later, and it is out now."""
        frame_s = self.hop / self.sample_rate
        first = time.perf_counter() - self.t0 + self.delay / self.sample_rate - (self.frames_out + 1) * frame_s
        self.latency_max = first if self.latency_max is None else max(self.latency_max, first)
        self.latency_sum += n * first - frame_s * n * (n - 1) / 2  # frames k..k+n-1 are 0..n-1 hops younger
        self.frames_out += n

    def abandon(self, reason: str) -> None:
        """Drop the queued work (the decoder failed): the stream ends with ``reason``."""
        self.pending.clear()
        self.pending_frames = 0
        self.error = self.error or reason
        self._drained.set()

    async def drained(self) -> None:
        """Wait until every queued frame has been decoded."""
        while self.pending:
            self._drained.clear()
            await self._drained.wait()

    # -- output --------------------------------------------------------------------------
    def result(self) -> dict:
        """``wav`` (Tensor [T]), ``sample_rate``, ``packets``, ``lost_packets``, ``crc_errors``, ``late``,
        ``concealed_frames``, ``concealed_spans`` ((first frame, frames) each), ``time_to_first_audio``,
        ``total_time``, ``error`` (None, or why the stream was cut), ``peer``, ``frames_per_packet``,
        ``started`` (``time.perf_counter()`` at the hello), and
        ``latency_mean`` / ``latency_max``: seconds from a frame's last sample to its audio out, for a
        client that records in real time from its hello on (waiting for the packet to fill, encoding,
        transport, queueing, decoding and the decoder's delay)."""
        wav = torch.cat(self.out) if self.out else torch.zeros(0)
        if self.delay:  # aligned with the input; its last ``delay`` samples never left the decoder
            wav = torch.cat([wav[self.delay:], wav.new_zeros(min(self.delay, wav.numel()))])
        if self.hello.total:
            wav = wav[: self.hello.total]
        return dict(wav=wav, sample_rate=self.sample_rate, concealed_frames=self.concealed,
                    concealed_spans=list(self.spans), time_to_first_audio=self.ttfa,
                    total_time=time.perf_counter() - self.t0, error=self.error, peer=self.peer,
                    frames_per_packet=self.hello.frames_per_packet, started=self.t0,
                    latency_mean=self.latency_sum / self.frames_out if self.frames_out else None,
                    latency_max=self.latency_max, **self.stats)
