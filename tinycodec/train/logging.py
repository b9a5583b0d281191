"""TensorBoard summaries of a training run (rank 0 only).

Tags:
    loss/{total_g, reconstruction, commitment, adversarial, feature, discriminator}
    quantizer/perplexity_{i}, quantizer/usage_{i}      (one per quantizer level i)
    grad_norm/{generator, discriminator}, lr/{generator, discriminator}
    val/mel_distance
    audio/original_{k}, audio/reconstruction_{k}, spectrogram/{k}   (at validation steps)

Notebook: book/04_training.md
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

__all__ = ["TrainLogger"]

log = logging.getLogger(__name__)


class TrainLogger:
    """A thin ``SummaryWriter`` wrapper; without a log dir (or without tensorboard) it does nothing.

    Args:
        log_dir (str | None): event-file folder.
        sample_rate (int): of the audio summaries.
    """

    def __init__(self, log_dir: str | None, sample_rate: int):
        self.sample_rate = sample_rate
        self.writer = None
        if log_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is the optional "train" extra
            log.warning("tensorboard is not installed (pip install tensorboard): no event files")
            return
        self.writer = SummaryWriter(log_dir)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def quantizer(self, stats, step: int) -> None:
        """Perplexity, usage and re-seeded (dead) codes per quantizer level (``QuantizerStats``
        of the last batch)."""
        if self.writer is None or stats is None:
            return
        for i, (p, u) in enumerate(zip(stats.perplexity.tolist(), stats.usage.tolist())):
            self.writer.add_scalar(f"quantizer/perplexity_{i}", p, step)
            self.writer.add_scalar(f"quantizer/usage_{i}", u, step)
        if stats.replaced is not None:
            for i, r in enumerate(stats.replaced.tolist()):
                self.writer.add_scalar(f"quantizer/replaced_{i}", r, step)

    def audio(self, original: Tensor, reconstruction: Tensor, step: int, n: int = 2) -> None:
        """Audio pairs and log-mel images (reconstruction above original) of the first ``n`` clips."""
        if self.writer is None:
            return
        from tinycodec.audio import log_mel

        for k in range(min(n, original.shape[0])):
            x, y = original[k, 0].float().cpu(), reconstruction[k, 0].float().cpu()
            self.writer.add_audio(f"audio/original_{k}", x.clamp(-1, 1)[None], step, self.sample_rate)
            self.writer.add_audio(f"audio/reconstruction_{k}", y.clamp(-1, 1)[None], step, self.sample_rate)
            mel = log_mel(torch.stack([y, x]), self.sample_rate, n_mels=64)  # [2, 64, F]
            img = torch.cat([mel[0].flip(0), mel[1].flip(0)], dim=0)  # low frequencies at the bottom
            img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-6)
            self.writer.add_image(f"spectrogram/{k}", img[None], step, dataformats="CHW")

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
