"""ONNX export of the encoder + VQ search with a dynamic time axis, checked in onnxruntime.

``export_onnx`` writes one graph ``wav [B, 1, T] -> (codes [B, n_q, F] int64, embeddings
[B, D, F])``; the embeddings output exists for parity checks and for PTQ. Causal
``Pad -> Conv`` pairs are folded into one ``Conv`` with ``pads = [P, 0]`` (left only), the
form ESP-DL's auto-streaming turns into a ``StreamingCache``.

A deployed model (``encoder_int8``) exports the device's integer arithmetic instead
(:class:`~tinycodec.export.onnx_int8.Int8GraphExport`): its codes equal the int8 reference's, which
:func:`check_onnx` verifies. The file's metadata ``tinycodec_encoder_arithmetic`` says which
arithmetic a graph holds (``int8`` or ``float``).

The TorchScript exporter (``dynamo=False``) is the default: on 2 CPU cores it takes ~2 s
per model against ~12 s for the dynamo exporter, which also works (``dynamo=True``) and
gives the same numbers. Its deprecation and constant-folding warnings are logged at
DEBUG level, not shown.

Notebook: book/07_deployment.md
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from tinycodec.export.encoder import EncoderExport

logger = logging.getLogger(__name__)

OPSET = 18
ARITHMETIC_KEY = "tinycodec_encoder_arithmetic"  # ONNX metadata: "int8" (the device's integers) or "float"


def _require(name: str):
    try:
        return __import__(name)
    except ImportError as exc:
        raise RuntimeError(f"{name} is not installed: pip install -c constraints.txt '.[export]'") from exc


def export_module(module: nn.Module, path: str | Path, example: Tensor, input_names: list[str],
                  output_names: list[str], dynamic_axes: dict | None = None, dynamo: bool = False,
                  fold_pads: bool = True) -> Path:
    """Export ``module(example)`` to ONNX (opset 18), quietly, then fold causal pads into convs.

    Args:
        module (nn.Module): in eval mode.
        path (str | Path): output ``.onnx`` file (parent folders are created).
        example (Tensor | tuple): [B, 1, T] example input (a tuple for a module of several inputs,
            TorchScript exporter only).
        input_names, output_names (list[str]): graph tensor names.
        dynamic_axes (dict | None): ``{name: {axis: "label"}}`` (TorchScript style); for
            ``dynamo=True`` the input axes become ``Dim.DYNAMIC``.
        dynamo (bool): use the torch.export-based exporter.
        fold_pads (bool): merge ``Pad -> Conv`` into left-padded convs.

    Returns:
        Path: the written file.
    """
    onnx = _require("onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        # the exporter warns about its own deprecation and constant folding; keep them in the log
        warnings.simplefilter("always")
        if dynamo:
            dyn = None
            if dynamic_axes:
                dyn = {input_names[0]: {a: torch.export.Dim.DYNAMIC for a in dynamic_axes.get(input_names[0], {})}}
            program = torch.onnx.export(module, (example,), None, dynamo=True, verbose=False,
                                        input_names=input_names, output_names=output_names,
                                        dynamic_shapes=dyn, opset_version=OPSET)
            program.save(str(path))
        else:
            args = example if isinstance(example, tuple) else (example,)  # several inputs: a tuple
            torch.onnx.export(module, args, str(path), dynamo=False, input_names=input_names,
                              output_names=output_names, dynamic_axes=dynamic_axes or {},
                              opset_version=OPSET, do_constant_folding=True)
    for w in caught:
        logger.debug("torch.onnx.export: %s: %s", w.category.__name__, w.message)
    if fold_pads:
        model = fold_pad_into_conv(_inline_identities(onnx.load(str(path))), example)
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
    return path


def _const_values(model, names: list[str], example: Tensor) -> dict[str, np.ndarray]:
    """Values of intermediate tensors ``names`` for one run on ``example`` (onnxruntime)."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    for n in names:
        if n not in known:
            probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {sess.get_inputs()[0].name: example.detach().cpu().numpy().astype(np.float32)}
    return dict(zip(names, sess.run(names, feeds)))


