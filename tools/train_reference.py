"""Train a reference model on the real speech + nature corpora, then ship it.

    tinycodec data fetch speech --to data/speech      # 6.4 h of real speech (Debian packages)
    tinycodec data fetch nature --to data/nature      # 48 min of real ambience and animals
    python tools/train_reference.py train tiny --steps 20000 [--device cuda] [--threads 1]
    python tools/train_reference.py follow RUN        # beside it: PESQ-WB/STOI/log-mel of each checkpoint
    python tools/train_reference.py follow RUN --checkpoints KEPT --stride 1000   # afterwards, from kept copies
    python tools/train_reference.py curves RUN...     # those curves, with their starting models, in one JSON
    python tools/train_reference.py ship tiny CHECKPOINT [--eval-json benchmarks/quality.json]

`train` links both corpora under data/reference/ with data/manifests/reference_splits.json as its
splits.json, so AudioFolder and `tinycodec eval` hold out the same whole speakers and recordings every
time, and trains with reconstruction losses only (`disc_warmup_steps` beyond the run: on a CPU budget
the GAN phase costs 3x per step and does not lower the mel distance). Stop a run early with SIGINT or
SIGTERM (`timeout -s TERM 50m ...`): it saves a checkpoint first. `ship` writes
tinycodec/pretrained/NAME.safetensors (float16, without the EMA training statistics) and its model card.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import sys
import time
from pathlib import Path

from model_card import model_card, quality_table

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "data" / "reference"
SPLITS = ROOT / "data" / "manifests" / "reference_splits.json"
# generator learning rate per family: the plain conv stacks take 1e-3, attention and ELU stacks less
LEARNING_RATES = {"tinystream": 1e-3, "soundstream": 5e-4, "transformer": 5e-4}
PRETRAINED = ROOT / "tinycodec" / "pretrained"
TRAINING_LOG = ROOT / "benchmarks" / "reference_training.json"  # every shipped model's runs and curve
VAL_SPEECH = dict(categories=["speech"], split="val", max_clips=10, clip_seconds=4.0)  # held-out speakers


def link_corpora() -> Path:
    REFERENCE.mkdir(parents=True, exist_ok=True)
    for name in ("speech", "nature"):
        target = ROOT / "data" / name / name
        if not target.is_dir():
            sys.exit(f"missing corpus {target}: run `tinycodec data fetch {name} --to data/{name}`")
        link = REFERENCE / name
        if not link.exists():
            link.symlink_to(target, target_is_directory=True)
    shutil.copyfile(SPLITS, REFERENCE / "splits.json")  # whole speakers/recordings held out
    return REFERENCE


MPD_PERIODS = (2, 3, 5, 7, 11)  # prime: no two periods see the same folding


def cmd_train(args) -> int:
    from tinycodec.models import get_preset
    from tinycodec.train import TrainConfig, train
    from tinycodec.train.discriminators import DiscriminatorConfig
    from tinycodec.train.losses import LossWeights

    audio_dir = link_corpora()
    family = get_preset(args.preset).family
    run = args.run or args.preset
    disc = DiscriminatorConfig(use_wave=False, stft_n_ffts=[256, 1024], stft_channels=8) if args.ms_stft else DiscriminatorConfig()
    if args.mpd:  # waveform periods beside the spectra (the wave discriminators' job, done per period)
        disc.periods, disc.period_channels, disc.use_wave = list(MPD_PERIODS), 8, False
    config = TrainConfig(
        preset=None if args.init else args.preset, init=args.init, decoder=args.decoder, encoder=args.encoder,
        freeze_encoder=args.freeze_encoder, frozen_levels=tuple(args.levels), disc=disc,
        weights=LossWeights(stft=args.stft_loss, complex=args.complex_loss, phase=args.phase_loss, f0=args.f0_loss),
        model_overrides=decoder_overrides(args),
        num_quantizers=args.codebooks,
        audio_dir=str(audio_dir), audio_length=0.5, batch_size=args.batch_size,
        g_lr=args.lr or LEARNING_RATES[family], lr_gamma=0.99995, warmup_steps=args.warmup, disc_warmup_steps=args.gan_from, max_steps=args.steps,
        disc_window=args.disc_window, augment=args.augment,
        checkpoint_dir=f"checkpoints/reference_{run}", log_dir=f"runs/reference_{run}",
        save_interval=args.every, val_interval=args.every, val_clips=16, num_threads=args.threads,
        device=args.device, seed=args.seed, resume=args.resume, progress=args.progress,
        corpus_on_device=on_gpu(args.device),  # on a GPU the corpus lives there as one int16 tensor
    )
    start = time.time()
    result = train(config)
    run = run_record(args, config, result.model.config, result, time.time() - start)
    log = Path(config.checkpoint_dir) / "runs.json"  # one entry per run (a resumed run appends)
    runs = json.loads(log.read_text()) if log.exists() else []
    log.write_text(json.dumps(runs + [run], indent=1) + "\n")
    print(json.dumps(run))
    return 0


NOT_OPTIONS = ("func", "argv", "started")  # parser defaults that are no training option


def run_record(args, config, model_config, result, seconds: float) -> dict:
    """One training run as data (a ``runs.json`` entry): its options as parsed, the model it trained
    (encoder and decoder as the model has them, not as the command words them), how far it went."""
    return {
        "command": "python tools/train_reference.py " + " ".join(args.argv),
        "options": {k: v for k, v in vars(args).items() if k not in NOT_OPTIONS},
        "init": args.init, "encoder": model_config.encoder, "encoder_int8": model_config.encoder_int8,
        "decoder": model_config.decoder,
        "preset": args.preset, "steps_end": result.step, "hours": seconds / 3600,
        "interrupted": result.interrupted, "best_val_mel_distance": result.best_val,
        "hardware": hardware(args), "date": time.strftime("%Y-%m-%d"), "g_lr": config.g_lr,
        "batch": f"{config.batch_size} x {config.audio_length} s",
        "gan_from_step": args.gan_from if args.gan_from < 10**9 else None,
    }


def recorded_run(meta: dict, folder: Path | None = None) -> dict:
    """A ``runs.json`` entry with the data fields of :func:`run_record` (``options``, ``init``, ``decoder``...).

    Entries written before those fields existed get them here: the options from their command, read by
    this script's own parser, and the model's encoder and decoder from the run's last checkpoint in
    ``folder`` (``None`` where none is left: a command names a decoder only when it changes it).
    """
    if "options" in meta:
        return meta
    words = shlex.split(re.sub(r"\([^)]*\)", "", meta["command"]))  # "(under timeout ...)" notes dropped
    start = next(i for i, w in enumerate(words) if w.endswith("train_reference.py")) + 1
    args = build_parser().parse_args(words[start:])
    config = {}
    checkpoints = sorted(folder.glob("step_*.pt")) if folder is not None else []
    if checkpoints:
        from tinycodec.pretrained import read_checkpoint

        config = read_checkpoint(checkpoints[-1])["model_config"]
    return meta | {"options": {k: v for k, v in vars(args).items() if k not in NOT_OPTIONS}, "init": args.init,
                   "encoder": config.get("encoder"), "encoder_int8": config.get("encoder_int8"),
                   "decoder": config.get("decoder")}


def losses_label(run: dict) -> str:
    """``mel + stft x100 + phase x200 + GAN (its discriminators) from step N, augmentation p=0.5``: the
    losses of a recorded run (and its augmentation, which changes what they are computed on)."""
    options = run["options"]
    weights = [f"{name} x{options[key]:g}" for key, name in
               (("stft_loss", "stft"), ("complex_loss", "complex"), ("phase_loss", "phase"), ("f0_loss", "f0"))
               if options.get(key)]
    gan = []
    if run.get("gan_from_step") is not None:
        discs = [name for key, name in (("mpd", "multi-period"), ("ms_stft", "2-scale STFT")) if options.get(key)]
        window = f", {options['disc_window']:g} s windows" if options.get("disc_window") else ""
        gan = [f"GAN ({' + '.join(discs) or 'wave + STFT'}{window}) from step {run['gan_from_step']}"]
    augment = [f"augmentation p={options['augment']:g}"] if options.get("augment") else []
    return " + ".join(["mel", *weights, *gan]) + "".join(f", {a}" for a in augment)


def decoder_overrides(args) -> dict:
    """Model-config fields the ``--decoder-*`` options set (empty when none is given)."""
    fields = ("decoder_delay", "decoder_n_fft", "decoder_dim", "decoder_layers", "decoder_head")
    return {k: getattr(args, k) for k in fields if getattr(args, k) is not None}


def val_speech_scores(checkpoint: Path, data: Path, n_q: int | None = None) -> dict[str, float]:
    """PESQ-WB, STOI, log-mel and SI-SDR of one checkpoint on validation speech (10 clips of 4 s of ``data``)
    with its first ``n_q`` codebooks (default all)."""
    from tinycodec.eval.evaluate import evaluate

    result = evaluate(str(checkpoint), data, progress=False, n_q=n_q, **VAL_SPEECH)
    (row,) = result.categories["speech"].values()
    return {k: round(float(row[k]), 4) for k in ("log_mel", "pesq_wb", "stoi", "si_sdr")}


def cmd_follow(args) -> int:
    """Score every step checkpoint of a run as it appears (the run keeps only its last few on disk).

    The training loop validates with the mel distance only (cheap, every ``--every`` steps); what decides
    between decoders is what a listener hears, so this scores each checkpoint on held-out speech with
    PESQ-WB and STOI as well, into ``checkpoints/reference_RUN/val_speech.json`` (``ship`` puts the curve
    in the model card). Runs until the run's ``runs.json`` records its end (or forever with ``--keep``).
    """
    folder = ROOT / "checkpoints" / f"reference_{args.run}"
    out, data = folder / ("val_speech.json" if args.n_q is None else f"val_speech_nq{args.n_q}.json"), link_corpora()
    source = Path(args.checkpoints) if args.checkpoints else folder
    while True:
        done = json.loads(out.read_text()) if out.exists() else {}
        for ckpt in sorted(source.glob("step_*.pt")):
            step = str(int(ckpt.stem.split("_")[1]))
            if step not in done and int(step) % args.stride == 0:
                try:
                    done[step] = val_speech_scores(ckpt, data, args.n_q)
                except (OSError, RuntimeError) as exc:  # deleted or half-written meanwhile: next round
                    print(f"[follow] {ckpt.name}: {exc}", file=sys.stderr)
                    continue
                done = dict(sorted(done.items(), key=lambda kv: int(kv[0])))
                out.write_text(json.dumps(done, indent=1) + "\n")
                print(f"[follow] step {step}: {done[step]}", flush=True)
        finished = (folder / "runs.json").exists() and folder.joinpath("runs.json").stat().st_mtime > args.started
        finished = finished or args.checkpoints is not None  # kept copies: the run is over, one pass
        if finished and not args.keep:
            return 0
        time.sleep(args.poll)


def cmd_curves(args) -> int:
    """One JSON with the validation-speech curves of several runs, each next to the model it started from.

    Reads ``checkpoints/reference_RUN/val_speech.json`` (from ``follow``) and ``runs.json`` of every run;
    the starting point (step 0) is the ``--init`` model of the run's command, scored the same way
    (none for a run with ``--encoder``: its encoder started from random weights, not from the init's).
    """
    report = {"provenance": "history: training runs, checkpoints and earlier weights (how the shipped models "
              "were made); quoted by the appendix only", "format": "tinycodec-decoder-runs", "clips": "validation speech (held-out speakers), "
              f"{VAL_SPEECH['max_clips']} clips of {VAL_SPEECH['clip_seconds']:g} s"
              + (f", first {args.n_q} codebooks" if args.n_q else ""), "runs": {}}
    starts: dict[str, dict] = {}
    data = link_corpora()
    for name in args.runs:
        folder = ROOT / "checkpoints" / f"reference_{name}"
        run = recorded_run(json.loads((folder / "runs.json").read_text())[-1], folder)
        # a new encoder (--encoder) did not start from the init model's codes: no step 0
        init = run["init"] if run["options"].get("encoder") is None else None
        if init and init not in starts:
            starts[init] = val_speech_scores(init, data, args.n_q)
        curve = json.loads((folder / ("val_speech.json" if args.n_q is None else f"val_speech_nq{args.n_q}.json"))
                           .read_text())
        report["runs"][name] = {
            "command": run["command"], "steps": run["steps_end"], "hours": round(run["hours"], 3),
            "hardware": run["hardware"], "date": run["date"], "init": init, "decoder": run["decoder"],
            "losses": losses_label(run), "n_q": args.n_q, "note": run.get("note"),
            "curve": ({"0": starts[init]} if init else {}) | curve,
        }
    out = Path(args.json)
    if args.merge and out.exists():  # runs recorded earlier (their checkpoints may be gone) stay
        report["runs"] = json.loads(out.read_text())["runs"] | report["runs"]
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


def on_gpu(device: str) -> bool:
    import torch

    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def hardware(args) -> str:
    """What trained: the GPU's name, or the CPU model and the threads used."""
    import torch

    if on_gpu(args.device):
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu} CPU, {args.threads or torch.get_num_threads()} thread(s) of {os.cpu_count()}, no GPU"


