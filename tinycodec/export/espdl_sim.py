"""Integer simulation of an esp-ppq int8 graph as ESP-DL runs it: whole signal, or streaming with
``StreamingCache`` windows as exported, to check that the streaming ``.espdl`` computes the
whole-signal function.

esp-ppq quantizes every tensor per tensor with a power-of-two scale and rounds half up
(``floor(x + 0.5)``, ESP32-S3 int8 platform); its executor computes each op on dequantized values
and re-quantizes the result. With power-of-two scales and sums far below 2^24 those float
computations are exact, so an int64 twin reproduces them integer for integer (checked against the
``.info`` test values). ESP-DL's ``StreamingCache`` (esp-dl ``dl_module_streaming_cache.hpp``)
keeps the last ``window_size - 1`` frames of a conv's input and prepends them to the next chunk;
the conv then runs with no padding. A causal conv with kernel ``k``, stride ``s`` needs
``k - s`` cached frames to compute the whole-signal windows: esp-ppq's auto-streaming uses
``window_size = k`` (``k - 1`` frames), right only for ``s = 1``. :func:`streaming_windows`
gives the right windows and :class:`FixStridedWindows` makes the exporter use them.

Notebook: book/07_deployment.md
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class EspdlError(RuntimeError):
    """esp-ppq logged an error (unsupported streaming node, failed quantization...)."""



_BLOCK = re.compile(r"%(?P<name>[^,\s]+), shape: \[(?P<shape>[^\]]*)\], exponents: \[(?P<exp>[^\]]*)\],\s*"
                    r"value: array\(\[(?P<values>[^\]]*)\](?:,\s*dtype=(?P<dtype>\w+))?\)", re.S)


def parse_test_values(info_path: str | Path) -> dict:
    """Golden vectors from an esp-ppq ``.info`` file.

    Returns:
        dict: ``{"inputs": {name: {...}}, "outputs": {name: {...}}}``, each entry with
        ``shape`` (list, NWC layout as on the device), ``exponent`` (int: value = q * 2**exponent),
        ``dtype`` and ``values`` (flat list of ints).
    """
    text = Path(info_path).read_text()
    result = {}
    for section, end in (("inputs", "test outputs value:"), ("outputs", None)):
        start = text.find(f"test {section} value:")
        if start < 0:
            raise EspdlError(f"{info_path} has no 'test {section} value:' section")
        stop = text.find(end, start) if end else len(text)
        entries = {}
        for m in _BLOCK.finditer(text[start:stop]):
            values = [int(v) for v in re.findall(r"-?\d+", m.group("values"))]
            shape = [int(s) for s in m.group("shape").split(",") if s.strip()]
            if int(np.prod(shape)) != len(values):
                raise EspdlError(f"{m.group('name')}: {len(values)} values for shape {shape}")
            entries[m.group("name")] = {"shape": shape, "exponent": int(m.group("exp").split(",")[0]),
                                        "dtype": m.group("dtype") or "int64", "values": values}
        if not entries:
            raise EspdlError(f"no test {section} values parsed from {info_path}")
        result[section] = entries
    return result


def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5)


def _quantize(x: np.ndarray, scale: float, bits: int) -> np.ndarray:
    lim = 2 ** (bits - 1)
    return np.clip(_round_half_up(np.asarray(x, dtype=np.float64) / scale), -lim, lim - 1).astype(np.int64)


@dataclass
class SimOp:
    """One op of the graph in integers. ``scales`` are the input configs' scales (data inputs
    only), ``out_scale`` the output's; Conv carries its int weights/bias and attributes."""

    type: str
    name: str
    param: str  # the weight's name (Conv), e.g. ``layers.1.0.block.1.depthwise.conv.weight``
    inputs: list[str]
    output: str
    scales: list[float]
    out_scale: float
    bits: int = 8
    weight: np.ndarray | None = None  # [C_out, C_in / group, k] int
    bias: np.ndarray | None = None  # [C_out] int at scale s_x * s_w
    w_scale: float = 1.0
    group: int = 1
    stride: int = 1
    dilation: int = 1
    pad_left: int = 0
    window: int = 1  # streaming: the StreamingCache window before this conv (1: none)
    state: np.ndarray | None = field(default=None, repr=False)


