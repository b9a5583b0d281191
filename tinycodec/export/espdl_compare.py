"""esp-ppq's int8 quantization next to ours, layer by layer, on the same trained model and audio.

Both quantize per tensor with power-of-two scales and round half up; they differ in where the
scales come from (esp-ppq: its calibration on float windows; ours: the 99.5th percentile of |x|
per tensor, int8_quantize), in the input (esp-ppq: int8 audio; ours: int16 PCM into the first
conv), in the bias width (esp-ppq ESP32-S3: 20 bits; ours: int32) and in the accumulator
(ESP32-S3 int8 MACs accumulate in 20 bits (the PIE QACC lanes); ours: int32). Both start from the
same equalized float encoder. :func:`compare_quantization` runs the float encoder, our int8
reference and an integer simulation of esp-ppq's graph (:mod:`tinycodec.export.espdl_sim`, checked
against esp-ppq's own test values) on held-out audio and reports, per conv layer, each side's
weight and output exponents and the SNR of the layer output against float (errors accumulate
from the input on), plus the embeddings' SNR and code agreement.

Notebook: book/07_deployment.md
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import Tensor, nn

from tinycodec.modules.int8_ops import PCM_SCALE, pcm_from_float


def _snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    noise = float(((ref - est) ** 2).sum())
    return float(10 * math.log10(max(float((ref ** 2).sum()), 1e-20) / max(noise, 1e-20)))


def _float_conv_outputs(encoder: nn.Module, wav: Tensor) -> dict[str, np.ndarray]:
    """Every nn.Conv1d output of ``encoder`` on ``wav`` [1, 1, T], keyed by module name."""
    out, hooks = {}, []
    for name, m in encoder.named_modules():
        if isinstance(m, nn.Conv1d):
            hooks.append(m.register_forward_hook(
                lambda _m, _i, y, name=name: out.__setitem__(name, y[0].detach().double().numpy())))
    try:
        with torch.no_grad():
            encoder(wav)
    finally:
        for h in hooks:
            h.remove()
    return out


def _int8_layer_outputs(enc, pcm: np.ndarray) -> dict[str, tuple[np.ndarray, int]]:
    """Our int8 reference: each conv layer's int8 output and exponent (the graph cut after it)."""
    out = {}
    for i, layer in enumerate(enc.layers):
        if layer.op.is_conv:
            cut = dataclasses.replace(enc, layers=enc.layers[: i + 1], states={})
            out[layer.name] = (cut.run_graph(pcm, cut.fresh_states()), enc.exponents[layer.output])
    return out


