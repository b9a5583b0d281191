"""Starting a run from trained weights (``--init``): which model, which tensors, and grown blocks.

``init_from`` resolves the model ``--init`` names with the run's encoder, decoder and override
choices; ``load_init_state`` copies what the new model shares with it (a new decoder or encoder
kind starts fresh); blocks added by a deeper decoder start as the identity, so the grown model
first computes exactly what the init model computed.

Notebook: book/04_training.md
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import torch
from torch import nn

from tinycodec.train.config import MODEL_FIELDS, TrainConfig

__all__ = ["init_from", "load_init_state"]

log = logging.getLogger(__name__)


def init_from(cfg: TrainConfig) -> tuple[str, dict, dict]:
    """The model ``cfg.init`` names (shipped name, ``.safetensors`` or checkpoint), with ``cfg.encoder``,
    ``cfg.decoder`` and ``cfg.model_overrides`` applied: ``(family, model_config, state_dict)``. When the
    encoder kind changes, the state keeps only the decoder: the new encoder and its codebooks start fresh."""
    from tinycodec.pretrained import load_model

    shape = {k: getattr(cfg, k) for k in MODEL_FIELDS if getattr(cfg, k) is not None}
    source = load_model(cfg.init)
    levels = shape.pop("num_quantizers", None)
    if levels is not None and levels <= source.config.num_quantizers:
        shape["num_quantizers"] = levels  # fewer levels are a decode-time choice (n_q), not a new model
    if shape:
        raise ValueError(f"--init {cfg.init} takes its shape from that model; "
                         f"{', '.join(f'{k}={v}' for k, v in shape.items())} would be ignored: drop it, or train "
                         "a preset without --init")
    model_config = asdict(source.config) | dict(cfg.model_overrides)
    if levels is not None:  # more codebook levels: the init's are kept, the added ones start fresh
        if cfg.freeze_encoder:
            raise ValueError(f"--freeze-encoder would freeze the {levels - source.config.num_quantizers} added "
                             "codebook level(s) before they learn anything; drop one of them")
        model_config["num_quantizers"] = levels
    for part in ("encoder", "decoder"):
        if getattr(cfg, part) is not None:
            model_config[part] = getattr(cfg, part)
    state = source.state_dict()
    if model_config.get("encoder", "seanet") != getattr(source.config, "encoder", "seanet"):
        if cfg.freeze_encoder:
            raise ValueError(f"--freeze-encoder with a new encoder ({model_config['encoder']!r}, --init has "
                             f"{source.config.encoder!r}) would freeze random weights; drop one of them")
        state = {k: v for k, v in state.items() if not k.startswith(("encoder.", "quantizer."))}
        if model_config["encoder"] != "seanet":
            model_config["encoder_int8"] = False  # the firmware arithmetic is the SEANet encoder's
    return source.family, model_config, state


def load_init_state(model: nn.Module, state: dict) -> None:
    """Copy every tensor of ``state`` whose name and shape ``model`` shares (a new decoder starts
    fresh); the encoder and codebooks must all be there, unless ``state`` has none of them (a new
    encoder kind, see :func:`init_from`: encoder and codebooks start fresh)."""
    own = model.state_dict()
    shared = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    fresh_encoder = not any(k.startswith(("encoder.", "quantizer.")) for k in state)
    # a whole codebook level that --init does not have is an added level (more num_quantizers): fresh
    init_levels = {k.split(".")[2] for k in state if k.startswith("quantizer.layers.")}
    needed = [k for k in own if k.startswith(("encoder.", "quantizer.")) and k not in shared
              and not (k.startswith("quantizer.layers.") and k.split(".")[2] not in init_levels)]
    if needed and not fresh_encoder:
        raise ValueError(f"--init model lacks encoder/codebook tensors of this model: {needed[:5]}")
    model.load_state_dict(shared, strict=False)
    grown = _grown_blocks_as_identity(model, shared)
    log.info("initialised %d of %d tensors from --init (new: %s)%s", len(shared), len(own),
             sorted({k.split(".")[0] for k in own if k not in shared}) or "none",
             f"; {len(grown)} added residual blocks start as the identity" if grown else "")


def _grown_blocks_as_identity(model: nn.Module, loaded: dict) -> list[str]:
    """Zero the layer scale of every residual block none of whose tensors came from ``--init`` while
    a block beside it did (``--decoder-layers`` above the init model's): such a block then adds
    nothing, and the deeper model starts computing exactly what the init model computed. Returns
    the names of those blocks."""
    from tinycodec.modules.server_decoder import ConvNeXtBlock

    blocks = {name: m for name, m in model.named_modules() if isinstance(m, ConvNeXtBlock)}
    loaded_here = {name: any(k.startswith(name + ".") for k in loaded) for name in blocks}
    parents = {name.rsplit(".", 1)[0] for name, hit in loaded_here.items() if hit}
    grown = [name for name, hit in loaded_here.items() if not hit and name.rsplit(".", 1)[0] in parents]
    with torch.no_grad():
        for name in grown:
            blocks[name].gamma.zero_()
    return grown
