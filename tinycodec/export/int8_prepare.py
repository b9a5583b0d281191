"""Make a TinyStream's encoder the int8 firmware: prepare the int8-exact model, then snap it to its grids.

    model (float)  --prepare_int8_model-->  model (encoder_int8=True)  --train (QAT: tinycodec train --init)-->
                   --snap_to_grid-->  deployed: model.encode == Int8Encoder.encode == the C encoder

``prepare_int8_model`` equalizes the encoder's channel ranges (same float function), calibrates the
power-of-two exponents on real audio with :func:`tinycodec.export.int8_quantize.quantize_encoder`,
and builds the same architecture with :class:`~tinycodec.modules.int8_exact.Int8ExactEncoder`, which
computes exactly that integer arithmetic (SEANet or FFT-frontend encoders alike). This module does not
train: fine-tuning the prepared model (``tinycodec train --init``) teaches the weights, the codebooks
and the decoder the integer encoder's codes. ``snap_codebooks`` puts the codebooks on their int8 grid
and ``snap_to_grid`` the encoder's weights too, after which
:func:`~tinycodec.export.int8_quantize.int8_encoder_of` reads the firmware's tables off the model with
nothing left to calibrate, and every code the model emits is the device's. What a listener hears from
the two arithmetics: :func:`tinycodec.eval.int8_quality.path_quality`.

Notebook: book/07_deployment.md
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from tinycodec.export.int8_quantize import (
    codebook_exponent,
    equalize_cross_layer,
    quantize_encoder,
)


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
def snap_to_grid(model) -> None:
    """Put an int8 model on its integer grids (in place): every encoder weight and bias becomes the
    value the firmware stores (``q * 2**-e``) and every codebook its int8 grid. The integer encoder
    does not change; a copy in float32, or float16 for the weights, reproduces it exactly."""
    enc = model.encoder
    for i, layer in enumerate(enc.graph):
        if layer.conv is None:
            continue
        conv, e_w = layer.conv, int(enc.weight_exponents[i])
        e_b = int(enc.exponents[layer.inputs[0]]) + e_w
        wq, bq = enc.integer_weights(i)
        conv.weight.copy_((wq * 2.0**-e_w).float())
        if bq is not None:
            conv.bias.copy_((bq * 2.0**-e_b).float())
    snap_codebooks(model)
