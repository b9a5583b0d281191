"""Train a reference model on the real speech + nature corpora, then ship it.

    tinycodec data fetch speech --to data/speech      # 6.4 h of real speech (Debian packages)
    tinycodec data fetch nature --to data/nature      # 48 min of real ambience and animals
    python tools/train_reference.py train tiny --steps 20000 [--device cuda] [--threads 1]
    python tools/train_reference.py ship tiny CHECKPOINT [--eval-json benchmarks/quality.json]

`train` links both corpora under data/reference/ (one folder, so AudioFolder's hash split holds out
the same files for validation and testing every time) and trains with reconstruction losses only
(`disc_warmup_steps` beyond the run: on a CPU budget the GAN phase costs 3x per step and does not
lower the mel distance). `ship` writes tinycodec/pretrained/NAME.safetensors and its model card.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "data" / "reference"
PRETRAINED = ROOT / "tinycodec" / "pretrained"


def link_corpora() -> Path:
    REFERENCE.mkdir(parents=True, exist_ok=True)
    for name in ("speech", "nature"):
        target = ROOT / "data" / name / name
        if not target.is_dir():
            sys.exit(f"missing corpus {target}: run `tinycodec data fetch {name} --to data/{name}`")
        link = REFERENCE / name
        if not link.exists():
            link.symlink_to(target, target_is_directory=True)
    return REFERENCE


def cmd_train(args) -> int:
    from tinycodec.train import TrainConfig, train

    audio_dir = link_corpora()
    config = TrainConfig(
        preset=args.preset, audio_dir=str(audio_dir), audio_length=0.5, batch_size=args.batch_size,
        g_lr=1e-3, lr_gamma=0.99995, disc_warmup_steps=10**9, max_steps=args.steps,
        checkpoint_dir=f"checkpoints/reference_{args.preset}", log_dir=f"runs/reference_{args.preset}",
        save_interval=250, val_interval=250, val_clips=16, num_threads=args.threads,
        device=args.device, seed=args.seed, resume=args.resume,
    )
    start = time.time()
    result = train(config)
    print(json.dumps({"preset": args.preset, "steps": result.step, "hours": (time.time() - start) / 3600,
                      "best_val_mel_distance": result.best_val, "hardware": platform.processor() or platform.machine()}))
    return 0


def cmd_ship(args) -> int:
    from tinycodec.pretrained import load_model
    from tinycodec.summary import summary
    from tinycodec.train import export_weights, load_checkpoint

    model = load_checkpoint(args.checkpoint)
    out = export_weights(model, PRETRAINED / f"{args.name}.safetensors")
    again = load_model(str(out))  # the shipped file must rebuild with no other argument
    assert again.config == model.config
    s = summary(model)
    card = [
        f"# `{args.name}`: {model.family} reference model", "",
        "| field | value |", "|---|---|",
        f"| family / config | {model.family}, C={model.config.C}, D={model.config.D}, "
        f"{model.num_quantizers} x {model.config.codebook_size} codes |",
        f"| bitrate | {model.bitrate():.0f} bit/s at {model.sample_rate} Hz ({model.frame_rate:g} frames/s) |",
        f"| parameters | {s.params_encoder + s.params_codebooks + s.params_decoder:,} ({s.params_encoder:,} encoder, "
        f"{s.params_codebooks:,} codebooks, {s.params_decoder:,} decoder) |",
        f"| training steps | {getattr(model, 'checkpoint_step', 'see notes')} |",
        f"| file | `tinycodec/pretrained/{args.name}.safetensors` ({out.stat().st_size:,} bytes) |",
        "", "## Training", "", args.notes.strip(), "",
    ]
    if args.eval_json and Path(args.eval_json).exists():
        card += ["## Held-out evaluation", "", f"Measured by `tinycodec eval`; full numbers in `{args.eval_json}`.", ""]
    (PRETRAINED / f"{args.name}.md").write_text("\n".join(card))
    print(f"shipped {out} ({out.stat().st_size} bytes) and {args.name}.md")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train")
    p.add_argument("preset")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", default=None)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("ship")
    p.add_argument("name")
    p.add_argument("checkpoint")
    p.add_argument("--notes", default="", help="training data, command, hours and hardware (Markdown)")
    p.add_argument("--eval-json", default=None)
    p.set_defaults(func=cmd_ship)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
