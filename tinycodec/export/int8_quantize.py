"""Post-training int8 quantization of a TinyStream encoder + RVQ with power-of-two scales.

``quantize_encoder(model, calib_wavs)`` walks the float encoder into a flat graph
(:mod:`tinycodec.modules.graph`), runs it in float32 on real calibration audio to find each
tensor's largest magnitude, and picks per-tensor exponents ``e = floor(log2(127 / max|x|))`` (the
finest power-of-two scale that does not clip the calibration set). Weights get one exponent per
layer the same way; biases are int32 at the accumulator exponent. Each layer then becomes an int8
layer through :func:`~tinycodec.modules.int8_ops.build_layer`, as in :func:`int8_encoder_of`.

One exponent per layer is coarse for a *trained* encoder, whose channels end up with ranges that
differ by orders of magnitude: the small channels are rounded away. Before quantizing,
``equalize_cross_layer`` (Nagel et al. 2019, "Data-free quantization") rescales channels between
two layers with only linear or ReLU maps in between (depthwise -> pointwise, pointwise -> ReLU ->
pointwise): channel ``c`` of the first is divided by ``s_c``, input ``c`` of the second multiplied by
it, which leaves the float function unchanged (ReLU commutes with positive scales) and gives both
the range ``sqrt(r1 r2)``. On the shipped ``tiny`` it moves the int8 embedding from noise to a
usable signal at no cost on the device (same kernels, same per-layer shifts).

Notebook: book/07_deployment.md
"""

from __future__ import annotations

import copy
import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tinycodec.export.calibration import as_pcm_list, calibration_audio
from tinycodec.export.int8 import Int8Encoder
from tinycodec.modules.graph import GraphLayer, extract_graph
from tinycodec.modules.int8_ops import (
    PCM_EXPONENT,
    PCM_SCALE,
    Op,
    build_layer,
    output_exponent,
    quantize_conv,
)

logger = logging.getLogger(__name__)

CLIP_QUANTILE = 0.995  # calibration clips the top 0.5 % of |x| per tensor (measured best on the trained tiny)
MAX_VQ_UPSHIFT = 5  # residual at e_z + 5 at most: (1 + n_q) * 127 * 2**5 stays inside int16


def _exponent(max_abs: float, lo: int = -16, hi: int = 24) -> int:
    """Largest ``e`` with ``max_abs * 2**e <= 127``."""
    if max_abs <= 0 or not math.isfinite(max_abs):
        return 0
    return int(min(hi, max(lo, math.floor(math.log2(127.0 / max_abs)))))


