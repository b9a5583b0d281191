"""Overlap-save against stateful streaming, per model family, one CPU thread.

For each preset, :func:`tinycodec.streaming.overlap_save.compare_stream_modes` streams the same speech
through overlap-save (window 2 hops, hop 1 hop; 480/240 for the transformer codec) and through
``model.streaming(1)`` one hop per call, and reports per mode: input samples processed per second
of audio (compute count), estimated MACs/s, algorithmic latency, real-time factor (RTF, lower is
faster) and the difference from the offline output. Weights are random presets unless a shipped
model exists: cost does not depend on weights, the OaS-vs-offline difference does (report both).
Writes ``benchmarks/results/stream_modes.json``.

Usage: python benchmarks/bench_stream_modes.py [--quick] [--presets transformer_tiny tiny]

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from _common import machine_info  # noqa: E402  (benchmarks/ is the script's folder)

from tinycodec.pretrained import load_model
from tinycodec.streaming.overlap_save import compare_stream_modes

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "data" / "demo" / "speech" / "pyannote_sample.wav"
PRESETS = ["transformer_tiny", "tiny", "soundstream_16k"]



def test_audio(sample_rate: int, seconds: float) -> tuple[torch.Tensor, str]:
    """Real speech from the demo corpus when present, else seeded noise."""
    if SPEECH.exists():
        from tinycodec.audio import load

        wav, _ = load(SPEECH, sample_rate)
        return wav[:, : int(seconds * sample_rate)], str(SPEECH.relative_to(ROOT))
    g = torch.Generator().manual_seed(0)
    return 0.1 * torch.randn(1, int(seconds * sample_rate), generator=g), "noise"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 s of audio, 1 repeat")
    p.add_argument("--presets", nargs="+", default=PRESETS)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "stream_modes.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    seconds, repeats = (2.0, 1) if args.quick else (10.0, 3)
    rows = []
    for name in args.presets:
        model = load_model(name)
        wav, source = test_audio(model.sample_rate, seconds)
        with torch.no_grad():
            model.decode(model.encode(wav[..., : 4 * model.hop_length][:, None]))  # warm-up
        row = compare_stream_modes(model, wav, repeats=repeats)
        row["audio"] = source
        rows.append(row)
        print(f"{name:18s} OaS RTF {row['overlap_save']['rtf']:.3f} (SNR vs offline "
              f"{row['overlap_save']['snr_vs_offline_db']:.1f} dB)  stateful RTF {row['stateful']['rtf']:.3f} "
              f"(max diff {row['stateful']['max_abs_diff_vs_offline']:.1e})  compute ratio "
              f"{row['compute_ratio_stateful_over_oas']:.2f}")
    result = {"benchmark": "stream_modes", "quick": args.quick, "seconds": seconds, "repeats": repeats,
              "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine_info(), "models": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
