"""Training: ``train(config)``, checkpoints, TensorBoard logging, torchrun/DDP, and ``tinycodec train``.

    from tinycodec.train import TrainConfig, train
    result = train(TrainConfig(preset="ultra_tiny", audio_dir="data/demo", max_steps=500))
    model = tinycodec.load_checkpoint(result.checkpoint)

Notebook: book/04_training.md
"""

import sys
import types

from tinycodec.train.checkpoint import export_weights, load_checkpoint, read_checkpoint
from tinycodec.train.config import TrainConfig
from tinycodec.train.loop import Trainer, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "Trainer", "export_weights", "load_checkpoint", "read_checkpoint", "train"]


class _CallablePackage(types.ModuleType):
    """``tinycodec.train`` is both this package and the function: importing the package binds the
    package to the name, so the package forwards calls to :func:`train`."""

    def __call__(self, *args, **kwargs):
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
