"""Make the deployed int8-exact encoder of a shipped TinyStream (issue: the microcontroller's codes).

    python tools/deploy_int8.py prepare tiny            # build/tiny_int8_init.safetensors
    tinycodec train --init build/tiny_int8_init.safetensors ...   # short QAT fine-tune (see train_reference.py)

Calibration audio: 12 speech + 4 nature files of the reference *train* split (seeded draw).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def calibration_files(seed: int = 0) -> list[Path]:
    from tinycodec.data.folder import AudioFolder

    sys.path.insert(0, str(ROOT / "tools"))
    from train_reference import link_corpora

    folder = AudioFolder(str(link_corpora()), 16000, 0.5, split="train")
    root = link_corpora()
    paths = sorted(root / f.rel for f in folder.files)
    speech = [p for p in paths if "/speech/" in str(p)]
    nature = [p for p in paths if "/nature/" in str(p)]
    rng = random.Random(seed)
    return rng.sample(speech, 12) + rng.sample(nature, 4)


def main() -> int:
    import torch

    from tinycodec.export.qat import prepare_int8_model
    from tinycodec.pretrained import load_model
    from tinycodec.train.checkpoint import export_weights

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["prepare"])
    p.add_argument("model", help="model spec (shipped name, .safetensors, checkpoint)")
    p.add_argument("--out", help="default build/NAME_int8_init.safetensors")
    args = p.parse_args()
    torch.set_num_threads(1)
    model = prepare_int8_model(load_model(args.model), calibration_files())
    out = Path(args.out or ROOT / "build" / f"{Path(args.model).stem}_int8_init.safetensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    print(export_weights(model, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
