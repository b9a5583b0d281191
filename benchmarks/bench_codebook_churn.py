"""Codebook churn before/after: the per-step dead-code rule against the windowed one, same run otherwise.

Trains ``tiny`` from scratch twice on the reference corpus (speech + nature, held-out speakers),
identical seed, data and steps (batch 8 x 0.5 s, mel + commitment), once with EnCodec's per-step
rule (``dead_code_window=0``) and once with the default window. Records per step and level the codes
re-seeded and the perplexity, then scores held-out test clips with n_q = 1..4 (log-mel, STOI on
speech): do the finer levels now carry information?

    python benchmarks/bench_codebook_churn.py [--steps 400] [--rule window|per_step|both]

Results: benchmarks/results/codebook_churn.json (one file per rule when run separately, merged by
``--merge``). Notebook: book/03_quantization.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tools"))
from _common import machine_info, write_report  # noqa: E402

RULES = {"per_step": 0.0, "window": 32.0}
OUT = ROOT / "benchmarks" / "results" / "codebook_churn.json"


@torch.no_grad()
def held_out_scores(model, clips: list, n_q_max: int) -> dict:
    from tinycodec.eval.metrics import stoi
    from tinycodec.train.losses import mel_distance

    scores = {}
    for n_q in range(1, n_q_max + 1):
        mels, stois = {}, []
        for clip in clips:
            wav = clip.wav
            y = model.decode(model.encode(wav, n_q), length=wav.shape[-1])
            mels.setdefault(clip.category, []).append(mel_distance(wav, y, model.sample_rate))
            if clip.category == "speech":
                s = stoi(wav[0, 0], y[0, 0], model.sample_rate)
                if not math.isnan(s):
                    stois.append(s)
        scores[f"n_q={n_q}"] = {f"log_mel_{c}": round(sum(v) / len(v), 4) for c, v in mels.items()}
        scores[f"n_q={n_q}"]["stoi_speech"] = round(sum(stois) / max(1, len(stois)), 4)
    return scores


def run(rule: str, steps: int, clips: list, audio_dir: str) -> dict:
    from tinycodec.train import TrainConfig, Trainer
    from tinycodec.train.data import CropDataset

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(preset="tiny", audio_dir=audio_dir, batch_size=8, audio_length=0.5, max_steps=steps,
                          disc_warmup_steps=10**9, g_lr=1e-3, checkpoint_dir=tmp, log_dir=None, progress=False,
                          val_clips=1, device="cpu", num_threads=1, seed=0,
                          model_overrides={"dead_code_window": RULES[rule]})
        trainer = Trainer(cfg)
        loader = iter(torch.utils.data.DataLoader(CropDataset(trainer.train_folder), batch_sampler=trainer.sampler,
                                                  generator=torch.Generator().manual_seed(0)))
        trainer.model.train()
        replaced, perplexity, t0 = [], [], time.time()
        for _ in range(steps):
            trainer.train_step(next(loader))
            trainer.step += 1
            stats = trainer.model.quantizer.last_stats
            replaced.append(stats.replaced.tolist())
            perplexity.append([round(p, 1) for p in stats.perplexity.tolist()])
        model = trainer.model.eval()
        seconds = time.time() - t0
    late = replaced[-steps // 4:]
    return {
        "dead_code_window": RULES[rule], "steps": steps, "train_seconds": round(seconds, 1),
        "replaced_per_step": replaced, "perplexity_per_step": perplexity,
        "replaced_per_step_last_quarter_mean": [round(sum(r[i] for r in late) / len(late), 2) for i in range(4)],
        "perplexity_last_quarter_mean": [round(sum(p[i] for p in perplexity[-steps // 4:]) / len(late), 1)
                                         for i in range(4)],
        "held_out": held_out_scores(model, clips, model.num_quantizers),
    }


def main() -> None:
    from train_reference import link_corpora

    from tinycodec.eval.clips import load_clips

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--rule", choices=[*RULES, "both"], default="both")
    p.add_argument("--clips", type=int, default=12, help="held-out test clips per category (4 s each)")
    p.add_argument("--merge", action="store_true", help="merge the per-rule files into codebook_churn.json")
    args = p.parse_args()
    if args.merge:
        parts = {r: json.loads((OUT.parent / f"codebook_churn_{r}.json").read_text()) for r in RULES}
        report = {"benchmark": "codebook_churn", "machine": parts["window"]["machine"],
                  "runs": {r: parts[r]["runs"][r] for r in RULES}}
        write_report(OUT, report)
        return
    torch.set_num_threads(1)
    audio_dir = str(link_corpora())
    clips = load_clips(audio_dir, 16000, split="test", max_clips=args.clips, clip_seconds=4.0)
    rules = list(RULES) if args.rule == "both" else [args.rule]
    report = {"benchmark": "codebook_churn", "preset": "tiny", "batch": "8 x 0.5 s (256 frames per step)",
              "machine": machine_info(), "runs": {r: run(r, args.steps, clips, audio_dir) for r in rules}}
    write_report(OUT if args.rule == "both" else OUT.parent / f"codebook_churn_{args.rule}.json", report)
    for r, res in report["runs"].items():
        print(r, "re-seeded/step (last quarter):", res["replaced_per_step_last_quarter_mean"],
              "perplexity:", res["perplexity_last_quarter_mean"])
        for k, v in res["held_out"].items():
            print("  ", k, v)


if __name__ == "__main__":
    main()
