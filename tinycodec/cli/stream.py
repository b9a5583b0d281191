"""``tinycodec serve`` and ``tinycodec stream``: the loopback TCP streaming demo, or a local pipeline run.

Both use one torch thread: their calls are small, and on a 2-core machine more threads only
oversubscribe (a streaming client took 81 s with 2 threads, 10 s with 1).

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import sys

from tinycodec.streaming.protocol import DEFAULT_PORT, Limits

_MODEL_HELP = ("model spec: shipped name, preset (seeded random weights), .safetensors or checkpoint; "
               "server and client must use the same one")


def _serve(args) -> int:
    import logging

    import torch

    from tinycodec.pretrained import load_model
    from tinycodec.streaming.serving import serve

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    model = load_model(args.model, args.seed)
    limits = Limits(max_clients=args.max_clients, hello_timeout=args.hello_timeout, frame_timeout=args.frame_timeout,
                    max_seconds=args.max_seconds, max_frames_per_packet=args.max_frames_per_packet)
    results = serve(model, args.host, args.port, clients=args.clients, output=args.output, timeout=args.timeout,
                    limits=limits,
                    ready=lambda port: print(f"listening on {args.host}:{port} ({args.model})", flush=True))
    for r in results:
        print(f"received {r['packets']} packets, lost {r['lost_packets']}, CRC errors {r['crc_errors']}, "
              f"concealed {r['concealed_frames']} frames; {r['wav'].numel() / r['sample_rate']:.2f} s of audio"
              + (f" -> {r['path']}" if "path" in r else ""))
    if len(results) < args.clients:
        print(f"no client within {args.timeout:g} s: served {len(results)} of {args.clients} streams")
        return 1
    return 0


def _stream(args) -> int:
    import torch

    from tinycodec.pretrained import load_model

    torch.set_num_threads(1)
    model = load_model(args.model, args.seed)
    if args.local is not None:  # no network: run the two-thread pipeline in-process
        import torch

        from tinycodec.audio import save
        from tinycodec.streaming.pipeline import stream

        chunks, done = [], {}
        for event in stream(model, args.input, n_q=args.n_q, chunk_frames=args.frames_per_packet,
                            realtime=args.realtime, max_duration=args.max_duration):
            if event["type"] == "audio_chunk":
                chunks.append(event["data"])
            elif event["type"] == "complete":
                done = event
        save(args.local, torch.cat(chunks)[None], model.sample_rate)
        print(f"time to first audio {1e3 * done['time_to_first_audio']:.1f} ms, RTF {done['rtf']:.3f}, "
              f"{done['audio_seconds']:.2f} s -> {args.local}")
        return 0
    from tinycodec.streaming.client import send_file

    try:
        sent = send_file(args.input, args.host, args.port, model, n_q=args.n_q,
                         frames_per_packet=args.frames_per_packet, loss_rate=args.loss_rate, seed=args.loss_seed,
                         realtime=args.realtime, max_duration=args.max_duration)
    except OSError as exc:  # no server, or the connection failed: one line, no traceback
        print(f"tinycodec: error: {exc}", file=sys.stderr)
        return 1
    seconds = sent["samples"] / model.sample_rate
    print(f"sent {sent['packets']} packets of {args.frames_per_packet} frames ({sent['bytes']} bytes, "
          f"{8e-3 * sent['bytes'] / max(seconds, 1e-9):.2f} kbit/s), dropped {sent['dropped']} on purpose")
    return 0


def register(subparsers) -> None:
    srv = subparsers.add_parser(
        "serve", help="decoder server for the loopback streaming demo",
        description="Listen on a loopback address, decode packets from concurrent `tinycodec stream` clients "
                    "(batched: one decoder call per tick), conceal lost or damaged packets, and optionally "
                    "write the audio to WAV files. A connection must send its hello within --hello-timeout "
                    "and keep up at least half real time; when all --max-clients slots are taken, a stream "
                    "that fell behind real time is evicted for a new one, otherwise the new one is refused. "
                    "Every refused or cut client is told the reason in one line (also logged); the server "
                    "goes on.")
    srv.add_argument("--model", default="tinycodec", help=_MODEL_HELP + " (default: tinycodec)")
    srv.add_argument("--seed", type=int, default=0, help="weight seed for preset models (default: 0)")
    srv.add_argument("--host", default="127.0.0.1", help="loopback address (default: 127.0.0.1)")
    srv.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default: {DEFAULT_PORT})")
    srv.add_argument("--clients", type=int, default=1, help="clients to serve before exiting (default: 1)")
    srv.add_argument("--output", "-o", default=None, help="write the decoded audio here (WAV)")
    srv.add_argument("--timeout", type=float, default=60.0,
                     help="stop when no client is connected for this many seconds (default: 60)")
    srv.add_argument("--max-clients", type=int, default=Limits.max_clients,
                     help=f"clients served at once; more are refused (default: {Limits.max_clients})")
    srv.add_argument("--hello-timeout", type=float, default=Limits.hello_timeout,
                     help=f"seconds a new connection has to send its hello (default: {Limits.hello_timeout:g})")
    srv.add_argument("--frame-timeout", type=float, default=Limits.frame_timeout,
                     help=f"seconds for each whole packet of a client (default: {Limits.frame_timeout:g})")
    srv.add_argument("--max-frames-per-packet", type=int, default=Limits.max_frames_per_packet,
                     help="largest frames per packet a client may announce, up to 128 "
                          f"(default: {Limits.max_frames_per_packet})")
    srv.add_argument("--max-seconds", type=float, default=Limits.max_seconds,
                     help=f"longest stream in seconds of audio (default: {Limits.max_seconds:g})")
    srv.set_defaults(func=_serve)

    st = subparsers.add_parser(
        "stream", help="stream an audio file to `tinycodec serve` (or through a local pipeline)",
        description="Encode FILE frame by frame like a device and send bitstream packets to a loopback "
                    "server; --loss-rate drops packets on purpose. With --local OUT.wav, run the "
                    "two-thread encoder/decoder pipeline in-process instead and report time to first audio.")
    st.add_argument("input", help="audio file")
    st.add_argument("--model", default="tinycodec", help=_MODEL_HELP + " (default: tinycodec)")
    st.add_argument("--seed", type=int, default=0, help="weight seed for preset models (default: 0)")
    st.add_argument("--host", default="127.0.0.1", help="server address, loopback only (default: 127.0.0.1)")
    st.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"server port (default: {DEFAULT_PORT})")
    st.add_argument("--n_q", type=int, default=None, help="quantizers to send (default: all)")
    st.add_argument("--frames-per-packet", type=int, default=1, metavar="N",
                    help="frames per packet (1..128; also the chunk of --local): each packet costs 5 bytes, its "
                         "first frame waits N - 1 hops (default: 1)")
    st.add_argument("--loss-rate", type=float, default=0.0, help="drop this fraction of packets (default: 0)")
    st.add_argument("--loss-seed", type=int, default=0, help="seed of the simulated loss (default: 0)")
    st.add_argument("--realtime", action="store_true", help="send at the pace of the audio, like a microphone")
    st.add_argument("--max-duration", type=float, default=None, help="stop after this many seconds")
    st.add_argument("--local", metavar="OUT.wav", default=None, help="no network: decode in-process to OUT.wav")
    st.set_defaults(func=_stream)
