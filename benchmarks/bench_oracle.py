"""Where the quality goes: the flagship's oracle decodes on held-out speech (tinycodec.eval.oracle).

For each clip and each number of codebooks: the decode that ships, the decoder on the unquantized
latent, the decoded magnitude with the true phase, and the true magnitude with the decoded phase;
PESQ-WB, STOI and log-mel of each, means per decode. Writes ``benchmarks/results/oracle.json``
(with the weights hash of the model it measured, the split and the clips).

Usage: python benchmarks/bench_oracle.py [--model tinycodec] [--split test] [--max_clips 24] [--quick]

Notebook: book/05_bitrate.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _common import machine_info, write_report  # noqa: E402  (benchmarks/ is the script's folder)

from tinycodec.eval.clips import load_clips
from tinycodec.eval.oracle import oracle_scores, summarize_oracle
from tinycodec.eval.provenance import weights_stamp
from tinycodec.pretrained import load_model

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "oracle.json"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tinycodec")
    p.add_argument("--data", default=str(ROOT / "data" / "reference"), help="a corpus with splits (speech/)")
    p.add_argument("--split", default="test")
    p.add_argument("--max_clips", type=int, default=24)
    p.add_argument("--clip_seconds", type=float, default=4.0)
    p.add_argument("--quick", action="store_true", help="3 clips, n_q 1 and all (a smoke run)")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model(args.model)
    data = Path(args.data)
    if not (data / "speech").exists():
        raise SystemExit(f"no speech corpus in {data}: link it with `python tools/train_reference.py` "
                         "(data/reference) or pass --data")
    clips = load_clips(data, model.sample_rate, ["speech"], args.split, 3 if args.quick else args.max_clips,
                       args.clip_seconds)
    n_qs = [1, model.quantizer.num_quantizers] if args.quick else None
    start = time.time()
    rows = oracle_scores(model, clips, n_qs=n_qs, progress=True)
    report = {
        "format": "tinycodec-oracle", "model": args.model, "split": args.split, "category": "speech",
        "n_clips": len(clips), "clip_seconds": args.clip_seconds, "stft": {"n_fft": 512, "hop": 128},
        "means": summarize_oracle(rows), "rows": rows, "seconds": round(time.time() - start, 1),
        "machine": machine_info(), "weights": {args.model: weights_stamp(model)},
    }
    write_report(args.out, report)
    for key, row in report["means"].items():
        print(f"{key:>20}: PESQ-WB {row['pesq_wb']:.3f}  STOI {row['stoi']:.3f}  log-mel {row['log_mel']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
