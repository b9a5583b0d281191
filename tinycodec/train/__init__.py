"""Training: ``train(config)``, checkpoints, TensorBoard logging, torchrun/DDP, and ``tinycodec train``.

    from tinycodec.train import TrainConfig, train
    result = train(TrainConfig(preset="ultra_tiny", audio_dir="data/demo", max_steps=500))
    model = tinycodec.load_checkpoint(result.checkpoint)

Notebook: book/04_training.md
"""

from tinycodec.train.checkpoint import export_weights, load_checkpoint, read_checkpoint, share_encoder
from tinycodec.train.config import TrainConfig
from tinycodec.train.loop import Trainer, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "Trainer", "export_weights", "load_checkpoint", "read_checkpoint", "share_encoder", "train"]