def sim_ops(graph) -> list[SimOp]:
    """The int8 program of an esp-ppq ``BaseGraph`` (Conv, Relu, Add) in execution order."""
    ops = []
    for op in graph.topological_sort():
        if op.type not in ("Conv", "Relu", "Add"):
            raise ValueError(f"{op.name}: {op.type} is not simulated")
        cfg = op.config
        data = [i for i, v in enumerate(op.inputs) if not v.is_parameter]
        sim = SimOp(type=op.type, name=op.name, param=op.inputs[1].name if op.type == "Conv" else "",
                    inputs=[op.inputs[i].name for i in data],
                    output=op.outputs[0].name, scales=[float(cfg.input_quantization_config[i].scale) for i in data],
                    out_scale=float(cfg.output_quantization_config[0].scale),
                    bits=int(cfg.output_quantization_config[0].num_of_bits))
        if op.type == "Conv":
            wq = cfg.input_quantization_config[1]
            sim.w_scale = float(wq.scale)
            sim.weight = _quantize(op.inputs[1].value.detach().cpu().numpy(), sim.w_scale, int(wq.num_of_bits))
            if len(op.inputs) > 2:
                bq = cfg.input_quantization_config[2]
                sim.bias = _quantize(op.inputs[2].value.detach().cpu().numpy(), float(bq.scale), int(bq.num_of_bits))
            a = op.attributes
            sim.group, sim.stride, sim.dilation = int(a.get("group", 1)), int(a["strides"][0]), int(a["dilations"][0])
            pads = a.get("pads", [0, 0])
            if pads[-1]:
                raise ValueError(f"{op.name}: right padding {pads} is not causal")
            sim.pad_left = int(pads[0])
        ops.append(sim)
    return ops


def streaming_windows(ops: list[SimOp]) -> dict[str, int]:
    """The ``StreamingCache`` window each conv needs for streaming == whole signal:
    ``k_eff - stride + 1`` (cache ``k_eff - stride`` = the causal padding), 1 for none."""
    out = {}
    for op in ops:
        if op.type == "Conv":
            k_eff = (op.weight.shape[-1] - 1) * op.dilation + 1
            out[op.output] = k_eff - op.stride + 1
    return out


def info_windows(info_path: str | Path) -> dict[str, int]:
    """The windows an exported ``.info`` graph uses, keyed by the conv's output tensor."""
    text = Path(info_path).read_text()
    caches = {m.group(1): int(m.group(2)) for m in
              re.finditer(r"%(\S+) = StreamingCache\[[^\]]*window_size = (\d+)\]", text)}
    out = {}
    for m in re.finditer(r"%(\S+) = Conv\[.*?\]\(%([^,)]+)", text):
        out[m.group(1)] = caches.get(m.group(2), 1)
    return out


