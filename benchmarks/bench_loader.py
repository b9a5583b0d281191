"""Loader throughput in crops per second: AudioFolder with 0 and 2 workers vs the TensorCorpus fast path.

    python benchmarks/bench_loader.py [--quick] [--root data/demo]

Without ``--root`` a seeded corpus is written to a temporary folder: half the files at 16 kHz
(crop = read + slice), half at 44.1 kHz stereo (crop = read + mixdown + resample), so the number
includes the resampler. Writes benchmarks/results/loader.json (machine info, crops/s, ratios).

Notebook: book/01_data.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from tinycodec.data.folder import AudioFolder
from tinycodec.data.synth import NatureConfig, synth_nature
from tinycodec.data.tensorcorpus import TensorCorpus, build_tensor_corpus

OUT = Path(__file__).parent / "results" / "loader.json"


def make_corpus(root: Path, n_files: int, seconds: float) -> None:
    for i in range(n_files):
        sr = 16000 if i % 2 == 0 else 44100
        wav, _ = synth_nature(i, NatureConfig(sample_rate=sr, duration=seconds))
        x = wav[0].numpy()
        data = x if sr == 16000 else np.stack([x, 0.5 * x], axis=1)  # the 44.1 kHz half is stereo
        sf.write(root / f"clip_{i:03d}.wav", data, sr, subtype="PCM_16")


def loader_rate(ds: AudioFolder, workers: int, batch_size: int, n_batches: int) -> float:
    torch.manual_seed(0)
    dl = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=True, num_workers=workers, persistent_workers=workers > 0
    )
    it = iter(dl)
    next(it)  # worker start-up is not throughput
    n, t0 = 0, time.perf_counter()
    while n < n_batches * batch_size:
        try:
            batch = next(it)
        except StopIteration:
            it = iter(dl)
            continue
        n += batch.shape[0]
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small corpus and few batches (CI check)")
    p.add_argument("--root", default=None, help="benchmark this folder instead of a generated corpus")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads in the main process")
    args = p.parse_args(argv)
    n_files, seconds, n_batches, batch_size, audio_length = (
        (8, 3.0, 8, 8, 1.0) if args.quick else (40, 10.0, 60, 16, 1.0)
    )
    # One thread, like each DataLoader worker: on a busy 2-core machine torch's intra-op threads
    # spin against each other and small ops (one crop's resampling, one gather) slow down 50x.
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]  # other jobs on the machine skew every number: recorded
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if args.root else Path(tmp) / "corpus"
        if not args.root:
            root.mkdir()
            make_corpus(root, n_files, seconds)
        t0 = time.perf_counter()
        ds = AudioFolder(root, 16000, audio_length, crops_per_file=64, cache=False)
        scan_s = time.perf_counter() - t0
        results = {"scan_s": round(scan_s, 3)}
        for w in (0, 2):
            results[f"crops_per_s_workers{w}"] = round(loader_rate(ds, w, batch_size, n_batches), 1)
        t0 = time.perf_counter()
        path = build_tensor_corpus(ds, Path(tmp) / "corpus.safetensors")
        results["fast_path_build_s"] = round(time.perf_counter() - t0, 3)
        corpus = TensorCorpus(path, audio_length, device="cpu")
        corpus.sample(batch_size)
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < (0.5 if args.quick else 3.0):
            n += corpus.sample(batch_size).shape[0]
        results["crops_per_s_fast_path"] = round(n / (time.perf_counter() - t0), 1)
    base = results["crops_per_s_workers0"]
    report = {
        "benchmark": "loader",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_avg_1min_at_start": round(load, 2),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
        },
        "config": {
            "quick": args.quick,
            "torch_threads": args.threads,
            "root": args.root or "generated (half 16 kHz mono, half 44.1 kHz stereo)",
            "files": len(ds.files),
            "hours": round(sum(ds.durations) / 3600, 4),
            "batch_size": batch_size,
            "audio_length_s": audio_length,
            "sample_rate": 16000,
            "batches": n_batches,
        },
        "results": results,
        "ratios": {
            "workers2_over_workers0": round(results["crops_per_s_workers2"] / base, 2),
            "fast_path_over_workers0": round(results["crops_per_s_fast_path"] / base, 1),
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["results"] | report["ratios"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
