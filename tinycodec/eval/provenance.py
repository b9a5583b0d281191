"""Which weights a results JSON measured, and whether the shipped files still are those weights.

A number in the book or the README is only true of the weights it was measured on. Every results
JSON under ``benchmarks/`` that quotes shipped models carries a ``weights`` block::

    "weights": {"tinycodec": {"weights_hash": "…16 hex…", "encoder_hash": "…16 hex…"}, ...}

(``weights_hash``: every tensor of the model; ``encoder_hash``: what its codes depend on, enough for
results about the encoder alone, e.g. firmware measurements). :func:`stale_models` compares the block
with the files inside the package: a retrained decoder shipped under an old name makes the JSON
stale until it is measured again.

Notebook: book/05_bitrate.md
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["weights_stamp", "stamp_results", "stale_models"]


def weights_stamp(model) -> dict[str, str]:
    """``{"weights_hash", "encoder_hash"}`` of a model (16 hex digits each)."""
    from tinycodec.bitstream import encoder_hash, weights_hash

    return {"weights_hash": weights_hash(model).hex(), "encoder_hash": encoder_hash(model)}


def _shipped_stamps() -> dict[str, dict[str, str]]:
    from tinycodec.bitstream.model_io import shipped_encoder_hashes, shipped_weights_hashes

    enc, full = shipped_encoder_hashes(), shipped_weights_hashes()
    return {name: {"weights_hash": full[name].hex(), "encoder_hash": enc[name]} for name in enc}


def stamp_results(path: str | Path, names: list[str], encoder_only: bool = False) -> dict:
    """Record in the JSON at ``path`` the current hashes of the shipped models ``names`` it measured.

    Args:
        path: a results JSON (an object at its top level).
        names: shipped model names (earlier names are resolved).
        encoder_only: record only ``encoder_hash`` (the results depend on the encoder alone).

    Returns:
        dict: the ``weights`` block written.
    """
    from tinycodec.pretrained import canonical_name

    stamps = _shipped_stamps()
    path = Path(path)
    text = path.read_text()
    data = json.loads(text)
    second = text.split("\n", 2)[1] if text.count("\n") > 1 else ""
    indent = len(second) - len(second.lstrip(" ")) or 1  # keep the file's own layout: a small diff
    block = dict(data.get("weights", {}))
    for name in names:
        stamp = stamps[canonical_name(name)]
        block[name] = {"encoder_hash": stamp["encoder_hash"]} if encoder_only else stamp
    data["weights"] = dict(sorted(block.items()))
    path.write_text(json.dumps(data, indent=indent) + "\n")
    return data["weights"]


def stale_models(data: dict) -> list[str]:
    """Models of a results JSON's ``weights`` block whose shipped file no longer has those weights.

    Args:
        data: the parsed JSON.

    Returns:
        list[str]: one line per mismatch (``NAME: weights_hash recorded X, shipped Y``), or a line for
        a name that is no longer shipped; empty when every recorded model is still what ships.
    """
    from tinycodec.pretrained import canonical_name

    stamps, out = _shipped_stamps(), []
    for name, recorded in data.get("weights", {}).items():
        shipped = stamps.get(canonical_name(name))
        if shipped is None:
            out.append(f"{name}: no longer shipped")
            continue
        out += [f"{name}: {k} recorded {v}, shipped {shipped[k]}" for k, v in recorded.items() if shipped.get(k) != v]
    return out