class EspdlSim:
    """Run the int8 program on audio, whole signal or chunk by chunk.

    Args:
        ops: from :func:`sim_ops`.
        windows: conv output tensor -> StreamingCache window (streaming mode); missing: 1.
    """

    def __init__(self, ops: list[SimOp], windows: dict[str, int] | None = None):
        self.ops = ops
        self.windows = windows or {}

    def _conv(self, op: SimOp, x: np.ndarray, streaming: bool) -> np.ndarray:
        c_in, k = x.shape[0], op.weight.shape[-1]
        if streaming:
            window = self.windows.get(op.output, 1)
            if op.state is None:
                op.state = np.zeros((c_in, window - 1), dtype=np.int64)
            x = np.concatenate([op.state, x], axis=1)
            op.state = x[:, x.shape[1] - (window - 1):] if window > 1 else op.state
        else:
            x = np.concatenate([np.zeros((c_in, op.pad_left), dtype=np.int64), x], axis=1)
        k_eff = (k - 1) * op.dilation + 1
        n_out = (x.shape[1] - k_eff) // op.stride + 1
        c_out, per_group = op.weight.shape[0], op.weight.shape[1]
        acc = np.zeros((c_out, max(n_out, 0)), dtype=np.int64)
        if n_out > 0:
            for g in range(op.group):
                xs = x[g * per_group:(g + 1) * per_group]
                rows = slice(g * c_out // op.group, (g + 1) * c_out // op.group)
                for j in range(k):
                    taps = xs[:, j * op.dilation: j * op.dilation + (n_out - 1) * op.stride + 1: op.stride]
                    acc[rows] += op.weight[rows, :, j] @ taps
        if op.bias is not None:
            acc += op.bias[:, None]
        return _quantize(acc * (op.scales[0] * op.w_scale), op.out_scale, op.bits)

    def _run(self, wav: np.ndarray, streaming: bool) -> dict[str, tuple[np.ndarray, float]]:
        values: dict[str, tuple[np.ndarray, float]] = {}
        for op in self.ops:
            xs = []
            for name, scale in zip(op.inputs, op.scales, strict=True):
                if name in values:
                    q, s = values[name]
                    xs.append(q if s == scale else _quantize(q * s, scale, op.bits))
                else:  # the graph input
                    xs.append(_quantize(wav.reshape(1, -1), scale, op.bits))
            if op.type == "Conv":
                y = self._conv(op, xs[0], streaming)
            elif op.type == "Relu":
                y = _quantize(np.maximum(xs[0], 0) * op.scales[0], op.out_scale, op.bits)
            else:  # Add
                y = _quantize(xs[0] * op.scales[0] + xs[1] * op.scales[1], op.out_scale, op.bits)
            values[op.output] = (y, op.out_scale)
        return values

    def run(self, wav: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
        """Whole signal (causal zero padding). Returns tensor -> (int [C, T], scale)."""
        return self._run(np.asarray(wav, dtype=np.float64).reshape(-1), streaming=False)

    def run_streaming(self, wav: np.ndarray, chunk: int) -> dict[str, tuple[np.ndarray, float]]:
        """Chunk by chunk from zero caches, as ESP-DL runs the streaming model; outputs
        concatenated along time."""
        for op in self.ops:
            op.state = None
        wav = np.asarray(wav, dtype=np.float64).reshape(-1)
        parts: dict[str, list] = {}
        scales = {}
        for i in range(0, len(wav), chunk):
            for name, (q, s) in self._run(wav[i:i + chunk], streaming=True).items():
                parts.setdefault(name, []).append(q)
                scales[name] = s
        return {name: (np.concatenate(p, axis=1), scales[name]) for name, p in parts.items()}


class FixStridedWindows:
    """esp-ppq streaming pass: give every strided conv the ``StreamingCache`` window its causal
    padding needs (``k_eff - stride + 1``) before auto-streaming would give it ``k_eff``.
    Pass an instance as ``streaming_custom_passes``."""

    name = "tinycodec_fix_strided_windows"

    def __init__(self):
        self.fixed: dict[str, int] = {}

    def __call__(self, graph):
        from esp_ppq.parser.espdl.espdl_streaming import StreamingTable

        table = StreamingTable()
        for op in graph.topological_sort():
            if op.type != "Conv":
                continue
            stride, dilation = int(op.attributes.get("strides", [1])[0]), int(op.attributes.get("dilations", [1])[0])
            k_eff = dilation * (int(op.attributes["kernel_shape"][0]) - 1) + 1
            if stride > 1 and k_eff > stride:
                table.add(op.inputs[0].name, None, k_eff - stride + 1)
                self.fixed[op.name] = k_eff - stride + 1
        return None


def check_streaming(graph, info_path: str | Path, hop: int) -> dict:
    """Run the exported model's test input through the simulation: whole signal (must give the
    ``.info`` test output) and chunk by chunk with the exported ``StreamingCache`` windows (must
    give the whole-signal output).

    Returns:
        dict: ``test_output_reproduced``, ``streaming_equals_whole`` (bools),
        ``streaming_equal_fraction`` (share of identical output values), ``windows`` (conv output
        tensor -> exported window, convs with a cache only).
    """
    vec = parse_test_values(info_path)
    ((_, x),) = vec["inputs"].items()
    ((out_name, y),) = vec["outputs"].items()
    wav = np.asarray(x["values"], dtype=np.float64) * 2.0 ** x["exponent"]
    windows = info_windows(info_path)
    sim = EspdlSim(sim_ops(graph), windows)
    whole = sim.run(wav)[out_name][0]
    want = np.asarray(y["values"], dtype=np.int64).reshape(y["shape"][1:]).T  # NWC -> [C, T]
    streamed = sim.run_streaming(wav, hop)[out_name][0]
    return {"test_output_reproduced": bool(np.array_equal(whole, want)),
            "streaming_equals_whole": bool(np.array_equal(streamed, whole)),
            "streaming_equal_fraction": float((streamed == whole).mean()),
            "windows": {k: v for k, v in windows.items() if v > 1}}
