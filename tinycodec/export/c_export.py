"""C export: ``tinycodec_model.h`` (int8 weights, shifts, codebooks, layer table, arena plan)
and ``tinycodec_golden.h`` (real-audio PCM + the int8 reference's codes) for the C encoder in
``firmware/components/tinycodec_encoder``.

Layer table. A ReLU whose input is read by nothing else is fused into the pointwise or
residual_add that produces it (``TC_LAYER_RELU``: the C requantize clamps to [0, 127], the same
integers as ``relu(requantize(...))``), so the C table has fewer rows than ``Int8Encoder.layers``.
The embedding's dims are stored in codebook-energy order (:func:`order_dims`): same integers,
another memory order, which helps the VQ search skip work. A ``log_spectrum`` output read only by
pointwise layers gets zero channels up to a multiple of 8 (:func:`pad_spectrum`: the readers' weights
get zero columns, so every sum is the same integer) so that those pointwise layers take the DSP path.

Spectral encoder. The ``log_spectrum`` row (``TC_OP_LOG_SPECTRUM``) points at a ``tc_spectrum_t``:
the tables of :func:`tinycodec.modules.int8_spectrum.spectrum_tables` (Hann window, twiddles, log table) and
the layer's ``(F, A, B)``, written here as integers (the C side computes none of them), and the
kernel ``tc_log_spectrum`` (so a SEANet firmware never links the FFT code).

Arena plan. Tensors are stored time-major (``[T][C]``, one frame's worth). A tensor read by a
conv with history ``P`` lives in a buffer of ``P + T`` rows whose first ``P`` rows are that conv's
streaming state; such buffers are persistent. Every other tensor gets the lowest 4-byte-aligned
offset not used by a tensor alive at the same time (first fit over the execution order). Then
come the kernel scratch (``tc_pointwise``'s widened input; ``tc_log_spectrum``'s FFT rows, ``2 n_fft``
int32, when the graph has that op), the codebook norms (int32
``[n_q][K]``), the search's pruning bounds (uint16 ``[n_q][K][D / 32 - 1]``) and the int16 VQ
residual ``[D]``.

Notebook: book/07_deployment.md
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
from torch import nn

from tinycodec.export.calibration import calibration_audio, export_name, load_for_export, load_pcm, to_pcm16
from tinycodec.export.int8 import Int8Encoder
from tinycodec.export.int8_quantize import quantize_encoder
from tinycodec.modules.int8_ops import Op, fused_relus
from tinycodec.modules.int8_spectrum import spectrum_tables

logger = logging.getLogger(__name__)

GOLDEN_PACKET_FRAMES = 5  # frames in the golden streaming packet
LAYER_STRUCT_BYTES = 40  # sizeof(tc_layer_t) on a 32-bit target
SPECTRUM_STRUCT_BYTES = 48  # sizeof(tc_spectrum_t) on a 32-bit target: 4 table pointers, the kernel, 3 int64
SPECTRUM_PAD = 8  # a log_spectrum output read by pointwise layers only: channels padded to this multiple
RVQ_SEGMENT = 32  # TC_RVQ_SEGMENT: dims between two pruning checks of tc_rvq_search
MAX_RVQ_CHECKS = 3  # TC_MAX_CHECKS in tc_rvq.c: pruning for D <= 128
SCRATCH_MIN_BYTES = 1024  # tc_pointwise widens its input a chunk of rows at a time into this
# golden clips: (name, file under the demo root, offset s, seconds)
GOLDEN_CLIPS = [("speech", "speech/pyannote_sample.wav", 7.5, 2.0),  # speech starts at ~7.5 s
                ("nature", "nature/onsen_water.wav", 5.0, 2.0)]


def _align(n: int, a: int = 4) -> int:
    return (n + a - 1) // a * a


def fuse_relu(enc: Int8Encoder) -> tuple[Int8Encoder, list[bool]]:
    """The C layer table's graph: each ReLU that is the only reader of a pointwise or
    residual_add output is merged into that layer (which then writes the ReLU's output tensor;
    the rule is :func:`~tinycodec.modules.int8_ops.fused_relus`).

    Returns:
        tuple: an :class:`Int8Encoder` sharing ``enc``'s tensors with the fused layer list, and
        per fused layer whether it applies the ReLU.
    """
    fuse = fused_relus(enc.layers, enc.output)
    layers, relu = [], []
    for i, layer in enumerate(enc.layers):
        if i > 0 and fuse[i - 1]:
            continue
        if fuse[i]:
            nxt = enc.layers[i + 1]
            layers.append(dataclasses.replace(layer, output=nxt.output, name=f"{layer.name}+relu"))
        else:
            layers.append(layer)
        relu.append(fuse[i])
    return dataclasses.replace(enc, layers=layers, states={}), relu


def order_dims(enc: Int8Encoder) -> Int8Encoder:
    """The C table's embedding order: ``z``'s dims sorted by codebook energy, highest first.

    The rows of the last (pointwise) layer and the columns of every codebook are permuted
    together, so every dot product and norm, hence every code, is the same integer; only the
    memory order changes. ``tc_rvq_search`` prunes codewords with a bound on the dims it has not
    summed yet: with the largest dims first that bound is tighter sooner.
    """
    last = enc.layers[-1]
    if last.op != Op.POINTWISE or last.weight.shape[0] != enc.codebooks.shape[2]:
        return enc
    energy = (enc.codebooks.astype(np.int64) ** 2).sum(axis=(0, 1))
    order = np.argsort(-energy, kind="stable")
    layer = dataclasses.replace(last, weight=last.weight[order],
                                bias=None if last.bias is None else last.bias[order])
    return dataclasses.replace(enc, layers=[*enc.layers[:-1], layer], codebooks=enc.codebooks[:, :, order],
                               states={})


def pad_spectrum(enc: Int8Encoder) -> Int8Encoder:
    """The C table's spectrum layout: each ``log_spectrum`` output whose readers are all pointwise
    layers gets zero channels up to a multiple of :data:`SPECTRUM_PAD` (``tc_log_spectrum`` writes
    the zeros, the readers' weights get zero columns), so every sum, hence every integer, is the
    same; ``tc_pointwise``'s DSP path wants ``c_in % 8 == 0`` (257 bins -> 264). Layers keep their
    places (no layer is added or removed)."""
    pad: dict[int, int] = {}
    for layer in enc.layers:
        c = enc.channels[layer.output]
        readers = [r for r in enc.layers if layer.output in r.inputs]
        if (layer.op == Op.LOG_SPECTRUM and c % SPECTRUM_PAD and readers and layer.output != enc.output
                and all(r.op == Op.POINTWISE for r in readers)):
            pad[layer.output] = -c % SPECTRUM_PAD
    if not pad:
        return enc
    layers = [dataclasses.replace(layer, weight=np.pad(layer.weight, ((0, 0), (0, pad[layer.inputs[0]]))))
              if layer.op == Op.POINTWISE and layer.inputs[0] in pad else layer for layer in enc.layers]
    channels = {t: c + pad.get(t, 0) for t, c in enc.channels.items()}
    return dataclasses.replace(enc, layers=layers, channels=channels, states={})


def c_graph(enc: Int8Encoder) -> tuple[Int8Encoder, list[bool]]:
    """The C layer table's graph: :func:`fuse_relu` and :func:`pad_spectrum` of ``enc`` (the
    embedding order of :func:`order_dims` is applied by :func:`write_model_header` before)."""
    fused, relu = fuse_relu(enc)
    return pad_spectrum(fused), relu


def spectrum_bytes(n_fft: int) -> int:
    """Flash of one ``log_spectrum`` layer: its tables (Hann int16 ``[N]``, twiddles int32
    ``2 [N / 2]``, log table int32 ``[256]``) and its ``tc_spectrum_t`` (pointers + ``F, A, B``)."""
    return sum(t.nbytes for t in spectrum_tables(n_fft).values()) + SPECTRUM_STRUCT_BYTES


def rvq_checks(dim: int) -> int:
    """Pruning checks per codeword in ``tc_rvq_search`` (0: a plain full search)."""
    checks = dim // RVQ_SEGMENT - 1 if dim % RVQ_SEGMENT == 0 else 0
    return checks if 0 < checks <= MAX_RVQ_CHECKS else 0


def fft_bytes(enc: Int8Encoder) -> int:
    """``tc_log_spectrum``'s FFT rows (``2 n_fft`` int32) of the largest ``log_spectrum`` layer (0: none)."""
    return max([8 * (layer.history + layer.stride) for layer in enc.layers if layer.op == Op.LOG_SPECTRUM], default=0)


