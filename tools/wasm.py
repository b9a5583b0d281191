"""Build the firmware's C encoder for WebAssembly: the same sources as the Cortex-M4 build.

    python tools/wasm.py [--model tinycodec] [--out _build/wasm]

Exports the model's C tables (``tinycodec export c``: tinycodec_model.h), then compiles the
``tinycodec_encoder`` component with ``firmware/wasm/tc_wasm.c`` using Debian's clang for
``wasm32-wasi`` (``apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32``), no download.
The module exports ``tc_wasm_init``, ``tc_wasm_pcm`` (one hop of int16 PCM), ``tc_wasm_encode_frame`` and
``tc_wasm_codes`` (n_q codes); ``firmware/wasm/encode.mjs`` runs it in Node. tests/test_wasm.py checks its
codes against the Python int8 reference, bit for bit.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPONENT = ROOT / "firmware" / "components" / "tinycodec_encoder"
DRIVER = ROOT / "firmware" / "wasm" / "tc_wasm.c"
APT = "apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32"


def build(model: str = "tinycodec", out: Path = ROOT / "_build" / "wasm") -> Path:
    """Export ``model``'s tables and compile the encoder to ``out/tinycodec_encoder.wasm``.

    Raises:
        RuntimeError: clang or the wasm32 sysroot is missing (the message names the apt packages),
            or the compiler failed (its first error line).
    """
    from tinycodec.export.c_export import export_c

    if shutil.which("clang") is None or not Path("/usr/include/wasm32-wasi/string.h").exists():
        raise RuntimeError(f"building for WebAssembly needs Debian's clang and wasi-libc: {APT}")
    gen = Path(out) / "gen"
    export_c(model, gen)
    wasm = Path(out) / "tinycodec_encoder.wasm"
    cmd = ["clang", "--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-std=c99", "-Wall", "-nostartfiles",
           "-Wl,--no-entry", f"-I{COMPONENT / 'include'}", f"-I{COMPONENT / 'src'}", f"-I{gen}",
           *map(str, sorted((COMPONENT / "src").glob("*.c"))), str(DRIVER), "-o", str(wasm)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        first = next((line for line in proc.stderr.splitlines() if "error" in line), proc.stderr.strip()[:300])
        raise RuntimeError(f"clang for wasm32 failed: {first}")
    return wasm


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tinycodec", help="a deployed model (shipped name or weights file)")
    p.add_argument("--out", type=Path, default=ROOT / "_build" / "wasm")
    args = p.parse_args(argv)
    try:
        wasm = build(args.model, args.out)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {wasm} ({wasm.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
