"""The device budget of an int8 encoder: flash, SRAM, MACs per kind, measured and estimated cost.

Three sources meet here:

* :func:`device_budget` counts what the C firmware stores for an :class:`Int8Encoder`
  (int8 weights, int32 biases, int8 codebooks, the layer table in flash, and for the spectral
  encoder the ``log_spectrum`` tables; the one static arena in SRAM, split into streaming state,
  frame buffers, the FFT rows, codebook norms and the VQ residual), with the same layout rules
  as :mod:`tinycodec.export.c_export`;
* :func:`firmware_rows` reads the Cortex-M4 measurements that ``tools/firmware.py`` writes to
  ``benchmarks/firmware.json`` (a preset may be missing: it is reported, not an error);
* :func:`s3_estimate` turns MACs per second into ESP32-S3 cycles per second from Espressif's
  published int8 kernel timings (:data:`ESP_NN_S3`). It is an ESTIMATE, not a measurement:
  no ESP32-S3 compiler or emulator runs here.

Notebook: book/07_deployment.md
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from tinycodec.export.c_export import (
    LAYER_STRUCT_BYTES,
    fft_bytes,
    fuse_relu,
    pad_spectrum,
    plan_arena,
    spectrum_bytes,
)
from tinycodec.export.int8 import Int8Encoder
from tinycodec.modules.int8_ops import Op
from tinycodec.modules.spectral_encoder import spectrum_macs_per_frame

S3_CLOCK_HZ = 240e6  # ESP32-S3 maximum CPU clock
# Published ESP-NN int8 kernel timings on ESP32-S3 (240 MHz, data in external PSRAM, 64 KB
# data cache), "Optimized" (PIE SIMD assembly) column, as MACs per clock tick:
#   pointwise  input 10x10, filter 64x1x1x64: 409,600 MACs in 461,398 ticks   -> 0.888
#   depthwise  input 18x18, filter 1x3x3x16 (16x16 out): 36,864 MACs in 191,931 ticks -> 0.192
#   conv 3x3   input 10x10, filter 64x3x3x3 (8x8 out): 110,592 MACs in 643,689 ticks -> 0.172
# Our layers are 1-D and far smaller (8-128 channels), so per-call overhead weighs more; data in
# internal SRAM is faster than PSRAM. The two effects pull in opposite directions: hence a range.
ESP_NN_SOURCE = ("ESP-NN README, 'Kernelwise performance for s8 versions' on ESP32-S3 "
                 "(github.com/espressif/esp-nn; the int8 kernels behind ESP-DL/TFLite Micro on the S3)")
ESP_NN_S3 = {"pointwise": 409_600 / 461_398, "rvq_search": 409_600 / 461_398,
             "depthwise": 36_864 / 191_931, "conv1d": 110_592 / 643_689}
#   relu6      1615 elements (internal SRAM) in 1,856 ticks -> 1.15 ticks per element
# ReLU and residual-add outputs are priced at that ReLU rate (ESP-NN's elementwise_add, 44 ticks per
# element, measures a multiplier-based requantization from PSRAM; ours is two shifts in SRAM).
ESP_NN_ELEMENTWISE_TICKS = 1_856 / 1615
# The log_spectrum frontend (int32 FFT with int64 products, table log) has no ESP-NN kernel and no
# published S3 timing for this arithmetic: its multiplies are priced at the scalar conv rate above.
S3_SPECTRUM_MACS_PER_TICK = ESP_NN_S3["conv1d"]


@dataclass
class DeviceBudget:
    """Bytes an encoder-only device stores and the MACs it runs (see :func:`device_budget`).

    Flash: ``weights`` (int8), ``biases`` (int32), ``codebooks`` (int8 ``[n_q, K, D]`` + one
    shift per level), ``layer_table``, ``spectrum_tables`` (``log_spectrum``: Hann window,
    twiddles, log table, constants); ``flash_bytes`` is their sum (the header's
    ``TC_FLASH_BYTES_ESTIMATE``). SRAM: ``arena_bytes`` (``TC_ARENA_BYTES``) holds
    ``state_bytes`` (streaming history rows), the frame buffers, ``norms_bytes`` (int32 codebook
    norms) and ``residual_bytes`` (int16 VQ residual); ``fft_bytes`` (``2 n_fft`` int32 FFT rows)
    lie in the kernel scratch among the frame buffers. ``macs_per_second``: per kernel kind
    (``log_spectrum``: :func:`spectrum_macs_per_frame`), ``elementwise_per_second``: ReLU and
    residual-add outputs.
    """

    preset: str
    weights: int
    biases: int
    codebooks: int
    layer_table: int
    flash_bytes: int
    arena_bytes: int
    state_bytes: int
    norms_bytes: int
    residual_bytes: int
    macs_per_second: dict
    elementwise_per_second: float
    spectrum_tables: int = 0
    fft_bytes: int = 0

    @property
    def buffer_bytes(self) -> int:
        """Arena bytes for per-frame activations (what is neither state, norms nor residual)."""
        return self.arena_bytes - self.state_bytes - self.norms_bytes - self.residual_bytes

    @property
    def macs_total(self) -> float:
        return float(sum(self.macs_per_second.values()))

    def to_dict(self) -> dict:
        return {**asdict(self), "buffer_bytes": self.buffer_bytes, "macs_total": self.macs_total}


def device_budget(enc: Int8Encoder) -> DeviceBudget:
    """Flash, SRAM and MACs/s of the C firmware for ``enc`` (same layout as the C export).

    Args:
        enc (Int8Encoder): from :func:`tinycodec.export.int8_quantize.quantize_encoder`.

    Returns:
        DeviceBudget
    """
    plan = plan_arena(enc)
    enc = pad_spectrum(enc)  # the C table's spectrum channels: the readers' zero weight columns are stored
    frame_rate = enc.sample_rate / enc.hop_length
    weights = biases = state = tables = 0
    macs = {str(op): 0.0 for op in Op if op.is_conv}
    elementwise = 0.0
    for layer in enc.layers:
        c_in, c_out = enc.channels[layer.inputs[0]], enc.channels[layer.output]
        outputs = plan["length"][layer.output] * frame_rate  # output time steps per second
        if layer.op == Op.LOG_SPECTRUM:  # no weights: fixed tables, FFT rows in the scratch
            n_fft = layer.history + layer.stride
            tables += spectrum_bytes(n_fft)
            macs[str(Op.LOG_SPECTRUM)] = macs.get(str(Op.LOG_SPECTRUM), 0.0) + outputs * spectrum_macs_per_frame(n_fft)
        elif layer.weight is not None:
            weights += layer.weight.size
            macs[str(layer.op)] += outputs * layer.weight.size  # one MAC per weight per output step
        if layer.bias is not None and layer.op != Op.LOG_SPECTRUM:
            biases += 4 * layer.bias.size
        if layer.op.is_elementwise:
            elementwise += outputs * c_out
        # a conv with history keeps P input rows; the PCM input (tensor 0) is int16
        state += layer.history * c_in * (2 if layer.inputs[0] == 0 else 1)
    n_q, k, d = enc.codebooks.shape
    macs["rvq_search"] = frame_rate * n_q * k * d
    codebooks = enc.codebooks.size + n_q
    table = LAYER_STRUCT_BYTES * len(fuse_relu(enc)[0].layers)  # the C table folds each ReLU into its layer
    return DeviceBudget(preset=enc.preset, weights=weights, biases=biases, codebooks=codebooks,
                        layer_table=table, flash_bytes=weights + biases + codebooks + table + tables,
                        arena_bytes=plan["bytes"], state_bytes=state, norms_bytes=n_q * k * 4,
                        residual_bytes=d * 2, macs_per_second=macs, elementwise_per_second=elementwise,
                        spectrum_tables=tables, fft_bytes=fft_bytes(enc))


def s3_estimate(macs_per_second: dict, elementwise_per_second: float = 0.0, clock_hz: float = S3_CLOCK_HZ,
                efficiency: tuple[float, float] = (0.5, 1.0)) -> dict:
    """ESTIMATED ESP32-S3 cycles per second of audio from published int8 kernel throughput.

    Args:
        macs_per_second (dict): MACs/s per kind (``conv1d``, ``depthwise``, ``pointwise``,
            ``rvq_search``, ``log_spectrum``), e.g. :attr:`DeviceBudget.macs_per_second`.
        elementwise_per_second (float): ReLU / residual-add outputs per second.
        clock_hz (float): CPU clock.
        efficiency (tuple[float, float]): (pessimistic, optimistic) share of the published
            MACs/tick our small 1-D layers reach.

    Returns:
        dict: ``cycles_per_second`` and ``cpu_load`` (share of the clock) as ``(low, high)``
        ranges, ``per_kind`` cycles at the published rate, ``source``, ``assumptions``.
    """
    rates = {**ESP_NN_S3, "log_spectrum": S3_SPECTRUM_MACS_PER_TICK}
    unknown = set(macs_per_second) - set(rates)
    if unknown:
        raise ValueError(f"no published S3 rate for {sorted(unknown)}; known: {sorted(rates)}")
    per_kind = {kind: macs / rates[kind] for kind, macs in macs_per_second.items()}
    per_kind["elementwise"] = elementwise_per_second * ESP_NN_ELEMENTWISE_TICKS
    nominal = sum(per_kind.values())
    lo, hi = nominal / efficiency[1], nominal / efficiency[0]
    return {"cycles_per_second": (lo, hi), "cpu_load": (lo / clock_hz, hi / clock_hz), "per_kind": per_kind,
            "clock_hz": clock_hz, "source": ESP_NN_SOURCE,
            "assumptions": (f"MACs/tick of ESP-NN's optimized s8 kernels on 2-D layers; our 1-D layers reach "
                            f"{efficiency[0]:.0%}-{efficiency[1]:.0%} of it; RVQ search runs at the pointwise "
                            f"(matrix) rate; ReLU and residual add at ESP-NN's ReLU rate per element; "
                            + ("log_spectrum's int64 multiplies at the scalar conv rate (no published kernel); "
                               if "log_spectrum" in macs_per_second else "")
                            + f"{clock_hz / 1e6:.0f} MHz; ESTIMATE, not measured")}


def load_firmware(path: str | Path) -> dict:
    """``benchmarks/firmware.json`` as a dict (``{}`` when the file does not exist)."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


