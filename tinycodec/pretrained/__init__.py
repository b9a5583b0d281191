"""Shipped weights and the one place that turns "a model spec" into a model.

A spec is, in the order tried:
- a shipped reference model name (``tinycodec/pretrained/NAME.safetensors``, see ``list_pretrained()``),
- a preset name (``tinycodec.models.list_presets()``), built with seeded RANDOM weights,
- a ``.safetensors`` file written by ``tinycodec.export_weights`` (config in its metadata),
- a training checkpoint (``.pt``) read by :func:`load_checkpoint` (``weights_only=True``).

This module never imports ``tinycodec.train``: loading a model for inference needs no training code.

Everything here works offline: no hub, no download.

Notebook: book/04_training.md
"""

from __future__ import annotations

import json
from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent
FORMAT = "tinycodec-checkpoint"  # the ``format`` entry of a training checkpoint (``.pt``)
VERSION = 1
# a weights file may leave out its encoder and codebooks and name the file beside it that holds them
# (metadata ``encoder_from``; ``encoder_hash`` checks the pair): two decoders of one deployed encoder
# then ship its tensors once (see tinycodec.train.checkpoint.share_encoder)
SHARED_PREFIXES = ("encoder.", "quantizer.")


# The line-up a reader chooses from (``list_pretrained()``), best first, each with what to use it for.
# ``tinycodec`` is the flagship and the default everywhere. ``tiny`` and ``ultra_tiny`` are trained
# weights of the TinyStream architecture presets of the same names (``tinycodec.models.list_presets``):
# a preset name alone (``--config tiny``) builds that architecture with random weights for training.
LINEUP = {
    "tinycodec": "the default: spectral int8 encoder on the device, server decoder; "
                 "0.56-2.81 kbit/s (n_q 1-5), 2.25 kbit/s at n_q=4",
    "tiny": "the SEANet encoder of the TinyStream design, int8 on the device, 2.25 kbit/s; "
            "for ESP-DL/esp-ppq deployment, which the spectral encoder does not support",
    "ultra_tiny": "the smallest SEANet encoder (1.0 kbit/s) for the tightest RAM and flash",
    "soundstream_16k": "the SoundStream architecture at 16 kHz (float, server only): the reference design",
    "transformer_tiny": "TinyTransformerCodec (attention encoder, 1.33 kbit/s): the transformer chapter's model",
}
# Retired weights, listed apart: each stays loadable so that every .tcz it wrote still decodes
# (``tinycodec decode`` finds a model by the encoder hash in the file's header).
LEGACY = {
    "tiny_stft": "the spectral encoder with four codebooks, replaced by tinycodec (2026-12-03)",
    "tiny_stft_v1": "the float spectral encoder (its codes are not the device's), replaced by tiny_stft",
    "tiny_v1": "tiny's float encoder before int8 deployment",
    "ultra_tiny_v1": "ultra_tiny's float encoder before int8 deployment",
    "small": "a float SEANet encoder with 1024-entry codebooks (2.5 kbit/s); never deployed",
    "tiny_mirror": "tiny's encoder with the small mirror decoder of the TinyStream design",
    "ultra_tiny_mirror": "ultra_tiny's encoder with the mirror decoder",
    "small_mirror": "small's encoder with the mirror decoder",
}
# earlier names of line-up models: they load the same weights
ALIASES = {"tiny_stft_hq": "tinycodec"}


def list_pretrained(legacy: bool = False) -> list[str]:
    """The shipped reference models a reader chooses from, best first (``legacy=True``: the retired ones).

    Every name of either list loads with :func:`load_pretrained`; ``LINEUP`` and ``LEGACY`` say what
    each is for.
    """
    names = LEGACY if legacy else LINEUP
    return [n for n in names if (PRETRAINED_DIR / f"{n}.safetensors").is_file()]


