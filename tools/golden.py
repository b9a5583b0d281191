"""Golden outputs of the shipped models: what each one's codes and decoded audio are for a fixed input.

    python tools/golden.py            # check every shipped model against tests/data/golden/NAME.json
    python tools/golden.py --update   # rewrite them and tinycodec/pretrained/index.json (after a deliberate
                                      # change of shipped weights)

The input is a synthetic voice (a deterministic harmonic tone with vibrato, 0.5 s): no data needed.
A golden file holds the codes at every level (exact) and the decode's RMS per 10 ms block and first
64 samples (compared within 1e-4): a change anywhere in the model's path (a window gain, a shift, a
delay) shows up, while float rounding across machines does not. ``tests/test_golden.py`` runs the check.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "golden"
TOLERANCE = 1e-4


def golden_input(sample_rate: int = 16000, seconds: float = 0.5) -> torch.Tensor:
    """[1, 1, T]: a 130 Hz voice-like tone with 15 harmonics and vibrato, faded in and out."""
    t = torch.arange(int(sample_rate * seconds), dtype=torch.float64) / sample_rate
    phase = 2 * math.pi * torch.cumsum(130 + 6 * torch.sin(2 * math.pi * 5 * t), 0) / sample_rate
    wav = sum(0.3 / k * torch.sin(k * phase) for k in range(1, 16)) * torch.sin(math.pi * t / seconds) ** 0.5
    return wav.float().reshape(1, 1, -1)


@torch.no_grad()
def golden_of(model) -> dict:
    """The golden record of one model: codes [n_q][F], decode RMS per 10 ms and its first 64 samples."""
    wav = golden_input(model.sample_rate)
    codes = model.encode(model.pad_for_delay(wav))
    out = model.decode(codes, length=wav.shape[-1]).reshape(-1).double()
    block = model.sample_rate // 100
    n = out.numel() // block
    rms = out[: n * block].reshape(n, block).pow(2).mean(1).sqrt()
    return {"codes": codes[0].tolist(), "rms_10ms": [round(float(v), 6) for v in rms],
            "head": [round(float(v), 6) for v in out[:64]]}


def differences(name: str, want: dict, got: dict) -> list[str]:
    """What differs between two golden records (empty when they agree within TOLERANCE)."""
    out = []
    if want["codes"] != got["codes"]:
        levels = [i for i, (a, b) in enumerate(zip(want["codes"], got["codes"])) if a != b]
        out.append(f"{name}: codes differ (levels {levels or 'count'})")
    for key in ("rms_10ms", "head"):
        a, b = torch.tensor(want[key]), torch.tensor(got[key])
        if a.shape != b.shape:
            out.append(f"{name}: {key} has {b.numel()} values, golden {a.numel()}")
        elif (err := float((a - b).abs().max())) > TOLERANCE:
            out.append(f"{name}: {key} differs by up to {err:.2e} (tolerance {TOLERANCE:g})")
    return out


def main(argv=None) -> int:
    from tinycodec.pretrained import load_pretrained, shipped_names

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--update", action="store_true", help="rewrite the golden files")
    p.add_argument("names", nargs="*", help="shipped models (default: all)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    problems = []
    for name in args.names or shipped_names():
        got, path = golden_of(load_pretrained(name)), GOLDEN / f"{name}.json"
        if args.update:
            GOLDEN.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(got) + "\n")
            print(f"wrote {path.relative_to(ROOT)}")
        elif not path.exists():
            problems.append(f"{name}: no golden file {path.relative_to(ROOT)} (run tools/golden.py --update {name})")
        else:
            problems += differences(name, json.loads(path.read_text()), got)
    if args.update:
        from tinycodec.bitstream.model_io import write_index

        write_index()  # the hashes `tinycodec decode` looks up
        print("wrote tinycodec/pretrained/index.json")
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
