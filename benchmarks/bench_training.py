"""Training speed: today's step against the old one, and decoder training against a full GAN step.

Every configuration builds the real trainer (losses, discriminators, optimizers) and times
``Trainer.train_step`` on the same pre-loaded batches (``tiny``, batch 8 x 0.5 s). Measurements are
interleaved (round-robin over configurations, median of the rounds), so machine noise hits all of
them alike, and every figure that matters is a ratio measured in this one run. Ratios use each configuration's
fastest round (the one least disturbed by other load: on a shared 2-core machine a busy neighbour
stretches single rounds 10x); the medians are reported beside them:

- ``reconstruction``: the generator-only step, before (unfold fast path under autograd) / after.
- ``adversarial``: the GAN-phase step, before (fast path + two discriminator forwards + NCHW STFT
  discriminator) / after (one shared forward, channels-last STFT discriminator).

The old code paths live here, not in the package: :func:`two_forward_trainer` takes the step's two
discriminator forwards (the path DDP and torch.compile take; ``tests/test_train_discriminators.py``
pins it equal to the shared one), and :func:`fast_path_under_autograd` lets the depthwise convs take
their multiply-and-sum path while autograd records.
- ``decoder``: training the server decoder on the frozen int8-exact encoder with the multi-scale
  STFT discriminator, GAN on, against the old full ``tiny`` GAN step (the issue asks >= 3x).
- ``decoder_window``: the same with random-window discriminators (``disc_window=0.125``: each
  discriminator sees the same random 0.125 s of the real and the decoded crop, as GAN-TTS does).
- ``decoder_mel``: the same without the GAN (mel + commitment), how the shipped server decoders were
  trained.

    python benchmarks/bench_training.py [--quick] [--threads 2] [--audio_dir data/demo]

Results: benchmarks/results/training.json. Notebook: book/04_training.md
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import machine_info, write_report  # noqa: E402


def two_forward_trainer(config):
    """A trainer whose adversarial step takes two discriminator forwards (the old step's path)."""
    from tinycodec.train import Trainer

    class TwoForwardTrainer(Trainer):
        one_disc_forward = False

    return TwoForwardTrainer(config)


def fast_path_under_autograd(on: bool):
    """A context in which (``on``) depthwise convs take their multiply-and-sum path under autograd too."""
    from tinycodec.modules import conv

    return mock.patch.object(conv, "_recording", lambda weight: False) if on else contextlib.nullcontext()


def build(name: str, audio_dir: str, tmp: str, batch: int, length: float):
    """A trainer for configuration ``name`` and whether it runs the old code paths."""
    from tinycodec.export.int8_prepare import prepare_int8_model
    from tinycodec.pretrained import load_pretrained
    from tinycodec.train import TrainConfig, Trainer
    from tinycodec.train.checkpoint import export_weights
    from tinycodec.train.discriminators import DiscriminatorConfig, STFTDiscriminator

    common = dict(audio_dir=audio_dir, batch_size=batch, audio_length=length, max_steps=10**6, log_dir=None,
                  checkpoint_dir=os.path.join(tmp, name), progress=False, val_clips=1, device="cpu")
    old = name.endswith("_before")
    if name.startswith("decoder"):
        init = Path(tmp) / "tiny_int8.safetensors"
        if not init.exists():
            model = load_pretrained("tiny")
            if not model.config.encoder_int8:
                model = prepare_int8_model(model, None)
            export_weights(model, init)
        # "decoder": GAN on, the discriminators see whole crops; "decoder_window": a random 0.125 s window
        # of each (GAN-TTS's random-window discriminators); "decoder_mel": no GAN, how the shipped server
        # decoders were trained (their GAN continuations did not gain, chapter 04)
        window = 0.125 if name == "decoder_window" else 0.0
        warmup = 10**9 if name == "decoder_mel" else 0
        cfg = TrainConfig(init=str(init), decoder="server", freeze_encoder=True, disc_warmup_steps=warmup,
                          disc_window=window,
                          disc=DiscriminatorConfig(use_wave=False, stft_n_ffts=[256, 1024], stft_channels=8), **common)
    else:
        warmup = 0 if name.startswith("adversarial") else 10**9
        cfg = TrainConfig(preset="tiny", disc_warmup_steps=warmup, **common)
    trainer = two_forward_trainer(cfg) if old else Trainer(cfg)
    for m in trainer.disc.modules():  # the old runs: NCHW 2-D convs (channels-last came later)
        if isinstance(m, STFTDiscriminator):
            m.set_memory_format(torch.contiguous_format if old else torch.channels_last)
    trainer.model.train()
    return trainer, old


def main() -> None:
    from tinycodec.train.data import CropDataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 4 x 0.25 s, 2 rounds (a smoke run)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the issue measures on 2)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--audio_dir", default=str(ROOT / "data" / "demo"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "training.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    batch, length, rounds, per_round = (4, 0.25, 2, 2) if args.quick else (8, 0.5, args.rounds, 3)
    names = ["reconstruction_before", "reconstruction", "adversarial_before", "adversarial", "decoder",
             "decoder_window", "decoder_mel"]
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {n: build(n, args.audio_dir, tmp, batch, length) for n in names}
        first = trainers[names[0]][0]
        loader = iter(torch.utils.data.DataLoader(CropDataset(first.train_folder), batch_sampler=first.sampler))
        batches = [next(loader) for _ in range(per_round)]
        torch.set_num_threads(args.threads)
        times: dict[str, list[float]] = {n: [] for n in names}
        for r in range(rounds + 1):  # round 0 warms every configuration up, untimed
            for name, (trainer, old) in trainers.items():
                with fast_path_under_autograd(old):
                    t0 = time.perf_counter()
                    for wav in batches:
                        trainer.train_step(wav)
                        trainer.step += 1
                    if r:
                        times[name].append((time.perf_counter() - t0) / per_round)
        params = {n: sum(p.numel() for p in t.model.parameters() if p.requires_grad) for n, (t, _) in trainers.items()}
        disc = {n: sum(p.numel() for p in t.disc.parameters()) for n, (t, _) in trainers.items()}
    audio = batch * length
    results = {n: {"seconds_per_step": round(min(v), 4), "median_seconds_per_step": round(statistics.median(v), 4),
                   "rounds": [round(x, 4) for x in v], "audio_seconds_per_second": round(audio / min(v), 3),
                   "trained_params": params[n], "discriminator_params": disc[n]} for n, v in times.items()}
    speed = {n: r["audio_seconds_per_second"] for n, r in results.items()}
    ratios = {
        "reconstruction_after_vs_before": round(speed["reconstruction"] / speed["reconstruction_before"], 3),
        "adversarial_after_vs_before": round(speed["adversarial"] / speed["adversarial_before"], 3),
        "decoder_training_vs_old_full_gan_step": round(speed["decoder"] / speed["adversarial_before"], 3),
        "decoder_training_vs_new_full_gan_step": round(speed["decoder"] / speed["adversarial"], 3),
        "decoder_window_vs_old_full_gan_step": round(speed["decoder_window"] / speed["adversarial_before"], 3),
        "decoder_mel_vs_old_full_gan_step": round(speed["decoder_mel"] / speed["adversarial_before"], 3),
    }
    report = {"benchmark": "training", "quick": args.quick, "preset": "tiny", "batch": f"{batch} x {length} s",
              "threads": args.threads, "rounds": rounds, "steps_per_round": per_round,
              "machine": machine_info(), "results": results, "ratios": ratios,
              "note": "ratios are measured in this one run, interleaved, from each configuration's fastest round; "
                      "absolute speeds depend on the load"}
    write_report(args.out, report)
    for n, r in results.items():
        print(f"{n:>24}: {r['seconds_per_step']:.3f} s/step, {r['audio_seconds_per_second']:.2f} audio s/s")
    for k, v in ratios.items():
        print(f"{k}: {v}x")


if __name__ == "__main__":
    main()
