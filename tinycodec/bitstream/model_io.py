"""Which model a ``.tcz`` file needs: the encoder hash, the weights hash, and the checks.

A file names the *encoder + codebooks* that produced its codes (``encoder_hash``, container
version 2): any decoder trained on that encoder decodes it, so upgrading the server's decoder keeps
every file (and every device's firmware) valid. Version-1 files named the hash of all weights and
decode with exactly the weights that wrote them.

Version 1 (written until c7eba2f, 2026-12-02): the weights hash is the file's identity, its model id only
informs. Weights renamed since decode under their new name: the files of the a3fd2c3-era ``tiny``,
``ultra_tiny`` and ``small`` decode with ``tiny_v1``, ``ultra_tiny_v1`` and ``small_mirror``, found by
hash, whatever name the file gives. Those files hashed the state dict *before* c7eba2f added the
codebooks' ``usage`` buffers (a training statistic that decoding never reads, ``V1_LATER_BUFFERS``), so
a version-1 hash matches a model's full weights hash or its hash without those buffers
(``v1_weights_hashes``). A hash that matches no shipped model is refused in one line ("wrong model ...").

The one exception: the first ``tiny`` (commit 450abf3, shipped a few hours on 2026-11-22, weights
``73c9ffe535dd6c8b``) is no longer shipped, so its files cannot decode; ``RETIRED_V1_WEIGHTS`` names
it, and the refusal says which model it was and that its weights are gone (one line).
``tests/data/legacy/README`` lists the committed files that check all of this.

Notebook: book/05_bitrate.md
"""

from __future__ import annotations

import functools
import hashlib
import math

from tinycodec.bitstream.errors import BitstreamError
from tinycodec.models.hashing import encoder_hash

# buffers the state dict gained after the first version-1 files (c7eba2f: the codebooks' dead-code
# usage window): training statistics that decoding never reads; files written before them hashed without
V1_LATER_BUFFERS = (".usage",)

# version-1 weights that no shipped model holds any more: {weights hash: which model they were}
RETIRED_V1_WEIGHTS = {
    bytes.fromhex("73c9ffe535dd6c8b"): "the first 'tiny' (commit 450abf3, shipped a few hours on 2026-11-22)",
}


def weights_hash(model, skip: tuple[str, ...] = ()) -> bytes:
    """First 8 bytes of sha256 over the state dict (names, dtypes, shapes and raw bytes, sorted by name).

    Two models hash equal exactly when every parameter and buffer is bit-identical. ``skip``: leave
    out the entries whose name ends with one of these suffixes.
    """
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if skip and name.endswith(skip):
            continue
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.digest()[:8]


def model_id(model) -> str:
    """The id stored in files: ``model.model_id`` if set (the CLI sets the preset name), else the family."""
    return str(getattr(model, "model_id", None) or getattr(model, "family", "") or type(model).__name__.lower())


def bits_per_code(codebook_size: int) -> int:
    """``ceil(log2(codebook_size))``: bits a bit-packed index takes."""
    return max(1, math.ceil(math.log2(int(codebook_size))))


def model_hash(model, version: int) -> bytes:
    """The 8 bytes a container of ``version`` stores for ``model`` (2: encoder hash, 1: weights hash)."""
    return weights_hash(model) if version == 1 else bytes.fromhex(encoder_hash(model))


def v1_weights_hashes(model) -> tuple[bytes, bytes]:
    """The hashes a version-1 file of ``model``'s weights may name: the full ``weights_hash`` (what this
    package writes with ``version=1``) and the hash without ``V1_LATER_BUFFERS`` (what releases before
    c7eba2f wrote, when the state dict had no such buffers)."""
    return weights_hash(model), weights_hash(model, skip=V1_LATER_BUFFERS)


def _retired_v1(header) -> str | None:
    """The one-line refusal of a version-1 file whose weights are no longer shipped (``None``: not one)."""
    what = RETIRED_V1_WEIGHTS.get(header.model_hash) if header.version == 1 else None
    if what is None:
        return None
    return (f"wrong model: the file (version 1, model {header.model_id!r}, weights {header.model_hash.hex()}) was "
            f"encoded by {what}, whose weights are no longer shipped: no model here decodes it")


def check_model(header, model) -> None:
    """Raise ``BitstreamError`` (one line, starting "wrong model") unless ``model`` can decode ``header``'s file.

    Version 2: the model's encoder hash must equal the file's (any decoder of that encoder works).
    Version 1: the model's weights must be the ones that wrote it (``v1_weights_hashes``); the file's
    model id only informs (weights renamed since, e.g. ``tiny`` -> ``tiny_v1``, still decode).
    """
    if header.version == 1:
        hashes = v1_weights_hashes(model)
        if header.model_hash not in hashes:
            raise BitstreamError(_retired_v1(header) or (
                f"wrong model: the file (version 1) was encoded with model {header.model_id!r} (weights "
                f"{header.model_hash.hex()}), the decoder has {model_id(model)!r} (weights {hashes[0].hex()})"))
    else:
        ehash = encoder_hash(model)
        if header.model_hash.hex() != ehash:
            raise BitstreamError(
                f"wrong model: the file was encoded by encoder {header.model_hash.hex()} (model "
                f"{header.model_id!r}); model {model_id(model)!r} has encoder {ehash}")
    if header.sample_rate != model.sample_rate or header.hop_length != model.hop_length:
        raise BitstreamError(f"wrong model: file is {header.sample_rate} Hz / hop {header.hop_length}, "
                             f"model is {model.sample_rate} Hz / hop {model.hop_length}")
    if header.n_q > model.config.num_quantizers or header.bits != bits_per_code(model.config.codebook_size):
        raise BitstreamError(f"wrong model: file has n_q={header.n_q}, {header.bits} bits per code; model has "
                             f"{model.config.num_quantizers} quantizers of {model.config.codebook_size} codes")


