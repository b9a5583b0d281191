"""One deployed encoder: turn a trained TinyStream into a model whose encoder *is* the int8 firmware.

    model (float)  --prepare_int8_model-->  model (encoder_int8=True)  --train (QAT, short)-->
                   --snap_codebooks-->  deployed: model.encode == Int8Encoder.encode == the C encoder

``prepare_int8_model`` equalizes the encoder's channel ranges (same float function), calibrates the
power-of-two exponents on real audio with :func:`tinycodec.export.int8_calibrate.quantize_encoder`,
and builds the same architecture with :class:`~tinycodec.modules.int8_exact.Int8ExactEncoder`, which
computes exactly that integer arithmetic. Fine-tuning it (``tinycodec train --init``) teaches the
weights, the codebooks and the decoder the integer encoder's codes; ``snap_codebooks`` puts the
codebooks on their int8 grid, after which :func:`int8_encoder_of` reads the firmware's tables off
the model with nothing left to calibrate, and every code the model emits is the device's.

Notebook: book/07_deployment.md
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch

from tinycodec.export.int8 import PCM_EXPONENT, Int8Encoder, Int8Layer
from tinycodec.export.int8_calibrate import MAX_VQ_UPSHIFT, _exponent, equalize_cross_layer, quantize_encoder


@torch.no_grad()
def prepare_int8_model(model, calib_wavs=None):
    """A copy of ``model`` (TinyStream, float encoder) with an int8-exact encoder calibrated on
    ``calib_wavs`` (paths or arrays, see :func:`quantize_encoder`) and int8-grid codebooks.

    Returns:
        CodecModel: same family and weights (equalized encoder), ``config.encoder_int8 = True``.
    """
    from tinycodec.models import build_model

    if model.config.encoder_int8:
        raise ValueError("the model already has an int8-exact encoder")
    config = asdict(model.config) | {"encoder_int8": True}
    new = build_model(model.family, config)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    new.load_state_dict(state, strict=False)
    new.encoder.float_encoder.load_state_dict(equalize_cross_layer(model.encoder).state_dict())
    int8 = quantize_encoder(new_float_view(new), calib_wavs, equalize=False)
    new.encoder.calibrate_from(int8)
    snap_codebooks(new)
    for attr in ("model_id", "checkpoint_step"):
        if hasattr(model, attr):
            setattr(new, attr, getattr(model, attr))
    return new.eval()


class _FloatView(torch.nn.Module):
    """The float encoder of an int8 model with the model's quantizer (what calibration walks)."""

    def __init__(self, model):
        super().__init__()
        self.encoder, self.quantizer = model.encoder.float_encoder, model.quantizer
        self.config = type(model.config)(**(asdict(model.config) | {"encoder_int8": False}))


def new_float_view(model) -> _FloatView:
    """``model`` with its float encoder in place of the int8-exact one (for calibration)."""
    return _FloatView(model)


def codebook_exponent(embed: torch.Tensor, e_z: int) -> int:
    """Exponent of one codebook: the finest that holds its largest entry, at most ``e_z + 5``."""
    return min(_exponent(float(embed.abs().max())), e_z + MAX_VQ_UPSHIFT)


@torch.no_grad()
def snap_codebooks(model) -> None:
    """Round every codebook of an int8 model onto its int8 grid (in place): the float search over
    the snapped codebooks is then the firmware's integer search, tie for tie."""
    e_z = model.encoder.output_exponent
    for layer in model.quantizer.layers:
        e = codebook_exponent(layer.embed, e_z)
        snapped = (layer.embed.double() * 2.0**e).round().clamp(-128, 127) * 2.0**-e
        layer.embed.copy_(snapped.float())
        layer.embed_avg.copy_(layer.embed * layer.cluster_size[:, None])


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
        elif op == "residual_add":
            e_m = max(exps[ins[0]], exps[ins[1]])
            layers.append(Int8Layer(op, ins, out, shift=e_m - exps[out], shift_a=e_m - exps[ins[0]],
                                    shift_b=e_m - exps[ins[1]], name=fl["name"]))
        else:
            conv = fl["conv"]
            wq, bq = enc.integer_weights(i)
            wq = wq.numpy().astype(np.int8)
            bq = np.zeros(conv.out_channels, dtype=np.int64) if bq is None else bq.numpy().astype(np.int64)
            if np.abs(bq).max(initial=0) > 2**31 - 1:
                raise OverflowError(f"{fl['name']}: bias does not fit int32")
            if op == "depthwise":
                wq, bq = wq[:, 0, :], None
            elif op == "pointwise":
                wq = wq[:, :, 0]
            layers.append(Int8Layer(op, ins, out, weight=wq, bias=None if bq is None else bq.astype(np.int32),
                                    shift=exps[ins[0]] + int(enc.weight_exponents[i]) - exps[out],
                                    stride=conv.stride[0], dilation=conv.dilation[0], history=fl["history"],
                                    name=fl["name"]))
    e_z = enc.output_exponent
    embeds = [q.embed.double() for q in model.quantizer.layers]
    e_c = [codebook_exponent(c, e_z) for c in embeds]
    codebooks = np.stack([(c * 2.0**e).round().clamp(-128, 127).numpy() for c, e in zip(embeds, e_c, strict=True)])
    e_v = max(e_z, *e_c)
    return Int8Encoder(layers=layers, channels=dict(enc.channels), exponents=exps, codebooks=codebooks.astype(np.int8),
                       z_shift=e_v - e_z, cb_shifts=np.array([e_v - e for e in e_c], dtype=np.int64),
                       hop_length=model.config.hop_length, sample_rate=model.config.sample_rate, preset=preset)
