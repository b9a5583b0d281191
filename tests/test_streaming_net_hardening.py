"""The streaming server under abuse (loopback only): hostile clients are cut with a reason, a legitimate
stream goes on, and concurrent streams are decoded together, equal to decoding each alone."""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time

import numpy as np
import pytest
import torch

from tinycodec.bitstream import Packet
from tinycodec.pretrained import load_model
from tinycodec.streaming import StreamServer, send_file
from tinycodec.streaming.batch import BatchDecoder
from tinycodec.streaming.protocol import (
    HELLO,
    LENGTH,
    Hello,
    Limits,
    StreamRefused,
    pack_wire,
    read_reply,
    send_frame,
)

LIMITS = Limits(max_clients=16, hello_timeout=1.0, frame_timeout=1.0, max_gap_frames=50)


@pytest.fixture(scope="module")
def models():
    return load_model("tiny_mirror"), load_model("tiny_mirror")  # undelayed: streams equal offline decodes


def _hello(model, version: int = 2, **changes) -> bytes:
    """A hello; version 2 (framed ``Packet``s follow) unless asked: the abusers below cover both formats."""
    h = Hello.for_model(model, model.num_quantizers, 1, 16000, version=version)
    return Hello(**{**h.__dict__, **changes}).pack()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=3.0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _abusers(port: int, model) -> dict:
    """Each abuse as a function of a fresh socket; returns the substring its rejection must contain."""
    good = Packet(0, np.zeros((model.num_quantizers, 1), np.int64), 9).to_bytes()

    def garbage(s):
        s.sendall(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())

    def fake_hello(s):
        send_frame(s, np.random.default_rng(1).integers(0, 256, HELLO.size, dtype=np.uint8).tobytes())

    def huge_length(s):
        s.sendall(LENGTH.pack(0xFFFFFFFF))

    def huge_total(s):
        send_frame(s, _hello(model, total=2**32 - 1))

    def bad_n_q(s):
        send_frame(s, _hello(model, n_q=200))

    def wrong_hash(s):
        send_frame(s, _hello(model, model_hash=bytes(8)))

    def half_packet(s):
        send_frame(s, _hello(model))
        s.sendall(LENGTH.pack(len(good)) + good[: len(good) // 2])
        s.shutdown(socket.SHUT_WR)  # then disconnect

    def out_of_range_code(s):
        send_frame(s, _hello(model))
        send_frame(s, Packet(0, np.full((model.num_quantizers, 1), 1000), 10).to_bytes())

    def sequence_jump(s):
        send_frame(s, _hello(model))
        send_frame(s, Packet(2**31, np.zeros((model.num_quantizers, 1), np.int64), 9).to_bytes())

    def slow_hello(s):  # 1 byte every 0.3 s: each recv is quick, the whole hello is not
        for b in LENGTH.pack(HELLO.size) + _hello(model):
            s.sendall(bytes([b]))
            time.sleep(0.3)

    def slow_frame(s):
        send_frame(s, _hello(model))
        for b in LENGTH.pack(len(good)) + good:
            s.sendall(bytes([b]))
            time.sleep(0.3)

    def wire_too_many_frames(s):  # a wire packet longer than its hello announced
        send_frame(s, _hello(model, version=3))
        s.sendall(pack_wire(0, np.zeros((model.num_quantizers, 3), np.int64), 9))

    def wire_sequence_jump(s):
        send_frame(s, _hello(model, version=3))
        s.sendall(pack_wire(1000, np.zeros((model.num_quantizers, 1), np.int64), 9))

    return {garbage: "byte limit", fake_hello: "not a hello", huge_length: "4294967295 bytes exceeds", huge_total: "declares", bad_n_q: "n_q=200",
            wrong_hash: "does not match", half_packet: "mid-frame", out_of_range_code: "bits=10",
            sequence_jump: "gap", slow_hello: "no complete hello", slow_frame: "no complete frame",
            wire_too_many_frames: "packet of 3 frames", wire_sequence_jump: "a gap of 1000 frames"}


def _run(abuse, port):
    try:
        with _connect(port) as s:
            abuse(s)
            s.settimeout(3.0)
            s.recv(1)  # until the server closes
    except OSError:
        pass  # reset by the server: expected


def test_a_legitimate_stream_survives_hostile_clients(models, caplog):
    device, server_model = models
    wav = 0.1 * torch.randn(24000, generator=torch.Generator().manual_seed(0))  # 1.5 s
    caplog.set_level(logging.WARNING, logger="tinycodec.streaming")
    with StreamServer(server_model, "127.0.0.1", 0, limits=LIMITS) as server:
        box = {}
        legit = threading.Thread(target=lambda: box.update(sent=send_file(
            wav, "127.0.0.1", server.port, device, realtime=True, timeout=5.0)), daemon=True)
        legit.start()
        deadline = time.monotonic() + 10.0
        while server.active_connections < 1 and time.monotonic() < deadline:  # the legitimate client is first
            time.sleep(0.01)
        assert server.active_connections == 1
        storms = 0
        for _ in range(300):  # rapid connect / close storm
            try:
                _connect(server.port).close()
                storms += 1
            except OSError:
                pass
        deadline = time.monotonic() + 10.0
        while (server.rejections < storms or server.active_connections > 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        storm = list(server.rejected)  # the last 256
        assert storms >= 250 and server.rejections == storms  # each one closed with a reason, none left open
        assert all(r == "closed before the hello" or r.startswith("evicted: no hello yet") for _, r in storm)
        server.rejected.clear()  # it keeps the last 256 reasons only
        abusers = _abusers(server.port, device)
        threads = [threading.Thread(target=_run, args=(a, server.port), daemon=True) for a in abusers]
        for t in threads:
            t.start()
        legit.join(timeout=10.0)
        for t in threads:
            t.join(timeout=10.0)
        assert not legit.is_alive() and not any(t.is_alive() for t in threads)
        results = []
        while not any(r["peer"][1] == box["sent"]["local_port"] for r in results):
            results.append(server.next_result(idle_timeout=5.0))
        mine = next(r for r in results if r["peer"][1] == box["sent"]["local_port"])
        # and the server still serves a new client after all that
        sent2 = send_file(wav[:3200], "127.0.0.1", server.port, device, timeout=5.0)
        again = server.next_result(idle_timeout=5.0)
        while again["peer"][1] != sent2["local_port"]:
            results.append(again)
            again = server.next_result(idle_timeout=5.0)
        while True:  # the streams the abusers opened with a valid hello, cut with a reason
            try:
                results.append(server.next_result(idle_timeout=0.5))
            except TimeoutError:
                break
        reasons = [r for _, r in server.rejected] + [r["error"] for r in results if r["error"]]
    with torch.no_grad():
        ref = device.decode(device.encode(wav.view(1, 1, -1)), length=wav.numel())[0, 0]
    assert mine["error"] is None and mine["lost_packets"] == 0
    assert (mine["wav"] - ref).abs().max().item() <= 1e-5
    assert again["error"] is None and again["wav"].numel() == 3200
    for abuse, expected in abusers.items():
        assert any(expected in r for r in reasons), (abuse.__name__, expected, reasons)
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in caplog.records)  # one line, no traceback


def test_a_waiting_connection_is_evicted_then_the_hello_deadline_closes_the_next(models):
    """Two connections without a hello, one waiting place: the newer evicts the older, the hello
    deadline closes the newer; each is told why in one ``NO`` reply, then the connection closes."""
    device, server_model = models
    lim = Limits(max_clients=1, max_waiting=1, hello_timeout=1.0, frame_timeout=1.0)
    with StreamServer(server_model, "127.0.0.1", 0, limits=lim) as server:
        with _connect(server.port) as first:
            deadline = time.monotonic() + 5.0
            while server.waiting < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            with _connect(server.port) as second:
                with pytest.raises(StreamRefused, match="evicted: no hello yet"):
                    read_reply(first)
                assert first.recv(1) == b""  # then closed
                with pytest.raises(StreamRefused, match="no complete hello within 1 s"):
                    read_reply(second)
                assert second.recv(1) == b""
    assert server.evictions == 1 and server.rejections == 2 and server.streams == 0


@pytest.mark.parametrize("name", ["tiny", "tiny_mirror", "transformer_tiny"])
def test_batched_decoding_equals_each_stream_alone(name):
    model = load_model(name)
    batch = BatchDecoder(model)
    k, n_q, hop = model.config.codebook_size, model.num_quantizers, model.hop_length
    g = torch.Generator().manual_seed(1)
    codes = [torch.randint(0, k, (n_q, 40), generator=g) for _ in range(3)]
    with torch.no_grad():
        refs = [model.decode(c[None])[0, 0] for c in codes]
    # stream 0 starts at once, 1 after 5 ticks, 2 after 12; chunks of 1..3 frames; stream 1 pauses at
    # ticks 20-22 (a late packet): its row is gathered out of the cohort and written back
    sids, outs, pos, start = [None] * 3, [[], [], []], [0, 0, 0], [0, 5, 12]
    tick, calls = 0, 0
    while any(p < 40 for p in pos):
        jobs, who = [], []
        for i in range(3):
            if tick >= start[i] and pos[i] < 40 and not (i == 1 and 20 <= tick < 23):
                sids[i] = batch.open() if sids[i] is None else sids[i]
                f = min(1 + tick % 3, 40 - pos[i])
                jobs.append((sids[i], codes[i][:, pos[i]:pos[i] + f]))
                who.append(i)
        if jobs:
            calls += 1
            for i, wav in zip(who, batch.decode(jobs)):
                outs[i].append(wav)
                pos[i] += wav.numel() // hop
        tick += 1
    d = model.delay  # a delayed server decoder (plain tiny) streams the offline audio d samples late
    for out, ref in zip(outs, refs):
        out = torch.cat(out)
        assert out.shape == ref.shape
        assert (out[d:] - ref[: ref.numel() - d]).abs().max().item() <= 1e-5
    if name.startswith("tiny"):  # conv states always stack: one call per tick, two where a stream's last chunk is shorter
        assert calls <= batch.calls <= calls + 2
    for sid in sids:
        batch.close(sid)
    assert batch.streams == 0 and not model.decoder.is_streaming  # the model is left offline


def test_hello_struct_is_the_documented_25_bytes():
    assert HELLO.size == struct.calcsize("<2sBIHBBHI8s") == 25 and LENGTH.size == 4
