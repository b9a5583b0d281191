"""torch.distributed helpers: no-ops unless a process group is initialised.

Notebook: book/03_quantization.md
"""

from __future__ import annotations

import torch
from torch import Tensor


def is_distributed() -> bool:
    """True when torch.distributed is available, initialised and has more than one rank."""
    return (torch.distributed.is_available() and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1)


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over ranks in place (identity on one process); returns it."""
    if is_distributed():
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return tensor


def broadcast(tensor: Tensor, src: int = 0) -> Tensor:
    """Copy rank ``src``'s ``tensor`` to every rank in place (identity on one process)."""
    if is_distributed():
        torch.distributed.broadcast(tensor, src)
    return tensor
