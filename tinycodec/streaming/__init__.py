"""Delivering audio in real time: a two-thread event pipeline (``stream``), a loopback TCP demo
(``serve`` / ``send_file``) and, for comparison, overlap-save (``tinycodec.streaming.overlap_save``).

Words, one per concept:

* *streaming state*: what a layer remembers between calls inside ``with model.streaming(B):``
  (``tinycodec.modules.streaming``); a model runs in streaming mode with :func:`run_streaming`;
* *stream* (this package): the pipeline around a model in streaming mode: sources cut into whole
  hops (``tinycodec.audio.source``), threads and queues (``pipeline``), wire packets over TCP (the
  format in ``protocol``, the device side in ``client``, the batched server in ``net``);
* *overlap-save*: the stateless alternative, the model run offline on a sliding window
  (:class:`OverlapSave`, :func:`overlap_save`).

Notebook: book/06_streaming.md
"""

from tinycodec.audio.source import HopBuffer, hop_chunks, iter_source
from tinycodec.streaming.net import StreamRefused, StreamServer, send_file
from tinycodec.streaming.overlap_save import OverlapSave, overlap_save, run_streaming
from tinycodec.streaming.pipeline import StreamTimeout, stream, stream_to_tensor
from tinycodec.streaming.serving import loopback, serve

__all__ = ["HopBuffer", "OverlapSave", "StreamRefused", "StreamServer", "StreamTimeout", "hop_chunks", "iter_source",
           "loopback", "overlap_save", "run_streaming", "send_file", "serve", "stream", "stream_to_tensor"]
