"""Decode many independent streams in one decoder call, each with its own streaming state.

The server's streams live in *cohorts*: one moshi-style batched state (a ``State`` with batch
size B per streaming module of the decoder) holding B streams as rows. Each tick the streams with
frames to decode are decoded together::

    cohort state [B=3]   rows: stream a, b, c
    codes [n_q, f] x 3  --stack--> [3, n_q, f] --model.decode--> [3, 1, f * hop]   (one call)

When every row of a cohort takes part (the steady state), the call runs on the cohort's state
itself: no copies at all. Otherwise the rows are gathered (``index_select``), decoded and written
back (``index_copy_``). A stream joins by appending its fresh state as a row and leaves by dropping
its row. Only states with the same shapes can share a cohort (a transformer's KV cache grows over
its first ``context`` frames), so a stream whose state changes shape moves to the cohort of its
new shape; convolution states never change shape and stay in one cohort.

One call costs about what one stream's call costs (the per-call Python overhead, not arithmetic,
dominates one-frame decoding on a CPU): see ``benchmarks/bench_server.py``.

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict

import torch
from torch import Tensor

from tinycodec.modules import State


def _fields(state: State) -> list[str]:
    return [f.name for f in dataclasses.fields(state) if f.name != "batch_size"]


def _signature(states: list[State]) -> tuple:
    sig = []
    for s in states:
        for name in _fields(s):
            v = getattr(s, name)
            sig.append((type(s).__name__, name, tuple(v.shape[1:]) if isinstance(v, Tensor) else repr(v)))
    return tuple(sig)


def _rebuild(state: State, batch_size: int, fn) -> State:
    """A state of the same type with every tensor field replaced by ``fn(tensor)``."""
    values = {name: (fn(v) if isinstance(v, Tensor) else v) for name in _fields(state) for v in [getattr(state, name)]}
    return type(state)(batch_size=batch_size, **values)


class _Cohort:
    """Streams whose states have the same shapes, as the rows of one batched state."""

    def __init__(self, states: list[State], members: list[int]) -> None:
        self.states, self.members = states, members
        self.signature = _signature(states)  # fixed: a cohort whose shapes change is re-keyed

    def append(self, states: list[State], ids: list[int]) -> None:
        b = len(self.members) + len(ids)
        self.states = [_cat(a, s, b) for a, s in zip(self.states, states)]
        self.members += ids

    def take(self, rows: list[int]) -> list[State]:
        idx = torch.tensor(rows)
        return [_rebuild(s, len(rows), lambda t: t.index_select(0, idx)) for s in self.states]

    def drop(self, rows: list[int]) -> None:
        keep = [i for i in range(len(self.members)) if i not in set(rows)]
        self.states = self.take(keep) if keep else []
        self.members = [self.members[i] for i in keep]


def _cat(a: State, b: State, batch_size: int) -> State:
    values = {}
    for name in _fields(a):
        va = getattr(a, name)
        values[name] = torch.cat([va, getattr(b, name)]) if isinstance(va, Tensor) else va
    return type(a)(batch_size=batch_size, **values)


class BatchDecoder:
    """``model.decode`` for many streams at once, each with its own streaming state.

    Args:
        model: codec model whose ``decoder`` is a ``StreamingModule`` tree, used by this object
            alone (not inside a ``streaming()`` block). Call every method from one thread.

    Attributes:
        calls (int): decoder calls so far; ``frames``: frames decoded (all streams together).
    """

    def __init__(self, model) -> None:
        self.model = model
        self.names = list(model.decoder.get_streaming_state())  # the decoder's streaming modules, in order
        self.calls = self.frames = 0
        self._cohorts: dict[tuple, _Cohort] = {}
        self._where: dict[int, _Cohort] = {}
        self._ids = itertools.count()

    def open(self) -> int:
        """A new stream with a fresh (zero) state, as ``with model.streaming(1)`` starts; its id."""
        sid = next(self._ids)
        self._add(list(self.model.decoder.initial_streaming_state(1).values()), [sid])
        return sid

    def close(self, sid: int) -> None:
        """Forget stream ``sid`` (idempotent)."""
        cohort = self._where.pop(sid, None)
        if cohort is not None:
            cohort.drop([cohort.members.index(sid)])
            if not cohort.members:
                del self._cohorts[cohort.signature]

    @property
    def streams(self) -> int:
        return len(self._where)

    def _add(self, states: list[State], ids: list[int]) -> None:
        sig = _signature(states)
        cohort = self._cohorts.get(sig)
        if cohort is None:
            cohort = self._cohorts[sig] = _Cohort(states, list(ids))
        else:
            cohort.append(states, ids)
        for sid in ids:
            self._where[sid] = cohort

    @torch.inference_mode()
    def decode(self, jobs: list[tuple[int, Tensor]]) -> list[Tensor]:
        """Decode one chunk per stream: one call per (cohort, codes shape), in the steady state one.

        Args:
            jobs: ``(stream id, codes)``, codes LongTensor [n_q, f] (already range-checked), one per stream.

        Returns:
            list[Tensor]: wav [f * hop_length] per job, in order.
        """
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, (sid, codes) in enumerate(jobs):
            groups[(id(self._where[sid]), tuple(codes.shape))].append(i)
        out: list = [None] * len(jobs)
        for members in groups.values():
            cohort = self._where[jobs[members[0]][0]]
            members.sort(key=lambda i: cohort.members.index(jobs[i][0]))  # cohort order: the no-copy path
            rows = [cohort.members.index(jobs[i][0]) for i in members]
            whole = rows == list(range(len(cohort.members)))
            states = cohort.states if whole else cohort.take(rows)
            codes = torch.stack([jobs[i][1] for i in members])  # [B, n_q, f]
            decoder = self.model.decoder
            idle = decoder.get_streaming_state()
            decoder.set_streaming_state(dict(zip(self.names, states)))
            try:
                wav = self.model.decode(codes)[:, 0]  # [B, f * hop]
                states = list(decoder.get_streaming_state().values())
            finally:
                decoder.set_streaming_state(idle)
            self.calls += 1
            self.frames += codes.shape[0] * codes.shape[-1]
            self._store(cohort, rows, whole, states)
            for j, i in enumerate(members):
                out[i] = wav[j]
        return out

    def _store(self, cohort: _Cohort, rows: list[int], whole: bool, states: list[State]) -> None:
        """Put the decoded rows' new states back (in place, or into the cohort of their new shape)."""
        same_shape = _signature(states) == cohort.signature  # the forward may have grown a KV cache
        if whole and same_shape:
            cohort.states = states
            return
        if whole:  # the whole cohort changed shape (a KV cache grew): re-key it
            ids = list(cohort.members)
            del self._cohorts[cohort.signature]
            self._add(states, ids)
            return
        if same_shape:
            idx = torch.tensor(rows)
            for old, new in zip(cohort.states, states):
                for name in _fields(old):
                    v = getattr(old, name)
                    if isinstance(v, Tensor):
                        v.index_copy_(0, idx, getattr(new, name))  # the rows only, no copy of the rest
            return
        ids = [cohort.members[r] for r in rows]
        cohort.drop(rows)
        if not cohort.members:
            del self._cohorts[cohort.signature]
        self._add(states, ids)
