"""What the command line costs: CPU time of `tinycodec encode` / `decode` against `import torch`.

Each command runs as a fresh process (as a user runs it), ``--repeats`` times, the commands
interleaved so that a busy neighbour slows all of them alike; the CPU time is the child's user +
system time from ``os.wait4``. The ratios to ``python -c "import torch"`` are what the JSON is for
(the target: at most 1.2x). Each CLI run also reports which heavy modules it imported.

    python benchmarks/bench_cli.py                      # 8 s of demo speech, 5 repeats
    python benchmarks/bench_cli.py --seconds 30 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# modules a codec command has no use for: each costs start-up time when imported
HEAVY = ("torch._dynamo", "torch.onnx", "onnxruntime", "scipy", "matplotlib", "tinycodec.train")
PROBE = ("import sys, runpy; sys.argv = ['tinycodec'] + sys.argv[1:]\n"
         "try:\n    runpy.run_module('tinycodec', run_name='__main__')\n"
         "except SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
         "print('HEAVY', *[m for m in {heavy!r} if m in sys.modules], file=sys.stderr)\n"
         "sys.exit(code)")


def cpu_seconds(argv: list[str]) -> tuple[float, str]:
    """Run ``argv``; return its CPU time (user + system, seconds) and its stderr."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {text[-400:]}")
    return usage.ru_utime + usage.ru_stime, text


def demo_clip(path: Path, seconds: float) -> Path:
    """``seconds`` of demo speech (a committed clip repeated) as 16 kHz int16 WAV."""
    src = sorted((ROOT / "data" / "demo" / "speech").glob("*.wav"))
    if not src:
        raise SystemExit("no demo clips: run `tinycodec data fetch demo --to data/demo`")
    x, sr = sf.read(src[0], dtype="int16")
    n = int(seconds * sr)
    sf.write(path, np.resize(x, n), sr)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "cli.json"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wav, tcz, out = demo_clip(Path(tmp) / "in.wav", args.seconds), Path(tmp) / "a.tcz", Path(tmp) / "b.wav"
        probe = [sys.executable, "-c", PROBE.format(heavy=HEAVY)]
        commands = {
            "import torch": [sys.executable, "-c", "import torch"],
            "encode": probe + ["encode", str(wav), str(tcz)],
            "decode": probe + ["decode", str(tcz), str(out)],
        }
        times: dict[str, list[float]] = {k: [] for k in commands}
        heavy: dict[str, list[str]] = {}
        for i in range(args.repeats + 1):  # the first round warms the page cache and is dropped
            for name, cmd in commands.items():
                t, err = cpu_seconds(cmd)
                if i:
                    times[name].append(t)
                for line in err.splitlines():
                    if line.startswith("HEAVY"):
                        heavy[name] = line.split()[1:]
    base = statistics.median(times["import torch"])
    report = {
        "machine": machine_info(),
        "audio_seconds": args.seconds,
        "repeats": args.repeats,
        "cpu_seconds_median": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "cpu_seconds_all": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "ratio_to_import_torch": {k: round(statistics.median(v) / base, 3) for k, v in times.items()
                                  if k != "import torch"},
        "heavy_modules_imported": heavy,
        "target_ratio": 1.2,
    }
    for name, r in report["ratio_to_import_torch"].items():
        print(f"{name}: {report['cpu_seconds_median'][name]:.2f} s CPU, {r:.2f}x `import torch` "
              f"({base:.2f} s); heavy modules: {heavy.get(name) or 'none'}")
    write_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