def scratch_bytes(enc: Int8Encoder, length: dict) -> int:
    """Scratch for ``tc_pointwise`` (int16 copy of its input, a chunk of rows at a time): at least
    4 rows of the widest input, at most what the largest input needs; at least the FFT rows
    (``2 n_fft`` int32) of a ``log_spectrum`` layer (the kernels never run at the same time)."""
    fft = fft_bytes(enc)
    pw = [(length[layer.output], enc.channels[layer.inputs[0]]) for layer in enc.layers if layer.op == Op.POINTWISE]
    if not pw:
        return fft
    need = max(2 * _align(t) * c for t, c in pw)
    return max(fft, _align(min(need, max(SCRATCH_MIN_BYTES, 8 * max(c for _, c in pw)))))


def plan_arena(enc: Int8Encoder) -> dict:
    """Byte offsets of every tensor (frame-sized, time-major) in the one static arena.

    Returns:
        dict: ``data`` (tensor id -> offset of its current-frame rows), ``buffer`` (tensor id ->
        offset of its buffer incl. history rows), ``scratch``/``scratch_bytes``, ``norms``,
        ``tail_norms`` (0: none), ``residual``, ``bytes`` (total), for the C table's graph
        (:func:`c_graph` of ``enc``; rewriting a rewritten graph changes nothing).
    """
    length = {0: enc.hop_length}  # every tensor of the Python graph, fused away or not
    for layer in enc.layers:
        length[layer.output] = length[layer.inputs[0]] // layer.stride
    enc = c_graph(enc)[0]
    n = len(enc.layers)
    history, elem = {}, {0: 2}
    last_use = {0: 0}
    for i, layer in enumerate(enc.layers):
        elem[layer.output] = 1
        for t in layer.inputs:
            last_use[t] = i
        if layer.history:
            if layer.inputs[0] in history:
                raise ValueError(f"tensor {layer.inputs[0]} feeds two convs with history")
            history[layer.inputs[0]] = layer.history
        if layer.op == Op.CONV1D and layer.inputs[0] != 0:
            raise ValueError("conv1d (standard conv) is only supported on the PCM input")
    first = {0: -1, **{layer.output: i for i, layer in enumerate(enc.layers)}}
    live: list[tuple[int, int, int, int]] = []  # (start, end, first, last)
    buffer = {}
    for t in sorted(first, key=lambda t: first[t]):
        size = _align((history.get(t, 0) + length[t]) * enc.channels[t] * elem[t])
        lo, hi = (-1, n) if t in history else (first[t], last_use.get(t, n))
        clash = [(s, e) for s, e, first_use, last in live if first_use <= hi and lo <= last]  # alive at the same time
        offset = min(c for c in [0] + [_align(e) for _, e in clash]
                     if all(c >= e or c + size <= s for s, e in clash))
        live.append((offset, offset + size, lo, hi))
        buffer[t] = offset
    top = max(e for _, e, _, _ in live)
    data = {t: buffer[t] + history.get(t, 0) * enc.channels[t] * elem[t] for t in buffer}
    n_q, k, d = enc.codebooks.shape
    scratch = _align(top)
    scratch_size = scratch_bytes(enc, length)
    norms = scratch + scratch_size
    tails = norms + n_q * k * 4
    tail_size = _align(n_q * k * rvq_checks(d) * 2)
    residual = tails + tail_size
    total = _align(residual + d * 2)
    return {"data": data, "buffer": buffer, "length": length, "scratch": scratch, "scratch_bytes": scratch_size,
            "norms": norms, "tail_norms": tails if tail_size else 0, "residual": residual, "bytes": total}


