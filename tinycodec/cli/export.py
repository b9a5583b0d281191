"""``tinycodec export {onnx,int8,espdl,c} (--preset NAME | --checkpoint PATH) --out DIR``.

Notebook: book/07_deployment.md
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export the encoder: ONNX, int8 ONNX, ESP-DL, C firmware header")
    sub = p.add_subparsers(dest="export_command", metavar="FORMAT", required=True)
    helps = {"onnx": "fp32 ONNX (encoder + VQ search, dynamic time axis), checked in onnxruntime",
             "int8": "int8 static PTQ of the ONNX encoder, with code agreement and mel-distance change",
             "espdl": "ESP-DL model (.espdl/.info/.json) through esp-ppq, auto-streaming",
             "c": "C firmware model + golden-vector headers (int8 reference)"}
    for name, text in helps.items():
        s = sub.add_parser(name, help=text)
        src = s.add_mutually_exclusive_group()
        # ESP-DL cannot run the spectral encoder's FFT frontend: its default is the SEANet model
        default = "tiny" if name == "espdl" else "tinycodec"
        src.add_argument("--preset", default=default,
                         help="a shipped model name (trained weights) or a preset name (seeded random weights, "
                         "prepared for export: tinycodec.export.calibration.prepare_untrained); "
                         f"default: {default}")
        src.add_argument("--checkpoint", help="training checkpoint (.pt) or exported weights (.safetensors)")
        s.add_argument("--out", required=True, help="output folder")
        s.add_argument("--data", default="data/demo", help="real audio for calibration (speech/ and nature/)")
        s.add_argument("--seed", type=int, default=0, help="seed for random preset weights")
        if name == "espdl":
            s.add_argument("--target", default="esp32s3", choices=["esp32s3", "esp32p4"])
            s.add_argument("--bits", type=int, default=8, choices=[8, 16],
                           help="8 falls back to 16 when 8-bit code agreement is poor")
            s.add_argument("--no-streaming", action="store_true", help="full-length graph, no auto-streaming")
        s.set_defaults(func=_run)


def _run(args) -> int:
    from tinycodec.export.calibration import calibration_clips, export_name, load_for_export

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    out = Path(args.out)
    source = args.checkpoint or args.preset
    if args.export_command == "c":
        from tinycodec.export.c_export import export_c

        result = export_c(source, out, calib_wavs=args.data, seed=args.seed)
        print(json.dumps(result, indent=1, default=str))
        return 0
    model, what = load_for_export(source, args.data, args.seed)
    print(f"export {args.export_command}: {what}", file=sys.stderr)
    name = export_name(source)
    if args.export_command == "onnx":
        from tinycodec.export.onnx import check_onnx, export_onnx

        path = export_onnx(model, out / f"{name}_encoder.onnx")
        clips = calibration_clips(args.data, sample_rate=model.sample_rate, max_seconds=4.0)
        check = check_onnx(model, path, [c.reshape(1, 1, -1) for c in clips])
        against = "the int8 reference (the device's integers)" if check.reference == "int8" else "the float graph"
        print(f"{path}: max |embedding diff| {check.max_abs_diff:.2e}, code agreement {check.code_agreement:.4f} "
              f"with {against}, {check.device_code_agreement:.4f} with the deployed encoder")
        if getattr(model.config, "encoder_int8", False) and check.device_code_agreement < 1.0:
            print(f"warning: this ONNX graph computes the encoder in floating point: "
                  f"{100 * (1 - check.device_code_agreement):.1f} % of its codes differ from the codes the device "
                  "sends. For the device's own arithmetic use `tinycodec export c` (bit-exact C).", file=sys.stderr)
        if not check.ok:
            raise RuntimeError(f"ONNX parity failed: {check.max_abs_diff:.2e} > {check.atol:.0e}")
        return 0
    from tinycodec.export.calibration import split_clips
    from tinycodec.export.onnx_ptq import ptq

    clips = calibration_clips(args.data, sample_rate=model.sample_rate)
    if args.export_command == "int8":
        result = ptq(model, out, clips, name=f"{name}_encoder")
        print(json.dumps(result.to_dict(), indent=1))
        print("code agreement: share of frames whose codes equal the float encoder's after onnxruntime's "
              "post-training int8 quantization"
              + (" (an untrained encoder's codes are fragile: random weights agree far less than trained ones)"
                 if "RANDOM" in what else "")
              + ". The deployed encoders (tinycodec, tiny, ultra_tiny) need no such step: their int8 arithmetic "
              "is the model's own, exact by construction (`tinycodec export c`).", file=sys.stderr)
        return 0
    from tinycodec.export.espdl import export_espdl

    calib, held = split_clips(clips)
    result = export_espdl(model, out, target=args.target, bits=args.bits, streaming=not args.no_streaming,
                          calib_wavs=calib, eval_wavs=held, name=name)
    print(json.dumps(result.to_dict(), indent=1))
    return 0
