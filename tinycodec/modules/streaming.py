"""Streaming state for every layer: one API, ``with module.streaming(B):``.

The pattern follows kyutai-labs/moshi: a module that needs memory between calls
subclasses :class:`StreamingModule` and implements ``_init_streaming_state``. Inside
``with model.streaming(batch_size=B):`` every streaming descendant holds a state that
successive calls read and update; leaving the block drops all states. Outside the
block each call builds a *fresh zero state* and throws it away, so the offline path
is literally the streaming path run once, and chunked == offline by construction.

Code outside a module reads and writes states through :meth:`StreamingModule.get_streaming_state`
and :meth:`StreamingModule.set_streaming_state` (a dict keyed by module name, ``""`` for the
module itself), never through ``_streaming_state``: a server that decodes many streams in one
call keeps each stream's dict and puts it back before that stream's next call
(``tinycodec.streaming.batch``).

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
        self._streaming_tree: list[tuple[str, StreamingModule]] | None = None

    # -- subclass hook -------------------------------------------------------------
    def _init_streaming_state(self, batch_size: int) -> State | None:
        """Fresh state for ``batch_size`` streams; ``None`` for stateless containers."""
        return None

    # -- public API ----------------------------------------------------------------
    @property
    def is_streaming(self) -> bool:
        """True inside a ``streaming()`` block."""
        return self._streaming_state is not None

    def _streaming_modules(self, refresh: bool = False) -> list[tuple[str, StreamingModule]]:
        """This tree's streaming modules by name, walked when a stream starts (``refresh``) and kept
        for the calls in between: a server sets and gets a decoder's states on every call."""
        if refresh or self._streaming_tree is None:
            self._streaming_tree = [(n, m) for n, m in self.named_modules() if isinstance(m, StreamingModule)]
        return self._streaming_tree

    def initial_streaming_state(self, batch_size: int) -> dict[str, State]:
        """Fresh (zero) states for ``batch_size`` streams, by module name: what ``streaming(batch_size)``
        starts with, for :meth:`set_streaming_state`. This module is left as it was."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for _, module in self._streaming_modules(refresh=True):  # a new stream sees the modules as they are now
            if module is not self:
                module._streaming_tree = None  # (descendants walk their part again at its next use)
        # containers get a plain marker so ``is_streaming`` is True all the way down
        return {name: module._init_streaming_state(batch_size) or State(batch_size)
                for name, module in self._streaming_modules()}

    def get_streaming_state(self) -> dict[str, State | None]:
        """The state of this module and every streaming descendant, by module name (``""``: this one).

        The values are the live states, not copies (``None`` everywhere outside a streaming block): keep
        the dict and hand it to :meth:`set_streaming_state` to resume exactly these streams later.
        """
        return {name: module._streaming_state for name, module in self._streaming_modules()}

    def set_streaming_state(self, state: dict[str, State | None]) -> None:
        """Give every streaming module in this tree its entry of ``state`` (from :meth:`get_streaming_state`
        or :meth:`initial_streaming_state`): later calls carry on from these states. A dict of ``None``
        (what ``get_streaming_state`` returns outside a block) stops streaming.

        Raises:
            KeyError: ``state`` misses a module of this tree or names one it does not have.
            ValueError: the states mix streaming and not, or batch sizes.
        """
        modules = dict(self._streaming_modules())
        if state.keys() != modules.keys():
            missing, extra = sorted(modules.keys() - state.keys()), sorted(state.keys() - modules.keys())
            raise KeyError(f"streaming state does not fit this module: missing {missing}, unknown {extra}")
        sizes = {None if s is None else s.batch_size for s in state.values()}
        if len(sizes) > 1:
            raise ValueError(f"one streaming state, one batch size (None: not streaming), got {sorted(map(str, sizes))}")
        for name, module in modules.items():
            module._streaming_state = state[name]

    def _start_streaming(self, batch_size: int) -> None:
        self.set_streaming_state(self.initial_streaming_state(batch_size))

    def _stop_streaming(self) -> None:
        for _, module in self._streaming_modules():
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