def firmware_rows(firmware: dict, presets: list[str]) -> list[dict]:
    """One summary row per preset from the measured firmware results.

    Args:
        firmware (dict): :func:`load_firmware` output.
        presets (list[str]): presets to report, in order.

    Returns:
        list[dict]: ``preset``, ``measured`` (bool) and, when measured, ``flash_kb``, ``ram_kb``,
        ``arena_kb``, ``minstr_per_s`` (M instructions per second of audio), ``bit_exact`` and
        ``realtime_share_240mhz`` (instructions per second / 240 M, i.e. CPU load at one
        instruction per cycle).
    """
    rows = []
    for preset in presets:
        r = firmware.get(preset)
        if not r:
            rows.append({"preset": preset, "measured": False})
            continue
        ips = float(r["instructions_per_audio_second"])
        rows.append({"preset": preset, "measured": True, "flash_kb": r["flash_bytes"] / 1024,
                     "ram_kb": r["ram_bytes"] / 1024, "arena_kb": r.get("arena_bytes", 0) / 1024,
                     "minstr_per_s": ips / 1e6, "bit_exact": bool(r.get("bit_exact")),
                     "realtime_share_240mhz": ips / S3_CLOCK_HZ})
    return rows


def per_function(firmware: dict, preset: str, min_share: float = 0.005) -> dict[str, float]:
    """Instructions per second of audio per C function, largest first; functions under
    ``min_share`` of the total are summed into ``"other"``. Empty when ``preset`` is missing."""
    counts = (firmware.get(preset) or {}).get("per_function_per_audio_second", {})
    total = sum(counts.values())
    out, other = {}, 0.0
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        if total and n / total >= min_share:
            out[name] = float(n)
        else:
            other += n
    if other:
        out["other"] = float(other)
    return out
