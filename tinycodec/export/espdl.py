"""ESP-DL model export through esp-ppq: a streaming int8 (or int16) encoder for ESP32-S3/P4.

esp-ppq's ``espdl_quantize_torch`` is ``torch.onnx.export`` followed by
``espdl_quantize_onnx``. We do the first step ourselves and call the second, because:

* its torch version check compares strings (``"2.13.0+cpu" >= "2.9.0"`` is False), so on
  torch 2.13 it would pick the dynamo exporter path it did not intend;
* auto-streaming only turns a ``Conv`` whose padding is all on the left into a
  ``StreamingCache`` + conv; PyTorch exports causal padding as a separate ``Pad`` node,
  which :func:`tinycodec.export.onnx.fold_pad_into_conv` merges into ``pads = [P, 0]``;
* auto-streaming caches ``k - 1`` frames before every conv, right only for stride 1: a strided
  conv needs ``k - stride`` (its causal padding), else the streaming model computes shifted
  windows (on trained ``tiny``: 6 % of the embedding values equal the whole-signal ones).
  :class:`tinycodec.export.espdl_sim.FixStridedWindows` sets those caches, and every export is
  checked in an integer simulation (:mod:`tinycodec.export.espdl_sim`) that must reproduce the
  ``.info`` test output whole-signal and the same output chunk by chunk.

The graph is the encoder only (``wav [1, 1, N] -> embeddings [1, D, N / hop]``); the VQ
search stays in the firmware. esp-ppq prints through ``print``/its own logger and tqdm,
so the whole call runs with file descriptors 1 and 2 redirected to ``espdl.log``; any
``[ERROR]`` or "not supported in streaming" line raises :class:`EspdlError`. The ``.info``
file's test input/output (int8/int16 values with power-of-two exponents) are parsed into
golden vectors (``test_vectors.json``) for the firmware.

Notebook: book/07_deployment.md
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from tinycodec.export import calibration
from tinycodec.export.encoder import EncoderExport, causal_encoder
from tinycodec.export.espdl_sim import EspdlError, parse_test_values  # noqa: F401 (public here)
from tinycodec.export.onnx import export_module

logger = logging.getLogger(__name__)

TARGETS = ("esp32s3", "esp32p4")
# 8-bit is kept when at least this share of code indices (all levels) matches fp32 on
# held-out audio; below it the model is re-quantized at 16 bits. 0.9 allows one index in
# ten to move to a near-tie codeword. It is a chosen bar, not yet tied to a measured
# quality loss: revisit with trained weights (tinycodec.export.onnx_ptq measures the mel change).
MIN_AGREEMENT_8BIT = 0.9
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FATAL = ("[ERROR]", "not supported in streaming", "Failed to insert streaming node")


@dataclass
class EspdlResult:
    """What :func:`export_espdl` produced and measured.

    Attributes:
        espdl (str): the ``.espdl`` FlatBuffers model; ``info``/``json``/``log``/``vectors``
            the files next to it.
        target (str): chip; bits (int): final bit width; requested_bits (int): asked for.
        streaming_nodes (int): ``StreamingCache`` nodes inserted by auto-streaming.
        agreement (dict): ``{bits: share of identical code indices vs fp32}`` per width tried.
        device_agreement (dict): for a deployed model (``encoder_int8``), ``{bits: share of code
            indices equal to the int8 reference's}`` (the codes the device sends; esp-ppq quantizes
            the float encoder its own way, so this is not 1.0); empty for a float model.
        embedding_snr_db (dict): ``{bits: SNR of the quantized embeddings vs fp32}``.
        streaming_check (dict): :func:`tinycodec.export.espdl_sim.check_streaming` of the kept
            width: the integer simulation reproduces the ``.info`` test output, and the streaming
            graph (chunk by chunk, exported cache windows) equals the whole-signal one.
        input_length (int): N of the full-length graph; hop_length (int): streaming input.
        seconds (float): wall time.
    """

    espdl: str
    info: str
    json: str
    log: str
    vectors: str
    target: str
    bits: int
    requested_bits: int
    streaming: bool
    streaming_nodes: int
    input_length: int
    hop_length: int
    agreement: dict = field(default_factory=dict)
    device_agreement: dict = field(default_factory=dict)
    embedding_snr_db: dict = field(default_factory=dict)
    streaming_check: dict = field(default_factory=dict)
    seconds: float = 0.0
    graph: object = field(default=None, repr=False, compare=False)  # esp-ppq's quantized graph

    def to_dict(self) -> dict:
        out = asdict(replace(self, graph=None))
        out.pop("graph")
        return out


def _ppq_handlers() -> list:
    """esp-ppq's console log handlers: each keeps the ``sys.stdout`` of its creation time."""
    mod = sys.modules.get("esp_ppq.log.logger")
    loggers = getattr(mod, "initialized_loggers", {}) if mod else {}
    return [h for lg in list(loggers.values()) for h in getattr(lg, "_handlers", {}).values()
            if getattr(h, "_file_name", "") is None]


