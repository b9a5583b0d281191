"""How many real-time streams the loopback server keeps, end to end, and what the decoder alone does.

Two measurements in one run, one torch thread per process (the server's setting):

1. Decoder alone: ``BatchDecoder.decode`` with B streams of one frame each per call, against B
   separate one-frame calls (an unbatched server). Real-time streams = frames per second / frame rate.
2. End to end: N clients in a second process (they do not share the server's GIL). Each client
   encodes its own audio with its own streaming state (the N encoders run batched, rows of one
   ``model.streaming(N)``, as N devices would each run theirs), then sends wire packets of
   ``frames_per_packet`` frames over its own loopback TCP connection at the pace of the audio,
   the N clients' clocks spread evenly over one packet period. The server decodes them batched
   and the audio comes out of its sessions. The latency of a frame runs from the moment its last
   sample exists on its client's clock to the moment its audio is out of the server's decoder
   (waiting for the packet to fill, transport, queueing, decoding and the decoder's one-hop delay;
   the device's own encoding time is measured apart, ``client_encode``). N holds when every stream
   ends cleanly and no frame of any stream is later than ``--max-latency``.

By default the clients encode before pacing starts (``--encode before``): the N devices' encoders
would run on N devices, not on the server's cores. ``--encode live`` encodes packet by packet in
the client process while pacing, so the devices' work competes with the server for the same cores.

The JSON states what else ran on the machine: ``other_cores_busy`` is the CPU time of all other
processes while the streams ran (from ``/proc/stat``, less this server's and the clients' CPU)
divided by the wall time; ``server_cpu_s`` and ``client_cpu_s`` cover the same span.

Writes ``benchmarks/results/server.json``.

Usage: python benchmarks/bench_server.py [--model tinycodec] [--streams 32 64 100 128] [--fpp 1 4] [--quick]

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import machine_info, write_report  # noqa: E402  (benchmarks/ is the script's folder)

from tinycodec.bitstream import bits_per_code
from tinycodec.pretrained import load_model
from tinycodec.streaming import StreamServer
from tinycodec.streaming.batch import BatchDecoder
from tinycodec.streaming.protocol import Hello, Limits, pack_wire, read_reply, send_frame


def decoder_throughput(model, batch_sizes, ticks: int) -> list[dict]:
    dec = BatchDecoder(model)
    k, n_q = model.config.codebook_size, model.num_quantizers
    rows = []
    for b in batch_sizes:
        sids = [dec.open() for _ in range(b)]
        codes = torch.randint(0, k, (ticks, b, n_q, 1), generator=torch.Generator().manual_seed(b))
        for t in range(3):  # warm-up
            dec.decode([(s, codes[t, i]) for i, s in enumerate(sids)])
        t0, c0 = time.perf_counter(), time.process_time()
        for t in range(ticks):
            dec.decode([(s, codes[t, i]) for i, s in enumerate(sids)])
        batched, batched_cpu = (time.perf_counter() - t0) / ticks, (time.process_time() - c0) / ticks
        n_single = min(ticks, max(2, 200 // b))  # the unbatched path is slow: fewer ticks
        with torch.inference_mode(), model.streaming(1):  # unbatched: one call per stream (state shared:
            t0 = time.perf_counter()                       # the cost is the same, the audio is not used)
            for t in range(n_single):
                for i in range(b):
                    model.decode(codes[t, i][None])
            single = (time.perf_counter() - t0) / n_single
        for s in sids:
            dec.close(s)
        rows.append({"streams": b, "ms_per_tick_batched": 1e3 * batched, "ms_per_tick_unbatched": 1e3 * single,
                     "cpu_ms_per_tick_batched": 1e3 * batched_cpu,
                     "realtime_streams_batched": b / (batched * model.frame_rate),
                     "realtime_streams_unbatched": b / (single * model.frame_rate)})
        print(f"B={b:3d}: batched {1e3 * batched:6.2f} ms/tick, unbatched {1e3 * single:6.2f} ms/tick")
    return rows


# -- the client process -----------------------------------------------------------------------
def _busy_ticks() -> int:
    """CPU ticks all cores spent busy since boot (``/proc/stat``); 0 where there is none."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except OSError:
        return 0
    return sum(f) - f[3] - f[4]  # minus idle and iowait


