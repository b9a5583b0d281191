"""Checkpoints: atomic, safe to load, and enough to rebuild the model with no other argument.

A checkpoint is a dict of tensors and plain containers only (RNG states converted to tensors and
lists), so it loads with ``torch.load(weights_only=True)``: a file whose pickle would run code
is refused instead of executed. Every other defect (missing key, unknown field, wrong type, shape
mismatch, non-finite weights, a config whose model would be too large) raises ``CheckpointError``
with a one-line reason (``tinycodec.models.validate``); reading one back for inference is
``tinycodec.pretrained.read_checkpoint`` (no training code needed). Temporary files of interrupted saves are
removed when a ``CheckpointManager`` opens its folder.

    {"format": "tinycodec-checkpoint", "version": 1, "family": "tinystream",
     "model_config": {...}, "train_config": {...}, "model": state_dict, "discriminator": ...,
     "opt_g", "opt_d", "sched_g", "sched_d", "step", "best_val", "history", "rng": {...}}

Notebook: book/04_training.md
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from tinycodec.models.validate import CheckpointError, check_state, first_line
from tinycodec.pretrained import FORMAT, VERSION, load_checkpoint, read_checkpoint
from tinycodec.quantization.vq import TRAINING_ONLY_BUFFERS

__all__ = ["save_checkpoint", "read_checkpoint", "load_checkpoint", "export_weights", "rng_state",
           "set_rng_state", "CheckpointManager", "CheckpointError", "check_resumable", "resume_config",
           "GoodCheckpoints", "first_nonfinite", "FORMAT", "VERSION"]

log = logging.getLogger(__name__)

def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows within one file system
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def rng_state(sampler_state: torch.Tensor | None = None) -> dict:
    """RNG states of torch (CPU and CUDA), numpy, python and the crop sampler as tensors/lists."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "state": list(py_state), "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if sampler_state is not None:
        state["sampler"] = sampler_state
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`rng_state` (the sampler's state is restored by the sampler)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


RESUME_KEYS = ("discriminator", "opt_g", "opt_d", "sched_g", "sched_d", "best_val", "history", "rng")


def check_train_config(d, where: str):
    """``TrainConfig.from_dict(d)``, refusing unknown fields and values the dataclass rejects."""
    from tinycodec.train.config import TrainConfig

    if not isinstance(d, dict):
        raise CheckpointError(f"{where}: train_config must be a dict, got {type(d).__name__}")
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise CheckpointError(f"{where}: train_config has unknown field(s) {unknown[:5]}")
    try:
        return TrainConfig.from_dict(d)
    except Exception as exc:  # noqa: BLE001 - TypeError / ValueError from the dataclass and its parts
        raise CheckpointError(f"{where}: train_config is invalid: {first_line(exc)}") from None


def check_resumable(ckpt: dict, path: str | Path):
    """Check what resuming needs beyond the model (a ``read_checkpoint`` result).

    Returns:
        TrainConfig: the run's whole configuration, as the checkpoint stores it.

    Raises:
        CheckpointError: a missing training-state key, an invalid ``train_config``, or
            discriminator weights that do not fit its config.
    """
    from tinycodec.train.discriminators import Discriminator

    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: cannot resume: missing key(s) {missing}")
    cfg = check_train_config(ckpt["train_config"], str(path))
    sample_rate = ckpt["model_config"].get("sample_rate")
    with torch.device("meta"):
        disc = Discriminator(cfg.disc, sample_rate)
    check_state(disc.state_dict(), ckpt["discriminator"], f"{path} (discriminator)")
    rng = ckpt["rng"]
    if not isinstance(rng, dict) or not {"torch", "numpy", "python", "sampler"} <= set(rng):
        raise CheckpointError(f"{path}: cannot resume: the RNG state is incomplete")
    for key in ("opt_g", "opt_d", "sched_g", "sched_d"):
        if not isinstance(ckpt[key], dict):
            raise CheckpointError(f"{path}: cannot resume: {key} must be a dict, got {type(ckpt[key]).__name__}")
    if not isinstance(ckpt["best_val"], (int, float)) or isinstance(ckpt["best_val"], bool):
        raise CheckpointError(f"{path}: cannot resume: best_val must be a number, got {type(ckpt['best_val']).__name__}")
    check_history(ckpt["history"], path)
    return cfg


HISTORY_KEYS = ("step", "val_step", "val_mel_distance")  # the entries every run has (loss terms may be missing)


def check_history(history, path: str | Path) -> None:
    """A checkpoint's ``history``: a dict of lists of numbers, with ``HISTORY_KEYS`` among them.

    Raises:
        CheckpointError: one line naming what is wrong.
    """
    if not isinstance(history, dict):
        raise CheckpointError(f"{path}: cannot resume: history must be a dict of lists, got {type(history).__name__}")
    missing = [k for k in HISTORY_KEYS if k not in history]
    if missing:
        raise CheckpointError(f"{path}: cannot resume: history lacks {missing}")
    for key, values in history.items():
        if not isinstance(key, str) or not isinstance(values, list):
            raise CheckpointError(f"{path}: cannot resume: history[{str(key)[:40]!r}] must be a list, "
                                  f"got {type(values).__name__}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise CheckpointError(f"{path}: cannot resume: history[{key[:40]!r}] holds something other than numbers")


def resume_config(given: dict, path: str | Path):
    """The run the checkpoint at ``path`` continues, with the fields ``given`` explicitly.

    Reads and checks the checkpoint (``check_resumable``), then ``resolve_config_for_resume``: fields
    outside ``RESUME_SAFE`` that differ from the stored run raise ``ValueError`` naming them.
    """
    from tinycodec.train.config import resolve_config_for_resume

    stored = check_resumable(read_checkpoint(path), path)
    return resolve_config_for_resume(stored, {k: v for k, v in given.items() if k != "resume"}, str(path))


def export_weights(ckpt, out: str | Path, dtype: torch.dtype | None = None, inference_only: bool = False) -> Path:
    """Write the model weights as safetensors, the config JSON in the metadata.

    Args:
        ckpt: a checkpoint path, a checkpoint dict, or a ``CodecModel``.
        out: ``.safetensors`` path.
        dtype: store floating tensors in this dtype (e.g. ``torch.float16``: half the bytes;
            ``load_weights`` returns float32 either way). ``None`` keeps them as they are.
        inference_only: leave out the codebooks' EMA statistics (``embed_avg``, ``cluster_size``).
            Encoding and decoding do not read them; ``load_weights`` restarts them as a fresh
            codebook's (counts of one), so fine-tuning still works.

    Returns:
        Path: ``out``. Metadata keys: ``format`` ("tinycodec"), ``family``, ``config`` (JSON), ``step``,
        ``dtype``, ``inference_only`` ("0"/"1").
    """
    from dataclasses import asdict

    from safetensors.torch import save_file

    if isinstance(ckpt, (str, Path)):
        ckpt = read_checkpoint(ckpt)
    if isinstance(ckpt, dict):
        family, config, state, step = ckpt["family"], ckpt["model_config"], ckpt["model"], ckpt["step"]
    else:  # a model
        family, config, state = ckpt.family, asdict(ckpt.config), ckpt.state_dict()
        step = getattr(ckpt, "checkpoint_step", 0)
    tensors = {}
    for key, value in state.items():
        if inference_only and key.endswith(TRAINING_ONLY_BUFFERS):
            continue
        value = value.detach().cpu()
        if dtype is not None and value.is_floating_point():
            # an int8-exact encoder's tensors are cast only when the cast is exact (its int8-grid
            # weights are; its biases sit on a grid finer than float16 holds, and a rounded bias
            # would change the device's integers)
            exact = config.get("encoder_int8") and key.startswith("encoder.")
            if not exact or torch.equal(value.to(dtype).to(value.dtype), value):
                value = value.to(dtype)
        tensors[key] = value.contiguous().clone()
    meta = {"format": "tinycodec", "family": family, "config": json.dumps(config), "step": str(step),
            "dtype": str(dtype or "as trained").replace("torch.", ""), "inference_only": str(int(inference_only))}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata=meta)
    return out


def share_encoder(path: str | Path, sibling: str | Path) -> Path:
    """Rewrite weights file ``path`` without its encoder and codebooks, taking them from ``sibling``
    (a weights file in the same folder with the very same encoder and codebooks: ``encoder_hash``
    equal). ``load_weights`` puts them back and checks the hash, so the pair ships those tensors once.

    Raises:
        ValueError: the two files are in different folders, or their encoders or codebooks differ.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from tinycodec.models.hashing import encoder_hash
    from tinycodec.pretrained import SHARED_PREFIXES, load_weights

    path, sibling = Path(path), Path(sibling)
    if path.resolve().parent != sibling.resolve().parent or path.resolve() == sibling.resolve():
        raise ValueError(f"{sibling} must be another file in the folder of {path}")
    own, other = encoder_hash(load_weights(path)), encoder_hash(load_weights(sibling))
    if own != other:
        raise ValueError(f"{path.name} (encoder {own}) and {sibling.name} (encoder {other}) do not share an encoder")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    state = {k: v for k, v in load_file(str(path)).items() if not k.startswith(SHARED_PREFIXES)}
    save_file(state, str(path), metadata=meta | {"encoder_from": sibling.stem, "encoder_hash": own})
    return path


def describe_mismatch(ckpt: dict, family: str, model_config: dict, preset: str | None = None) -> str | None:
    """``None`` when the checkpoint's model matches, else a message naming the differences."""
    diffs = []
    if ckpt["family"] != family:
        diffs.append(f"family {ckpt['family']} -> {family}")
    old = ckpt["model_config"]
    for key in sorted(set(old) | set(model_config)):
        a, b = old.get(key), model_config.get(key)
        if (list(a) if isinstance(a, tuple) else a) != (list(b) if isinstance(b, tuple) else b):
            diffs.append(f"{key} {a!r} -> {b!r}")
    if not diffs:
        return None
    old_name = ckpt["train_config"].get("preset") or "custom"
    return (f"the checkpoint holds preset {old_name!r}, this run asks for {preset or 'custom'!r}: "
            + ", ".join(diffs) + " (checkpoint -> this run)")


class CheckpointManager:
    """Writes ``step_XXXXXXXX.pt`` keeping the last ``keep_last`` this run wrote (by step), plus ``best.pt``
    and the one :meth:`protect` names.

    Args:
        directory: checkpoint folder.
        keep_last (int): step checkpoints to keep.
    """

    def __init__(self, directory: str | Path, keep_last: int = 3):
        self.directory, self.keep_last = Path(directory), max(1, keep_last)
        # the step checkpoints this run wrote, by step: pruning never touches another run's files in
        # the same folder (a later run's higher steps must not make this run delete its own)
        self.written: dict[int, Path] = {}
        self.kept: Path | None = None  # never pruned (the last checkpoint known good, see protect)
        remove_stale_temporaries(self.directory)

    def protect(self, path: str | Path | None) -> None:
        """Keep ``path`` however many newer checkpoints follow (until another path is protected):
        the last checkpoint a divergence message may name must still exist."""
        self.kept = None if path is None else Path(path)

    def path_for(self, step: int) -> Path:
        return self.directory / f"step_{step:08d}.pt"

    def save(self, ckpt: dict, best: bool = False) -> Path:
        path = atomic_save(ckpt, self.path_for(ckpt["step"]))
        if best:
            atomic_save(ckpt, self.directory / "best.pt")
        self.written[int(ckpt["step"])] = path
        for step in sorted(self.written)[: -self.keep_last]:
            if self.written[step] != self.kept:
                self.written.pop(step).unlink(missing_ok=True)
        return path

    def save_best(self, ckpt: dict) -> Path:
        return atomic_save(ckpt, self.directory / "best.pt")

    def latest(self) -> Path | None:
        steps = sorted(self.directory.glob("step_*.pt"))
        return steps[-1] if steps else None


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files ``atomic_save`` leaves when a process dies mid-save.

    Called when a run opens its checkpoint folder (before it can save anything itself).

    Returns:
        list[Path]: the files removed.
    """
    removed = []
    for tmp in sorted(Path(directory).glob(".*.pt.*.tmp")) if Path(directory).is_dir() else []:
        try:
            tmp.unlink()
        except OSError as exc:
            log.warning("cannot remove stale temporary file %s: %s", tmp, exc)
            continue
        removed.append(tmp)
        log.warning("removed %s, left by an interrupted save", tmp)
    return removed


def save_checkpoint(path: str | Path, ckpt: dict) -> Path:
    """Atomically write a checkpoint dict (see the module docstring for its keys)."""
    return atomic_save(ckpt, path)


def first_nonfinite(modules: dict, optimizers: dict) -> str | None:
    """The name (``part.tensor``) of the first non-finite floating tensor in the modules' state dicts
    and the optimizers' states (Adam's moments), or ``None`` when all are finite: a checkpoint must
    hold a model worth resuming."""
    for part, module in modules.items():
        for name, t in module.state_dict().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                return f"{part}.{name}"
    for part, opt in optimizers.items():
        for moments in opt.state.values():
            for name, t in moments.items():
                if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    return f"{part}.{name}"
    return None


class GoodCheckpoints:
    """Which checkpoint of a run to resume from after a divergence.

    An update can leave finite but ruined weights (at lr 1e8 every weight moves by about 1e8 in the
    very first step), so a checkpoint counts as good only once a step run from its weights gave a
    finite loss: :meth:`saved` records the newest one, :meth:`confirm` judges it by the next step.
    The last good one is protected from the manager's pruning.

    Args:
        manager (CheckpointManager): the run's checkpoints.
        resumed (str | None): the checkpoint the run resumed from (judged by its first step).
    """

    def __init__(self, manager: CheckpointManager, resumed: str | None = None) -> None:
        self.manager = manager
        self.last_good: str | None = None  # the newest checkpoint a finite step has run from
        self.unconfirmed: str | None = resumed  # saved since, not yet run from
        self.suspect: str | None = None  # one a non-finite step followed straight away

    def saved(self, path: str) -> None:
        self.unconfirmed = path

    def confirm(self, finite: bool) -> None:
        """The step after the newest checkpoint was ``finite`` (it is good) or not (it is suspect)."""
        if self.unconfirmed is None:
            return
        if finite:
            self.last_good, self.suspect = self.unconfirmed, None
            self.manager.protect(self.last_good)
        else:
            self.suspect = self.unconfirmed
        self.unconfirmed = None

    def advice(self) -> str:
        """What to resume from after a divergence: the last good checkpoint, if it still exists."""
        if self.last_good is not None and Path(self.last_good).is_file():
            advice = f"the last good checkpoint is {self.last_good}: resume from it with a lower --g_lr/--d_lr"
        elif self.last_good is not None:
            advice = (f"the last good checkpoint, {self.last_good}, no longer exists: start again with a lower "
                      "--g_lr/--d_lr")
        else:
            advice = "no checkpoint of this run is known good: start again with a lower --g_lr/--d_lr"
        if self.suspect is not None:
            advice += f" ({self.suspect} was saved just before the first non-finite step: do not resume from it)"
        return advice + ", or check the data"
