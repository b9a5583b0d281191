"""The one exception every malformed bitstream, packet or entropy table raises.

Notebook: book/05_bitrate.md
"""

from __future__ import annotations


class BitstreamError(ValueError):
    """A ``.tcz`` file, a packet or an entropy table is malformed, corrupted or for another model.

    It subclasses ``ValueError`` so the command line reports it as one clear line.
    """
