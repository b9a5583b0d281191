"""Reproducible random crops for training, and fixed validation clips.

The crop positions come from one explicit ``torch.Generator`` in the main process, so the data
order is a function of the seed and of the generator state saved in each checkpoint: resuming
replays exactly the crops an uninterrupted run would have seen. Workers only read audio.

Under torchrun every process draws the same global batch and keeps its slice
(``rank::world_size`` is avoided: contiguous slices keep a batch's order identical to one process).

Notebook: book/04_training.md
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import Tensor

from tinycodec.data.folder import AudioFolder, AudioSkipWarning

__all__ = ["CropSampler", "CropDataset", "DeviceCrops", "ensure_tensor_corpus", "validation_clips"]

log = logging.getLogger(__name__)


class CropSampler:
    """Draws global batches of ``(file index, start sample)`` and yields this process's slice.

    Files are drawn in proportion to their number of valid start positions (every second of
    audio equally likely), starts uniformly within the file.

    Args:
        folder (AudioFolder): training files (their lengths and rates are known from the scan).
        batch_size (int): global batch size (divisible by ``world_size``).
        seed (int): seed of the generator.
        rank, world_size (int): this process and the number of processes.
    """

    def __init__(self, folder: AudioFolder, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not divisible by the {world_size} processes")
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.generator = torch.Generator().manual_seed(seed)
        n_in = [int(-(-folder.length * fi.sample_rate // folder.sample_rate)) for fi in folder.files]
        self.n_starts = torch.tensor([max(1, fi.frames - n + 1) for fi, n in zip(folder.files, n_in)],
                                     dtype=torch.float64)
        self.rates = [fi.sample_rate for fi in folder.files]
        self._drawn = 0  # batches drawn so far
        self._states: dict[int, Tensor] = {}  # generator state before drawing batch i (prefetch-safe)

    def draw(self) -> list[tuple[int, int]]:
        """The next global batch: ``batch_size`` pairs (file index, start sample at the file's rate)."""
        self._states[self._drawn] = self.generator.get_state()
        g = self.generator
        files = torch.multinomial(self.n_starts, self.batch_size, replacement=True, generator=g)
        u = torch.rand(self.batch_size, generator=g, dtype=torch.float64)
        starts = (u * self.n_starts[files]).long()
        self._drawn += 1
        return list(zip(files.tolist(), starts.tolist()))

    def __iter__(self):
        per = self.batch_size // self.world_size
        while True:
            batch = self.draw()
            yield batch[self.rank * per:(self.rank + 1) * per]

    def state_for(self, consumed: int) -> Tensor:
        """Generator state just before batch ``consumed`` was drawn (batches prefetched by a
        DataLoader but not yet trained on are drawn again after a resume)."""
        if consumed not in self._states:
            if consumed == self._drawn:
                return self.generator.get_state()
            raise KeyError(f"no sampler state recorded for batch {consumed}")
        for k in [k for k in self._states if k < consumed]:
            del self._states[k]  # older states are never needed again
        return self._states[consumed]

    def load_state(self, state: Tensor, consumed: int) -> None:
        """Continue as if ``consumed`` batches had been drawn from ``state``."""
        self.generator.set_state(state)
        self._drawn, self._states = consumed, {}


def ensure_tensor_corpus(folder: AudioFolder, path) -> Path:
    """``build_tensor_corpus(folder, path)`` unless ``path`` already holds exactly ``folder``'s files."""
    import json

    from safetensors import SafetensorError, safe_open

    from tinycodec.data.tensorcorpus import build_tensor_corpus

    path = Path(path)
    if path.exists():
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            if (int(meta.get("sample_rate", 0)) == folder.sample_rate
                    and json.loads(meta.get("files", "[]")) == [fi.rel for fi in folder.files]):
                return path
        except (SafetensorError, OSError, ValueError):
            pass  # unreadable or another corpus: rebuilt below
        log.info("rebuilding %s: the training files changed", path)
    return build_tensor_corpus(folder, path)


class DeviceCrops:
    """Global batches cut from a ``TensorCorpus`` on the training device (``corpus_on_device``).

    The same contract as ``CropSampler`` + ``CropDataset`` together: iterating yields this process's
    slice of each global batch, here already a ``[B / N, 1, T]`` tensor on the device, and
    ``state_for`` / ``load_state`` make a resumed run draw the crops a straight run would have.
    Crops are drawn the same way (files by their number of valid starts, starts uniformly).

    Args:
        path: a file written by ``build_tensor_corpus`` (``ensure_tensor_corpus``).
        audio_length (float): crop length in seconds.
        batch_size (int): global batch size (divisible by ``world_size``).
        device: where the corpus lives and crops are cut.
        seed, rank, world_size: as for ``CropSampler``.
    """

    def __init__(self, path, audio_length: float, batch_size: int, device, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        from tinycodec.data.tensorcorpus import TensorCorpus

        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not divisible by the {world_size} processes")
        self.corpus = TensorCorpus(path, audio_length, device, seed)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self._drawn = 0

    def __iter__(self):
        per = self.batch_size // self.world_size
        while True:
            wav = self.corpus.sample(self.batch_size)  # every rank draws the same global batch
            self._drawn += 1
            yield wav[self.rank * per:(self.rank + 1) * per]

    def state_for(self, consumed: int) -> Tensor:
        """Generator state after ``consumed`` batches (nothing is prefetched on this path)."""
        if consumed != self._drawn:
            raise KeyError(f"{self._drawn} batches drawn, asked for the state after {consumed}")
        return self.corpus.generator.get_state()

    def load_state(self, state: Tensor, consumed: int) -> None:
        """Continue as if ``consumed`` batches had been drawn from ``state``."""
        self.corpus.generator.set_state(state)
        self._drawn = consumed


class CropDataset(torch.utils.data.Dataset):
    """Reads the crop ``(file index, start sample)`` from an ``AudioFolder``: [1, T] float32."""

    def __init__(self, folder: AudioFolder):
        self.folder = folder

    def __len__(self) -> int:
        return len(self.folder.files)

    def __getitem__(self, item: tuple[int, int]) -> Tensor:
        index, start = item
        fi = self.folder.files[index]
        try:
            # half a sample past the start: AudioFolder converts seconds back with int(), no rounding down
            return self.folder.crop(index, (start + 0.5) / fi.sample_rate)
        except Exception as exc:  # noqa: BLE001 - a file that changed after the scan must not end the run
            warnings.warn(f"{fi.rel} failed after the scan ({exc}); training on silence for this crop",
                          AudioSkipWarning, stacklevel=2)
            return torch.zeros(1, self.folder.length)


def open_folders(root: str, sample_rate: int, audio_length: float, val_length: float):
    """Train and val ``AudioFolder``s; a corpus without a val split validates on train files (with a warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one warning per file is too many: the summary below says it once
        train = AudioFolder(root, sample_rate, audio_length, split="train")
        try:
            val = AudioFolder(root, sample_rate, val_length, split="val", random_crop=False)
        except RuntimeError:
            warnings.warn(f"{root} has no validation files; validating on training files", stacklevel=2)
            val = AudioFolder(root, sample_rate, val_length, split="train", random_crop=False)
    skipped = list(dict.fromkeys(train.skipped + val.skipped))
    if skipped:  # a user must learn that files of theirs were left out, and why
        reasons: dict[str, int] = {}
        for _, reason in skipped:
            key = reason.split(":")[0].split("(")[0].strip()
            reasons[key] = reasons.get(key, 0) + 1
        log.warning("%d file(s) of %s left out (%s); the first: %s", len(skipped), root,
                    ", ".join(f"{n} {r}" for r, n in reasons.items()),
                    "; ".join(f"{p}: {r}" for p, r in skipped[:3]))
        for path, reason in skipped:
            log.info("left out %s: %s", path, reason)
    return train, val


def validation_clips(folder: AudioFolder, n_clips: int, search_seconds: float = 30.0) -> Tensor:
    """``n_clips`` fixed clips that are heard, spread over the categories and files: [N, 1, T].

    Files are taken round-robin over the categories (the first folder of each path, e.g.
    ``speech`` / ``nature``) and evenly spaced within each, so that neither the alphabetically first
    category nor one speaker fills the set. Each clip is the most active ``audio_length`` window of
    the file's first ``search_seconds`` (its first second is often silence); a file used twice (fewer
    files than clips) gives its next most active window.
    """
    from tinycodec.audio.excerpt import ACTIVE_FRAME_DBFS, frame_levels_dbfs

    def activity(wav: Tensor) -> tuple[float, float]:  # share of active 50 ms frames, then energy
        levels = frame_levels_dbfs(wav, folder.sample_rate)
        return float((levels >= ACTIVE_FRAME_DBFS).float().mean()), float(wav.pow(2).mean())

    groups: dict[str, list[int]] = {}
    for i, fi in enumerate(folder.files):
        groups.setdefault(fi.rel.split("/")[0] if "/" in fi.rel else "", []).append(i)
    want = -(-n_clips // len(groups))  # files per category
    picks = [sorted({idx[round(k * (len(idx) - 1) / max(1, want - 1))] for k in range(want)}) for idx in groups.values()]
    order = [p[k] for k in range(max(map(len, picks))) for p in picks if k < len(p)]
    order = (order * -(-n_clips // len(order)))[:n_clips]
    clips, uses = [], {}
    for f in order:
        fi = folder.files[f]
        span = min(fi.frames / fi.sample_rate, search_seconds)
        windows = [folder.crop(f, k * folder.audio_length) for k in range(max(1, int(span // folder.audio_length)))]
        ranked = sorted(windows, key=activity, reverse=True)
        clips.append(ranked[uses.get(f, 0) % len(ranked)])
        uses[f] = uses.get(f, 0) + 1
    return torch.stack(clips)
