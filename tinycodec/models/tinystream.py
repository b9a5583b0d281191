"""TinyStream: SoundStream shrunk for a microcontroller encoder.

Depthwise-separable convs, ReLU, one residual unit per block, 16 kHz, strides
[4, 4, 4, 4] (hop 256, 62.5 Hz) and a fixed number of quantizers (no dropout).

Notebook: book/02_architecture.md
"""

from __future__ import annotations

from tinycodec.models.base import CodecModel, register_model
from tinycodec.models.config import TinyStreamConfig


@register_model
class TinyStream(CodecModel):
    """TinyStream codec; see :class:`tinycodec.models.base.CodecModel` for the API.

    Args:
        config (TinyStreamConfig | None): or pass its fields as keywords.
    """

    config_class = TinyStreamConfig
    family = "tinystream"
