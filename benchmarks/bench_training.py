"""Training throughput: steps/s and audio seconds/s for ultra_tiny, tiny and small.

Each measurement builds the real trainer (generator + discriminators + all losses, GAN phase on)
on a folder of audio and times ``Trainer.train_step`` after warm-up steps. CPU runs use 2 threads;
a CUDA run is added when a GPU is visible (bf16 autocast). Results: benchmarks/results/training.json.

    python benchmarks/bench_training.py [--quick] [--audio_dir data/demo]

Notebook: book/04_training.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("ultra_tiny", "tiny", "small")


def synth_corpus(root: Path) -> Path:
    """A few seconds of noisy chirps when no corpus is given (train and val splits both present)."""
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from test_train import make_corpus

    return make_corpus(root, n_train=4, seconds=2.0)


def measure(preset: str, audio_dir: str, device: str, batch_size: int, audio_length: float, steps: int,
            warmup: int) -> dict:
    from tinycodec.train import TrainConfig, Trainer
    from tinycodec.train.data import CropDataset

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(preset=preset, audio_dir=audio_dir, batch_size=batch_size, audio_length=audio_length,
                          max_steps=steps + warmup, checkpoint_dir=tmp, log_dir=None, device=device,
                          progress=False, val_clips=1)
        trainer = Trainer(cfg)
        loader = iter(torch.utils.data.DataLoader(CropDataset(trainer.train_folder), batch_sampler=trainer.sampler))
        batches = [next(loader).to(trainer.device) for _ in range(steps + warmup)]  # data loading not timed
        trainer.model.train()
        for wav in batches[:warmup]:
            trainer.train_step(wav)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for wav in batches[warmup:]:
            trainer.train_step(wav)
            trainer.step += 1
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    params = sum(p.numel() for p in trainer.model.parameters())
    return {"preset": preset, "device": device, "batch_size": batch_size, "audio_length_s": audio_length,
            "steps": steps, "seconds": round(seconds, 3), "steps_per_s": round(steps / seconds, 4),
            "audio_seconds_per_s": round(steps * batch_size * audio_length / seconds, 3),
            "generator_params": params, "threads": torch.get_num_threads() if device == "cpu" else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps, small batch (seconds)")
    parser.add_argument("--audio_dir", default=None, help="corpus (default: data/demo, else synthetic)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "training.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    tmp = tempfile.TemporaryDirectory()
    audio_dir = args.audio_dir or (str(ROOT / "data" / "demo") if (ROOT / "data" / "demo").is_dir()
                                   else str(synth_corpus(Path(tmp.name) / "corpus")))
    batch, length, steps, warmup = (4, 0.25, 3, 1) if args.quick else (8, 0.5, 10, 2)
    results = [measure(p, audio_dir, "cpu", batch, length, steps, warmup) for p in PRESETS]
    if torch.cuda.is_available():
        results += [measure(p, audio_dir, "cuda", 32, 1.0, steps * 5, warmup * 5) for p in PRESETS]
    base = results[0]["steps_per_s"]
    for r in results:
        r["speed_vs_ultra_tiny_cpu"] = round(r["steps_per_s"] / base, 3)
    out = {
        "benchmark": "training", "quick": args.quick, "torch": torch.__version__, "python": platform.python_version(),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average_1m": round(os.getloadavg()[0], 2),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "audio_dir": os.path.relpath(audio_dir, ROOT) if audio_dir.startswith(str(ROOT)) else "synthetic",
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for r in results:
        print(f"{r['preset']:>10} {r['device']}: {r['steps_per_s']:.3f} steps/s, "
              f"{r['audio_seconds_per_s']:.2f} audio s/s")


if __name__ == "__main__":
    main()
