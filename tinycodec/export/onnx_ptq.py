"""onnxruntime's int8 static post-training quantization of the ONNX encoder, measured in codes and sound.

This is the generic graph route (any runtime that reads QDQ ONNX); the project's own int8 encoder,
which the firmware computes bit for bit, is :mod:`tinycodec.export.int8_quantize`.

``quantize_int8`` runs onnxruntime's ``quantize_static`` (QDQ format, int8 weights per
output channel, int8 activations, MinMax calibration on real audio windows). The VQ search
(``MatMul`` against the codebooks, ``ArgMin``) stays float by default, as on the device
where the search is a separate integer routine; ``quantize_vq=True`` quantizes it too.

``evaluate_ptq`` measures what int8 costs: the *code agreement* (share of indices identical
to fp32, overall and per level) and the quality change through the float decoder
(log-mel distance of ``decode(codes_int8)`` and ``decode(codes_fp32)`` to the input).
Calibration and evaluation use disjoint parts of each clip
(:func:`tinycodec.export.calibration.split_clips`).

An untrained model has random codebooks far from its embeddings, so every frame picks
the same few codes and any agreement figure is meaningless: prepare it with
:func:`tinycodec.export.calibration.prepare_untrained` first (k-means codebooks on real audio,
what training starts with anyway).

Notebook: book/07_deployment.md
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from tinycodec.export.calibration import split_clips, windows
from tinycodec.export.onnx import _require, export_onnx, onnx_session, run_onnx

logger = logging.getLogger(__name__)


class _Reader:
    """onnxruntime ``CalibrationDataReader`` over fixed windows [1, 1, N]."""

    def __init__(self, wins: list[Tensor]) -> None:
        self._it = iter([{"wav": w.numpy().astype(np.float32)} for w in wins])

    def get_next(self):
        return next(self._it, None)


def _vq_nodes(path: str | Path) -> list:
    """Nodes downstream of the ``embeddings`` tensor (the VQ search) in an exported graph."""
    import onnx

    graph = onnx.load(str(path)).graph
    reached, nodes = {"embeddings"}, []
    for node in graph.node:  # ONNX nodes are topologically sorted
        if any(i in reached for i in node.input):
            reached.update(node.output)
            nodes.append(node)
    return nodes


def _first_conv(path: str | Path) -> list:
    import onnx

    return [next(n for n in onnx.load(str(path)).graph.node if n.op_type == "Conv")]


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, calib: list[Tensor], per_channel: bool = True,
                  quantize_vq: bool = False, float_input_layer: bool = True) -> Path:
    """Static int8 PTQ (QDQ) of an ONNX file from :func:`tinycodec.export.onnx.export_onnx`.

    Args:
        fp32_path, int8_path (str | Path): input and output graphs.
        calib (list[Tensor]): calibration windows [1, 1, N] of real audio.
        per_channel (bool): per-output-channel weight scales.
        quantize_vq (bool): also quantize the codebook distance ``MatMul``.
        float_input_layer (bool): keep the first conv (1 input channel) unquantized: audio at
            8 bits loses quiet passages entirely; on the device this layer takes the
            microphone's int16 samples.
    """
    _require("onnxruntime")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    ops = ["Conv", "Relu", "Add"] + (["MatMul"] if quantize_vq else [])
    # the distances feed an argmin: int8 distances would tie everywhere (all codes -> 0)
    exclude = [n for n in _vq_nodes(fp32_path) if not (quantize_vq and n.op_type == "MatMul")]
    if float_input_layer:
        exclude += _first_conv(fp32_path)
    int8_path = Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime's quantizer warns on the root logger (pre-processing advice)
    try:
        quantize_static(str(fp32_path), str(int8_path), _Reader(calib), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=ops, nodes_to_exclude=[n.name for n in exclude],
                        per_channel=per_channel, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    finally:
        root.setLevel(level)
    return int8_path


def log_mel_l1(ref: Tensor, est: Tensor, sample_rate: int) -> float:
    """Mean |log-mel(ref) - log-mel(est)|: ``tinycodec.eval.metrics.log_mel_distance`` when present."""
    try:
        from tinycodec.eval.metrics import log_mel_distance
    except ImportError:
        from tinycodec.audio import log_mel

        return float((log_mel(ref, sample_rate) - log_mel(est, sample_rate)).abs().mean())
    return float(log_mel_distance(ref, est, sample_rate))


@dataclass
class PTQResult:
    """int8 against fp32 on held-out audio.

    Attributes:
        code_agreement (float): share of identical indices, all levels.
        agreement_per_level (list[float]): the same per RVQ level.
        embedding_snr_db (float): fp32 embeddings against int8 embeddings.
        mel_fp32, mel_int8 (float): log-mel L1 of the decoded audio to the input.
        mel_delta (float): ``mel_int8 - mel_fp32`` (positive = int8 worse).
        frames (int): frames compared; size_fp32, size_int8 (int): file bytes.
    """

    code_agreement: float
    agreement_per_level: list[float]
    embedding_snr_db: float
    mel_fp32: float
    mel_int8: float
    mel_delta: float
    frames: int
    size_fp32: int = 0
    size_int8: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def evaluate_ptq(model: nn.Module, fp32_path: str | Path, int8_path: str | Path, clips: list[Tensor],
                 window: int | None = None, count: int = 16) -> PTQResult:
    """Code agreement and decoded quality of the int8 graph against the fp32 graph.

    Args:
        model (CodecModel): the exported model (its float decoder decodes both code sets).
        fp32_path, int8_path: ONNX graphs.
        clips (list[Tensor]): held-out real audio [1, T].
        window (int | None): samples per evaluated window (default 64 frames).
        count (int): windows.
    """
    hop = model.hop_length
    wins = windows(clips, window or 64 * hop, count)
    s32, s8 = onnx_session(fp32_path), onnx_session(int8_path)
    same = None
    total, sig, noise, m32, m8 = 0, 0.0, 0.0, [], []
    for w in wins:
        c32, z32 = run_onnx(s32, w)
        c8, z8 = run_onnx(s8, w)
        eq = (c32 == c8).sum(dim=(0, 2)).double()  # [n_q]
        same = eq if same is None else same + eq
        total += c32.shape[0] * c32.shape[-1]
        sig += float(z32.pow(2).sum())
        noise += float((z32 - z8).pow(2).sum())
        wav = w.reshape(1, 1, -1)
        m32.append(log_mel_l1(wav, model.decode(c32, wav.shape[-1]), model.sample_rate))
        m8.append(log_mel_l1(wav, model.decode(c8, wav.shape[-1]), model.sample_rate))
    per_level = (same / total).tolist()
    mel32, mel8 = float(np.mean(m32)), float(np.mean(m8))
    return PTQResult(float(np.mean(per_level)), per_level, 10 * float(np.log10(sig / max(noise, 1e-20))),
                     mel32, mel8, mel8 - mel32, total, Path(fp32_path).stat().st_size,
                     Path(int8_path).stat().st_size)


def ptq(model: nn.Module, out_dir: str | Path, clips: list[Tensor], name: str = "encoder",
        calib_count: int = 32, quantize_vq: bool = False, per_channel: bool = True,
        float_input_layer: bool = True, eval_count: int = 16) -> PTQResult:
    """Export fp32 ONNX, quantize to int8 on the first 70 % of each clip, evaluate on the rest.

    Args:
        model (CodecModel): source model (eval mode).
        out_dir (str | Path): writes ``NAME_fp32.onnx`` and ``NAME_int8.onnx``.
        clips (list[Tensor]): real audio [1, T] at the model's rate.
        calib_count (int): calibration windows of 16 frames; eval_count (int): evaluation windows of 64.
    """
    model.eval()
    out_dir = Path(out_dir)
    fp32 = export_onnx(model, out_dir / f"{name}_fp32.onnx", exact_int8=False)  # onnxruntime quantizes floats
    calib, held = split_clips(clips)
    int8 = quantize_int8(fp32, out_dir / f"{name}_int8.onnx", windows(calib, 16 * model.hop_length, calib_count),
                         per_channel=per_channel, quantize_vq=quantize_vq, float_input_layer=float_input_layer)
    result = evaluate_ptq(model, fp32, int8, held, count=eval_count)
    result.extra.update(quantize_vq=quantize_vq, per_channel=per_channel, calib_windows=calib_count,
                        float_input_layer=float_input_layer)
    logger.info("PTQ: code agreement %.3f (per level %s), mel delta %+.4f", result.code_agreement,
                [round(a, 3) for a in result.agreement_per_level], result.mel_delta)
    return result

