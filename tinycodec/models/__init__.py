"""Codec models (SoundStream, TinyStream), their configs and presets.

Notebook: book/02_architecture.md
"""

from tinycodec.models.base import MODEL_CLASSES, CodecModel, CodecOutput, build_model
from tinycodec.models.config import (
    CONFIG_CLASSES,
    PRESETS,
    CodecConfig,
    SoundStreamConfig,
    TinyStreamConfig,
    get_preset,
    list_presets,
)
from tinycodec.models.soundstream import SoundStream
from tinycodec.models.tinystream import TinyStream
from tinycodec.models.transformer import TinyTransformerCodec, TransformerCodecConfig  # noqa: F401 (registers family + presets)

Model = CodecModel  # ``Model.from_preset(name)`` builds whichever family the preset names

__all__ = [
    "CONFIG_CLASSES", "MODEL_CLASSES", "PRESETS", "CodecConfig", "CodecModel", "CodecOutput", "Model",
    "SoundStream", "SoundStreamConfig", "TinyStream", "TinyStreamConfig", "build_model", "get_preset",
    "list_presets",
]