@functools.lru_cache(maxsize=16)
def _shipped_encoder_hash(name: str, mtime_ns: int) -> str:
    from tinycodec.pretrained import load_pretrained

    return encoder_hash(load_pretrained(name))


@functools.lru_cache(maxsize=32)
def _shipped_v1_hashes(name: str, mtime_ns: int) -> tuple[bytes, bytes]:
    from tinycodec.pretrained import load_pretrained

    return v1_weights_hashes(load_pretrained(name))


def shipped_v1_hashes() -> dict[str, tuple[bytes, bytes]]:
    """``{name: v1_weights_hashes}`` of every shipped model: the hashes version-1 files may name."""
    from tinycodec.pretrained import PRETRAINED_DIR, shipped_names

    return {name: _shipped_v1_hashes(name, (PRETRAINED_DIR / f"{name}.safetensors").stat().st_mtime_ns)
            for name in shipped_names()}


def shipped_weights_hashes() -> dict[str, bytes]:
    """``{name: weights_hash}`` of every shipped model (the full hash, as ``index.json`` records it)."""
    return {name: hashes[0] for name, hashes in shipped_v1_hashes().items()}


def indexed_hashes(kind: str) -> dict[str, str]:
    """``{name: hash}`` from ``tinycodec/pretrained/index.json`` (``kind``: ``encoder_hash`` or ``weights_hash``)
    for the shipped files whose size still matches their entry: a hint that spares loading every model,
    never trusted without checking the loaded model's own hash (empty when there is no index)."""
    import json

    from tinycodec.pretrained import PRETRAINED_DIR, shipped_names

    try:
        index = json.loads((PRETRAINED_DIR / "index.json").read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for name in shipped_names():
        entry = index.get(name)
        if isinstance(entry, dict) and entry.get("bytes") == (PRETRAINED_DIR / f"{name}.safetensors").stat().st_size:
            out[name] = str(entry.get(kind))
    return out


def write_index() -> dict:
    """Rewrite ``tinycodec/pretrained/index.json``: size, encoder hash and weights hash of every shipped file."""
    import json

    from tinycodec.pretrained import PRETRAINED_DIR, shipped_names

    enc, full = shipped_encoder_hashes(), shipped_weights_hashes()
    index = {name: {"bytes": (PRETRAINED_DIR / f"{name}.safetensors").stat().st_size, "encoder_hash": enc[name],
                    "weights_hash": full[name].hex()} for name in shipped_names()}
    (PRETRAINED_DIR / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return index


def shipped_encoder_hashes() -> dict[str, str]:
    """``{name: encoder_hash}`` of every shipped model (cached per file version)."""
    from tinycodec.pretrained import PRETRAINED_DIR, shipped_names

    return {name: _shipped_encoder_hash(name, (PRETRAINED_DIR / f"{name}.safetensors").stat().st_mtime_ns)
            for name in shipped_names()}


def find_model(header, seed: int = 0):
    """The model to decode ``header``'s file when the user named none.

    Version 2: a shipped model whose encoder hash matches (the one named in the file first, then
    by name), else the model the file names (a preset built with ``seed``) if its hash matches.
    Version 1: the shipped model whose weights hash matches (``v1_weights_hashes``; a model that was
    upgraded since keeps its old weights under another name, e.g. ``tiny_v1``), else the model the file names.

    Raises:
        BitstreamError: no model that can decode the file (the message says which encoder it needs,
            or, for ``RETIRED_V1_WEIGHTS``, which model wrote it and that its weights are gone).
    """
    from tinycodec.models import PRESETS
    from tinycodec.pretrained import canonical_name, list_pretrained, load_model, shipped_names

    if header.version != 1:
        wanted = header.model_hash.hex()
        # the index names the candidates without loading every model; the hash of the one loaded decides
        for hashes in (indexed_hashes("encoder_hash"), None):
            hashes = hashes if hashes is not None else shipped_encoder_hashes()
            matches = sorted((name != canonical_name(header.model_id), name) for name, h in hashes.items()
                             if h == wanted)
            for _, name in matches:
                model = load_model(name)
                if encoder_hash(model) == wanted:
                    return model
    else:
        same = sorted((name != canonical_name(header.model_id), name) for name, h in shipped_v1_hashes().items()
                      if header.model_hash in h)
        if same:
            return load_model(same[0][1])
        if refusal := _retired_v1(header):
            raise BitstreamError(refusal)
    if canonical_name(header.model_id) not in shipped_names() and header.model_id not in PRESETS:  # never a path from a file
        raise BitstreamError(f"no model found for this file: it needs {header.hash_kind} "
                             f"{header.model_hash.hex()} (written by {header.model_id!r}, not a shipped model "
                             f"or preset; shipped: {', '.join(list_pretrained()) or 'none'}); pass --model")
    if canonical_name(header.model_id) not in shipped_names():
        # a preset builds RANDOM weights: never chosen for the user, however the file's hash looks
        raise BitstreamError(f"this file names the preset {header.model_id!r}, an architecture with random weights, "
                             f"and no shipped model has its {header.hash_kind} {header.model_hash.hex()}; to decode "
                             f"with random weights on purpose pass --model {header.model_id} (and its --seed)")
    model = load_model(header.model_id, seed)
    check_model(header, model)
    return model