def fold_pad_into_conv(model, example: Tensor):
    """Merge ``Pad(x, pads) -> Conv`` into ``Conv(x, pads=[P, 0])`` when the pad is a left-only
    zero pad of the time axis with constant (input-independent) amounts.

    Args:
        model (onnx.ModelProto): exported graph (modified in place and returned).
        example (Tensor): an input, used to evaluate the pad amounts.
    """
    import onnx
    from onnx import helper

    g = model.graph
    producers = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_inputs = {i.name for i in g.input}
    initializers = {i.name for i in g.initializer}

    def depends_on_input(name: str, seen: set) -> bool:
        if name in graph_inputs:
            return True
        if name in initializers or name == "" or name in seen:
            return False
        seen.add(name)
        node = producers.get(name)
        return node is not None and any(depends_on_input(i, seen) for i in node.input)

    candidates = []
    for n in g.node:
        if n.op_type != "Pad" or len(consumers.get(n.output[0], [])) != 1:
            continue
        conv = consumers[n.output[0]][0]
        mode = next((helper.get_attribute_value(a) for a in n.attribute if a.name == "mode"), b"constant")
        if conv.op_type != "Conv" or mode != b"constant" or depends_on_input(n.input[1], set()):
            continue
        if len(n.input) > 3 and n.input[3]:  # an explicit `axes` input: leave it alone
            continue
        candidates.append((n, conv))
    if not candidates:
        return model
    names = [n.input[1] for n, _ in candidates] + [n.input[2] for n, _ in candidates if len(n.input) > 2 and n.input[2]]
    values = _const_values(model, sorted(set(names)), example)
    folded = 0
    for pad, conv in candidates:
        pads = values[pad.input[1]].astype(np.int64).reshape(-1)
        value = values.get(pad.input[2], np.zeros(1)) if len(pad.input) > 2 and pad.input[2] else np.zeros(1)
        rank = pads.size // 2
        begin, end = pads[:rank], pads[rank:]
        if float(np.abs(value).max()) != 0.0 or rank != 3 or begin[:2].any() or end.any() or begin[2] < 0:
            continue
        conv_pads = next((list(helper.get_attribute_value(a)) for a in conv.attribute if a.name == "pads"), [0, 0])
        if any(conv_pads):
            continue
        for a in list(conv.attribute):
            if a.name in ("pads", "auto_pad"):
                conv.attribute.remove(a)
        conv.attribute.append(helper.make_attribute("pads", [int(begin[2]), 0]))
        conv.input[0] = pad.input[0]
        g.node.remove(pad)
        folded += 1
    _remove_dead_nodes(model)
    logger.debug("folded %d Pad nodes into causal Conv pads", folded)
    return onnx.shape_inference.infer_shapes(model)


def _inline_identities(model):
    """Replace ``Identity(initializer)`` by a copy of the initializer.

    The exporter de-duplicates equal parameters (e.g. two all-zero biases) into one tensor
    plus ``Identity`` nodes; quantizers expect every conv bias to be an initializer.
    """
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    for node in list(g.node):
        if node.op_type == "Identity" and node.input[0] in inits:
            copy = numpy_helper.from_array(numpy_helper.to_array(inits[node.input[0]]), node.output[0])
            g.initializer.append(copy)
            g.node.remove(node)
    return model


def _remove_dead_nodes(model) -> None:
    g = model.graph
    needed = {o.name for o in g.output}
    for n in reversed(list(g.node)):
        if any(o in needed for o in n.output):
            needed.update(i for i in n.input if i)
        else:
            g.node.remove(n)
    for init in list(g.initializer):
        if init.name not in needed:
            g.initializer.remove(init)


def export_onnx(model: nn.Module, path: str | Path, dynamic_time: bool = True, n_q: int | None = None,
                dynamo: bool = False, exact_int8: bool | None = None) -> Path:
    """Export encoder + VQ search: ``wav [B, 1, T] -> codes [B, n_q, F] (int64), embeddings [B, D, F]``.

    Args:
        model (CodecModel): source model (eval mode is used; weights are not changed).
        path (str | Path): output file.
        dynamic_time (bool): dynamic batch and time axes (any T; padded to a multiple of
            ``hop_length`` inside the graph, as ``model.encode`` does); else fixed [1, 1, hop * 16].
        n_q (int | None): quantizer levels (default all).
        dynamo (bool): use the dynamo exporter (slower, same graph semantics).
        exact_int8 (bool | None): for a deployed model, export the device's integer arithmetic
            (``None``: when every layer has an exact form, else the float graph with a warning;
            ``True``: or raise; ``False``: the float graph, e.g. for onnxruntime's own quantization).

    Returns:
        Path: the written ``.onnx`` file.
    """
    module, arithmetic = None, "float"
    if getattr(model.config, "encoder_int8", False) and exact_int8 is not False:
        from tinycodec.export.int8_quantize import int8_encoder_of
        from tinycodec.export.onnx_int8 import Int8GraphExport

        enc = int8_encoder_of(model.eval())
        levels = model.quantizer._check_n_q(n_q)
        enc = dataclasses.replace(enc, codebooks=enc.codebooks[:levels], cb_shifts=enc.cb_shifts[:levels])
        try:
            module, arithmetic = Int8GraphExport(enc).eval(), "int8"
        except ValueError as exc:
            if exact_int8:
                raise
            logger.warning("ONNX export of the float encoder, whose codes differ from the device's: %s", exc)
    if module is None:
        module = EncoderExport(model, n_q=n_q, with_embeddings=True)
    example = torch.zeros(1, 1, module.hop_length * 16)
    axes = None
    if dynamic_time:
        axes = {"wav": {0: "B", 2: "T"}, "codes": {0: "B", 2: "F"}, "embeddings": {0: "B", 2: "F"}}
    path = export_module(module, path, example, ["wav"], ["codes", "embeddings"], axes, dynamo=dynamo,
                         fold_pads=arithmetic == "float")
    onnx = _require("onnx")
    graph = onnx.load(str(path))
    onnx.helper.set_model_props(graph, {ARITHMETIC_KEY: arithmetic})
    onnx.save(graph, str(path))
    return path


