"""Scale-out: one entry point on 1 process or under ``torchrun --nproc_per_node N`` (DDP).

torchrun sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; we then join a process group (gloo on
CPU, nccl on GPU), pin one GPU per local rank and wrap the generator and the discriminator in
``DistributedDataParallel``. The quantizer all-reduces its EMA and k-means statistics itself
(``tinycodec.quantization.distrib``), so every rank keeps the same codebooks.

    torchrun --nproc_per_node 4 -m tinycodec train --config tiny --audio_dir data/demo --device cuda

Notebook: book/04_training.md
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "setup", "cleanup", "pick_device", "autocast", "all_reduce_flag", "mean_over_ranks", "wrap"]


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False  # we created the process group (and destroy it at the end)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> cuda when available; under torchrun a bare ``"cuda"`` means ``cuda:LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but torch sees no GPU (use --device cpu)")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def setup(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group when ``WORLD_SIZE > 1``; returns the rank info and the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local)
    if world > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return DistInfo(rank, world, local, True), device
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, False), device
    return DistInfo(), device


def cleanup(info: DistInfo) -> None:
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: torch.nn.Module, info: DistInfo, device: torch.device, compile: bool = False) -> torch.nn.Module:
    """DDP-wrap (when distributed) and optionally ``torch.compile`` a module."""
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        module = torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)
    if compile:
        from tinycodec.quantization.vq import EMAVectorQuantizer

        # the quantizer's data-dependent updates (k-means, dead codes) would break the graph again
        # and again: it runs eagerly, the convolutions around it are compiled (set here, not as a
        # decorator, so runs without --compile never touch dynamo)
        for m in module.modules():
            if isinstance(m, EMAVectorQuantizer):
                m.forward = torch.compiler.disable(m.forward)
        # a graph the backend cannot compile (inductor fails on some CPU builds) runs eagerly with a
        # warning instead of stopping the run
        torch._dynamo.config.suppress_errors = True
        module = torch.compile(module)
    return module


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP and/or torch.compile wrappers."""
    module = getattr(module, "_orig_mod", module)
    return getattr(module, "module", module)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA; a no-op context elsewhere (CPU autocast would cost exactness for little speed)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (a no-op in a single process)."""
    if info.enabled:
        dist.barrier()


def all_reduce_flag(flag: bool, device: torch.device, info: DistInfo) -> bool:
    """True when ``flag`` is true on any rank (so all ranks skip or stop together)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_over_ranks(values: dict[str, float], device: torch.device, info: DistInfo) -> dict[str, float]:
    """Average logged scalars over ranks (each rank computed them on its slice of the batch)."""
    if not info.enabled:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(values, (t / info.world_size).tolist()))
