"""``tinycodec eval``: score a model (and optionally Opus and Codec 2) on a folder of audio.

Notebook: book/05_bitrate.md
"""

from __future__ import annotations


def parse_model_arg(text: str, default_n_q: int | None) -> tuple[str, int | None]:
    """``"small"`` -> ``("small", default_n_q)``; ``"soundstream_16k@4"`` -> ``("soundstream_16k", 4)``."""
    spec, sep, n_q = text.rpartition("@")
    if not sep:
        return text, default_n_q
    if not spec or not n_q.isdigit() or int(n_q) < 1:
        raise SystemExit(f"tinycodec eval: {text!r}: write MODEL or MODEL@N_Q with N_Q >= 1")
    return spec, int(n_q)


def _eval(args) -> int:
    from tinycodec.eval.evaluate import EvalResult, evaluate

    results = []
    for i, text in enumerate(args.model):
        spec, n_q = parse_model_arg(text, args.n_q)
        results.append(evaluate(
            spec,
            args.data,
            categories=args.categories,
            baselines=args.baselines and i == 0,  # the same clips: run the baselines once
            max_clips=args.max_clips,
            clip_seconds=args.clip_seconds,
            n_q=n_q,
            split=None if args.split == "all" else args.split,
        ))
    result = EvalResult.combine(results)
    split = f", split {result.split}" if result.split else ""
    n_q = f" (n_q={result.n_q})" if result.n_q else ""
    print(f"model {result.model}{n_q} on {result.data_dir}{split}, {result.sample_rate} Hz\n")
    print(result.to_markdown(), end="")
    if args.json:
        print(f"\nwrote {result.to_json(args.json)}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model on a folder of audio, per category",
        description="Encode and decode every clip of a folder (one sub-folder per category, or a "
        "manifest.csv with a category column) and print a table per category: measured "
        "bitrate, log-mel and multi-resolution STFT distances, SI-SDR, and PESQ-WB and "
        "STOI for speech. A training corpus (over 100 files) is scored on its test split.",
    )
    p.add_argument(
        "model",
        metavar="MODEL_OR_CHECKPOINT",
        nargs="*",
        default=["tinycodec"],
        help="shipped model name, preset (random weights), .safetensors or .pt checkpoint; several "
        "are scored on the same clips; MODEL@N uses N quantizers (e.g. tinycodec@4); default: tinycodec",
    )
    p.add_argument("--data", required=True, help="folder of audio, e.g. data/demo")
    p.add_argument(
        "--baselines",
        action="store_true",
        help="also run Opus 6/8/12 kbit/s and Codec 2 3200/2400/1200 on the same clips",
    )
    p.add_argument("--n_q", type=int, default=None, help="quantizers to use (default: all; MODEL@N sets it per model)")
    p.add_argument("--max_clips", type=int, default=None, help="at most N clips per category")
    p.add_argument("--clip_seconds", type=float, default=None, help="crop each clip to its first S seconds")
    p.add_argument("--categories", nargs="+", default=None, help="only these categories")
    p.add_argument(
        "--split",
        default="auto",
        choices=["auto", "all", "train", "val", "test"],
        help="files to score: auto (test split of a training corpus, else all), or a split",
    )
    p.add_argument("--json", default=None, metavar="OUT", help="write every number to this JSON file")
    p.set_defaults(func=_eval)