def _c_array(ctype: str, name: str, values: np.ndarray, per_line: int = 24) -> str:
    """A C array definition; word-aligned, as the kernels' word loads (LDRD, LDM) expect."""
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)]
    return (f"static const {ctype} {name}[{len(flat)}] TC_ALIGNED = {{\n  " + ",\n  ".join(lines)
            + "\n};\n")


def write_model_header(enc: Int8Encoder, path: Path) -> dict:
    """Write ``tinycodec_model.h``; returns the arena plan and the flash estimate."""
    enc, relu = c_graph(order_dims(enc))
    plan = plan_arena(enc)
    parts, rows, flash = [], [], 0
    for i, layer in enumerate(enc.layers):
        w = b = "0"
        if layer.op == Op.LOG_SPECTRUM:
            n_fft = layer.history + layer.stride
            parts.append(spectrum_c_source(i, n_fft, layer.bias))
            w, flash = f"&tc_spectrum{i}", flash + spectrum_bytes(n_fft)
        elif layer.weight is not None:
            wt = layer.weight  # conv1d [C_out][C_in][k], depthwise [C][k], pointwise [C_out][C_in]
            parts.append(_c_array("int8_t", f"tc_w{i}", wt))
            w, flash = f"tc_w{i}", flash + wt.size
        if layer.bias is not None and layer.op != Op.LOG_SPECTRUM:
            parts.append(_c_array("int32_t", f"tc_b{i}", layer.bias))
            b, flash = f"tc_b{i}", flash + 4 * layer.bias.size
        kernel = 1 if layer.weight is None or layer.op == Op.POINTWISE else layer.weight.shape[-1]
        if layer.op == Op.LOG_SPECTRUM:
            kernel = layer.history + layer.stride  # n_fft
        c_in, c_out = enc.channels[layer.inputs[0]], enc.channels[layer.output]
        in2 = plan["data"][layer.inputs[1]] if len(layer.inputs) > 1 else 0
        flags = "TC_LAYER_RELU" if relu[i] else "0"
        rows.append(f"  {{{layer.op.c_name}, {layer.shift}, {layer.shift_a}, {layer.shift_b}, {flags}, {c_in}, {c_out}, "
                    f"{kernel}, {layer.stride}, {layer.dilation}, {layer.history}, "
                    f"{plan['length'][layer.output]}, {plan['buffer' if layer.history else 'data'][layer.inputs[0]]}u, {in2}u, "
                    f"{plan['data'][layer.output]}u, {w}, {b}}},  /* {i} {layer.name} */")
    n_q, k, d = enc.codebooks.shape
    flash += enc.codebooks.size + n_q + LAYER_STRUCT_BYTES * len(enc.layers)
    has_spec = any(layer.op == Op.LOG_SPECTRUM for layer in enc.layers)
    text = [
        f"/* Generated by tinycodec.export.c_export for preset '{enc.preset}'. Do not edit. */",
        "#ifndef TINYCODEC_MODEL_H", "#define TINYCODEC_MODEL_H", '#include "tinycodec_encoder.h"', "",
        f"#define TC_MODEL_PRESET \"{enc.preset}\"", f"#define TC_HOP_LENGTH {enc.hop_length}",
        f"#define TC_SAMPLE_RATE {enc.sample_rate}", f"#define TC_N_Q {n_q}", f"#define TC_CODEBOOK_SIZE {k}",
        f"#define TC_DIM {d}", f"#define TC_N_LAYERS {len(enc.layers)}",
        f"#define TC_ARENA_BYTES {plan['bytes']}u  /* the one static arena: buffers + state + scratch + norms */",
        f"#define TC_FLASH_BYTES_ESTIMATE {flash}u  /* weights, biases, {'spectrum tables, ' * has_spec}codebooks, "
        f"layer table */", "",
        *parts,
        _c_array("int8_t", "tc_codebooks", enc.codebooks, 32),
        _c_array("int8_t", "tc_cb_shifts", enc.cb_shifts),
        "static const tc_layer_t tc_layers[TC_N_LAYERS] = {", *rows, "};", "",
        "static const tc_model_t tinycodec_model = {",
        f"  TC_MODEL_PRESET, {enc.hop_length}, {enc.sample_rate}, {n_q}, {k}, {d}, TC_N_LAYERS, tc_layers,",
        f"  tc_codebooks, tc_cb_shifts, {enc.z_shift}, TC_ARENA_BYTES, {plan['data'][0]}u, "
        f"{plan['data'][enc.output]}u, {plan['norms']}u, {plan['residual']}u, {plan['tail_norms']}u, "
        f"{plan['scratch']}u, {plan['scratch_bytes']}u",
        "};", "", "#endif /* TINYCODEC_MODEL_H */", ""]
    path.write_text("\n".join(text))
    return {"arena_bytes": plan["bytes"], "flash_bytes_estimate": flash, "c_layers": len(enc.layers),
            "scratch_bytes": plan["scratch_bytes"],
            "rvq_tail_norm_bytes": plan["residual"] - plan["tail_norms"] if plan["tail_norms"] else 0}


