"""Make the deployed int8-exact encoder of a shipped TinyStream (issue: the microcontroller's codes).

    python tools/deploy_int8.py prepare tiny_v1         # the float model -> build/tiny_v1_int8_init.safetensors
    python tools/train_reference.py train tiny --init build/tiny_v1_int8_init.safetensors --run qat_tiny ...
    python tools/deploy_int8.py finalize checkpoints/reference_qat_tiny/best.pt --out build/tiny_deployed.safetensors
    python tools/train_reference.py ship tiny_mirror checkpoints/reference_qat_tiny/best.pt ...  # snapped to the grid
    python tools/train_reference.py train tiny --init tiny_mirror --decoder server --freeze-encoder ...
    python tools/train_reference.py ship tiny checkpoints/reference_RUN/step_N.pt ...       # the plain name

The QAT run fine-tunes the encoder with the mirror decoder (shipped as ``NAME_mirror``); the server
decoder is then trained on exactly its codes and ships under the plain name (chapter 04).

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

    from tinycodec.export.int8_prepare import prepare_int8_model
    from tinycodec.pretrained import load_model
    from tinycodec.train.checkpoint import export_weights

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["prepare", "finalize"])
    p.add_argument("model", help="model spec (shipped name, .safetensors, checkpoint)")
    p.add_argument("--out", help="default build/NAME_int8_init.safetensors")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.command == "finalize":
        return finalize(args)
    model = prepare_int8_model(load_model(args.model), calibration_files())
    out = Path(args.out or ROOT / "build" / f"{Path(args.model).stem}_int8_init.safetensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    print(export_weights(model, out))
    return 0


def finalize(args) -> int:
    """Snap a QAT checkpoint onto its integer grids, check that nothing the device computes changed
    (also after a float16 round trip of the shipped file), and write it (float32) for --init."""
    import tempfile

    import numpy as np
    import torch

    from tinycodec.export.calibration import load_pcm
    from tinycodec.export.int8_prepare import snap_to_grid
    from tinycodec.export.int8_quantize import code_agreement, int8_encoder_of
    from tinycodec.pretrained import load_model, load_weights
    from tinycodec.train.checkpoint import export_weights

    model = load_model(args.model)
    before = int8_encoder_of(model)
    snap_to_grid(model)
    after = int8_encoder_of(model)
    for a, b in zip(before.layers, after.layers, strict=True):
        for x, y in ((a.weight, b.weight), (a.bias, b.bias)):
            if x is not None:
                np.testing.assert_array_equal(x, y)
    pcms = [load_pcm(f, model.sample_rate, 8.0) for f in calibration_files(seed=1)]
    with tempfile.TemporaryDirectory() as tmp:
        half = load_weights(export_weights(model, Path(tmp) / "m.safetensors", dtype=torch.float16))
    agreement = code_agreement(half, after, pcms)
    print("float16 copy vs int8 tables:", agreement)
    if agreement["frames_all_levels"] != 1.0:
        raise SystemExit("the float16 copy does not reproduce the device's codes")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    print(export_weights(model, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
