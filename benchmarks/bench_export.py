"""Export benchmark: onnxruntime against PyTorch encode speed per preset, and int8 PTQ agreement.

    python benchmarks/bench_export.py [--quick] [--data data/demo]

For each TinyStream preset: the encoder + VQ search on 10 s of real audio, timed in PyTorch
(``model.encode``) and in onnxruntime (fp32 graph from ``export_onnx``, and the int8 QDQ graph),
median of repeats, as x real time and as ratios within this run. PTQ figures use an untrained
stand-in (``prepare_untrained``: random weights, unit-variance convs, k-means codebooks),
so agreement is a floor, not what trained weights give. Writes benchmarks/results/export.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tinycodec.export.calibration import calibration_clips, prepare_untrained, split_clips
from tinycodec.export.onnx import check_onnx, onnx_session, run_onnx
from tinycodec.export.onnx_ptq import ptq
from tinycodec.models import TinyStream


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up: allocations, thread pools
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_preset(preset: str, clips: list[torch.Tensor], repeats: int, calib: int, seconds: float) -> dict:
    torch.manual_seed(0)
    model = TinyStream.from_preset(preset).eval()
    prepare_untrained(model, split_clips(clips)[0])
    wav = torch.cat([c.reshape(-1) for c in clips])[16000: 16000 + int(seconds * model.sample_rate)].reshape(1, 1, -1)
    with tempfile.TemporaryDirectory() as tmp:
        result = ptq(model, tmp, clips, calib_count=calib)
        fp32, int8 = Path(tmp) / "encoder_fp32.onnx", Path(tmp) / "encoder_int8.onnx"
        check = check_onnx(model, fp32, [wav])
        s32, s8 = onnx_session(fp32), onnx_session(int8)
        with torch.no_grad():
            t_torch = median_time(lambda: model.encode(wav), repeats)
        t_ort = median_time(lambda: run_onnx(s32, wav), repeats)
        t_int8 = median_time(lambda: run_onnx(s8, wav), repeats)
    return {
        "audio_seconds": seconds,
        "torch_x_realtime": seconds / t_torch,
        "onnx_fp32_x_realtime": seconds / t_ort,
        "onnx_int8_x_realtime": seconds / t_int8,
        "speedup_onnx_vs_torch": t_torch / t_ort,
        "speedup_int8_vs_fp32_onnx": t_ort / t_int8,
        "onnx_max_abs_diff": check.max_abs_diff,
        "onnx_code_agreement": check.code_agreement,
        "ptq": result.to_dict(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="ultra_tiny only, few repeats (CI check)")
    p.add_argument("--data", default="data/demo", help="real audio (speech/ and nature/)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "export.json"))
    args = p.parse_args()
    presets = ["ultra_tiny"] if args.quick else ["ultra_tiny", "tiny", "small"]
    repeats, calib, seconds = (3, 8, 2.0) if args.quick else (10, 32, 10.0)
    clips = calibration_clips(args.data, sample_rate=16000)
    load = os.getloadavg()[0]  # other jobs on the machine skew every number: recorded
    results = {preset: bench_preset(preset, clips, repeats, calib, seconds) for preset in presets}
    import onnxruntime

    report = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "load_average_1min": load,
        },
        "config": {"quick": args.quick, "repeats": repeats, "calibration_windows": calib,
                   "weights": "untrained stand-in (prepare_untrained)"},
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    summary = {k: {m: round(v[m], 3) for m in ("torch_x_realtime", "onnx_fp32_x_realtime", "onnx_int8_x_realtime",
                                                 "speedup_onnx_vs_torch")} | {
        "ptq_agreement": round(v["ptq"]["code_agreement"], 3), "mel_delta": round(v["ptq"]["mel_delta"], 4)}
        for k, v in results.items()}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