def spectrum_c_source(i: int, n_fft: int, affine: np.ndarray) -> str:
    """C source of the tables and the ``tc_spectrum_t`` (``tc_spectrum{i}``) of a ``log_spectrum``
    layer: :func:`spectrum_tables` of ``n_fft`` and ``affine`` = ``(F, A, B)`` (the layer's bias)."""
    tab = spectrum_tables(n_fft)
    floor_int, a, b = (int(v) for v in affine)
    return (f"/* layer {i} log_spectrum: spectrum_tables({n_fft}) and spectrum_affine's (F, A, B) */\n"
            + _c_array("int16_t", f"tc_hann{i}", tab["hann"], 16)
            + _c_array("int32_t", f"tc_tw_re{i}", tab["tw_re"], 8)
            + _c_array("int32_t", f"tc_tw_im{i}", tab["tw_im"], 8)
            + _c_array("int32_t", f"tc_log_lut{i}", tab["log_lut"], 16)
            + f"static const tc_spectrum_t tc_spectrum{i} = {{tc_hann{i}, tc_tw_re{i}, tc_tw_im{i}, tc_log_lut{i}, "
            f"tc_log_spectrum, INT64_C({floor_int}), INT64_C({a}), INT64_C({b})}};\n")


def synthetic_golden_pcm(name: str, sample_rate: int, seconds: float = 2.0) -> np.ndarray:
    """int16 PCM of a deterministic stand-in for a golden clip when its audio is not at hand:
    ``speech``, a voice-like harmonic tone with vibrato; ``nature``, procedural birdsong over wind."""
    if name == "nature":
        from tinycodec.data.synth import NatureConfig, synth_nature

        wav, _ = synth_nature(seed=0, config=NatureConfig(sample_rate=sample_rate, duration=seconds))
        return to_pcm16(wav)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    phase = 2 * np.pi * np.cumsum(130 + 6 * np.sin(2 * np.pi * 5 * t)) / sample_rate
    wav = sum(0.3 / k * np.sin(k * phase) for k in range(1, 16)) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
    return to_pcm16(0.8 * wav / np.abs(wav).max())


