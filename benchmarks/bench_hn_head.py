"""What a harmonic-plus-noise decoder head makes of the codes: its f0, its voicing, its harmonic share.

For each checkpoint or weights file of a decoder with ``decoder_head="hn"``, on held-out validation
speech (40 clips of 4 s, four codebooks): the median error of the head's f0 against
``tinycodec.modules.harmonic.estimate_f0`` of the input on the voiced frames (octaves) and the share
within 5 %, its mean voicing probability on voiced and on unvoiced frames, and the harmonic source's
share of the spectrum's energy (0: the head is the iSTFT head alone).

    python benchmarks/bench_hn_head.py CKPT [CKPT ...] [--data data/reference] [--out results/decoder_hn.json]

Notebook: book/appendix_reference_models.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_report  # noqa: E402

from tinycodec.eval.clips import load_clips  # noqa: E402
from tinycodec.modules.harmonic import estimate_f0  # noqa: E402
from tinycodec.modules.server_decoder import HarmonicNoiseHead  # noqa: E402
from tinycodec.pretrained import load_model  # noqa: E402

SR, N_Q = 16000, 4
FIVE_PERCENT_OCTAVES = 0.0704  # log2(1.05)


@torch.no_grad()
def diagnose(spec: str, clips) -> dict[str, float]:
    model = load_model(spec).eval()
    head = model.decoder.head
    if not isinstance(head, HarmonicNoiseHead):
        raise SystemExit(f"{spec}: its decoder head is not the harmonic-plus-noise head")
    hop = model.hop_length
    errors, p_voiced, p_unvoiced, harmonic, total = [], [], [], 0.0, 0.0
    for clip in clips:
        wav = clip.wav.reshape(1, 1, -1)[..., : clip.wav.numel() // hop * hop]
        x = model.decoder.trunk(model.quantizer.decode(model.encode(wav, N_Q)))
        h = head.harmonic(x)  # sets last_f0 / last_voicing
        noise = head.noise_spectrum(x)
        f0, voicing = head.harmonic.last_f0[0], torch.sigmoid(head.harmonic.last_voicing[0])
        ref_f0, ref_voiced = estimate_f0(wav[:, 0], SR, hop)
        n = min(f0.shape[-1], ref_f0.shape[-1])
        voiced = ref_voiced[0, :n] > 0.5
        errors.append((torch.log2(f0[:n][voiced]) - torch.log2(ref_f0[0, :n][voiced])).abs())
        p_voiced.append(voicing[:n][voiced])
        p_unvoiced.append(voicing[:n][~voiced])
        harmonic += float(h.abs().square().sum())
        total += float((h + noise).abs().square().sum())
    err = torch.cat(errors)
    return {"voiced_frames": len(err), "median_f0_error_octaves": round(float(err.median()), 3),
            "f0_within_5_percent": round(float((err < FIVE_PERCENT_OCTAVES).float().mean()), 3),
            "voicing_probability_voiced": round(float(torch.cat(p_voiced).mean()), 3),
            "voicing_probability_unvoiced": round(float(torch.cat(p_unvoiced).mean()), 3),
            "harmonic_energy_share": float(f"{harmonic / total:.3g}")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="checkpoints or weights files of hn decoders")
    p.add_argument("--data", default="data/reference")
    p.add_argument("--clips", type=int, default=40)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "decoder_hn.json")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    clips = load_clips(args.data, SR, categories=["speech"], split="val", max_clips=args.clips, clip_seconds=4.0)
    rows = {}
    for spec in args.models:
        rows[Path(spec).parent.name + "/" + Path(spec).stem] = row = diagnose(spec, clips)
        print(f"{spec}: {row}", flush=True)
    write_report(args.out, {
        "provenance": "history: checkpoints of the harmonic-plus-noise decoder runs (quoted by the appendix only)",
        "format": "tinycodec-hn-head", "data": args.data, "split": "val", "clips": len(clips), "clip_seconds": 4.0,
        "n_q": N_Q, "checkpoints": rows, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
