"""How much of the spectrum do the codes carry? Envelope oracles and a linear probe (see
``tinycodec.eval.information``), next to what the shipped decoders make of the same clips.

    python benchmarks/bench_code_information.py [--data data/reference] [--models tiny tiny_mirror ...] [--quick]

On held-out validation speech (the clips ``tools/train_reference.py follow`` scores):
- ``oracles``: PESQ-WB, STOI, log-mel of each clip rebuilt from its own n-band mel envelope at the
  codec frame rate (62.5 Hz), unquantized, phase from Griffin-Lim; n = 0 is the whole magnitude;
- ``models``: the same scores for each model's decode, and the R^2 of a ridge probe from its
  quantized embeddings (a frame, and a frame with one neighbour on each side) to the shape of the
  frame's 40-band log-mel (level removed), fitted on training speech, scored on validation speech.
Writes ``results/code_information.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_report  # noqa: E402

from tinycodec.eval.clips import load_clips  # noqa: E402
from tinycodec.eval.information import code_features, log_mel_frames, mel_envelope_oracle, ridge_r2  # noqa: E402
from tinycodec.eval.metrics import log_mel_distance, pesq_wb, stoi  # noqa: E402
from tinycodec.pretrained import load_model  # noqa: E402

SR = 16000


def scores(pairs) -> dict[str, float]:
    """Mean PESQ-WB, STOI and log-mel distance over (reference, estimate) pairs (NaN-safe)."""
    rows = [(pesq_wb(x, y, SR), stoi(x, y, SR), log_mel_distance(x, y, SR)) for x, y in pairs]
    out = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=float)
    return {k: round(float(np.nanmean(out[:, i])), 4) for i, k in enumerate(("pesq_wb", "stoi", "log_mel"))}


def shape_targets(clips, hop: int):
    """Per clip: (log-mel shape [F, 40], loudness [F]) of its whole frames."""
    out = []
    for c in clips:
        lm = log_mel_frames(c.wav.reshape(-1), SR, hop)
        out.append((lm - lm.mean(1, keepdim=True), torch.logsumexp(lm, 1)))
    return out


def probe(model, train, val, context: int) -> float:
    """R^2 of the shape of active frames (loudness above the training 30th percentile) from the codes."""
    def stack(clips, targets):
        feats = [code_features(model, c.wav.reshape(-1), context) for c in clips]
        x = torch.cat([f[: len(t[0])] for f, t in zip(feats, targets)])
        y = torch.cat([t[0][: len(f)] for f, t in zip(feats, targets)])
        loud = torch.cat([t[1][: len(f)] for f, t in zip(feats, targets)])
        return x, y, loud

    xt, yt, lt = stack(train, shape_targets(train, model.hop_length))
    xe, ye, le = stack(val, shape_targets(val, model.hop_length))
    floor = lt.quantile(0.3)
    return ridge_r2(xt[lt > floor], yt[lt > floor], xe[le > floor], ye[le > floor])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/reference")
    p.add_argument("--models", nargs="+", default=["tiny", "tiny_mirror", "tiny_v1", "small"])
    p.add_argument("--bands", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32, 64, 0])
    p.add_argument("--quick", action="store_true", help="4 validation clips, 60 training clips, 16 iterations")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "code_information.json"))
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    n_val, n_train, iters = (4, 60, 16) if args.quick else (10, 300, 64)
    val = load_clips(args.data, SR, categories=["speech"], split="val", max_clips=n_val, clip_seconds=4.0)
    train = load_clips(args.data, SR, categories=["speech"], split="train", max_clips=n_train, clip_seconds=4.0)
    refs = [c.wav.reshape(-1) for c in val]
    t0 = time.time()
    oracles = {}
    for n in args.bands:
        oracles[str(n)] = scores((x, mel_envelope_oracle(x, SR, n, iters=iters)) for x in refs)
        print(f"{n:>3} bands: {oracles[str(n)]}", flush=True)
    models = {}
    for name in args.models:
        m = load_model(name).eval()
        with torch.no_grad():
            decoded = [m.decode(m.encode(x.reshape(1, 1, -1)), x.numel()).reshape(-1) for x in refs]
        models[name] = scores(zip(refs, decoded)) | {
            "bitrate": round(m.bitrate(), 1), "decoder": m.config.decoder,
            "probe_r2_frame": round(probe(m, train, val, 0), 4), "probe_r2_context1": round(probe(m, train, val, 1), 4)}
        print(f"{name}: {models[name]}", flush=True)
    write_report(args.out, {
        "format": "tinycodec-code-information", "data": args.data, "quick": args.quick,
        "val_clips": len(val), "train_clips": len(train), "clip_seconds": 4.0, "griffin_lim_iters": iters,
        "frame_rate_hz": SR / 256, "oracles_by_bands": oracles, "models": models,
        "seconds": round(time.time() - t0, 1), "machine": machine_info()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
