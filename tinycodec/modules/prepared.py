"""When to rebuild an inference path prepared from a module's weights (``Int8Runner``'s integer
layers, ``ServerRunner``'s folded matrices): a key of the tensors it was built from.

Notebook: book/06_streaming.md
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

__all__ = ["tensor_key", "tensor_slots"]


def tensor_slots(module: nn.Module) -> list[dict]:
    """The ``_parameters`` and ``_buffers`` dicts of ``module`` and its descendants that hold tensors:
    live, so a tensor assigned later (``load_state_dict(assign=True)``) shows in :func:`tensor_key`."""
    return [d for m in module.modules() for d in (m._parameters, m._buffers) if d]


def tensor_key(tensors: Iterable[Tensor | None]) -> tuple:
    """What a prepared path depends on: each tensor's storage and version (an in-place update bumps
    the version, a move or a load gives new storage; the path holds the old tensors, so their storage
    is not reused meanwhile). ~80 tensors: ~15 us. Tensors made in inference mode keep no version:
    for them only a new storage counts."""
    return tuple([(t.data_ptr(), -1 if t.is_inference() else t._version) for t in tensors if t is not None])