@dataclass
class OnnxCheck:
    """onnxruntime against PyTorch on the same inputs.

    Attributes:
        max_abs_diff (float): largest |embedding difference| over all inputs.
        code_agreement (float): share of identical code indices (1.0 = all equal).
        frames (int): frames compared (per level).
        atol (float): tolerance on ``max_abs_diff``.
        device_code_agreement (float): share of code indices equal to ``model.encode``'s: for a deployed
            model (``encoder_int8``) the microcontroller's integer arithmetic (the int8 reference's codes);
            1.0 only where the graph sends the device's codes.
        reference (str): what ``code_agreement`` and ``max_abs_diff`` compare with: ``"int8"`` (the
            graph holds the device's integers: ``model.encode`` and ``model.encoder``) or ``"float"``
            (the float encoder of :class:`~tinycodec.export.encoder.EncoderExport`).
    """

    max_abs_diff: float
    code_agreement: float
    frames: int
    atol: float
    device_code_agreement: float = 1.0
    reference: str = "float"

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.atol


def onnx_session(path: str | Path):
    """A CPU onnxruntime ``InferenceSession`` (quiet)."""
    ort = _require("onnxruntime")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(session, wav: Tensor) -> tuple[Tensor, Tensor]:
    """Args: wav (Tensor): [B, 1, T]. Returns: (codes LongTensor [B, n_q, F], embeddings [B, D, F])."""
    codes, emb = session.run(["codes", "embeddings"], {"wav": wav.detach().cpu().numpy().astype(np.float32)})
    return torch.from_numpy(codes), torch.from_numpy(emb)


def check_onnx(model: nn.Module, path: str | Path, wavs: list[Tensor], n_q: int | None = None,
               atol: float = 1e-4) -> OnnxCheck:
    """Compare the ONNX graph at ``path`` (run in onnxruntime) with PyTorch: the float encoder, or for a
    graph of the device's integers (metadata ``int8``) the deployed model's ``encode`` and ``encoder``.

    Args:
        model (CodecModel): the model that was exported.
        path (str | Path): ``.onnx`` from :func:`export_onnx`.
        wavs (list[Tensor]): each [1, T] or [B, 1, T]; lengths may differ (dynamic time axis).
        n_q (int | None): levels the graph was exported with.
        atol (float): embedding tolerance for ``OnnxCheck.ok``.
    """
    props = {p.key: p.value for p in _require("onnx").load(str(path), load_external_data=False).metadata_props}
    reference = props.get(ARITHMETIC_KEY, "float")
    ref = EncoderExport(model, n_q=n_q, with_embeddings=True)
    session = onnx_session(path)
    max_diff, same, total, frames, same_device = 0.0, 0, 0, 0, 0
    for wav in wavs:
        wav = wav if wav.dim() == 3 else wav.reshape(-1, 1, wav.shape[-1])
        with torch.no_grad():
            codes_pt, emb_pt = ref(wav)
            device = model.encode(wav, n_q=codes_pt.shape[1])  # the deployed arithmetic, when there is one
            if reference == "int8":
                codes_pt, emb_pt = device, model.encoder(model._check_wav(wav))
        codes, emb = run_onnx(session, wav)
        if device.shape == codes.shape:
            same_device += int((codes == device).sum())
        if codes.shape != codes_pt.shape:
            raise RuntimeError(f"ONNX codes shape {tuple(codes.shape)} != PyTorch {tuple(codes_pt.shape)}")
        max_diff = max(max_diff, float((emb - emb_pt).abs().max()))
        same += int((codes == codes_pt).sum())
        total += codes.numel()
        frames += codes.shape[0] * codes.shape[-1]
    return OnnxCheck(max_diff, same / max(total, 1), frames, atol, same_device / max(total, 1), reference)
