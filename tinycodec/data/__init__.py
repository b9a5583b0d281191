"""Datasets and corpora: ``AudioFolder``, the ``TensorCorpus`` fast path, synthetic nature, recipes.

Submodules are imported lazily, so ``tinycodec.data.fetch`` does not pull in the Dataset code.

Notebook: book/01_data.md
"""

from __future__ import annotations

import importlib

_LAZY = {
    "AudioFolder": "tinycodec.data.folder",
    "TensorCorpus": "tinycodec.data.tensorcorpus",
    "build_tensor_corpus": "tinycodec.data.tensorcorpus",
    "NatureConfig": "tinycodec.data.synth",
    "synth_nature": "tinycodec.data.synth",
    "synth_speech": "tinycodec.data.synth",
    "fetch": "tinycodec.data.corpora",
    "list_recipes": "tinycodec.data.corpora",
    "read_manifest": "tinycodec.data.corpora.manifest",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tinycodec.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