def golden_vectors(enc: Int8Encoder, root: str | Path = "data/demo") -> list[dict]:
    """Test vectors: int16 PCM and the int8 reference codes [n_q, F] (whole signal, checked equal to
    frame-by-frame streaming). Real clips of ``root`` (the demo corpus); a deterministic synthetic
    stand-in for a clip that is not there."""
    out = []
    for name, rel, offset, seconds in GOLDEN_CLIPS:
        if not (Path(root) / rel).is_file():
            logger.warning("golden vectors: %s not found; using a synthetic %s clip", Path(root) / rel, name)
            pcm = synthetic_golden_pcm(name, enc.sample_rate, seconds)
        else:
            pcm = load_pcm(Path(root) / rel, enc.sample_rate, offset + seconds)[int(offset * enc.sample_rate):]
        pcm = pcm[: len(pcm) // enc.hop_length * enc.hop_length]
        codes = enc.encode(pcm)
        enc.reset()
        frames = np.concatenate([enc.encode_frame(pcm[i:i + enc.hop_length])
                                 for i in range(0, len(pcm), enc.hop_length)], axis=1)
        if not np.array_equal(codes, frames):
            raise AssertionError(f"int8 reference: streaming != whole signal on {name}")
        out.append({"name": name, "pcm": pcm, "codes": codes})
    return out


def write_golden_header(enc: Int8Encoder, golden: list[dict], path: Path) -> None:
    parts = [f"/* Golden vectors from the Python int8 reference, preset '{enc.preset}'. Do not edit. */",
             "#ifndef TINYCODEC_GOLDEN_H", "#define TINYCODEC_GOLDEN_H", "#include <stdint.h>",
             "#ifndef TC_ALIGNED", "#define TC_ALIGNED", "#endif", ""]
    for g in golden:
        n = g["name"]
        parts += [f"#define TC_GOLDEN_{n.upper()}_SAMPLES {len(g['pcm'])}",
                  f"#define TC_GOLDEN_{n.upper()}_FRAMES {g['codes'].shape[1]}",
                  _c_array("int16_t", f"tc_golden_{n}_pcm", g["pcm"], 16),
                  "/* codes [n_q][frames] */",
                  _c_array("uint16_t", f"tc_golden_{n}_codes", g["codes"], 32)]
    # one streaming packet of the first speech frames, from the Python bitstream writer
    from tinycodec.bitstream.packet import Packet

    bits = int(enc.codebooks.shape[1]).bit_length() - 1
    packet = Packet(seq=7, codes=golden[0]["codes"][:, :GOLDEN_PACKET_FRAMES], bits=bits).to_bytes()
    parts += ["#define TC_GOLDEN_PACKET_SEQ 7", f"#define TC_GOLDEN_PACKET_FRAMES {GOLDEN_PACKET_FRAMES}",
              f"#define TC_GOLDEN_PACKET_BITS {bits}",
              _c_array("uint8_t", "tc_golden_packet", np.frombuffer(packet, dtype=np.uint8), 24)]
    parts += ["#endif /* TINYCODEC_GOLDEN_H */", ""]
    path.write_text("\n".join(parts))


def export_c(source: str | nn.Module, out_dir, calib_wavs=None, seed: int = 0) -> dict:
    """Export the int8 encoder for the C firmware (see :func:`export_c_encoder`).

    Returns:
        dict: ``model_header``, ``golden_header`` (paths), ``arena_bytes``, ``flash_bytes_estimate``,
        ``preset``, ``n_q``, ``frames`` (per golden clip).
    """
    return export_c_encoder(source, out_dir, calib_wavs, seed)[0]


def export_c_encoder(source, out_dir, calib_wavs=None, seed: int = 0) -> tuple[dict, Int8Encoder, nn.Module]:
    """Export the int8 encoder for the C firmware.

    Args:
        source: a preset name (random weights, seeded), a checkpoint path, or a model.
        out_dir: folder for ``tinycodec_model.h`` and ``tinycodec_golden.h``.
        calib_wavs: calibration audio (paths/arrays); default the demo speech + nature clips.
        seed (int): seed for random weights.

    Returns:
        tuple: the :func:`export_c` dict, the :class:`Int8Encoder` and the float model.
    """
    from tinycodec.models import PRESETS
    from tinycodec.pretrained import canonical_name, shipped_names

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # audio is read only where it is needed: a bare preset (random weights) and a float encoder are
    # calibrated on it; a deployed encoder carries its int8 scales and exports from any folder
    bare = isinstance(source, str) and source in PRESETS and canonical_name(source) not in shipped_names()
    model, what = load_for_export(source, calibration_audio(calib_wavs) if bare else None, seed)
    name = export_name(source)
    logger.info("export c: %s", what)
    deployed = bool(getattr(model.config, "encoder_int8", False))
    enc = quantize_encoder(model, None if deployed else calibration_audio(calib_wavs), preset=name)
    info = write_model_header(enc, out / "tinycodec_model.h")
    golden = golden_vectors(enc, calib_wavs if isinstance(calib_wavs, (str, Path)) else "data/demo")
    write_golden_header(enc, golden, out / "tinycodec_golden.h")
    return {"model_header": str(out / "tinycodec_model.h"), "golden_header": str(out / "tinycodec_golden.h"),
            "preset": name, "n_q": enc.n_q, "frames": {g["name"]: int(g["codes"].shape[1]) for g in golden},
            **info}, enc, model
