"""SoundStream (Zeghidour et al. 2021): causal SEANet, ELU, 3 residual units, RVQ with dropout.

``SoundStream(C=32, D=512, strides=[2, 4, 5, 8], num_quantizers=8, codebook_size=1024,
sample_rate=24000)`` is the paper's 24 kHz, 75 Hz, 6 kbps configuration.

Notebook: book/02_architecture.md
"""

from __future__ import annotations

from tinycodec.models.base import CodecModel, register_model
from tinycodec.models.config import SoundStreamConfig


@register_model
class SoundStream(CodecModel):
    """SoundStream codec; see :class:`tinycodec.models.base.CodecModel` for the API.

    Args:
        config (SoundStreamConfig | None): or pass its fields as keywords.
    """

    config_class = SoundStreamConfig
    family = "soundstream"
