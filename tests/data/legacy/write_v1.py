"""Write the committed version-1 ``.tcz`` files with the OLD package that wrote such files.

Run from this folder with an old checkout first on the path, e.g.::

    git worktree add --detach /tmp/old 5469d4e   # last commit before c7eba2f: a3fd2c3's weights, container v1
    PYTHONPATH=/tmp/old python write_v1.py v1_ tiny ultra_tiny small soundstream_16k transformer_tiny
    git worktree add --detach /tmp/old450 450abf3  # the first tiny
    PYTHONPATH=/tmp/old450 python write_v1.py v1_ tiny --suffix _450abf3

Each file holds seconds 7-8 of ``data/demo/speech/pyannote_sample.wav``, bit-packed at the model's full n_q.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import tinycodec
from tinycodec.bitstream.model_io import encode_bytes
from tinycodec.pretrained import load_pretrained

HERE = Path(__file__).resolve().parent
CLIP = HERE.parents[2] / "data" / "demo" / "speech" / "pyannote_sample.wav"

if __name__ == "__main__":
    args = sys.argv[1:]
    suffix = args[args.index("--suffix") + 1] if "--suffix" in args else ""
    prefix, names = args[0], [a for a in args[1:] if a not in ("--suffix", suffix)]
    wav, sr = sf.read(str(CLIP), dtype="float32")
    assert sr == 16000, sr
    clip = torch.from_numpy(np.ascontiguousarray(wav[7 * sr : 8 * sr]))
    root = Path(tinycodec.__file__).resolve().parents[1]
    commit = subprocess.check_output(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], text=True).strip()
    for name in names:
        data = encode_bytes(load_pretrained(name), clip)
        assert data[4] == 1, "not a version-1 writer"
        (HERE / f"{prefix}{name}{suffix}.tcz").write_bytes(data)
        print(f"{prefix}{name}{suffix}.tcz: {len(data)} bytes, written by {commit}")
