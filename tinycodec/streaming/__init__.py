"""Streaming: a two-thread event pipeline (``stream``) and a loopback TCP demo (``serve`` / ``send_file``).

Notebook: book/06_streaming.md
"""

from tinycodec.streaming.net import StreamServer, loopback, send_file, serve
from tinycodec.streaming.pipeline import StreamTimeout, stream, stream_to_tensor
from tinycodec.streaming.source import HopBuffer, hop_chunks, iter_source

__all__ = ["HopBuffer", "StreamServer", "StreamTimeout", "hop_chunks", "iter_source", "loopback", "send_file", "serve",
           "stream", "stream_to_tensor"]
