"""The fast path: a corpus decoded once into one tensor file, random crops cut on the device.

For tiny models the step is cheaper than decoding a file, so the loader dominates. Here every
usable file of an ``AudioFolder`` is resampled once and stored as int16 PCM in one safetensors
file (``audio`` [N] int16, ``offsets`` [F + 1] int64). ``TensorCorpus`` keeps it on the training
device and cuts a batch of crops with one gather: no workers, no decoding, no host copies.

    build_tensor_corpus("data/demo", "runs/demo16k.safetensors")
    corpus = TensorCorpus("runs/demo16k.safetensors", audio_length=1.0, device="cuda")
    wav = corpus.sample(batch_size=32)  # [32, 1, 16000] on the device

Notebook: book/01_data.md
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from tinycodec.audio import load

__all__ = ["build_tensor_corpus", "TensorCorpus"]


def build_tensor_corpus(
    source, path: str | Path, sample_rate: int = 16_000, split: str | None = None
) -> Path:
    """Decode every usable file once and write ``path`` (safetensors, int16 PCM).

    Args:
        source: an ``AudioFolder`` or a folder (scanned with ``AudioFolder(source, sample_rate, split=split)``).
        path: output ``.safetensors`` file.
        sample_rate: rate the audio is stored at.

    Returns:
        Path: ``path``. Metadata holds the sample rate and the relative file names.
    """
    from tinycodec.data.folder import AudioFolder

    folder = source if isinstance(source, AudioFolder) else AudioFolder(source, sample_rate, split=split)
    chunks, offsets, names = [], [0], []
    for fi in tqdm(folder.files, desc="decoding corpus", unit="file", leave=False):
        wav, _ = load(folder.root / fi.rel, folder.sample_rate)  # [1, t] mono at the target rate
        pcm = (wav[0].clamp(-1, 1) * 32767).round().to(torch.int16)  # int16 halves memory vs float32
        chunks.append(pcm)
        offsets.append(offsets[-1] + pcm.numel())
        names.append(fi.rel)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"sample_rate": str(folder.sample_rate), "files": json.dumps(names)}
    save_file(
        {"audio": torch.cat(chunks), "offsets": torch.tensor(offsets, dtype=torch.int64)},
        str(path),
        metadata=meta,
    )
    return path


class TensorCorpus:
    """Random crops from a tensor corpus, computed on ``device``.

    Files are drawn in proportion to their length, so every second of audio is equally likely;
    files shorter than the crop are zero-padded at the end.

    Args:
        path: file written by ``build_tensor_corpus``.
        audio_length: crop length in seconds.
        device: where the audio lives and crops are cut.
        seed: seed of the generator used by ``sample``.
    """

    def __init__(
        self, path: str | Path, audio_length: float = 1.0, device: str | torch.device = "cpu", seed: int = 0
    ):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        tensors = load_file(str(path))
        self.device = torch.device(device)
        self.sample_rate = int(meta["sample_rate"])
        self.names: list[str] = json.loads(meta["files"])
        self.audio = tensors["audio"].to(self.device)  # [N] int16
        self.offsets = tensors["offsets"].to(self.device)  # [F + 1]
        self.lengths = self.offsets[1:] - self.offsets[:-1]  # [F]
        self.length = int(round(audio_length * self.sample_rate))
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        # start positions per file: max(len - T + 1, 1) of them; drawing a file by that count and a
        # start uniformly within it makes every valid start equally likely
        self._n_starts = (self.lengths - self.length + 1).clamp_min(1)
        self._weights = self._n_starts.double() / self._n_starts.sum()

    def __len__(self) -> int:
        return int(self.lengths.numel())

    @property
    def hours(self) -> float:
        return float(self.lengths.sum()) / self.sample_rate / 3600

    def sample(self, batch_size: int) -> torch.Tensor:
        """A batch of random crops, Tensor [B, 1, T] float32 in [-1, 1] on ``device``."""
        g = self.generator
        file = torch.multinomial(self._weights, batch_size, replacement=True, generator=g)  # [B]
        u = torch.rand(batch_size, generator=g, device=self.device, dtype=torch.float64)
        start = (u * self._n_starts[file]).long()  # [B] within each file
        pos = start[:, None] + torch.arange(self.length, device=self.device)  # [B, T]
        valid = pos < self.lengths[file][:, None]
        idx = (self.offsets[file][:, None] + pos).clamp_max(self.audio.numel() - 1)
        wav = self.audio[idx].float().div_(32767.0) * valid  # short files: zeros past their end
        return wav[:, None, :]

    def batches(self, batch_size: int, steps: int):
        """Yield ``steps`` batches of ``sample(batch_size)``."""
        for _ in range(steps):
            yield self.sample(batch_size)