def shipped_names() -> list[str]:
    """Every weights file inside the package (line-up and legacy), sorted."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.safetensors"))


def canonical_name(name: str) -> str:
    """A shipped model's current name (an earlier name maps to it; anything else is returned unchanged)."""
    return ALIASES.get(name, name) if isinstance(name, str) else name


def load_weights(path: str | Path):
    """Rebuild a model from a ``.safetensors`` file written by ``tinycodec.export_weights``.

    Args:
        path: the file; its metadata holds ``family`` and ``config`` (JSON).

    Returns:
        CodecModel in eval mode, with ``model_id`` set from the metadata.

    Raises:
        CheckpointError: (a ValueError) not a readable tinycodec weights file, or its config or
            tensors are malformed: unknown field, wrong type, shape mismatch, non-finite weights,
            a model beyond the size limit (one line each).
    """
    import torch
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    from tinycodec.models import build_model
    from tinycodec.models.validate import CheckpointError, build_on_meta, check_state
    from tinycodec.quantization.vq import TRAINING_ONLY_BUFFERS

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"{path}: not a readable safetensors file ({reason})") from None
    if meta.get("format") != "tinycodec" or "family" not in meta or "config" not in meta:
        raise CheckpointError(f"{path} has no tinycodec metadata (format, family, config); "
                              "write it with tinycodec.export_weights")
    if "encoder_from" in meta:
        state = _shared_encoder_state(path, meta["encoder_from"]) | state
    try:
        config = json.loads(meta["config"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: its config metadata is not JSON ({exc})") from None
    shapes = build_on_meta(meta["family"], config, str(path)).state_dict()
    check_state(shapes, state, str(path), optional=TRAINING_ONLY_BUFFERS)
    model = build_model(meta["family"], config)
    # float16 files come back as float32; a file without the EMA statistics restarts them below
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    missing, _ = model.load_state_dict(state, strict=False)
    with torch.no_grad():
        for key in missing:  # a fresh codebook's statistics: counts of one, sums equal to the codes
            if key.endswith(".embed_avg"):
                model.get_buffer(key).copy_(model.get_buffer(key[: -len("embed_avg")] + "embed"))
            else:
                model.get_buffer(key).fill_(1.0)
    if "encoder_from" in meta:
        from tinycodec.models.hashing import encoder_hash

        ehash = encoder_hash(model)
        if ehash != meta.get("encoder_hash"):
            raise CheckpointError(f"{path}: its encoder and codebooks come from {meta['encoder_from']!r}, whose "
                                  f"encoder hash is now {ehash}, not {meta.get('encoder_hash')!r} "
                                  "(that file was replaced by another encoder)")
    model.model_id = meta.get("name") or meta["family"]
    try:
        model.checkpoint_step = int(meta.get("step", 0))
    except ValueError:
        raise CheckpointError(f"{path}: step metadata {meta.get('step')!r} is not an integer") from None
    return model.eval()


def _shared_encoder_state(path: Path, sibling: str) -> dict:
    """The encoder and codebook tensors of ``sibling``, the weights file beside ``path`` that holds them."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    from tinycodec.models.validate import CheckpointError

    if not sibling.replace("_", "").isalnum():
        raise CheckpointError(f"{path}: encoder_from {sibling!r} is not a model name")
    source = path.parent / f"{sibling}.safetensors"
    try:
        with safe_open(str(source), framework="pt") as f:
            if "encoder_from" in (f.metadata() or {}):
                raise CheckpointError(f"{path}: {source.name} takes its encoder from a third file (one step only)")
        state = load_file(str(source))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} takes its encoder and codebooks from {sibling!r}, which cannot be read "
                              f"beside it ({source}: {type(exc).__name__})") from None
    return {k: v for k, v in state.items() if k.startswith(SHARED_PREFIXES)}


def load_pretrained(name: str):
    """A shipped reference model, e.g. ``load_pretrained("tinycodec")``: only the names of
    ``list_pretrained()``, ``list_pretrained(legacy=True)`` and their earlier names are accepted (never a path).

    Raises:
        ValueError: no such shipped model (the message lists the ones that exist).
    """
    shipped, name = shipped_names(), canonical_name(name)
    if not isinstance(name, str) or name not in shipped:
        raise ValueError(f"no shipped reference model {name!r} (choose from: {', '.join(list_pretrained()) or 'none'}; "
                         f"retired: {', '.join(list_pretrained(legacy=True)) or 'none'})")
    model = load_weights(PRETRAINED_DIR / f"{name}.safetensors")
    model.model_id = name
    return model


def load_model(spec: str, seed: int = 0):
    """Any model spec (see the module docstring) -> a model in eval mode with ``model_id`` set.

    Args:
        spec: shipped name, preset name, ``.safetensors`` path or checkpoint path.
        seed: seeds the random weights of a bare preset, so the same spec rebuilds the same model.
    """
    import torch

    from tinycodec.models import PRESETS, CodecModel

    if canonical_name(spec) in shipped_names():
        return load_pretrained(spec)
    if spec in PRESETS:
        torch.manual_seed(seed)  # deterministic weights: a decoder elsewhere rebuilds the same ones
        model = CodecModel.from_preset(spec)
        model.model_id = spec
        return model.eval()
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(
            f"model {spec!r} is neither a shipped model ({', '.join(list_pretrained()) or 'none'}; retired: "
            f"{', '.join(list_pretrained(legacy=True)) or 'none'}), "
            f"a preset ({', '.join(PRESETS)}), nor an existing file")
    if path.suffix == ".safetensors":
        return load_weights(path)
    model = load_checkpoint(path)
    model.model_id = getattr(model, "model_id", None) or model.family
    return model.eval()


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a training checkpoint safely (``weights_only=True``) and check its model part.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: (also a RuntimeError) the file is unreadable, not a tinycodec checkpoint,
            its pickle holds objects or code that a weights-only load refuses (a malicious or
            foreign file), or its model part is malformed (see ``tinycodec.models.validate``).
    """
    import pickle

    import torch

    from tinycodec.models.validate import CheckpointError, build_on_meta, check_state

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"refusing to load {path}: it is not a safe tinycodec checkpoint (its pickle "
                              f"references code or objects beyond tensors and plain containers; "
                              f"weights_only load said: {first[:200]})") from None
    except Exception as exc:  # noqa: BLE001 - EOFError, RuntimeError (zip), OSError, ValueError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first[:200]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a tinycodec training checkpoint (no format={FORMAT!r} entry)")
    missing = [k for k in ("family", "model_config", "model", "step", "train_config") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: missing key(s) {missing}")
    if not isinstance(ckpt["step"], int) or isinstance(ckpt["step"], bool) or ckpt["step"] < 0:
        raise CheckpointError(f"{path}: step must be a non-negative int, got {ckpt['step']!r}")
    if not isinstance(ckpt["train_config"], dict):
        raise CheckpointError(f"{path}: train_config must be a dict, got {type(ckpt['train_config']).__name__}")
    meta = build_on_meta(ckpt["family"], ckpt["model_config"], str(path))
    check_state(meta.state_dict(), ckpt["model"], str(path))
    return ckpt




def load_checkpoint(path: str | Path, map_location="cpu"):
    """Rebuild the trained codec from a checkpoint, with no other argument.

    Args:
        path: a ``.pt`` file written by ``tinycodec.train``.

    Returns:
        CodecModel: in eval mode, with ``model.checkpoint_step`` and ``model.train_config`` (dict) set.

    Raises:
        CheckpointError: see :func:`read_checkpoint`.
    """
    from tinycodec.models import build_model

    ckpt = read_checkpoint(path, map_location)
    model = build_model(ckpt["family"], ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    model.checkpoint_step = int(ckpt["step"])
    model.train_config = ckpt["train_config"]
    if ckpt["train_config"].get("preset"):
        model.model_id = ckpt["train_config"]["preset"]
    return model.eval()
