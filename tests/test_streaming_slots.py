"""Server slots under attack (loopback only): idle or slow connections never keep a legitimate client
out, and a refused client gets the server's reason in one line (API and command line).

The attacks of the hardening review, with their times scaled down through the server's limits:
200 idle connections that reconnect as soon as they are dropped (by the hello deadline, 5 s -> 0.5 s),
and 16 connections that send one valid packet per 0.8 s (for 8 s) and hold all 16 stream slots, each
against a legitimate real-time stream started while the attack runs. Assertions are on counts and
events, not on wall-clock times.
"""

from __future__ import annotations

import select
import socket
import threading
import time

import numpy as np
import pytest
import torch

from tinycodec.pretrained import load_model
from tinycodec.streaming import StreamServer, send_file
from tinycodec.streaming.protocol import REPLY_NO, Hello, Limits, StreamRefused, pack_wire, send_frame

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
DEMO_CLIP = ROOT / "data" / "demo" / "speech" / "onsen_thank_you.wav"


@pytest.fixture(scope="module")
def models():
    return load_model("tiny_mirror"), load_model("tiny_mirror")  # undelayed: streams equal offline decodes


class Attack(threading.Thread):
    """``n`` attacker connections in one thread; each reconnects as soon as the server drops it.

    Without ``hello`` the connections stay idle; with it they open a valid stream and send one
    valid packet (``packet(seq)``) every ``every`` seconds.
    """

    def __init__(self, port: int, n: int, hello: bytes | None = None, packet=None, every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.port, self.n, self.hello, self.packet, self.every = port, n, hello, packet, every
        self.stop = threading.Event()
        self.dropped = self.packets = 0

    def _connect(self, socks: dict) -> None:
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2.0)
            if self.hello is not None:
                send_frame(s, self.hello)
            s.setblocking(False)
        except OSError:
            return
        socks[s] = [time.monotonic() + self.every, 0]  # next send, next sequence number

    def _drop(self, socks: dict, s: socket.socket) -> None:
        socks.pop(s, None)
        s.close()
        self.dropped += 1

    def run(self) -> None:
        socks: dict = {}
        while not self.stop.is_set():
            while len(socks) < self.n and not self.stop.is_set():
                self._connect(socks)
            readable, _, _ = select.select(list(socks), [], [], 0.01)
            for s in readable:  # the server's OK, or its NO and the close
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data or REPLY_NO in data:
                    self._drop(socks, s)
            now = time.monotonic()
            for s, (due, seq) in list(socks.items()):
                if self.packet is not None and now >= due:
                    socks[s] = [now + self.every, seq + 1]
                    try:
                        s.send(self.packet(seq))
                        self.packets += 1
                    except OSError:
                        self._drop(socks, s)
        for s in list(socks):
            s.close()


def _attack(kind: str, port: int, model) -> Attack:
    if kind == "idle":
        return Attack(port, 200)
    hello = Hello.for_model(model, model.num_quantizers, 1, 10 * 16000).pack()  # 10 s declared
    zeros = np.zeros((model.num_quantizers, 1), np.int64)
    return Attack(port, 16, hello, lambda seq: pack_wire(seq, zeros, 9), every=0.8)


def _wait(cond, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds  # a safety net, not a measurement
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)
    return cond()


@pytest.mark.parametrize("kind", ["idle", "slow"])
def test_a_legitimate_stream_is_served_while_an_attack_holds_every_place(models, kind):
    device, server_model = models
    # idle: 200 attackers wait (they never reach a stream slot), each dropped by the 0.5 s hello deadline;
    # slow: 16 attackers = 16 stream slots, one packet per 0.8 s, a slot may lag real time 0.5 s before eviction
    lim = Limits(max_clients=16, hello_timeout=0.5, frame_timeout=1.5, evict_lag=0.5)
    wav = 0.1 * torch.randn(16000, generator=torch.Generator().manual_seed(0))  # 1 s
    with StreamServer(server_model, "127.0.0.1", 0, limits=lim) as server:
        attack = _attack(kind, server.port, device)
        attack.start()
        try:
            if kind == "idle":  # all 200 waiting, and dropped ones already reconnecting
                assert _wait(lambda: server.waiting >= 150 and attack.dropped >= 200)
            else:  # every stream slot taken by a slow sender
                assert _wait(lambda: server.streams == 16 and attack.packets >= 16)
            # the attack as the server sees it (the attacker's own thread may sit in a connect() while the
            # listen backlog is full, so its counts are not a clock): hello-deadline drops, evictions
            before = (server.rejections, server.evictions)
            sent = send_file(wav, "127.0.0.1", server.port, device, realtime=True, timeout=5.0)
            during = (server.rejections - before[0], server.evictions - before[1])
            results = []
            while not any(r["peer"][1] == sent["local_port"] for r in results):
                results.append(server.next_result(idle_timeout=10.0))
        finally:
            attack.stop.set()
            attack.join(timeout=10.0)
    mine = next(r for r in results if r["peer"][1] == sent["local_port"])
    with torch.no_grad():
        ref = device.decode(device.encode(wav.view(1, 1, -1)), length=wav.numel())[0, 0]
    assert mine["error"] is None and mine["lost_packets"] == 0 and mine["packets"] == sent["packets"] == 63
    assert (mine["wav"] - ref).abs().max().item() <= 1e-5  # served exactly as on a quiet server
    # the attack went on while the legitimate stream was served: waiting attackers dropped by the
    # deadline (at least 150 were waiting when it started, each dropped within 0.5 s of its 1 s), or
    # slow attackers evicted
    assert during[0 if kind == "idle" else 1] >= 1
    if kind == "idle":
        assert server.rejections >= 200 and server.streams == 0  # dropped by the deadline, never a stream
        assert all(r.startswith(("no complete hello", "closed before the hello")) for _, r in server.rejected)
    else:
        # (the eviction above is the legitimate stream taking the slot of an attacker behind real time)
        cut = [r["error"] for r in results if r["error"]]
        assert cut and all(e.startswith(("evicted:", "stream slower than")) for e in cut)