def _encode(model, audio: torch.Tensor, fpp: int, n_q: int):
    """Each client's wire packets: N encoders (rows of one streaming state), chunk by chunk."""
    n, hop, bits = audio.shape[0], model.hop_length, bits_per_code(model.config.codebook_size)
    chunks = audio.shape[-1] // (fpp * hop)
    with torch.inference_mode(), model.streaming(n):
        for k in range(chunks):
            codes = model.encode(audio[:, None, k * fpp * hop:(k + 1) * fpp * hop], n_q).numpy()  # [N, n_q, fpp]
            yield [pack_wire(k, codes[i], bits, last=k == chunks - 1) for i in range(n)]


def run_clients(args) -> None:
    """Client process (``--clients``): N paced wire-packet streams in one thread; prints a JSON summary."""
    torch.set_num_threads(1)
    model = load_model(args.model)
    n, fpp, port = args.clients[1], args.fpp[0], args.clients[0]
    hop, sr = model.hop_length, model.sample_rate
    frames = int(args.seconds * model.frame_rate) // fpp * fpp
    g = torch.Generator().manual_seed(0)
    audio = 0.1 * torch.randn(n, frames * hop, generator=g)  # each device its own signal
    n_q = model.num_quantizers
    c0, t0 = time.process_time(), time.perf_counter()
    packets = list(_encode(model, audio, fpp, n_q)) if args.encode == "before" else None
    encode_cpu = time.process_time() - c0 if packets is not None else 0.0
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30.0)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        send_frame(s, Hello.for_model(model, n_q, fpp, frames * hop).pack())
        read_reply(s)
        socks.append(s)
    period = fpp * hop / sr
    offsets = [period * i / n for i in range(n)]  # the clients' clocks, spread over one packet period
    live = None if packets is not None else _encode(model, audio, fpp, n_q)
    start = time.perf_counter() + 0.2
    late, pace_cpu = 0.0, time.process_time()
    for k in range(frames // fpp):
        if live is not None:
            c = time.process_time()
            row = next(live)
            encode_cpu += time.process_time() - c
        else:
            row = packets[k]
        for i, s in enumerate(socks):
            due = start + offsets[i] + (k + 1) * period  # the packet's last frame exists
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            else:
                late = max(late, -wait)
            s.sendall(row[i])
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    print(json.dumps({"ports": ports, "start": start, "offsets": offsets, "encode_cpu_s": encode_cpu,
                      "encode_wall_s": time.perf_counter() - t0, "max_send_late_s": late,
                      "client_cpu_s": time.process_time() - pace_cpu}))


def end_to_end(model, args, n: int, fpp: int) -> dict:
    """N paced clients in another process against one server in this one."""
    limits = Limits(max_clients=n + 1, max_frames_per_packet=max(fpp, 1), frame_timeout=10.0)
    with StreamServer(model, "127.0.0.1", 0, limits=limits) as server:
        calls0, frames0 = server.decoder.calls, server.decoder.frames
        decode, spent = server.decoder.decode, [0.0]

        def timed(jobs):  # CPU seconds of the decoder calls (in the decoder's worker thread)
            c = time.thread_time()
            try:
                return decode(jobs)
            finally:
                spent[0] += time.thread_time() - c

        server.decoder.decode = timed
        cmd = [sys.executable, __file__, "--model", args.model, "--clients", str(server.port), str(n),
               "--seconds", str(args.seconds), "--fpp", str(fpp), "--encode", args.encode]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300  # a safety net: the clients load a model and encode first
        while server.streams < n and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        # from here on only the streams run: CPU and wall time are counted over them
        busy0, wall0, cpu0 = _busy_ticks(), time.perf_counter(), time.process_time()
        results = []
        deadline = time.monotonic() + args.seconds + 120
        while len(results) < n and time.monotonic() < deadline:
            try:
                results.append(server.next_result(idle_timeout=30.0))
            except TimeoutError:
                break
        wall, server_cpu, busy = time.perf_counter() - wall0, time.process_time() - cpu0, _busy_ticks() - busy0
        out, _ = proc.communicate(timeout=120)
        calls, decoded = server.decoder.calls - calls0, server.decoder.frames - frames0
    client = json.loads(out.strip().splitlines()[-1])
    others = busy / os.sysconf("SC_CLK_TCK") - server_cpu - client["client_cpu_s"]
    # a session measures from its hello; client i's clock starts at start + offsets[i] (the same
    # clock: perf_counter is the system's monotonic clock), so each latency shifts by the difference
    offset = {port: client["start"] + off for port, off in zip(client["ports"], client["offsets"])}
    clean = [r for r in results if r["error"] is None and r["peer"][1] in offset]
    lat = [(r["latency_max"] - (offset[r["peer"][1]] - r["started"]),
            r["latency_mean"] - (offset[r["peer"][1]] - r["started"])) for r in clean]
    worst = max((mx for mx, _ in lat), default=None)
    held = len(clean) == n and worst is not None and worst <= args.max_latency
    row = {"streams": n, "frames_per_packet": fpp, "clean": len(clean),
           "latency_max_s": worst, "latency_mean_s": float(np.mean([m for _, m in lat])) if lat else None,
           "held": held, "decoder_calls": calls, "frames_decoded": decoded,
           "frames_per_call": decoded / max(calls, 1), "server_cpu_s": server_cpu, "decoder_cpu_s": spent[0],
           "client_cpu_s": client["client_cpu_s"], "client_encode_cpu_s": client["encode_cpu_s"],
           "client_max_send_late_s": client["max_send_late_s"], "wall_s": wall,
           "server_cores_per_100_streams": 100 * server_cpu / (n * args.seconds),
           "other_cores_busy": others / wall, "errors": sorted({r["error"] for r in results if r["error"]})[:3]}
    print(f"N={n:3d} fpp={fpp}: clean {len(clean)}/{n}, worst frame latency "
          f"{'-' if worst is None else f'{1e3 * worst:.0f} ms'}, {row['frames_per_call']:.1f} frames/call, "
          f"server CPU {server_cpu / wall:.2f} cores ({spent[0] / wall:.2f} decoding), others {others / wall:.2f} cores -> "
          f"{'holds' if held else 'does not hold'}", flush=True)
    return row


def decoder_only(model, args, ticks: int) -> None:
    """The decoder alone, with and without its runner (``model.decoder.use_runner``), rounds alternating."""
    sizes, rounds = ([1, 16, 64] if args.quick else [1, 8, 32, 64, 100, 128]), 2 if args.quick else 3
    runs: dict[str, list] = {"runner": [], "modules": []}
    for _ in range(rounds):
        for path in runs:
            model.decoder.use_runner = path == "runner"
            runs[path].append(decoder_throughput(model, sizes, ticks))
    model.decoder.use_runner = True
    best = {path: [min((r[i] for r in rs), key=lambda row: row["cpu_ms_per_tick_batched"]) for i in range(len(sizes))]
            for path, rs in runs.items()}
    report = {"benchmark": "bench_server --decoder-only", "model": args.model, "n_q": model.num_quantizers,
              "frame_rate": model.frame_rate, "rounds": rounds, "decoder_throughput": best,
              "speedup_runner_vs_modules": {str(b): {k: best["modules"][i][k] / best["runner"][i][k]
                                                     for k in ("cpu_ms_per_tick_batched", "ms_per_tick_batched")}
                                            for i, b in enumerate(sizes)},
              "note": "one torch thread; each row the round of least CPU time per batched tick (the wall-clock "
                      "values of that round beside it); modules: the decoder's module path (use_runner off), "
                      "runner: its inference path (tinycodec.modules.server_runner)",
              "machine": machine_info()}
    for i, b in enumerate(sizes):
        r, m = best["runner"][i], best["modules"][i]
        print(f"B={b:3d}: batched {m['cpu_ms_per_tick_batched']:.2f} -> {r['cpu_ms_per_tick_batched']:.2f} CPU ms "
              f"per tick ({b / (r['cpu_ms_per_tick_batched'] * 1e-3 * model.frame_rate):.0f} real-time streams "
              f"in CPU time)")
    out = args.out if args.out != parser_default_out() else str(Path(args.out).with_name("server_decoder.json"))
    write_report(out, report)


def parser_default_out() -> str:
    return str(Path(__file__).parent / "results" / "server.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tinycodec")
    parser.add_argument("--seconds", type=float, default=8.0, help="audio per end-to-end stream")
    parser.add_argument("--streams", type=int, nargs="+", default=[32, 64, 100, 128, 160])
    parser.add_argument("--fpp", type=int, nargs="+", default=[1, 4], help="frames per packet")
    parser.add_argument("--encode", choices=["before", "live"], default="before",
                        help="clients encode before pacing (devices' own CPUs) or live in the client process")
    parser.add_argument("--max-latency", type=float, default=0.25,
                        help="seconds a frame's audio may come out after its last sample (default 0.25)")
    parser.add_argument("--quick", action="store_true", help="fewer ticks and streams (CI)")
    parser.add_argument("--decoder-only", action="store_true",
                        help="only the decoder alone, on its inference path and on its modules (use_runner off), "
                             "alternating; writes results/server_decoder.json unless --out")
    parser.add_argument("--out", default=parser_default_out())
    parser.add_argument("--clients", nargs=2, type=int, metavar=("PORT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients:
        return run_clients(args)
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(1)
    model = load_model(args.model)
    if args.quick:
        args.streams, args.seconds = [8, 16], min(args.seconds, 2.0)
    ticks = 20 if args.quick else 50
    if args.decoder_only:
        return decoder_only(model, args, ticks)
    throughput = decoder_throughput(model, [1, 16, 64] if args.quick else [1, 8, 32, 64, 100, 128], ticks)
    one = throughput[0]["realtime_streams_unbatched"]
    best = max(r["realtime_streams_batched"] for r in throughput)
    e2e = [end_to_end(model, args, n, fpp) for fpp in args.fpp for n in sorted(args.streams)]
    held = {fpp: max([r["streams"] for r in e2e if r["frames_per_packet"] == fpp and r["held"]], default=0)
            for fpp in args.fpp}
    report = {
        "benchmark": "bench_server", "model": args.model, "encoder_hash": Hello.for_model(
            model, model.num_quantizers, 1, 0).model_hash.hex(), "n_q": model.num_quantizers,
        "frame_rate": model.frame_rate, "seconds_per_stream": args.seconds, "client_encode": args.encode,
        "max_latency_s": args.max_latency,
        "decoder_throughput": throughput, "end_to_end": e2e,
        "realtime_streams_unbatched": one, "realtime_streams_batched": best, "ratio_to_one_stream": best / one,
        "end_to_end_streams_held": {str(k): v for k, v in held.items()},
        "note": "one torch thread per process; decoder alone: real-time streams = frames decoded per second / "
                "frame rate; end to end: N clients in a second process on the same machine send wire packets at "
                "the pace of the audio, held when every stream ends cleanly and no frame's audio is out later "
                "than max_latency_s after its last sample; other_cores_busy: CPU of all other processes "
                "during the run (a training run shared the machine when it is near 1); server_cores_per_100_streams: "
                "server CPU seconds per 100 stream-seconds (a server that falls behind decodes larger chunks, "
                "cheaper per frame, so this is a floor where the run did not hold)",
        "machine": machine_info(),
    }
    print(f"decoder alone: {one:.0f} real-time streams unbatched, {best:.0f} batched ({best / one:.1f}x); "
          f"end to end held: {held}")
    write_report(args.out, report)
    from tinycodec.eval.provenance import stamp_results

    stamp_results(args.out, [args.model])  # the weights measured, for the chapter's check


if __name__ == "__main__":
    main()
