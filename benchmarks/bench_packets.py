"""Frames per packet: what each choice puts on the wire and what it adds to latency, measured on loopback.

For each ``frames_per_packet`` (1, 2, 4, 8) and ``n_q`` (all codebooks, and the first four) one
client streams speech to a loopback server at the pace of the audio (``send_file(realtime=True)``).
Measured:

- ``wire_kbps``: bytes of the wire packets the client sent, per second of audio (the hello, 29
  bytes once per stream, not counted); ``framed_packet_kbps``: what the same packets cost in the
  framed ``tinycodec.bitstream.Packet`` format of hello version 2 (18 bytes + a 4-byte length each);
  ``payload_kbps``: the codes alone.
- ``latency_mean_ms`` / ``latency_max_ms``: from a frame's last sample to its audio out of the
  server's decoder (the server session's measure: waiting for the packet to fill, encoding,
  transport, queueing, decoding and the decoder's one-hop delay), the median over ``--repeats``
  streams, and ``added_latency_mean_ms``: the same minus the one-frame-per-packet value of the
  same ``n_q``; ``packet_fill_ms``: how long a packet's first frame waits for its last,
  ``(frames_per_packet - 1)`` hops.

Writes ``benchmarks/results/packets.json``. Usage: python benchmarks/bench_packets.py [--quick]

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import time
from pathlib import Path

import torch
from _common import machine_info, write_report  # noqa: E402  (benchmarks/ is the script's folder)

from tinycodec.audio import load
from tinycodec.audio.excerpt import active_excerpt
from tinycodec.bitstream import Packet, bits_per_code
from tinycodec.eval.provenance import stamp_results
from tinycodec.pretrained import load_model
from tinycodec.streaming import StreamServer, send_file
from tinycodec.streaming.protocol import LENGTH, Hello, wire_size

DEMO = Path(__file__).resolve().parent.parent / "data" / "demo" / "speech" / "pyannote_sample.wav"
FPP = (1, 2, 4, 8)


def run(server_model, client_model, speech: torch.Tensor, n_q: int, fpp: int) -> dict:
    sr, hop = client_model.sample_rate, client_model.hop_length
    bits = bits_per_code(client_model.config.codebook_size)
    with StreamServer(server_model, "127.0.0.1", 0) as server:
        sent = send_file(speech, "127.0.0.1", server.port, client_model, n_q=n_q, frames_per_packet=fpp,
                         realtime=True)
        result = server.next_result(idle_timeout=10.0)
    assert result["error"] is None and result["packets"] == sent["packets"], result["error"]
    seconds = speech.numel() / sr
    frames = math.ceil(speech.numel() / hop)
    sizes = [min(fpp, frames - s) for s in range(0, frames, fpp)]
    assert sent["bytes"] == sum(wire_size(f, n_q, bits) for f in sizes)  # what was measured is the format
    framed = sum(Packet.size(f, n_q, bits) + LENGTH.size for f in sizes)
    return {"n_q": n_q, "frames_per_packet": fpp, "packets": sent["packets"], "wire_bytes": sent["bytes"],
            "seconds": seconds, "wire_kbps": 8e-3 * sent["bytes"] / seconds,
            "framed_packet_kbps": 8e-3 * framed / seconds, "payload_kbps": 1e-3 * client_model.bitrate(n_q),
            "overhead_bytes_per_packet": wire_size(fpp, n_q, bits) - math.ceil(fpp * n_q * bits / 8),
            "latency_mean_ms": 1e3 * result["latency_mean"], "latency_max_ms": 1e3 * result["latency_max"],
            "time_to_first_audio_ms": 1e3 * result["time_to_first_audio"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tinycodec")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of speech per stream")
    parser.add_argument("--repeats", type=int, default=3, help="streams per choice (the median is kept)")
    parser.add_argument("--quick", action="store_true", help="2 s of speech, one stream per choice (CI)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "packets.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(1)
    seconds = 2.0 if args.quick else args.seconds
    client, server = load_model(args.model), load_model(args.model)  # device and server: two copies
    sr = client.sample_rate
    speech = active_excerpt(load(DEMO, sr)[0], sr, seconds)[0]
    rows = []
    load0 = __import__("os").getloadavg()[0]
    for n_q in (client.num_quantizers, 4):
        for fpp in FPP:
            runs = [run(server, client, speech, n_q, fpp) for _ in range(1 if args.quick else args.repeats)]
            row = dict(runs[0], repeats=len(runs))
            for key in ("latency_mean_ms", "latency_max_ms", "time_to_first_audio_ms"):
                row[key] = statistics.median(r[key] for r in runs)
            row["packet_fill_ms"] = 1e3 * (fpp - 1) * client.hop_length / sr
            rows.append(row)
            print(f"n_q={n_q} fpp={fpp}: {row['wire_kbps']:.2f} kbit/s on the wire (framed packets "
                  f"{row['framed_packet_kbps']:.2f}, codes {row['payload_kbps']:.2f}); latency mean "
                  f"{row['latency_mean_ms']:.0f} ms, max {row['latency_max_ms']:.0f} ms", flush=True)
            time.sleep(0.2)
    for row in rows:
        base = next(r for r in rows if r["n_q"] == row["n_q"] and r["frames_per_packet"] == 1)
        row["added_latency_mean_ms"] = row["latency_mean_ms"] - base["latency_mean_ms"]
    write_report(args.out, {
        "benchmark": "bench_packets", "model": args.model,
        "encoder_hash": Hello.for_model(client, client.num_quantizers, 1, 0).model_hash.hex(),
        "clip": f"{DEMO.name}, the active {seconds:g} s", "hop_ms": 1e3 * client.hop_length / sr,
        "decoder_delay_ms": 1e3 * getattr(client, "delay", 0) / sr, "rows": rows,
        "note": "one real-time client and the server in one process, one torch thread; latency from a frame's "
                "last sample to its audio out of the server decoder, including the client's encoding",
        "load_average_1min_before": load0, "machine": machine_info(),
    })
    stamp_results(args.out, [args.model], encoder_only=False)  # the weights measured, for the chapter's check


if __name__ == "__main__":
    main()
