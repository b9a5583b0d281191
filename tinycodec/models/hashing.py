"""The encoder hash: 16 hex digits naming what a model's codes depend on (encoder + codebooks).

It lives with the models (not the bitstream) because two layers need it: the ``.tcz`` header
(:mod:`tinycodec.bitstream.model_io`) and weights files that share a sibling's encoder
(:mod:`tinycodec.pretrained`).

Notebook: book/05_bitrate.md
"""

from __future__ import annotations

import hashlib
import json

# config fields that shape the encoder's function but not (only) its tensors' shapes; an allowlist, so
# a field added later (a decoder option, a training knob) does not change the hash of existing models
_ENCODER_FIELDS = ("sample_rate", "strides", "dilations", "kernel_size", "activation", "separable",
                   "num_heads", "context")
_ENCODER_FLAGS = ("encoder_int8",)  # hashed only when set: models without them keep their hash
_DEFAULT_ENCODER = "seanet"  # ``encoder`` is hashed only when it names another kind (same reason)


def encoder_hash(model) -> str:
    """16 hex digits naming what the codes depend on: the encoder and the quantizer's codebooks.

    sha256 over, in this order: the family and the config fields that shape the encoder's function
    beyond its tensors (rates, strides, dilations, activation, attention heads...), then every tensor of
    ``model.encoder`` and every codebook
    (``quantizer.*.embed``) sorted by name, each as ``name|shape|`` and its values rounded to
    float16 (integers as int64). A float16-shipped model and its float32 in-memory original hash
    equal; a model with another decoder but the same encoder and codebooks hashes equal too.

    Returns:
        str: 16 lowercase hex digits (8 bytes, the ``.tcz`` header's hash field).
    """
    import torch

    cfg = model.config_dict()
    config = {k: cfg[k] for k in _ENCODER_FIELDS if k in cfg} | {k: cfg[k] for k in _ENCODER_FLAGS if cfg.get(k)}
    if cfg.get("encoder", _DEFAULT_ENCODER) != _DEFAULT_ENCODER:
        config["encoder"] = cfg["encoder"]
    h = hashlib.sha256(f"{model.family}|{json.dumps(config, sort_keys=True)}|".encode())
    tensors = {f"encoder.{k}": v for k, v in model.encoder.state_dict().items()}
    tensors |= {f"quantizer.{k}": v for k, v in model.quantizer.state_dict().items() if k.endswith("embed")}
    for name, tensor in sorted(tensors.items()):
        t = tensor.detach().cpu()
        t = t.to(torch.float16) if t.is_floating_point() else t.to(torch.int64)
        h.update(f"{name}|{tuple(t.shape)}|".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
