"""Time to first audio (TTFA) and real-time factor of the two-thread streaming pipeline, per model.

For every model, on CPU with one intra-op thread (``torch.set_num_threads(1)``):

- TTFA, microphone-paced (``stream(..., realtime=True, chunk_frames=1)``): seconds from the
  moment the "microphone" starts until the first decoded chunk reaches the consumer: one hop must be
  recorded first, then compute and thread hand-offs (``compute_ms`` = TTFA - one hop). A server
  decoder's first chunk starts with its ``delay`` samples of warm-up, so the recording's first sound
  comes ``delay`` later (``first_sound_ms`` = TTFA + delay; algorithmic latency = hop + delay, 32 ms
  for the flagship). Median and best of several short streams.
- RTF, unpaced: pipeline wall time / audio duration (encoder and decoder threads overlap).
- Blocking baseline: record everything, then ``decode(encode(wav))`` once: TTFA = duration + compute.

Target: the flagship's first sound reaches the listener within its algorithmic latency + 5 ms.
The shipped weights of the line-up (``list_pretrained()``). Writes ``benchmarks/results/latency.json``,
stamped with the weights it measured.

Usage: python benchmarks/bench_latency.py [--quick] [--models tinycodec tiny]

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _common import machine_info, write_report  # noqa: E402  (benchmarks/ is the script's folder)

from tinycodec.pretrained import load_model
from tinycodec.streaming import stream_to_tensor

MODELS = ["tinycodec", "tiny", "ultra_tiny", "soundstream_16k", "transformer_tiny"]  # the line-up
TARGET_MODEL = "tinycodec"
TARGET_MARGIN_MS = 5.0  # TTFA <= algorithmic latency + 5 ms
DEMO = Path(__file__).resolve().parent.parent / "data" / "demo" / "speech" / "pyannote_sample.wav"



def audio(seconds: float, sample_rate: int) -> torch.Tensor:
    """Real speech from the demo corpus when present (cost does not depend on content), else noise."""
    if DEMO.exists():
        from tinycodec.audio import load

        wav = load(DEMO, sample_rate)[0].reshape(-1)
        if wav.numel() >= seconds * sample_rate:
            return wav[: int(seconds * sample_rate)]
    return 0.1 * torch.randn(int(seconds * sample_rate), generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def bench_model(spec: str, seconds: float, ttfa_repeats: int) -> dict:
    model = load_model(spec, seed=0)
    hop, sr = model.hop_length, model.sample_rate
    hop_ms = 1e3 * hop / sr
    delay_ms = 1e3 * model.delay / sr
    wav = audio(seconds, sr)
    stream_to_tensor(model, wav[: 20 * hop])  # warm-up: allocator, kernel selection, thread start
    ttfas, firsts = [], []
    for _ in range(ttfa_repeats):  # short paced streams: only the first chunk matters
        _, done = stream_to_tensor(model, wav[: 8 * hop], realtime=True, chunk_frames=1)
        ttfas.append(1e3 * done["time_to_first_audio"])
        firsts.append(sum(done["first_chunk_compute_ms"].values()))
    _, done = stream_to_tensor(model, wav, chunk_frames=1)
    t0 = time.perf_counter()
    model.decode(model.encode(wav.view(1, 1, -1)), length=wav.numel())
    offline_s = time.perf_counter() - t0
    return {
        "model": spec,
        "family": model.family,
        "hop_length": hop,
        "sample_rate": sr,
        "algorithmic_latency_ms": hop_ms + delay_ms,  # one frame recorded before it is encoded + the decoder's delay
        "decoder_delay_ms": delay_ms,
        "ttfa_ms_median": statistics.median(ttfas),
        "ttfa_ms_best": min(ttfas),
        "first_sound_ms_median": statistics.median(ttfas) + delay_ms,
        "first_sound_ms_best": min(ttfas) + delay_ms,
        "compute_ms_median": statistics.median(ttfas) - hop_ms,  # compute + thread hand-offs
        "first_chunk_encode_decode_ms_median": statistics.median(firsts),  # compute alone
        "ttfa_repeats": ttfa_repeats,
        "rtf": done["rtf"],
        "compute_rtf": done["compute_rtf"],
        "max_queue_depth": done["max_queue_depth"],
        "audio_seconds": done["audio_seconds"],
        "blocking_ttfa_ms": 1e3 * (seconds + offline_s),  # record all, then encode + decode once
        "offline_rtf": offline_s / seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 s of audio, 3 TTFA repeats, TinyStream presets")
    parser.add_argument("--models", nargs="*", default=None, help=f"model specs (default: {' '.join(MODELS)})")
    parser.add_argument("--seconds", type=float, default=None, help="audio for the RTF run (default 5, quick 1)")
    parser.add_argument("--repeats", type=int, default=None, help="paced TTFA streams per model (default 15, quick 3)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "latency.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    specs = args.models or (["tinycodec", "tiny", "ultra_tiny"] if args.quick else MODELS)
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    repeats = args.repeats or (3 if args.quick else 15)
    results, skipped = [], {}
    for spec in specs:
        try:
            r = bench_model(spec, seconds, repeats)
        except (ValueError, FileNotFoundError) as exc:  # e.g. the transformer model is not built yet
            skipped[spec] = str(exc).splitlines()[0]
            print(f"{spec:>16}: skipped ({skipped[spec][:80]})")
            continue
        results.append(r)
        print(f"{spec:>16}: TTFA {r['ttfa_ms_median']:6.1f} ms (best {r['ttfa_ms_best']:.1f}), first sound "
              f"{r['first_sound_ms_median']:.1f} ms (algorithmic {r['algorithmic_latency_ms']:.1f}, encode+decode {r['first_chunk_encode_decode_ms_median']:.1f}), RTF {r['rtf']:.3f} (compute {r['compute_rtf']:.3f}), "
              f"blocking TTFA {r['blocking_ttfa_ms']:.0f} ms")
    by_name = {r["model"]: r for r in results}
    report = {
        "benchmark": "streaming pipeline time to first audio and RTF, 1 intra-op thread, 1 frame per chunk",
        "quick": args.quick,
        "seconds": seconds,
        "machine": machine_info(),
        "results": results,
        "skipped": skipped,
    }
    if TARGET_MODEL in by_name:
        t = by_name[TARGET_MODEL]
        limit = t["algorithmic_latency_ms"] + TARGET_MARGIN_MS
        report["target"] = {"model": TARGET_MODEL, "first_sound_ms_max": limit,
                            "measured_median": t["first_sound_ms_median"], "measured_best": t["first_sound_ms_best"],
                            "met": t["first_sound_ms_median"] <= limit, "met_best": t["first_sound_ms_best"] <= limit}
        # ratios inside one run compare across machines; absolute milliseconds do not
        report[f"compute_ms_relative_to_{TARGET_MODEL}"] = {
            n: r["compute_ms_median"] / t["compute_ms_median"] if t["compute_ms_median"] > 0 else None
            for n, r in by_name.items()}
    write_report(args.out, report)
    from tinycodec.eval.provenance import stamp_results

    stamp_results(args.out, [r["model"] for r in results])  # the weights measured
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