@contextlib.contextmanager
def capture_output(path: str | Path):
    """Send everything written to stdout/stderr to ``path``: file descriptors 1 and 2 (C code,
    tqdm), ``sys.stdout``/``sys.stderr``, and esp-ppq's loggers, which hold their own stream."""
    outer = sys.stdout
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "w") as f:
        handlers = {id(h): (h, h._fd) for h in _ppq_handlers()}
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                for h, _ in handlers.values():
                    h._fd = f
                yield
        finally:
            for h in _ppq_handlers():  # loggers created during the call hold ``f``
                handlers.setdefault(id(h), (h, outer))
            for h, fd in handlers.values():
                h._fd = fd
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def check_log(text: str) -> int:
    """Raise :class:`EspdlError` on fatal esp-ppq log lines; return the streaming nodes inserted."""
    lines = [_ANSI.sub("", line) for line in text.splitlines()]
    bad = [line.strip() for line in lines if any(k in line for k in _FATAL)]
    if bad:
        raise EspdlError("esp-ppq reported errors:\n  " + "\n  ".join(bad[:10]))
    return sum("Inserting StreamingCache" in line for line in lines)


def _snr_db(ref: Tensor, est: Tensor) -> float:
    noise = (ref - est).pow(2).sum().clamp_min(1e-20)
    return float(10 * torch.log10(ref.pow(2).sum().clamp_min(1e-20) / noise))


def _quantize(onnx_path: Path, out: Path, windows: list[Tensor], test_input: Tensor, target: str, bits: int,
              streaming: bool, hop: int, calib_steps: int):
    from tinycodec.export.espdl_sim import FixStridedWindows

    n = windows[0].shape[-1]
    log_path = out.with_suffix(".log")
    # strided convs need a cache of k - stride frames, not esp-ppq's default k - 1 (espdl_sim)
    kwargs = dict(auto_streaming=True, streaming_input_shape=[1, 1, hop],
                  streaming_custom_passes=[FixStridedWindows()]) if streaming else {}
    with capture_output(log_path):
        try:  # its import prints a banner: inside the capture
            from esp_ppq.api import espdl_quantize_onnx
        except ImportError as exc:
            raise RuntimeError("esp-ppq is not installed: pip install -c constraints.txt '.[export]'") from exc
        graph = espdl_quantize_onnx(
            onnx_import_file=str(onnx_path), espdl_export_file=str(out), calib_dataloader=windows,
            calib_steps=min(calib_steps, len(windows)), input_shape=[1, 1, n], inputs=[test_input],
            target=target, num_of_bits=bits, export_test_values=True, error_report=False, verbose=0,
            device="cpu", **kwargs)
    return graph, log_path


def _ppq_embeddings(graph, windows: list[Tensor]) -> list[Tensor]:
    from esp_ppq.executor import TorchExecutor

    executor = TorchExecutor(graph=graph, device="cpu")
    return [executor.forward(inputs=w)[0].detach().float() for w in windows]