def test_server_full_of_real_time_streams_refuses_with_its_reason(models, capsys):
    device, server_model = models
    from tinycodec.cli import main

    lim = Limits(max_clients=1, hello_timeout=1.0, frame_timeout=2.0)
    long = 0.1 * torch.randn(3 * 16000, generator=torch.Generator().manual_seed(1))
    with StreamServer(server_model, "127.0.0.1", 0, limits=lim) as server:
        box: dict = {}
        holder = threading.Thread(target=lambda: box.update(sent=send_file(
            long, "127.0.0.1", server.port, device, realtime=True, timeout=5.0)), daemon=True)
        holder.start()
        assert _wait(lambda: server.streams == 1)
        with pytest.raises(StreamRefused, match=r"server full \(1 stream slots taken, none behind real time\)"):
            send_file(long[:1600], "127.0.0.1", server.port, device, timeout=5.0)
        code = main(["stream", str(DEMO_CLIP), "--model", "tiny_mirror", "--port", str(server.port)])
        err = capsys.readouterr().err
        holder.join(timeout=10.0)
        first = server.next_result(idle_timeout=5.0)
    assert code == 1 and err.count("\n") == 1 and "server full" in err and "Traceback" not in err
    assert first["error"] is None and first["peer"][1] == box["sent"]["local_port"] and server.evictions == 0


def test_a_refused_model_and_a_missing_server_are_one_line_errors(models, capsys):
    _, server_model = models
    from tinycodec.cli import main

    with StreamServer(server_model, "127.0.0.1", 0) as server:
        code = main(["stream", str(DEMO_CLIP), "--model", "ultra_tiny", "--port", str(server.port)])
        port = server.port
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "does not match the server's" in err and "Traceback" not in err
    with socket.socket() as probe:  # a port nobody listens on: the server above is closed
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    for p in (port, free):
        code = main(["stream", str(DEMO_CLIP), "--model", "tiny_mirror", "--port", str(p)])
        err = capsys.readouterr().err
        assert code == 1 and err == f"tinycodec: error: no tinycodec server at 127.0.0.1:{p} (connection refused)\n"


def test_a_stream_cut_mid_way_tells_the_client_why(models):
    """A client that stops sending is cut by the packet deadline; its next send raises the reason."""
    device, server_model = models
    lim = Limits(hello_timeout=1.0, frame_timeout=0.5)
    with StreamServer(server_model, "127.0.0.1", 0, limits=lim) as server:
        from tinycodec.streaming.client import connect, send_packet

        hello = Hello.for_model(device, device.num_quantizers, 1, 16000)
        sock = connect("127.0.0.1", server.port, hello, timeout=5.0)
        with sock:
            send_packet(sock, pack_wire(0, np.zeros((device.num_quantizers, 1), np.int64), 9))
            result = server.next_result(idle_timeout=5.0)  # cut by the deadline
            with pytest.raises(StreamRefused, match="no complete frame within 0.5 s"):
                for seq in range(1, 100):  # the first sends may still land in the socket buffers
                    send_packet(sock, pack_wire(seq, np.zeros((device.num_quantizers, 1), np.int64), 9))
                    time.sleep(0.01)
    assert result["error"] == "no complete frame within 0.5 s" and result["packets"] == 1


def test_a_slow_sender_within_every_packet_deadline_is_cut_for_its_rate(models):
    """One valid packet per 0.3 s keeps each packet deadline (0.5 s) but brings 16 ms of audio per 0.3 s."""
    device, server_model = models
    lim = Limits(hello_timeout=1.0, frame_timeout=0.5, min_speed=0.5)
    with StreamServer(server_model, "127.0.0.1", 0, limits=lim) as server:
        from tinycodec.streaming.client import connect, send_packet

        sock = connect("127.0.0.1", server.port, Hello.for_model(device, device.num_quantizers, 1, 160000), 5.0)
        zeros = np.zeros((device.num_quantizers, 1), np.int64)
        with sock, pytest.raises(StreamRefused, match=r"stream slower than 0.5x real time"):
            for seq in range(100):  # the server cuts it long before 100 packets
                send_packet(sock, pack_wire(seq, zeros, 9))
                time.sleep(0.3)
        result = server.next_result(idle_timeout=5.0)
    assert result["error"].startswith("stream slower than 0.5x real time") and 2 <= result["packets"] < 100