def split_durations() -> dict[str, dict[str, float]]:
    """Hours of audio per category and split, from the committed manifests and reference split."""
    import csv

    from tinycodec.data.folder import load_split_rules, split_of

    rules = load_split_rules(SPLITS)
    hours: dict[str, dict[str, float]] = {}
    for name in ("speech", "nature"):
        with open(ROOT / "data" / "manifests" / f"{name}.csv", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                split = split_of(row["file"], rules)
                hours.setdefault(name, {}).setdefault(split, 0.0)
                hours[name][split] += float(row["duration_s"]) / 3600
    return hours


def cmd_ship(args) -> int:
    import torch

    from tinycodec.pretrained import load_model
    from tinycodec.train import export_weights, load_checkpoint
    from tinycodec.train.checkpoint import read_checkpoint

    ckpt_path = Path(args.checkpoint)
    model = load_checkpoint(ckpt_path)
    if model.config.encoder_int8:  # the deployed encoder: weights and codebooks on their int8 grids
        from tinycodec.export.int8_prepare import snap_to_grid

        snap_to_grid(model)
    history = read_checkpoint(ckpt_path)["history"]
    out = export_weights(model, PRETRAINED / f"{args.name}.safetensors", dtype=torch.float16, inference_only=True)
    if args.encoder_from:  # a decoder of a shipped encoder: its tensors stay in that model's file
        from tinycodec.train import share_encoder

        share_encoder(out, PRETRAINED / f"{args.encoder_from}.safetensors")
    again = load_model(str(out))  # the shipped file must rebuild with no other argument
    if again.config != model.config:
        sys.exit(f"{out} does not rebuild the model's config: not shipped")
    runs_log = ckpt_path.parent / "runs.json"
    runs = json.loads(runs_log.read_text()) if runs_log.exists() else []
    if args.after:  # the runs that made the model this one continued from (a session's work builds on the last)
        earlier = json.loads(TRAINING_LOG.read_text()).get("models", {}).get(args.after, {}).get("runs", [])
        runs = [r for r in earlier if r not in runs] + runs
    tried = [r for path in args.tried for r in json.loads(Path(path).read_text())]
    follow = ckpt_path.parent / "val_speech.json"  # written by `follow` beside the run
    eval_json = Path(args.eval_json) if args.eval_json else None
    card = model_card(
        args.name, model, file_bytes=out.stat().st_size, runs=runs, tried=tried, history=history,
        split_hours=split_durations(), speech_curve=json.loads(follow.read_text()) if follow.exists() else None,
        quality=quality_table(eval_json, args.name) if eval_json and eval_json.exists() else [],
        eval_json=args.eval_json, encoder_from=args.encoder_from, notes=args.notes)
    (PRETRAINED / f"{args.name}.md").write_text(card)
    record_training(args.name, model, history, runs, out, tried)
    print(f"shipped {out} ({out.stat().st_size} bytes), {args.name}.md and its entry in {TRAINING_LOG.name}")
    return 0


def cmd_cards(args) -> int:
    """Rewrite the "Held-out evaluation" section of shipped models' cards from a newer ``tinycodec eval`` JSON.

    ``ship`` writes that section once; a later evaluation (more models, a renamed model) refreshes it
    here without re-shipping the weights. Everything else in a card stays as written.
    """
    eval_json = Path(args.eval_json)
    for name in args.names:
        card = PRETRAINED / f"{name}.md"
        if not card.exists():
            sys.exit(f"no card {card}")
        table = quality_table(eval_json, name)
        if not table:
            sys.exit(f"{eval_json} has no rows for {name!r}: evaluate it first")
        section = ["## Held-out evaluation", "",
                   f"`tinycodec eval` on the test split (full numbers in `{eval_json.as_posix()}`):", "", *table]
        lines = card.read_text().splitlines()
        start = next((i for i, line in enumerate(lines) if line == "## Held-out evaluation"), None)
        if start is None:  # no section yet: before the notes, or at the end
            start = end = next((i for i, line in enumerate(lines) if line == "## Notes"), len(lines))
        else:
            end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        card.write_text("\n".join(lines[:start] + section + lines[end:]).rstrip() + "\n")
        print(f"updated {card}")
    return 0


def cmd_merge(args) -> int:
    """Put a new ``tinycodec eval`` JSON into a combined one (``benchmarks/quality.json``): the new
    file's rows replace the combined file's rows of the same codecs, ``--rename OLD=NEW`` first renames
    a shipped model's rows (``tiny_stft`` -> ``tiny_stft_v1`` when a new version takes the name)."""
    from tinycodec.eval.evaluate import EvalResult

    into = EvalResult.from_json(Path(args.into))
    for pair in args.rename:
        old, _, new = pair.partition("=")
        if not new:
            sys.exit(f"--rename takes OLD=NEW, got {pair!r}")
        for row in into.clips:
            if row["codec"] == old or row["codec"].startswith(old + "_nq"):
                row["codec"] = new + row["codec"][len(old):]
        into.model = ", ".join(new if m == old else m for m in (into.model or "").split(", ")) or None
        if old in into.weights:
            into.weights[new] = into.weights.pop(old)
    results = [EvalResult.from_json(Path(p)) for p in args.new]
    merged = EvalResult.combine([*results, into])  # checks the clips; the first file with a codec wins
    fresh = {(row["file"], row["codec"]): row for row in merged.clips}
    kept = [fresh.pop((row["file"], row["codec"])) for row in into.clips]  # in place: a small diff
    merged.clips = kept + list(fresh.values())  # codecs the combined file did not have, last
    merged.model = ", ".join(dict.fromkeys(m for r in (into, *results) for m in (r.model or "").split(", ") if m))
    merged.to_json(Path(args.into))
    print(f"merged {', '.join(args.new)} into {args.into}: {', '.join(merged.codecs)}")
    return 0


def cmd_table(args) -> int:
    """Print the README's comparison table from an eval JSON (``EvalResult.summary_table``)."""
    from tinycodec.eval.evaluate import EvalResult

    try:
        result = EvalResult.from_json(Path(args.eval_json))
    except (OSError, ValueError) as exc:
        sys.exit(f"cannot read {args.eval_json}: {exc}")
    try:
        print(result.summary_table(args.names), end="")
    except KeyError as exc:
        sys.exit(f"{args.eval_json}: {exc.args[0]}")
    return 0


def record_training(name: str, model, history: dict, runs: list, weights: Path, tried: list = ()) -> None:
    """Keep every shipped model's runs and validation curve in one committed JSON (the training chapter plots it)."""
    log = json.loads(TRAINING_LOG.read_text()) if TRAINING_LOG.exists() else {"format": "tinycodec-reference-training"}
    log.setdefault("models", {})[name] = {
        "family": model.family, "bitrate": model.bitrate(), "shipped_step": getattr(model, "checkpoint_step", None),
        "weights_bytes": weights.stat().st_size, "runs": runs, "tried": list(tried),
        "val_step": [int(x) for x in history["val_step"]], "val_mel_distance": list(history["val_mel_distance"]),
    }
    TRAINING_LOG.write_text(json.dumps(log, indent=1) + "\n")


def build_parser() -> argparse.ArgumentParser:
    """The command line (also what reads the commands of runs recorded before their options were)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train")
    p.add_argument("preset")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="generator learning rate (default: per family)")
    p.add_argument("--gan-from", dest="gan_from", type=int, default=10**9, metavar="STEP",
                   help="start the adversarial + feature-matching losses at this step (default: never)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", default=None)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no tqdm bar (for log files)")
    p.add_argument("--init", default=None, help="start from this model spec (shipped name, .safetensors, checkpoint)")
    p.add_argument("--decoder", default=None, choices=["mirror", "server"], help="train this decoder (default: the model's)")
    p.add_argument("--encoder", default=None, choices=["seanet", "stft"],
                   help="train this encoder (default: the model's); another kind than --init's starts fresh")
    p.add_argument("--decoder-delay", dest="decoder_delay", type=int, default=None, metavar="FRAMES",
                   help="server decoder: frames its output may lag the codes (see tinycodec.modules.server_decoder)")
    p.add_argument("--decoder-n-fft", dest="decoder_n_fft", type=int, default=None, metavar="N",
                   help="server decoder: FFT size of its iSTFT head (default 2 hops)")
    p.add_argument("--decoder-dim", dest="decoder_dim", type=int, default=None, metavar="C",
                   help="server decoder: ConvNeXt width (default 256)")
    p.add_argument("--decoder-layers", dest="decoder_layers", type=int, default=None, metavar="N",
                   help="server decoder: ConvNeXt blocks (default 8)")
    p.add_argument("--decoder-head", dest="decoder_head", default=None, choices=["istft", "hn"],
                   help="server decoder: its head, istft or hn (harmonic + noise, experimental); with --init a new "
                        "head keeps the init's iSTFT layer and starts its harmonic source fresh")
    p.add_argument("--codebooks", type=int, default=None, metavar="N",
                   help="codebook levels; with --init, more than its own adds fresh levels after them "
                        "(a higher bitrate; the encoder and the old levels keep training)")
    p.add_argument("--freeze-encoder", dest="freeze_encoder", action="store_true",
                   help="encoder and codebooks fixed: only the decoder learns (the codes stay valid)")
    p.add_argument("--warmup", type=int, default=0, metavar="STEPS",
                   help="linear warm-up of the generator's learning rate (a continued run's fresh Adam state)")
    p.add_argument("--levels", type=int, nargs="*", default=[], metavar="N",
                   help="with --freeze-encoder: decode each batch with a random one of these numbers of levels")
    p.add_argument("--stft-loss", dest="stft_loss", type=float, default=0.0, metavar="W",
                   help="weight of the multi-resolution linear + log magnitude STFT loss (0: off)")
    p.add_argument("--complex-loss", dest="complex_loss", type=float, default=0.0, metavar="W",
                   help="weight of the compressed complex STFT loss (0: off)")
    p.add_argument("--phase-loss", dest="phase_loss", type=float, default=0.0, metavar="W",
                   help="weight of the anti-wrapping phase losses (0: off)")
    p.add_argument("--f0-loss", dest="f0_loss", type=float, default=0.0, metavar="W",
                   help="weight of the pitch + voicing loss of an hn decoder head (0: off)")
    p.add_argument("--ms-stft", dest="ms_stft", action="store_true",
                   help="discriminators: two STFT scales (256, 1024; 8 channels) only: 2-D convs over a full-resolution "
                        "spectrogram dominate a CPU step, so they are kept narrow")
    p.add_argument("--mpd", action="store_true",
                   help=f"discriminators: multi-period ones (periods {', '.join(map(str, MPD_PERIODS))}; 8 channels) "
                        "instead of the multi-scale wave ones")
    p.add_argument("--disc-window", dest="disc_window", type=float, default=0.0, metavar="SECONDS",
                   help="discriminators see a random window this long of each crop (default 0: all of it)")
    p.add_argument("--augment", type=float, default=0.0, metavar="P",
                   help="chance of each augmentation (level, EQ, room, noise) per clip (default 0: none)")
    p.add_argument("--run", default=None, help="run name: checkpoints/reference_RUN (default: the preset)")
    p.add_argument("--every", type=int, default=250, help="steps between validations and checkpoints")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("follow", help="score each checkpoint of a run on validation speech (PESQ-WB, STOI)")
    p.add_argument("run", help="run name (checkpoints/reference_RUN)")
    p.add_argument("--poll", type=float, default=60.0, help="seconds between looks for new checkpoints")
    p.add_argument("--keep", action="store_true", help="keep following after the run has ended")
    p.add_argument("--n_q", type=int, default=None, help="score with the first N codebooks (default: all); "
                   "writes val_speech_nqN.json")
    p.add_argument("--checkpoints", default=None, metavar="DIR",
                   help="score the step checkpoints in DIR once, instead (e.g. hard links kept while the run deleted them)")
    p.add_argument("--stride", type=int, default=1, metavar="STEPS",
                   help="score only the checkpoints whose step is a multiple of this")
    p.set_defaults(func=cmd_follow, started=time.time())
    p = sub.add_parser("curves", help="collect the validation-speech curves of runs into one JSON")
    p.add_argument("runs", nargs="+", help="run names (checkpoints/reference_RUN)")
    p.add_argument("--n_q", type=int, default=None, help="the curves `follow --n_q N` wrote")
    p.add_argument("--json", default="benchmarks/decoder_runs.json")
    p.add_argument("--merge", action="store_true",
                   help="keep the runs already in --json (a run named again is replaced)")
    p.set_defaults(func=cmd_curves)
    p = sub.add_parser("ship")
    p.add_argument("name")
    p.add_argument("checkpoint")
    p.add_argument("--notes", default="", help="Markdown for the card: limits and what would close the gap")
    p.add_argument("--eval-json", default=None)
    p.add_argument("--encoder-from", dest="encoder_from", default=None, metavar="NAME",
                   help="shipped model with the same encoder and codebooks: the new file leaves them out and reads them there")
    p.add_argument("--after", default=None, metavar="NAME",
                   help="this checkpoint continues shipped model NAME (--init NAME): its recorded runs come first "
                        "in the card and the training log")
    p.add_argument("--tried", nargs="*", default=[], metavar="RUNS_JSON",
                   help="runs.json of runs that were tried and not shipped: listed in the card with their outcome")
    p.set_defaults(func=cmd_ship)
    p = sub.add_parser("cards", help="refresh the held-out tables of shipped models' cards from an eval JSON")
    p.add_argument("names", nargs="+")
    p.add_argument("--eval-json", default="benchmarks/quality.json")
    p.set_defaults(func=cmd_cards)
    p = sub.add_parser("merge", help="merge new eval JSONs into a combined one (new rows replace old ones)")
    p.add_argument("new", nargs="+", help="tinycodec eval --json outputs")
    p.add_argument("--into", required=True, help="the combined file, e.g. benchmarks/quality.json")
    p.add_argument("--rename", nargs="*", default=[], metavar="OLD=NEW", help="rename a model's rows first")
    p.set_defaults(func=cmd_merge)
    p = sub.add_parser("table", help="print the README's comparison table from an eval JSON")
    p.add_argument("names", nargs="+", help="model names, NAME@N for an n_q row")
    p.add_argument("--eval-json", default="benchmarks/quality.json")
    p.set_defaults(func=cmd_table)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in the model card
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
