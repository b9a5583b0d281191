"""``tinycodec encode`` and ``tinycodec decode``: audio files <-> ``.tcz`` bitstreams.

Both read and write in blocks and run the model chunk by chunk with its streaming state, so memory
does not grow with the file; ``--max-seconds`` (default 600) refuses longer inputs and files before
any work. ``decode`` without ``--model`` picks the shipped model whose encoder wrote the file.

Notebook: book/05_bitrate.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from tinycodec.bitstream.chunked import DEFAULT_MAX_SECONDS

_MODEL_HELP = (
    "a shipped model name, a preset name (see tinycodec.models.list_presets(); built with RANDOM weights "
    "from --seed: the file decodes only with the same preset and seed), a training checkpoint (.pt) or "
    "exported weights (.safetensors)"
)
# the largest .tcz any valid header can describe: the symbol limit at 20 bits, plus tables and framing
_MAX_TCZ_BYTES = 64 << 20


def _max_seconds(value: float) -> float | None:
    return None if value <= 0 else value


def _encode(args) -> int:
    import torch

    from tinycodec.bitstream import encode_codes, entropy, read_tcz_header, to_tcz
    from tinycodec.pretrained import load_model

    torch.set_num_threads(1)  # small per-chunk ops: more threads only oversubscribe a shared machine
    model = load_model(args.model, args.seed)
    _warn_if_random(args.model, args.seed)
    n_q = args.n_q or model.config.num_quantizers
    if not 1 <= n_q <= model.config.num_quantizers:
        raise ValueError(f"--n_q must be in 1..{model.config.num_quantizers} for this model, got {n_q}")
    if not Path(args.input).is_file():
        raise FileNotFoundError(f"no such file: {args.input}")
    codes, length = encode_codes(model, args.input, n_q, max_seconds=_max_seconds(args.max_seconds))
    tables, embed = None, False
    if args.entropy:
        tables = getattr(model, "entropy_tables", None)
        if tables is None:  # no tables shipped with the model: fit on this file and store them in it
            tables, embed = entropy.fit_tables(codes, model.config.codebook_size), True
    data = to_tcz(model, codes, length, tables, embed)
    Path(args.output).write_bytes(data)
    header = read_tcz_header(data)
    duration = max(length, 1) / model.sample_rate
    print(f"{args.output}: {len(data)} bytes, {length / model.sample_rate:.2f} s, n_q={n_q}, nominal "
          f"{header.nominal_bitrate / 1000:.3f} kbit/s, file {len(data) * 8 / duration / 1000:.3f} kbit/s"
          + (" (entropy-coded, tables embedded)" if embed else " (entropy-coded)" if tables else ""))
    return 0


def _decode(args) -> int:
    import numpy as np
    import soundfile as sf
    import torch

    from tinycodec.bitstream import check_model, find_model, iter_decode_bytes, read_tcz_header
    from tinycodec.bitstream.chunked import check_duration
    from tinycodec.pretrained import load_model

    torch.set_num_threads(1)
    path = Path(args.input)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.stat().st_size > _MAX_TCZ_BYTES:
        raise ValueError(f"{path} is {path.stat().st_size} bytes, larger than any valid .tcz file")
    data = path.read_bytes()
    header = read_tcz_header(data)
    max_seconds = _max_seconds(args.max_seconds)
    check_duration(header, max_seconds)  # before a model is even loaded
    if args.model:
        model = load_model(args.model, args.seed)
        check_model(header, model)
        _warn_if_random(args.model, args.seed)
    else:
        model = find_model(header, args.seed)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with sf.SoundFile(str(out), "w", samplerate=header.sample_rate, channels=1, subtype="PCM_16") as f:
            for piece in iter_decode_bytes(data, model, getattr(model, "entropy_tables", None),
                                           max_seconds=max_seconds):
                f.write(np.clip(piece.numpy(), -1.0, 1.0))  # PCM_16 would wrap around outside [-1, 1]
                written += piece.numel()
    except BaseException:
        out.unlink(missing_ok=True)  # no half-written WAV that looks like a result
        raise
    name = getattr(model, "model_id", model.family)
    print(f"{args.output}: {written / header.sample_rate:.2f} s at {header.sample_rate} Hz with {name!r} "
          f"(file from {header.model_id!r}, {header.hash_kind} {header.model_hash.hex()}), n_q={header.n_q}")
    return 0


def _warn_if_random(spec: str, seed: int) -> None:
    """One line on stderr when ``spec`` is a preset: its weights are random, not trained."""
    from tinycodec.models import PRESETS
    from tinycodec.pretrained import canonical_name, shipped_names

    if spec in PRESETS and canonical_name(spec) not in shipped_names():
        print(f"warning: {spec!r} is an architecture preset with RANDOM weights (seed {seed}), not a trained model",
              file=sys.stderr)


def register(subparsers) -> None:
    enc = subparsers.add_parser(
        "encode", help="encode an audio file to a .tcz bitstream",
        description="Encode an audio file (any rate, mixed to mono, resampled to the model's rate) to a "
                    ".tcz file, block by block (memory does not grow with the file). The header names the "
                    "encoder (a hash of its weights and codebooks). NaN/Inf audio is refused.",
    )
    enc.add_argument("input", help="audio file (WAV, FLAC, ...)")
    enc.add_argument("output", help="the .tcz file to write")
    enc.add_argument("--model", default="tinycodec", help=_MODEL_HELP + " (default: tinycodec, the flagship)")
    enc.add_argument("--n_q", type=int, default=None, help="quantizers to keep (default: all)")
    enc.add_argument("--entropy", action="store_true",
                     help="rANS-code the indices with the model's tables (fitted on the input and "
                          "embedded in the file when the model has none)")
    enc.add_argument("--seed", type=int, default=0, help="weight seed for preset models (default: 0)")
    enc.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                     help=f"refuse longer audio (default: {DEFAULT_MAX_SECONDS:g}; 0: no limit)")
    enc.set_defaults(func=_encode)

    dec = subparsers.add_parser(
        "decode", help="decode a .tcz bitstream to a WAV file",
        description="Decode a .tcz file chunk by chunk with a model that has the file's encoder (any "
                    "decoder trained for it); files of format version 1 need the model that wrote them.",
    )
    dec.add_argument("input", help="the .tcz file")
    dec.add_argument("output", help="WAV file to write (16-bit PCM)")
    dec.add_argument("--model", default=None,
                     help=_MODEL_HELP + "; default: the shipped model with the file's encoder, else the "
                          "preset named in the file")
    dec.add_argument("--seed", type=int, default=0, help="weight seed for preset models (default: 0)")
    dec.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                     help=f"refuse files declaring more audio (default: {DEFAULT_MAX_SECONDS:g}; 0: no limit)")
    dec.set_defaults(func=_decode)
