"""Checks that turn every malformed checkpoint or weights file into one ``CheckpointError`` line.

A file is checked before anything is built: every size-bearing field of its config (depth, widths,
lists, n_q, codebook size) is compared with its cap first (``CodecConfig.check_limits``: no module
exists yet, so `decoder_layers=10**6` costs nothing); then the config builds the model on the
``meta`` device (no memory, a bounded number of modules), so a config that asks for billions of
parameters is refused by count; then every tensor is compared with the model's (missing, unknown,
type, shape) and must be finite. Weights files, checkpoints and ``--resume`` all pass here.

Notebook: book/04_training.md (used by ``tinycodec.pretrained`` and ``tinycodec.train.checkpoint``)
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["CheckpointError", "MAX_PARAMETERS", "build_on_meta", "check_state"]

MAX_PARAMETERS = 200_000_000  # 800 MB of float32: 40x the largest preset; more is a broken or hostile config
DEFAULTED = (".usage",)  # buffers the modules fill in themselves when an older file lacks them


class CheckpointError(ValueError, RuntimeError):
    """A checkpoint or weights file is malformed: missing key, unknown field, wrong type, shape
    mismatch, non-finite weights, or a model beyond ``MAX_PARAMETERS``. The message is one line.

    It is a ``ValueError`` (the command line prints it as one line) and a ``RuntimeError`` (what
    unreadable checkpoints raised before).
    """


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), for one-line errors."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def build_on_meta(family, config, where: str):
    """Build ``family`` with ``config`` on the meta device (no memory) and check its size.

    Returns:
        CodecModel: on ``meta``: its ``state_dict()`` gives every expected name and shape.

    Raises:
        CheckpointError: unknown family, a size-bearing field beyond its cap (before any module is
            built), unknown or mistyped config field, or too many parameters.
    """
    from tinycodec.models import CONFIG_CLASSES, build_model

    if not isinstance(family, str) or not isinstance(config, dict):
        raise CheckpointError(f"{where}: family must be a string and the model config a dict, got "
                              f"{type(family).__name__} and {type(config).__name__}")
    if family not in CONFIG_CLASSES:
        raise CheckpointError(f"{where}: unknown model family {family[:40]!r}; choose from {sorted(CONFIG_CLASSES)}")
    try:
        CONFIG_CLASSES[family].check_limits(config)
    except ValueError as exc:
        raise CheckpointError(f"{where}: model config: {first_line(exc)}") from None
    try:
        with torch.device("meta"):
            model = build_model(family, config)
    except Exception as exc:  # noqa: BLE001 - TypeError (unknown field), ValueError, arithmetic on bad types...
        raise CheckpointError(f"{where}: model config does not build: {first_line(exc)}") from None
    n = sum(t.numel() for t in model.state_dict().values())
    if n > MAX_PARAMETERS:
        raise CheckpointError(f"{where}: its config builds a model of {n / 1e6:,.0f} M parameters "
                              f"(limit {MAX_PARAMETERS / 1e6:,.0f} M)")
    return model


def check_state(expected: dict, state, where: str, optional: tuple[str, ...] = ()) -> None:
    """Compare a state dict with the expected one (names, types, shapes) and require finite values.

    Args:
        expected: ``model.state_dict()`` of the model the state must fit (meta tensors are fine).
        state: the loaded state dict.
        optional: name endings that may be missing (e.g. training-only buffers).

    Raises:
        CheckpointError: the first problem found, in one line.
    """
    if not isinstance(state, dict):
        raise CheckpointError(f"{where}: weights must be a dict of tensors, got {type(state).__name__}")
    missing = [k for k in expected if k not in state and not k.endswith(tuple(optional) + DEFAULTED)]
    unknown = [k for k in state if k not in expected]
    if missing or unknown:
        raise CheckpointError(f"{where}: weights do not match their config: missing {missing[:5]}, "
                              f"unknown {unknown[:5]}")
    for key, value in state.items():
        want = expected[key]
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{where}: {key} is a {type(value).__name__}, not a tensor")
        if value.is_floating_point() != want.is_floating_point():
            raise CheckpointError(f"{where}: {key} has dtype {value.dtype}, the model needs {want.dtype}")
        if tuple(value.shape) != tuple(want.shape):
            raise CheckpointError(f"{where}: weights do not match their config: {key} has shape "
                                  f"{tuple(value.shape)}, the config needs {tuple(want.shape)}")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{where}: non-finite weights (NaN or Inf) in {key}")
