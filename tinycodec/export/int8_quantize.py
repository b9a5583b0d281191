"""Post-training int8 quantization of a TinyStream encoder + RVQ with power-of-two scales.

``quantize_encoder(model, calib_wavs)`` walks the float encoder into a flat graph (conv1d,
depthwise, pointwise, relu, residual_add), runs it in float64 on real calibration audio to find
each tensor's largest magnitude, and picks per-tensor exponents ``e = floor(log2(127 / max|x|))``
(the finest power-of-two scale that does not clip the calibration set). Weights get one exponent
per layer the same way; biases are int32 at the accumulator exponent.

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
from tinycodec.export.int8 import PCM_EXPONENT, Int8Encoder, Int8Layer
from tinycodec.modules.graph import extract_graph

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


def equalization_pairs(layers: list[dict]) -> list[tuple[nn.Conv1d, nn.Conv1d]]:
    """Conv pairs of a flat graph whose channels can be rescaled without changing the function:
    depthwise -> pointwise (linear in between) and pointwise -> ReLU -> pointwise."""
    pairs = []
    for i, layer in enumerate(layers):
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if layer["op"] == "depthwise" and nxt and nxt["op"] == "pointwise" and nxt["inputs"][0] == layer["output"]:
            pairs.append((layer["conv"], nxt["conv"]))
        after = layers[i + 2] if i + 2 < len(layers) else None
        if (layer["op"] == "pointwise" and nxt and after and nxt["op"] == "relu" and after["op"] == "pointwise"
                and nxt["inputs"][0] == layer["output"] and after["inputs"][0] == nxt["output"]):
            pairs.append((layer["conv"], after["conv"]))
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


def run_float(layers: list[dict], wav: torch.Tensor) -> dict[int, torch.Tensor]:
    """The flat graph in float32 (offline, zero state). wav [T] -> every tensor [C, T_t]."""
    t = {0: wav.float().reshape(1, 1, -1)}
    for layer in layers:
        x = t[layer["inputs"][0]]
        conv = layer["conv"]
        if layer["op"] == "log_spectrum":
            y = layer["module"](F.pad(x, (layer["history"], 0)))
        elif conv is not None:
            y = F.conv1d(F.pad(x, (layer["history"], 0)), conv.weight.float(), conv.bias, conv.stride,
                         0, conv.dilation, conv.groups)
        elif layer["op"] == "relu":
            y = x.clamp(min=0)
        else:
            y = x + t[layer["inputs"][1]]
        t[layer["output"]] = y
    return {k: v[0] for k, v in t.items()}


def conv_layer(fl: dict, wq: np.ndarray, bq: np.ndarray, shift: int) -> Int8Layer:
    """The :class:`Int8Layer` of conv ``fl`` (a graph layer) from its integer weights [C_out, C_in/g, k]
    and integer bias [C_out] (int32 checked), in the layout of its op."""
    conv, op = fl["conv"], fl["op"]
    wq, bq = np.asarray(wq).astype(np.int8), np.asarray(bq).astype(np.int64)
    if np.abs(bq).max(initial=0) > 2**31 - 1:
        raise OverflowError(f"{fl['name']}: bias does not fit int32")
    if op == "depthwise":
        wq, bq = wq[:, 0, :], None
    elif op == "pointwise":
        wq = wq[:, :, 0]
    return Int8Layer(op, fl["inputs"], fl["output"], weight=wq, bias=None if bq is None else bq.astype(np.int32),
                     shift=shift, stride=conv.stride[0], dilation=conv.dilation[0], history=fl["history"],
                     name=fl["name"])


def spectrum_layer(fl: dict, e_y: int) -> Int8Layer:
    """The :class:`Int8Layer` of a ``log_spectrum`` graph layer whose int8 output has exponent ``e_y``."""
    spec = fl["module"]
    return Int8Layer("log_spectrum", fl["inputs"], fl["output"], bias=np.array(spec.int8_affine(e_y), dtype=np.int64),
                     stride=spec.hop, history=spec.n_fft - spec.hop, name=fl["name"])


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
        tensors = run_float(flayers, torch.from_numpy(pcm.astype(np.float32) / 32768.0))
        for k, v in tensors.items():
            max_abs[k] = max(max_abs[k], _robust_max(v))
    exps = {0: PCM_EXPONENT}
    layers = []
    for fl in flayers:
        op, out, ins = fl["op"], fl["output"], fl["inputs"]
        e_x = exps[ins[0]]
        if op == "relu":  # int8 max(x, 0) keeps the scale
            exps[out] = e_x
            layers.append(Int8Layer(op, ins, out, name=fl["name"]))
            continue
        e_y = exps[out] = _exponent(max_abs[out])
        if op == "log_spectrum":
            layers.append(spectrum_layer(fl, e_y))
            continue
        if op == "residual_add":
            e_m = max(e_x, exps[ins[1]])
            layers.append(Int8Layer(op, ins, out, shift=e_m - e_y, shift_a=e_m - e_x,
                                    shift_b=e_m - exps[ins[1]], name=fl["name"]))
            continue
        conv = fl["conv"]
        w = conv.weight.double().numpy()
        e_w = _exponent(float(np.abs(w).max()))
        wq = np.clip(np.round(w * 2.0**e_w), -128, 127)
        bias = np.zeros(conv.out_channels) if conv.bias is None else conv.bias.double().numpy()
        layers.append(conv_layer(fl, wq, np.round(bias * 2.0 ** (e_x + e_w)), e_x + e_w - e_y))
    e_z = exps[layers[-1].output]
    embeds = [q.embed.double().numpy() for q in model.quantizer.layers]
    e_c = [min(_exponent(float(np.abs(c).max())), e_z + MAX_VQ_UPSHIFT) for c in embeds]
    e_v = max(e_z, *e_c)
    codebooks = np.stack([np.clip(np.round(c * 2.0**e), -128, 127) for c, e in zip(embeds, e_c, strict=True)])
    logger.info("int8 exponents: z %d, codebooks %s, residual %d", e_z, e_c, e_v)
    return Int8Encoder(layers=layers, channels=channels, exponents=exps, codebooks=codebooks.astype(np.int8),
                       z_shift=e_v - e_z, cb_shifts=np.array([e_v - e for e in e_c], dtype=np.int64),
                       hop_length=hop, sample_rate=sr, preset=preset)


@torch.no_grad()
def code_agreement(model: nn.Module, enc: Int8Encoder, pcms: list[np.ndarray]) -> dict:
    """Share of int8 codes identical to the float model's, on the same int16 input.

    Returns:
        dict: ``per_level`` (list, share per quantizer), ``frames_all_levels`` (share of frames
        whose whole code vector matches) and ``frames``.
    """
    same, all_same, n = 0, 0, 0
    for pcm in pcms:
        wav = torch.from_numpy(pcm.astype(np.float32) / 32768.0).reshape(1, 1, -1)
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
    exps = {k: int(e) for k, e in enumerate(enc.exponents)}
    if exps[0] != PCM_EXPONENT:
        raise ValueError("the int8 encoder is not calibrated (input exponent is not 15)")
    layers = []
    for i, fl in enumerate(enc.graph):
        op, ins, out = fl["op"], fl["inputs"], fl["output"]
        if op == "relu":
            layers.append(Int8Layer(op, ins, out, name=fl["name"]))
        elif op == "log_spectrum":
            layers.append(spectrum_layer(fl, exps[out]))
        elif op == "residual_add":
            e_m = max(exps[ins[0]], exps[ins[1]])
            layers.append(Int8Layer(op, ins, out, shift=e_m - exps[out], shift_a=e_m - exps[ins[0]],
                                    shift_b=e_m - exps[ins[1]], name=fl["name"]))
        else:
            wq, bq = enc.integer_weights(i)
            bq = np.zeros(fl["conv"].out_channels) if bq is None else bq.numpy()
            layers.append(conv_layer(fl, wq.numpy(), bq, exps[ins[0]] + int(enc.weight_exponents[i]) - exps[out]))
    e_z = enc.output_exponent
    embeds = [q.embed.double() for q in model.quantizer.layers]
    e_c = [codebook_exponent(c, e_z) for c in embeds]
    codebooks = np.stack([(c * 2.0**e).round().clamp(-128, 127).numpy() for c, e in zip(embeds, e_c, strict=True)])
    e_v = max(e_z, *e_c)
    return Int8Encoder(layers=layers, channels=dict(enc.channels), exponents=exps, codebooks=codebooks.astype(np.int8),
                       z_shift=e_v - e_z, cb_shifts=np.array([e_v - e for e in e_c], dtype=np.int64),
                       hop_length=model.config.hop_length, sample_rate=model.config.sample_rate, preset=preset)
