"""What the spectral and phase losses cost: the flagship's decoder-training step with each loss set
(and with the harmonic-plus-noise head and its f0 loss).

Every configuration builds the real trainer on the frozen flagship (``--init tinycodec
--freeze-encoder --levels 4 5``, batch 16 x 0.5 s, no GAN) and times ``Trainer.train_step`` on the
same pre-loaded batches, interleaved round-robin so that machine noise hits all alike. The figure
that matters is each configuration's audio seconds per second as a ratio to the mel-only step
(fastest round of each; medians beside them).

    python benchmarks/bench_decoder_losses.py [--rounds 5] [--audio_dir data/demo]

Results: benchmarks/results/decoder_losses.json. Notebook: book/04_training.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import machine_info, write_report  # noqa: E402

CONFIGS = {"mel": {}, "mel+stft": {"stft": 100.0}, "mel+stft+phase": {"stft": 100.0, "phase": 200.0},
           "mel+complex": {"complex": 100.0}, "hn head, mel+f0": {"f0": 10.0}}
HEADS = {"hn head, mel+f0": "hn"}  # configurations that train another decoder head (default: the iSTFT head)


def main() -> None:
    from tinycodec.eval.provenance import weights_stamp
    from tinycodec.train import TrainConfig, Trainer
    from tinycodec.train.losses import LossWeights

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="steps per round and configuration")
    p.add_argument("--audio_dir", default=str(ROOT / "data" / "demo"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "decoder_losses.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    batch, length = 16, 0.5
    from tinycodec.pretrained import load_pretrained

    stamp = weights_stamp(load_pretrained("tinycodec"))
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {}
        for name, w in CONFIGS.items():
            overrides = {"decoder_head": HEADS[name]} if name in HEADS else {}
            cfg = TrainConfig(init="tinycodec", freeze_encoder=True, frozen_levels=(4, 5), weights=LossWeights(**w),
                              model_overrides=overrides,
                              disc_warmup_steps=10**9, audio_dir=args.audio_dir, batch_size=batch,
                              audio_length=length, max_steps=10**6, log_dir=None, checkpoint_dir=f"{tmp}/{name}",
                              progress=False, val_clips=1, device="cpu", num_threads=1)
            trainers[name] = Trainer(cfg)
            trainers[name].model.train()
        gen = torch.Generator().manual_seed(0)
        batches = [torch.randn(batch, 1, int(16000 * length), generator=gen) * 0.1 for _ in range(args.steps)]
        times = {name: [] for name in CONFIGS}
        for _ in range(args.rounds):
            for name, trainer in trainers.items():
                t = time.perf_counter()
                for wav in batches:
                    trainer.train_step(wav)
                times[name].append((time.perf_counter() - t) / args.steps)
    audio = batch * length
    fastest = {k: min(v) for k, v in times.items()}
    report = {
        "benchmark": "decoder-training step of the frozen flagship per loss set", "batch": f"{batch} x {length} s",
        "threads": 1, "rounds": args.rounds, "steps_per_round": args.steps,
        "configs": {k: {"weights": CONFIGS[k], "seconds_per_step_fastest": round(fastest[k], 4),
                        "seconds_per_step_median": round(statistics.median(times[k]), 4),
                        "audio_seconds_per_second": round(audio / fastest[k], 2),
                        "speed_vs_mel": round(fastest["mel"] / fastest[k], 3)} for k in CONFIGS},
        "machine": machine_info(), "weights": {"tinycodec": stamp},  # the weights every run started from
    }
    write_report(args.out, report)
    for k, v in report["configs"].items():
        print(f"{k:>16}: {v['seconds_per_step_fastest'] * 1e3:7.1f} ms/step, {v['audio_seconds_per_second']:6.2f} "
              f"audio-s/s, {v['speed_vs_mel']:.2f}x the mel step")


if __name__ == "__main__":
    main()
