"""``tinycodec encode`` and ``tinycodec decode``: audio files <-> ``.tcz`` bitstreams.

Notebook: book/05_bitrate.md
"""

from __future__ import annotations

from pathlib import Path

from tinycodec.pretrained import load_model

_MODEL_HELP = (
    "a preset name (see tinycodec.models.list_presets(); built with RANDOM weights from --seed until "
    "trained weights ship: the file decodes only with the same preset and seed), a training "
    "checkpoint (.pt) or exported weights (.safetensors)"
)


def _encode(args) -> int:
    import torch

    from tinycodec import entropy
    from tinycodec.audio import load
    from tinycodec.bitstream import encode_bytes, read_tcz_header

    model = load_model(args.model, args.seed)
    n_q = args.n_q or model.config.num_quantizers
    if not 1 <= n_q <= model.config.num_quantizers:
        raise ValueError(f"--n_q must be in 1..{model.config.num_quantizers} for this model, got {n_q}")
    wav, _ = load(args.input, model.sample_rate)  # [1, T], resampled to the model's rate
    wav = wav[None]  # [1, 1, T]
    tables, embed = None, False
    if args.entropy:
        tables = getattr(model, "entropy_tables", None)
        if tables is None:  # no tables shipped with the model yet: fit on this file and store them in it
            with torch.inference_mode():
                codes = model.encode(wav, n_q)
            tables, embed = entropy.fit_tables(codes, model.config.codebook_size), True
    data = encode_bytes(model, wav, n_q=n_q, tables=tables, embed_tables=embed)
    Path(args.output).write_bytes(data)
    header = read_tcz_header(data)
    duration = wav.shape[-1] / model.sample_rate
    print(f"{args.output}: {len(data)} bytes, {duration:.2f} s, n_q={n_q}, nominal "
          f"{header.nominal_bitrate / 1000:.3f} kbit/s, file {len(data) * 8 / duration / 1000:.3f} kbit/s"
          + (" (entropy-coded, tables embedded)" if embed else " (entropy-coded)" if tables else ""))
    return 0


def _decode(args) -> int:
    from tinycodec.audio import save
    from tinycodec.bitstream import decode_bytes, read_tcz_header

    path = Path(args.input)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    data = path.read_bytes()
    header = read_tcz_header(data)
    model = load_model(args.model or header.model_id, args.seed)
    wav, sample_rate = decode_bytes(data, model, getattr(model, "entropy_tables", None))
    save(args.output, wav[0], sample_rate)
    print(f"{args.output}: {wav.shape[-1] / sample_rate:.2f} s at {sample_rate} Hz from {header.model_id!r}, "
          f"n_q={header.n_q}")
    return 0


def register(subparsers) -> None:
    enc = subparsers.add_parser(
        "encode", help="encode an audio file to a .tcz bitstream",
        description="Encode an audio file (any rate, mixed to mono, resampled to the model's rate) to a "
                    ".tcz file. NOTE: preset names use randomly initialised weights (seeded) until "
                    "trained weights ship; pass a checkpoint for real quality.",
    )
    enc.add_argument("input", help="audio file (WAV, FLAC, ...)")
    enc.add_argument("output", help="the .tcz file to write")
    enc.add_argument("--model", required=True, help=_MODEL_HELP)
    enc.add_argument("--n_q", type=int, default=None, help="quantizers to keep (default: all)")
    enc.add_argument("--entropy", action="store_true",
                     help="rANS-code the indices with the model's tables (fitted on the input and "
                          "embedded in the file when the model has none)")
    enc.add_argument("--seed", type=int, default=0, help="weight seed for preset models (default: 0)")
    enc.set_defaults(func=_encode)

    dec = subparsers.add_parser(
        "decode", help="decode a .tcz bitstream to a WAV file",
        description="Decode a .tcz file with the model that wrote it (checked by id and weights hash).",
    )
    dec.add_argument("input", help="the .tcz file")
    dec.add_argument("output", help="WAV file to write (16-bit PCM)")
    dec.add_argument("--model", default=None, help=_MODEL_HELP + "; default: the preset named in the file")
    dec.add_argument("--seed", type=int, default=0, help="weight seed for preset models (default: 0)")
    dec.set_defaults(func=_decode)
