"""The exceptions of bitstreams and of the audio handed to the codec.

Notebook: book/05_bitrate.md
"""

from __future__ import annotations


class BitstreamError(ValueError):
    """A ``.tcz`` file, a packet or an entropy table is malformed, corrupted or for another model.

    It subclasses ``ValueError`` so the command line reports it as one clear line.
    """


class LimitError(BitstreamError):
    """A file, a stream or an input is longer than the limit it is decoded or encoded under
    (``max_seconds``): refused before the work, so a small input cannot ask for unbounded memory or time."""


class AudioInputError(ValueError):
    """Audio handed to the encoder is unusable: NaN or Inf samples, or the wrong shape."""
