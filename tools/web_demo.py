"""Assets of the book's browser page: the firmware encoder in WebAssembly, the server decoder in ONNX,
onnxruntime-web and three demo clips, into the built book's static folder (nothing fetched at view time).

    npm ci --prefix web                     # onnxruntime-web, pinned by web/package-lock.json
    python tools/web_demo.py [--out DIR]    # default: _build/_static/tinycodec_web (tools/book.py build runs it)

``manifest.json`` names the model's rates and the clips (raw little-endian int16 PCM at 16 kHz).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
ORT = ROOT / "web" / "node_modules" / "onnxruntime-web" / "dist"
# the non-bundled wasm build of onnxruntime-web: a script that defines `ort`, and the module + binary it loads
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MODEL = "tinycodec"


def demo_clips(sample_rate: int) -> dict:
    """name -> int16 PCM: a conversation excerpt, a short prompt (demo corpus), a synthetic voice."""
    from tinycodec.export.c_export import synthetic_golden_pcm
    from tinycodec.export.calibration import load_pcm

    demo = ROOT / "data" / "demo" / "speech"
    return {"conversation": load_pcm(demo / "pyannote_sample.wav", sample_rate, 11.5)[int(7.5 * sample_rate):],
            "prompt": load_pcm(demo / "onsen_thank_you.wav", sample_rate),
            "synthetic voice": synthetic_golden_pcm("speech", sample_rate, 2.0)}


def build(out: Path = ROOT / "_build" / "_static" / "tinycodec_web") -> Path:
    """Write every asset of the page into ``out``; returns ``out``.

    Raises:
        RuntimeError: onnxruntime-web is not installed (``npm ci --prefix web``) or the WebAssembly
            toolchain is missing (tools/wasm.py names the apt packages).
    """
    import wasm

    from tinycodec.export.onnx_decoder import export_decoder_onnx
    from tinycodec.pretrained import load_pretrained

    missing = [f for f in ORT_FILES if not (ORT / f).exists()]
    if missing:
        raise RuntimeError(f"onnxruntime-web is not installed ({missing[0]} missing): npm ci --prefix {ROOT / 'web'}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    wasm.build(MODEL, out / "wasm_build")
    shutil.copy(out / "wasm_build" / "tinycodec_encoder.wasm", out / "tinycodec_encoder.wasm")
    shutil.rmtree(out / "wasm_build")
    model = load_pretrained(MODEL)
    export_decoder_onnx(model, out / "decoder.onnx", levels_input=True)
    for name in ORT_FILES:
        shutil.copy(ORT / name, out / name)
    shutil.copy(ROOT / "web" / "app.js", out / "app.js")
    clips = []
    for i, (name, pcm) in enumerate(demo_clips(model.sample_rate).items()):
        pcm = pcm[: len(pcm) // model.hop_length * model.hop_length]
        (out / f"clip{i}.pcm").write_bytes(pcm.astype("<i2").tobytes())
        clips.append({"name": name, "file": f"clip{i}.pcm", "samples": int(len(pcm))})
    manifest = {"model": MODEL, "sample_rate": model.sample_rate, "hop_length": model.hop_length,
                "n_q": model.num_quantizers, "codebook_size": model.config.codebook_size,
                "decoder_delay": int(model.decoder.delay), "clips": clips}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "_build" / "_static" / "tinycodec_web")
    args = p.parse_args(argv)
    try:
        out = build(args.out)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"wrote {out} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