def _robust_max(v: torch.Tensor) -> float:
    """The ``CLIP_QUANTILE`` quantile of |v| (1.0: the maximum): rare peaks saturate instead
    of costing every other sample a bit of resolution."""
    a = v.detach().abs().reshape(-1).numpy()
    if a.size == 0:
        return 0.0
    if CLIP_QUANTILE >= 1.0:
        return float(a.max())
    a = a[:: max(1, a.size // 400_000)]  # a strided subsample is plenty for a 1e-4 tail
    k = min(a.size - 1, int(CLIP_QUANTILE * a.size))
    return float(np.partition(a, k)[k])


def equalization_pairs(layers: list[GraphLayer]) -> list[tuple[nn.Conv1d, nn.Conv1d]]:
    """Conv pairs of a flat graph whose channels can be rescaled without changing the function:
    depthwise -> pointwise (linear in between) and pointwise -> ReLU -> pointwise."""
    pairs = []
    for i, layer in enumerate(layers):
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if layer.op == Op.DEPTHWISE and nxt and nxt.op == Op.POINTWISE and nxt.inputs[0] == layer.output:
            pairs.append((layer.conv, nxt.conv))
        after = layers[i + 2] if i + 2 < len(layers) else None
        if (layer.op == Op.POINTWISE and nxt and after and nxt.op == Op.RELU and after.op == Op.POINTWISE
                and nxt.inputs[0] == layer.output and after.inputs[0] == nxt.output):
            pairs.append((layer.conv, after.conv))
    return pairs


@torch.no_grad()
def equalize_cross_layer(encoder: nn.Module, iterations: int = 20) -> nn.Module:
    """A copy of ``encoder`` with equalized channel ranges and the same float function.

    For each pair of :func:`equalization_pairs`, output channel ``c`` of the first conv (weights and
    bias) is divided by ``s_c = sqrt(r1_c / r2_c)`` and input channel ``c`` of the second multiplied
    by it, where ``r1_c`` and ``r2_c`` are the channel's largest weight magnitudes; a few sweeps
    settle the pairs that share a layer.
    """
    encoder = copy.deepcopy(encoder)
    pairs = equalization_pairs(extract_graph(encoder)[0])
    for _ in range(iterations):
        for first, second in pairs:
            r1 = first.weight.abs().amax(dim=(1, 2)).double()  # per output channel
            r2 = second.weight.abs().amax(dim=(0, 2)).double()  # per input channel
            scale = torch.sqrt(r1 / r2).nan_to_num(1.0).clamp(1e-3, 1e3).to(first.weight.dtype)
            first.weight.div_(scale[:, None, None])
            if first.bias is not None:
                first.bias.div_(scale)
            second.weight.mul_(scale[None, :, None])
    return encoder


def _float_conv(layer: GraphLayer, x: torch.Tensor, t: dict) -> torch.Tensor:
    conv = layer.conv
    return F.conv1d(F.pad(x, (layer.history, 0)), conv.weight.float(), conv.bias, conv.stride, 0, conv.dilation,
                    conv.groups)


FLOAT_OPS = {  # Op -> float32 function(layer, x [1, C, T], every tensor so far), offline from a zero state
    Op.LOG_SPECTRUM: lambda layer, x, t: layer.spectrum(F.pad(x, (layer.history, 0))),
    Op.CONV1D: _float_conv, Op.DEPTHWISE: _float_conv, Op.POINTWISE: _float_conv,
    Op.RELU: lambda layer, x, t: x.clamp(min=0),
    Op.RESIDUAL_ADD: lambda layer, x, t: x + t[layer.inputs[1]],
}


def run_float(layers: list[GraphLayer], wav: torch.Tensor) -> dict[int, torch.Tensor]:
    """The flat graph in float32 (offline, zero state). wav [T] -> every tensor [C, T_t]."""
    t = {0: wav.float().reshape(1, 1, -1)}
    for layer in layers:
        t[layer.output] = FLOAT_OPS[layer.op](layer, t[layer.inputs[0]], t)
    return {k: v[0] for k, v in t.items()}


def int8_codebooks(model: nn.Module, e_z: int) -> dict:
    """The int8 codebooks of ``model.quantizer`` for an embedding at exponent ``e_z``: each level
    at :func:`codebook_exponent`, the residual at the finest of them (the :class:`Int8Encoder`
    fields ``codebooks``, ``z_shift`` and ``cb_shifts``)."""
    embeds = [q.embed.double() for q in model.quantizer.layers]
    e_c = [codebook_exponent(c, e_z) for c in embeds]
    e_v = max(e_z, *e_c)
    codebooks = np.stack([(c * 2.0**e).round().clamp(-128, 127).numpy() for c, e in zip(embeds, e_c, strict=True)])
    logger.info("int8 exponents: z %d, codebooks %s, residual %d", e_z, e_c, e_v)
    return {"codebooks": codebooks.astype(np.int8), "z_shift": e_v - e_z,
            "cb_shifts": np.array([e_v - e for e in e_c], dtype=np.int64)}


@torch.no_grad()
def quantize_encoder(model: nn.Module, calib_wavs=None, preset: str = "", equalize: bool = True) -> Int8Encoder:
    """Quantize ``model.encoder`` + ``model.quantizer`` to the int8 reference.

    Args:
        model (CodecModel): a TinyStream (ReLU, standard or separable causal convs; a SEANet or a
            spectral encoder, whose FFT frontend becomes the integer ``log_spectrum`` op).
        calib_wavs: paths or arrays/tensors (float in [-1, 1] or int16) of real audio at the
            model's sample rate; default :func:`default_calib_wavs`.
        preset (str): name recorded in the result (for headers and reports).
        equalize (bool): quantize :func:`equalize_cross_layer` of the encoder (same function,
            far less rounding error for trained weights); ``False`` quantizes the weights as they are.

    Returns:
        Int8Encoder: ready for ``encode`` / ``encode_frame``.
    """
    if getattr(model.config, "encoder_int8", False):  # the deployed encoder: its tables, not a new calibration
        return int8_encoder_of(model.eval(), preset)
    model = model.eval()
    sr, hop = model.config.sample_rate, model.config.hop_length
    pcms = as_pcm_list(calibration_audio(calib_wavs), sr)
    flayers, channels = extract_graph(equalize_cross_layer(model.encoder) if equalize else model.encoder)
    max_abs = {k: 0.0 for k in channels}
    for pcm in pcms:
        pcm = np.concatenate([pcm, np.zeros((-len(pcm)) % hop, dtype=np.int16)])
        tensors = run_float(flayers, torch.from_numpy(pcm.astype(np.float32) / PCM_SCALE))
        for k, v in tensors.items():
            max_abs[k] = max(max_abs[k], _robust_max(v))
    exps = {0: PCM_EXPONENT}
    layers = []
    for fl in flayers:
        e_x = exps[fl.inputs[0]]
        exps[fl.output] = output_exponent(fl.op, e_x, _exponent(max_abs[fl.output]))
        weights = None
        if fl.op.is_conv:
            w = fl.conv.weight.double().numpy()
            e_w = _exponent(float(np.abs(w).max()))
            bias = None if fl.conv.bias is None else fl.conv.bias.double().numpy()
            weights = (*quantize_conv(w, bias, e_x, e_w), e_w)
        layers.append(build_layer(fl, exps, weights))
    return Int8Encoder(layers=layers, channels=channels, exponents=exps, hop_length=hop, sample_rate=sr,
                       preset=preset, **int8_codebooks(model, exps[layers[-1].output]))


@torch.no_grad()
def code_agreement(model: nn.Module, enc: Int8Encoder, pcms: list[np.ndarray]) -> dict:
    """Share of int8 codes identical to the float model's, on the same int16 input.

    Returns:
        dict: ``per_level`` (list, share per quantizer), ``frames_all_levels`` (share of frames
        whose whole code vector matches) and ``frames``.
    """
    same, all_same, n = 0, 0, 0
    for pcm in pcms:
        wav = torch.from_numpy(pcm.astype(np.float32) / PCM_SCALE).reshape(1, 1, -1)
        ref = model.encode(wav)[0].numpy()
        got = enc.encode(pcm)
        eq = ref == got
        same = same + eq.sum(1)
        all_same += int(eq.all(0).sum())
        n += eq.shape[1]
    return {"per_level": [round(float(s) / n, 4) for s in same],
            "frames_all_levels": round(all_same / n, 4), "frames": n}


def codebook_exponent(embed: torch.Tensor, e_z: int) -> int:
    """Exponent of one codebook: the finest that holds its largest entry, at most ``e_z + 5``."""
    return min(_exponent(float(embed.abs().max())), e_z + MAX_VQ_UPSHIFT)


@torch.no_grad()
def int8_encoder_of(model, preset: str = "") -> Int8Encoder:
    """The firmware's tables read off an int8 model: its exponents, its rounded weights, its snapped
    codebooks. No calibration: ``int8_encoder_of(model).encode(pcm)`` equals ``model.encode``."""
    enc = model.encoder
    if not model.config.encoder_int8:
        raise ValueError("int8_encoder_of needs a model with encoder_int8=True (see prepare_int8_model)")
    if int(enc.exponents[0]) != PCM_EXPONENT:
        raise ValueError(f"the int8 encoder is not calibrated (input exponent is not {PCM_EXPONENT})")
    return Int8Encoder(layers=list(enc.integer_layers()), channels=dict(enc.channels),
                       exponents={k: int(e) for k, e in enumerate(enc.exponents)},
                       hop_length=model.config.hop_length, sample_rate=model.config.sample_rate, preset=preset,
                       **int8_codebooks(model, enc.output_exponent))