def compare_quantization(model: nn.Module, calib_wavs: list[Tensor], eval_wavs: list[Tensor], out_dir,
                         target: str = "esp32s3", calib_steps: int = 32, seconds: float = 8.0) -> dict:
    """The esp-ppq 8-bit export and our int8 reference of ``model``'s encoder, compared.

    Args:
        model: a TinyStream (the encoder our int8 graph walker knows).
        calib_wavs (list[Tensor]): calibration clips [1, T] float, for both quantizers.
        eval_wavs (list[Tensor]): held-out clips [1, T] float to measure on (first ``seconds``).
        out_dir: where the ``.espdl`` export goes.

    Returns:
        dict: ``layers`` (per conv layer: ``ours``/``esp_ppq`` with ``weight_exponent``,
        ``output_exponent``, ``snr_db``; ``delta_db`` = esp-ppq minus ours), ``input``,
        ``embedding_snr_db``, ``code_agreement`` and ``esp_ppq_better`` (the layers where
        esp-ppq's output is closer to float, with its exponent choices there).
    """
    from tinycodec.export.encoder import EncoderExport, causal_encoder
    from tinycodec.export.espdl import _equalized, export_espdl
    from tinycodec.export.espdl_sim import EspdlSim, sim_ops
    from tinycodec.export.int8_quantize import quantize_encoder

    hop = int(model.hop_length)
    result = export_espdl(model, out_dir, target=target, bits=8, calib_wavs=calib_wavs, eval_wavs=eval_wavs,
                          calib_steps=calib_steps, fallback=False)
    enc = quantize_encoder(model, [w.reshape(-1).numpy() for w in calib_wavs], preset="compare")
    ops = sim_ops(result.graph)
    sim = EspdlSim(ops)
    by_param = {op.param: op for op in ops if op.type == "Conv"}
    float_encoder = causal_encoder(_equalized(model))
    vq = EncoderExport(model)
    acc: dict[str, dict[str, list]] = {}
    z_ref, z_ours, z_ppq, c_ref, c_ours, c_ppq = [], [], [], [], [], []
    for wav in eval_wavs:
        x = wav.reshape(-1)[: int(seconds * model.sample_rate)]
        x = x[: len(x) // hop * hop]
        if len(x) < hop:
            continue
        pcm = pcm_from_float(x.double().numpy())
        wav_in = torch.from_numpy(pcm / PCM_SCALE).float().reshape(1, 1, -1)  # both sides see the same samples
        ref = _float_conv_outputs(float_encoder, wav_in)
        ours = _int8_layer_outputs(enc, pcm)
        ppq = sim.run(pcm / PCM_SCALE)
        for name, (q, e) in ours.items():
            key = f"layers.{name}.conv"
            op = by_param[f"{key}.weight"]
            q_ppq, s_ppq = ppq[op.output]
            a = acc.setdefault(name, {"ref": [], "ours": [], "ppq": []})
            a["ref"].append(ref[key])
            a["ours"].append(q * 2.0 ** -e)
            a["ppq"].append(q_ppq * s_ppq)
        last = enc.layers[-1].name
        z_ref.append(acc[last]["ref"][-1])
        z_ours.append(acc[last]["ours"][-1])
        z_ppq.append(acc[last]["ppq"][-1])
        c_ref.append(vq.quantize(torch.from_numpy(z_ref[-1]).float()[None]))
        c_ppq.append(vq.quantize(torch.from_numpy(z_ppq[-1]).float()[None]))
        c_ours.append(torch.from_numpy(enc.encode(pcm.astype(np.int16))))
    layers = []
    for layer in enc.layers:
        if layer.name not in acc:
            continue
        a, op = acc[layer.name], by_param[f"layers.{layer.name}.conv.weight"]
        ref, ours, ppq = (np.concatenate([v.reshape(v.shape[0], -1) for v in a[k]], axis=1) for k in ("ref", "ours", "ppq"))
        e_in = enc.exponents[layer.inputs[0]]
        e_out = enc.exponents[layer.output]
        row = {"layer": layer.name, "op": layer.op,
               "ours": {"weight_exponent": int(layer.shift - e_in + e_out), "output_exponent": int(e_out),
                        "snr_db": round(_snr_db(ref, ours), 2)},
               "esp_ppq": {"weight_exponent": int(round(-math.log2(op.w_scale))),
                           "output_exponent": int(round(-math.log2(op.out_scale))),
                           "snr_db": round(_snr_db(ref, ppq), 2)}}
        row["delta_db"] = round(row["esp_ppq"]["snr_db"] - row["ours"]["snr_db"], 2)
        layers.append(row)

    def agree(a: list[Tensor], b: list[Tensor]) -> list[float]:
        same = sum((x.reshape(x.shape[-2], -1) == y.reshape(y.shape[-2], -1)).double().sum(-1) for x, y in zip(a, b))
        total = sum(x.shape[-1] for x in a)
        return [round(float(v) / total, 4) for v in same]

    z_ref_all, z_ours_all, z_ppq_all = (np.concatenate(z, axis=1) for z in (z_ref, z_ours, z_ppq))
    first = ops[0]
    better = [{"layer": r["layer"], "delta_db": r["delta_db"],
               "output_exponent": {"ours": r["ours"]["output_exponent"], "esp_ppq": r["esp_ppq"]["output_exponent"]},
               "weight_exponent": {"ours": r["ours"]["weight_exponent"], "esp_ppq": r["esp_ppq"]["weight_exponent"]}}
              for r in layers if r["delta_db"] > 0.5]
    differ = [{"layer": r["layer"], "output_exponent": {"ours": r["ours"]["output_exponent"],
                                                        "esp_ppq": r["esp_ppq"]["output_exponent"]},
               "snr_db": {"ours": r["ours"]["snr_db"], "esp_ppq": r["esp_ppq"]["snr_db"]}}
              for r in layers if r["ours"]["output_exponent"] != r["esp_ppq"]["output_exponent"]
              or r["ours"]["weight_exponent"] != r["esp_ppq"]["weight_exponent"]]
    return {
        "exponents_differ": differ,
        "model_seconds_measured": round(sum(z.shape[1] for z in z_ref) * hop / model.sample_rate, 2),
        "input": {"ours": "int16 PCM (exponent 15) read by the first conv",
                  "esp_ppq": f"int8, exponent {int(round(-math.log2(first.scales[0])))} "
                             f"(clips above {127 * first.scales[0]:.4f} of full scale)"},
        "bias_bits": {"ours": 32, "esp_ppq": int(getattr(result.graph.operations[first.name].config
                                                         .input_quantization_config[2], "num_of_bits", 0))},
        "embedding_snr_db": {"ours": round(_snr_db(z_ref_all, z_ours_all), 2),
                             "esp_ppq": round(_snr_db(z_ref_all, z_ppq_all), 2)},
        "code_agreement_per_level": {"ours_vs_float": agree(c_ours, c_ref), "esp_ppq_vs_float": agree(c_ppq, c_ref),
                                     "esp_ppq_vs_ours": agree(c_ppq, c_ours)},
        "espdl_export": result.to_dict(),
        "layers": layers,
        "esp_ppq_better": better,
    }
