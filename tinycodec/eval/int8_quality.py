"""What a listener hears from a deployed model: the device's int8 codes against the same weights in float.

An int8-exact encoder (``config.encoder_int8``, :mod:`tinycodec.export.int8_prepare`) computes the
firmware's integer arithmetic; its float twin (``model.encoder.float_encoder``) runs the same weights
in floating point. :func:`path_quality` decodes both with the model's decoder and scores them on
clips, with the share of codes the two agree on (``tools/firmware.py`` reports it beside the
firmware's speed).

Notebook: book/07_deployment.md
"""

from __future__ import annotations

import math

import torch

from tinycodec.eval.metrics import log_mel_distance, pesq_wb, stoi
from tinycodec.modules import pad_to_multiple

__all__ = ["path_quality"]


@torch.no_grad()
def path_quality(model, clips) -> dict:
    """What a user hears from a deployed model, two ways, decoded by the same (server) decoder.

    - ``mcu``: the device's codes (``model.encode``, equal to the int8 reference and the C encoder).
    - ``float``: the same weights run in float arithmetic (``model.encoder.float_encoder``).

    Args:
        model: a model with ``encoder_int8=True``.
        clips: :class:`tinycodec.eval.clips.Clip` list (``wav`` [1, 1, T], ``category``).

    Returns:
        dict: ``{"mcu": {category: metrics}, "float": ..., "code_agreement_float_vs_mcu": per level}``;
        metrics are means of log-mel (all), and STOI and PESQ-WB (speech).
    """
    sr = model.sample_rate
    sums: dict = {"mcu": {}, "float": {}}
    same, total = None, 0
    for clip in clips:
        wav = clip.wav
        codes = {"mcu": model.encode(wav),
                 "float": model.quantizer.encode(model.encoder.float_encoder(pad_to_multiple(wav, model.hop_length)))}
        eq = (codes["mcu"] == codes["float"]).sum(-1)[0].double()
        same = eq if same is None else same + eq
        total += codes["mcu"].shape[-1]
        for path, c in codes.items():
            y = model.decode(c, length=wav.shape[-1])[0, 0]
            ref = wav[0, 0]
            scores = {"log_mel": log_mel_distance(ref, y, sr)}
            if clip.category == "speech":
                scores |= {"stoi": stoi(ref, y, sr), "pesq_wb": pesq_wb(ref, y, sr)}
            cat = sums[path].setdefault(clip.category, {})
            for k, v in scores.items():
                if not math.isnan(v):
                    cat.setdefault(k, []).append(v)
    out = {path: {cat: {k: round(sum(v) / len(v), 4) for k, v in m.items()} | {"n_clips": len(m["log_mel"])}
                  for cat, m in per.items()} for path, per in sums.items()}
    out["code_agreement_float_vs_mcu"] = [round(float(s) / total, 4) for s in same]
    return out
