"""Streaming building blocks: causal convs, residual units, SEANet encoder/decoder.

Notebook: book/02_architecture.md
"""

from tinycodec.modules.conv import (
    StreamingConv1d,
    StreamingConvTranspose1d,
    StreamingSeparableConv1d,
    StreamingSeparableConvTranspose1d,
    causal_padding,
    make_conv,
    make_conv_transpose,
    pad_to_multiple,
)
from tinycodec.modules.seanet import DecoderBlock, EncoderBlock, ResidualUnit, SEANetDecoder, SEANetEncoder
from tinycodec.modules.streaming import State, StreamingModule

__all__ = [
    "DecoderBlock", "EncoderBlock", "ResidualUnit", "SEANetDecoder", "SEANetEncoder", "State",
    "StreamingConv1d", "StreamingConvTranspose1d", "StreamingModule", "StreamingSeparableConv1d",
    "StreamingSeparableConvTranspose1d", "causal_padding", "make_conv", "make_conv_transpose",
    "pad_to_multiple",
]
