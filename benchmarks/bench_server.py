"""How many real-time streams the loopback server decodes, batched vs. one decoder call per stream.

Two measurements in one run, one torch thread (the server's setting):

1. Decoder throughput: ``BatchDecoder.decode`` with B streams of one frame each per tick (one
   call per tick), against B separate one-frame calls (the unbatched server). Real-time streams =
   frames decoded per second / frame rate.
2. End to end: N clients on loopback (threads of a second process) each send one pre-encoded
   packet per frame at the pace of the audio (a microphone); N holds when every stream ends
   cleanly and its last audio is ready within ``--max-lag`` seconds of its last packet. N doubles
   until it does not hold. The clients use CPU too: on 2 cores this is a floor for the server.

Writes ``benchmarks/results/server.json``; the headline is ``ratio_to_one_stream`` (batched real-time
streams / unbatched real-time streams, measured in this run).

Usage: python benchmarks/bench_server.py [--model tiny] [--seconds 4] [--quick]

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from _common import machine_info, write_report  # noqa: E402  (benchmarks/ is the script's folder)

from tinycodec.bitstream import Packet, bits_per_code
from tinycodec.pretrained import load_model
from tinycodec.streaming import StreamServer
from tinycodec.streaming.batch import BatchDecoder
from tinycodec.streaming.protocol import Hello, Limits, send_frame


def decoder_throughput(model, batch_sizes, ticks: int) -> list[dict]:
    dec = BatchDecoder(model)
    k, n_q = model.config.codebook_size, model.num_quantizers
    rows = []
    for b in batch_sizes:
        sids = [dec.open() for _ in range(b)]
        codes = torch.randint(0, k, (ticks, b, n_q, 1), generator=torch.Generator().manual_seed(b))
        for t in range(3):  # warm-up
            dec.decode([(s, codes[t, i]) for i, s in enumerate(sids)])
        t0 = time.perf_counter()
        for t in range(ticks):
            dec.decode([(s, codes[t, i]) for i, s in enumerate(sids)])
        batched = (time.perf_counter() - t0) / ticks
        with torch.inference_mode(), model.streaming(1):  # unbatched: one call per stream (state shared:
            t0 = time.perf_counter()                       # the cost is the same, the audio is not used)
            for t in range(ticks):
                for i in range(b):
                    model.decode(codes[t, i][None])
            single = (time.perf_counter() - t0) / ticks
        for s in sids:
            dec.close(s)
        rows.append({"streams": b, "ms_per_tick_batched": 1e3 * batched, "ms_per_tick_unbatched": 1e3 * single,
                     "realtime_streams_batched": b / (batched * model.frame_rate),
                     "realtime_streams_unbatched": b / (single * model.frame_rate)})
        print(f"B={b:3d}: batched {1e3 * batched:6.2f} ms/tick, unbatched {1e3 * single:6.2f} ms/tick")
    return rows


def _packets(model, seconds: float) -> tuple[bytes, list[bytes]]:
    """The hello and one packet per frame of ``seconds`` of noise (encoded once, sent by every client)."""
    hop, frames = model.hop_length, int(seconds * model.frame_rate)
    wav = 0.1 * torch.randn(1, 1, frames * hop, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        codes = model.encode(wav)[0].numpy()
    bits = bits_per_code(model.config.codebook_size)
    packets = [Packet(i, codes[:, i:i + 1], bits, last=i == frames - 1).to_bytes() for i in range(frames)]
    return Hello.for_model(model, model.num_quantizers, 1, frames * hop).pack(), packets


def _client(port: int, hello: bytes, packets: list[bytes], hop_s: float, box: dict, key: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10.0) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        box[key] = {"port": sock.getsockname()[1]}
        send_frame(sock, hello)
        t0 = time.monotonic()
        for i, body in enumerate(packets):
            delay = t0 + (i + 1) * hop_s - time.monotonic()  # the frame exists once recorded
            if delay > 0:
                time.sleep(delay)
            send_frame(sock, body)
        box[key]["last_sent"] = time.monotonic()


def run_clients(model_name: str, port: int, n: int, seconds: float) -> None:
    """Client process (``--clients``): N paced streams in threads; prints their ports and end times as JSON."""
    torch.set_num_threads(1)
    model = load_model(model_name)
    hello, packets = _packets(model, seconds)
    box: dict = {}
    threads = [threading.Thread(target=_client, args=(port, hello, packets, model.hop_length / model.sample_rate,
                                                      box, i), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 30)
    print(json.dumps(list(box.values())))


def end_to_end(model, model_name: str, n_clients: int, seconds: float, max_lag: float) -> dict:
    """N paced clients in another process (they do not share this process's GIL) against one server."""
    limits = Limits(max_clients=n_clients + 1, frame_timeout=5.0)
    with StreamServer(model, "127.0.0.1", 0, limits=limits) as server:
        calls0 = server.decoder.calls
        proc = subprocess.Popen([sys.executable, __file__, "--model", model_name, "--clients", str(server.port),
                                 str(n_clients), "--seconds", str(seconds)], stdout=subprocess.PIPE, text=True)
        results = {}
        deadline = time.monotonic() + seconds + 60
        while len(results) < n_clients and time.monotonic() < deadline:
            try:
                r = server.next_result(idle_timeout=30.0)
            except TimeoutError:
                break
            r["ready"] = time.monotonic()
            results[r["peer"][1]] = r
        out, _ = proc.communicate(timeout=60)
        calls = server.decoder.calls - calls0
    lags, clean = [], 0
    for c in json.loads(out or "[]"):
        r = results.get(c["port"])
        if r is not None and r["error"] is None and "last_sent" in c:
            clean += 1
            lags.append(r["ready"] - c["last_sent"])
    frames = int(seconds * model.frame_rate)
    held = clean == n_clients and max(lags, default=1e9) <= max_lag
    row = {"clients": n_clients, "clean": clean, "max_lag_s": max(lags, default=None), "held": held,
           "decoder_calls": calls, "frames": n_clients * frames,
           "frames_per_call": n_clients * frames / max(calls, 1)}
    print(f"N={n_clients:3d}: clean {clean}/{n_clients}, max lag {row['max_lag_s']}, "
          f"{row['frames_per_call']:.1f} frames per decoder call -> {'holds' if held else 'does not hold'}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--seconds", type=float, default=4.0, help="audio per end-to-end stream")
    parser.add_argument("--max-lag", type=float, default=0.5, help="seconds a stream's last audio may lag")
    parser.add_argument("--quick", action="store_true", help="fewer ticks and clients (CI)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "server.json"))
    parser.add_argument("--clients", nargs=2, type=int, metavar=("PORT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients:
        return run_clients(args.model, args.clients[0], args.clients[1], args.seconds)
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(1)
    model = load_model(args.model)
    ticks = 20 if args.quick else 100
    throughput = decoder_throughput(model, [1, 4, 16, 64] if args.quick else [1, 2, 4, 8, 16, 32, 64], ticks)
    one = throughput[0]["realtime_streams_unbatched"]
    best = max(r["realtime_streams_batched"] for r in throughput)
    e2e, n, held = [], 1, 0
    while n <= (16 if args.quick else 256):
        row = end_to_end(model, args.model, n, args.seconds, args.max_lag)
        e2e.append(row)
        if not row["held"]:
            break
        held, n = n, n * 2
    report = {
        "benchmark": "bench_server", "model": args.model, "frame_rate": model.frame_rate,
        "decoder_throughput": throughput, "end_to_end": e2e,
        "realtime_streams_unbatched": one, "realtime_streams_batched": best,
        "ratio_to_one_stream": best / one,
        "end_to_end_streams_held": held,
        "note": "one torch thread; real-time streams = frames decoded per second / frame rate; end to end: "
                "paced loopback clients in a second process on the same cores, held when all end cleanly "
                "within max_lag of their last packet",
        "machine": machine_info(),
    }
    print(f"decoder alone: {one:.0f} real-time streams unbatched, {best:.0f} batched ({best / one:.1f}x); "
          f"end to end: {held} paced streams held")
    write_report(args.out, report)


if __name__ == "__main__":
    main()
