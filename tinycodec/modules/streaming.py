"""Streaming state for every layer: one API, ``with module.streaming(B):``.

The pattern follows kyutai-labs/moshi: a module that needs memory between calls
subclasses :class:`StreamingModule` and implements ``_init_streaming_state``. Inside
``with model.streaming(batch_size=B):`` every streaming descendant holds a state that
successive calls read and update; leaving the block drops all states. Outside the
block each call builds a *fresh zero state* and throws it away, so the offline path
is literally the streaming path run once, and chunked == offline by construction.

Notebook: book/02_architecture.md
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass
class State:
    """Base class of per-layer streaming states (one dataclass per layer type)."""

    batch_size: int


class StreamingModule(nn.Module):
    """A module whose ``forward`` can carry state across calls.

    Subclasses implement ``_init_streaming_state(batch_size)`` returning a fresh
    (zero) state and use :meth:`_get_state` in ``forward``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._streaming_state: Any = None

    # -- subclass hook -------------------------------------------------------------
    def _init_streaming_state(self, batch_size: int) -> State | None:
        """Fresh state for ``batch_size`` streams; ``None`` for stateless containers."""
        return None

    # -- public API ----------------------------------------------------------------
    @property
    def is_streaming(self) -> bool:
        """True inside a ``streaming()`` block."""
        return self._streaming_state is not None

    def _streaming_modules(self) -> Iterator[StreamingModule]:
        for module in self.modules():
            if isinstance(module, StreamingModule):
                yield module

    def _start_streaming(self, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for module in self._streaming_modules():
            state = module._init_streaming_state(batch_size)
            # containers get a plain marker so ``is_streaming`` is True all the way down
            module._streaming_state = state if state is not None else State(batch_size)

    def _stop_streaming(self) -> None:
        for module in self._streaming_modules():
            module._streaming_state = None

    @contextmanager
    def streaming(self, batch_size: int = 1) -> Iterator[StreamingModule]:
        """Context manager: successive calls inside carry state; exiting resets it.

        Args:
            batch_size (int): number of parallel streams B; every call inside the
                block must use this batch size.
        """
        if self.is_streaming:
            raise RuntimeError("module is already streaming; nested streaming() blocks are not allowed")
        self._start_streaming(batch_size)
        try:
            yield self
        finally:
            self._stop_streaming()

    def reset_streaming(self) -> None:
        """Reset every state to zeros (start a new stream) without leaving the block."""
        if not self.is_streaming:
            raise RuntimeError("reset_streaming() called outside a streaming() block")
        self._start_streaming(self._streaming_state.batch_size)

    def _get_state(self, batch_size: int) -> tuple[Any, bool]:
        """Return ``(state, persistent)``: the live state when streaming, else a fresh one."""
        state = self._streaming_state
        if state is None:
            return self._init_streaming_state(batch_size), False
        if state.batch_size != batch_size:
            raise ValueError(
                f"streaming block was opened with batch_size={state.batch_size}, got a batch of {batch_size}"
            )
        return state, True