def _equalized(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose encoder went through ``equalize_cross_layer`` (TinyStream graphs);
    other encoders (ELU, transformer) are returned as they are."""
    from tinycodec.export.int8_quantize import equalize_cross_layer

    try:
        encoder = equalize_cross_layer(model.encoder)
    except ValueError:  # a layer our graph walker does not know: nothing to equalize
        return model
    out = copy.deepcopy(model)  # a few MB at most; the caller's model stays as it is
    out.encoder = encoder
    return out


def export_espdl(model: nn.Module, out_dir: str | Path, target: str = "esp32s3", bits: int = 8,
                 streaming: bool = True, calib_wavs: list[Tensor] | None = None, eval_wavs: list[Tensor] | None = None,
                 frames: int = 8, calib_steps: int = 32, fallback: bool = False,
                 min_agreement: float = MIN_AGREEMENT_8BIT, name: str = "encoder",
                 equalize: bool = True) -> EspdlResult:
    """Quantize the encoder with esp-ppq and write ``NAME_TARGET_{8,16}bit.espdl`` (+ ``.info``,
    ``.json``, ``.log``, ``_vectors.json``) and ``NAME_TARGET.onnx`` under ``out_dir``.

    Args:
        model (CodecModel): source model.
        out_dir (str | Path): output folder.
        target (str): ``"esp32s3"`` or ``"esp32p4"``.
        bits (int): 8 or 16.
        streaming (bool): auto-streaming: the exported graph takes [1, 1, hop_length] per call.
        calib_wavs (list[Tensor]): real audio clips ([1, T] at the model's rate) for calibration.
        eval_wavs (list[Tensor] | None): clips to measure code agreement on (default: calib_wavs).
        frames (int): N = frames * hop_length samples in the full-length graph.
        calib_steps (int): calibration windows.
        fallback (bool): re-export at 16 bits when 8-bit agreement < ``min_agreement`` (off by
            default: the 8-bit model is the deliverable, its agreement is reported).
        min_agreement (float): see :data:`MIN_AGREEMENT_8BIT`.
        name (str): file stem.
        equalize (bool): export ``equalize_cross_layer`` of a TinyStream encoder (the same float
            function, channel ranges evened out for esp-ppq's per-tensor power-of-two scales).

    Returns:
        EspdlResult
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    if not calib_wavs:
        raise ValueError("export_espdl needs calibration audio (calib_wavs)")
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hop = int(model.hop_length)
    n = frames * hop
    encoder = causal_encoder(_equalized(model) if equalize else model)  # same float function
    vq = EncoderExport(model)
    windows = calibration.windows(calib_wavs, n, calib_steps)
    eval_windows = calibration.windows(eval_wavs or calib_wavs, n, 16)
    onnx_path = out_dir / f"{name}_{target}.onnx"
    with torch.no_grad():
        ref = [encoder(w) for w in eval_windows]  # fp32 embeddings [1, D, frames]
        ref_codes = [vq.quantize(z) for z in ref]
        deployed = bool(getattr(model.config, "encoder_int8", False))
        device_codes = [model.encode(w) for w in eval_windows] if deployed else []  # the int8 reference's
    agreement, device_agreement, snr = {}, {}, {}
    tried = [bits] + ([16] if fallback and bits == 8 else [])
    for b in tried:
        with tempfile.TemporaryDirectory() as tmp:
            # esp-ppq simplifies the .onnx in place: give it a fresh copy per bit width
            src = export_module(encoder, Path(tmp) / "encoder.onnx", torch.zeros(1, 1, n), ["wav"],
                                ["embeddings"])
            stem = out_dir / f"{name}_{target}_{b}bit"
            graph, log_path = _quantize(src, stem.with_suffix(".espdl"), windows, windows[len(windows) // 2],
                                        target, b, streaming, hop, calib_steps)
            onnx_path.write_bytes(Path(src).read_bytes())
        nodes = check_log(log_path.read_text(errors="replace"))
        if streaming and nodes == 0:
            raise EspdlError(f"auto-streaming inserted no StreamingCache node (see {log_path})")
        got = _ppq_embeddings(graph, eval_windows)
        if got[0].shape != ref[0].shape:
            raise EspdlError(f"esp-ppq output shape {tuple(got[0].shape)} != {tuple(ref[0].shape)}")
        codes = [vq.quantize(z) for z in got]
        same = sum(int((c == r).sum()) for c, r in zip(codes, ref_codes))
        agreement[b] = same / sum(r.numel() for r in ref_codes)
        if device_codes:
            same = sum(int((c == r).sum()) for c, r in zip(codes, device_codes, strict=True))
            device_agreement[b] = same / sum(r.numel() for r in device_codes)
            logger.info("espdl %s %d-bit: code agreement %.3f with the deployed int8 encoder", target, b,
                        device_agreement[b])
        snr[b] = _snr_db(torch.cat([r.reshape(-1) for r in ref]), torch.cat([g.reshape(-1) for g in got]))
        logger.info("espdl %s %d-bit: code agreement %.3f, embedding SNR %.1f dB, %d streaming nodes",
                    target, b, agreement[b], snr[b], nodes)
        vectors = parse_test_values(stem.with_suffix(".info"))
        stem.with_name(stem.name + "_vectors.json").write_text(json.dumps(vectors))
        checked = _check_streaming(graph, stem.with_suffix(".info"), hop) if streaming else {}
        if b == 8 and agreement[b] < min_agreement and fallback:
            logger.warning("8-bit code agreement %.3f < %.2f: falling back to 16-bit", agreement[b], min_agreement)
            continue
        break
    return EspdlResult(espdl=str(stem.with_suffix(".espdl")), info=str(stem.with_suffix(".info")),
                       json=str(stem.with_suffix(".json")), log=str(log_path),
                       vectors=str(stem.with_name(stem.name + "_vectors.json")), target=target, bits=b,
                       requested_bits=bits, streaming=streaming, streaming_nodes=nodes, input_length=n,
                       hop_length=hop, agreement=agreement, device_agreement=device_agreement,
                       embedding_snr_db=snr, streaming_check=checked,
                       seconds=time.perf_counter() - t0, graph=graph)


def _check_streaming(graph, info: Path, hop: int) -> dict:
    """:func:`tinycodec.export.espdl_sim.check_streaming`, raising :class:`EspdlError` when the
    streaming graph does not compute the whole-signal function (a StreamingCache too short or
    too long). Graphs with ops the simulation does not know are reported as unchecked."""
    from tinycodec.export.espdl_sim import check_streaming

    try:
        checked = check_streaming(graph, info, hop)
    except ValueError as exc:  # an op outside Conv/Relu/Add
        return {"checked": False, "reason": str(exc)}
    if not checked["streaming_equals_whole"]:
        raise EspdlError(f"streaming graph != whole-signal graph on the test input "
                         f"({checked['streaming_equal_fraction']:.3f} of the values equal): {info}")
    return {"checked": True, **checked}
