"""Calibration for export: the audio, and the one recipe that makes an untrained model exportable.

Every exporter (the C firmware's int8 encoder, int8 ONNX, ESP-DL, the device budget) calibrates
on real audio and, given a bare preset, on a random-weight model made a fair stand-in for a
trained one. Both are written here, once:

* the audio: :func:`calibration_clips` (a folder's speech and nature clips, read by
  :func:`tinycodec.eval.clips.load_clips`), :func:`default_calib_wavs` (their files),
  :func:`load_pcm` / :func:`as_pcm_list` (int16 PCM, what the firmware sees),
  :func:`split_clips` and :func:`windows`;
* :func:`fit_codebooks`: k-means codebooks, each RVQ level fitted on frames of its own;
* :func:`prepare_untrained`: zero biases, unit-variance convs, embeddings at RMS 1, k-means codebooks;
* :func:`load_for_export`: any model spec through :func:`tinycodec.pretrained.load_model`,
  prepared by :func:`prepare_untrained` when it is a bare preset.

Notebook: book/07_deployment.md
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from tinycodec.modules.int8_ops import PCM_SCALE, pcm_from_float

logger = logging.getLogger(__name__)

CALIB_SECONDS = 20.0  # per calibration file: enough for the maxima, keeps export in seconds
CATEGORIES = ("speech", "nature")  # the demo corpus folders calibration reads


# -- the audio ------------------------------------------------------------------------------
def default_calib_wavs(root: str | Path = "data/demo") -> list[Path]:
    """The calibration files: the speech clips, then the nature clips, of the demo corpus."""
    root = Path(root)
    files = [f for c in CATEGORIES for f in sorted((root / c).glob("*.wav"))]
    if not files:
        raise FileNotFoundError(f"no calibration audio in {root}/speech or {root}/nature "
                                f"(run `tinycodec data fetch demo --to {root}`)")
    return files


def calibration_audio(wavs=None) -> list:
    """What calibration runs on: ``wavs`` itself (a list of paths, arrays or tensors), the files of
    :func:`default_calib_wavs` of a folder (``wavs`` a path), or those of ``data/demo`` (``None``)."""
    if wavs is None:
        return default_calib_wavs()
    if isinstance(wavs, (str, Path)):
        return default_calib_wavs(wavs)
    return list(wavs)


def calibration_clips(data_dir: str | Path = "data/demo", sample_rate: int = 16000,
                      max_seconds: float | None = None) -> list[Tensor]:
    """Real audio clips for calibration: every clip of ``data_dir``'s speech and nature categories.

    Returns:
        list[Tensor]: clips [1, T] at ``sample_rate`` (optionally cut to ``max_seconds``), sorted by path.
    """
    from tinycodec.eval.clips import load_clips

    try:
        clips = load_clips(data_dir, sample_rate, categories=list(CATEGORIES), split=None, clip_seconds=max_seconds)
    except FileNotFoundError:
        clips = []
    if not clips:
        raise FileNotFoundError(f"no audio under {data_dir}/{{{','.join(CATEGORIES)}}}; "
                                f"run `tinycodec data fetch demo --to {data_dir}`")
    return [c.wav[0] for c in clips]


def to_pcm16(wav) -> np.ndarray:
    """Float audio in [-1, 1] (array or tensor, any shape) as int16 PCM [T]; int16 input is kept."""
    a = np.asarray(wav.detach().cpu() if hasattr(wav, "detach") else wav).reshape(-1)
    if a.dtype == np.int16:
        return a
    return pcm_from_float(a).astype(np.int16)


def load_pcm(path: str | Path, sample_rate: int, seconds: float | None = None) -> np.ndarray:
    """A file as int16 PCM [T] at ``sample_rate`` (mono), optionally the first ``seconds``."""
    from tinycodec.eval.clips import load_clip

    return to_pcm16(load_clip(path, sample_rate, seconds))


def as_pcm_list(wavs, sample_rate: int) -> list[np.ndarray]:
    """Calibration audio as int16 PCM: paths (the first ``CALIB_SECONDS`` of each), float arrays or
    tensors in [-1, 1], or int16 arrays."""
    return [load_pcm(w, sample_rate, CALIB_SECONDS) if isinstance(w, (str, Path)) else to_pcm16(w) for w in wavs]


def _float_batchless(pcms: list[np.ndarray]) -> list[Tensor]:
    return [torch.from_numpy(p.astype(np.float32) / PCM_SCALE).reshape(1, 1, -1) for p in pcms]


def split_clips(clips: list[Tensor], fraction: float = 0.7) -> tuple[list[Tensor], list[Tensor]]:
    """Cut each clip [1, T] in time: the first ``fraction`` calibrates, the rest evaluates."""
    calib, held = [], []
    for c in clips:
        k = int(c.shape[-1] * fraction)
        calib.append(c[..., :k])
        held.append(c[..., k:])
    return calib, held


def windows(wavs: list[Tensor], length: int, count: int) -> list[Tensor]:
    """``count`` windows [1, 1, length] spread evenly over the clips (each clip [1, T] or [T]),
    skipping near-silent ones (they would calibrate nothing)."""
    pool = []
    for wav in wavs:
        wav = wav.reshape(-1)
        n = wav.numel() // length
        pool += [wav[i * length:(i + 1) * length] for i in range(n)]
    if not pool:
        raise ValueError(f"calibration audio shorter than one window of {length} samples")
    loud = [w for w in pool if float(w.abs().max()) > 1e-3] or pool
    pick = np.linspace(0, len(loud) - 1, num=min(count, len(loud))).round().astype(int)
    return [loud[i].reshape(1, 1, length).clone() for i in pick]


# -- an untrained model made exportable -----------------------------------------------------
@torch.no_grad()
def fit_codebooks(model: nn.Module, wavs=None, seed: int = 0, max_frames_per_level: int | None = None) -> nn.Module:
    """k-means codebooks for an untrained model, each level fitted on *different* frames (in place).

    Training does the same on its first batch (``kmeans_init``); without it the random codebooks
    are far from the embeddings and nearly every frame picks the same code. Fitting every level
    on the same frames lets level 0 memorise them when there are few frames per codeword: the
    residuals left for the deeper levels are then ~0 and their codewords collapse onto each other,
    so their codes are decided by float rounding noise. Here level ``i`` is fitted on the residual
    (after levels ``< i``) of its own share of the frames.

    Args:
        model (CodecModel): its ``model.quantizer`` codebooks are replaced.
        wavs: real audio (see :func:`calibration_audio`): paths, int16 / float arrays or tensors
            at the model's rate, or a folder; default :func:`default_calib_wavs`.
        seed (int): seed of the frame shuffle and of k-means++.
        max_frames_per_level (int | None): cap (default ``4 * codebook_size``).

    Returns:
        CodecModel: ``model``.

    Raises:
        ValueError: fewer than ``codebook_size`` frames per level.
    """
    from tinycodec.quantization import squared_distances

    torch.manual_seed(seed)
    model.eval()
    layers = model.quantizer.layers
    k = int(layers[0].embed.shape[0])
    pcms = as_pcm_list(calibration_audio(wavs), model.sample_rate)
    frames = torch.cat([model.encoder(x)[0].T for x in _float_batchless(pcms)])
    per_level = min(frames.shape[0] // len(layers), max_frames_per_level or 4 * k)
    if per_level < k:
        raise ValueError(f"k-means needs {k} frames per level x {len(layers)} levels = "
                         f"{k * len(layers)} frames ({k * len(layers) / model.frame_rate:.0f} s of audio), "
                         f"got {frames.shape[0]}")
    frames = frames[torch.randperm(frames.shape[0])]
    threads = torch.get_num_threads()
    # k-means++ is a Python loop of K tiny ops: with several threads each op pays a thread
    # hand-off that on a busy machine costs far more than the op (measured 75x on 2 cores)
    torch.set_num_threads(1)
    try:
        for i, layer in enumerate(layers):
            residual = frames[i * per_level:(i + 1) * per_level]
            for prev in layers[:i]:
                residual = residual - prev.embed[squared_distances(residual, prev.embed).argmin(1)]
            layer.init_kmeans(residual)
    finally:
        torch.set_num_threads(threads)
    return model


@torch.no_grad()
def prepare_untrained(model: nn.Module, wavs=None, seed: int = 0, kmeans_wavs=None) -> nn.Module:
    """Make a random-weight model a fair stand-in for a trained one in export studies (in place).

    Default init shrinks the signal layer by layer and the biases then dominate: the embeddings
    are a near-constant vector plus ~1e-4 of input-driven variation, which no 8-bit grid can
    resolve. So: every encoder conv bias is zeroed and its weights scaled so that its output has
    unit standard deviation on real audio (LSUV, Mishkin & Matas 2016); with zero biases the
    encoder is positively homogeneous, so a last scaling of its final conv brings the embeddings
    to RMS 1 on all of ``wavs`` exactly, as in a trained model; then the codebooks are k-means
    fitted (:func:`fit_codebooks`). Trained weights need none of this.

    Args:
        model (CodecModel): untrained TinyStream-style model (float encoder).
        wavs: real audio (see :func:`calibration_audio`); default :func:`default_calib_wavs`.
        seed (int): seed of k-means.
        kmeans_wavs: audio for :func:`fit_codebooks` (default ``wavs``); it needs
            ``n_q * codebook_size`` frames.

    Returns:
        CodecModel: ``model``, in eval mode.
    """
    from tinycodec.export.encoder import causal_encoder

    model.eval()
    clips = _float_batchless(as_pcm_list(calibration_audio(wavs), model.sample_rate))
    encoder = causal_encoder(model)  # shares its parameters with model.encoder
    batch = torch.cat(windows(clips, 16 * model.hop_length, 16))  # [16, 1, 16 * hop]
    convs = [m.conv for m in encoder.modules()
             if hasattr(m, "padding") and isinstance(getattr(m, "conv", None), nn.Conv1d)]
    out: dict[str, Tensor] = {}
    for conv in convs:
        handle = conv.register_forward_hook(lambda mod, inp, y: out.__setitem__("y", y))
        if conv.bias is not None:
            conv.bias.zero_()
        encoder(batch)
        handle.remove()
        conv.weight.div_(out.pop("y").std().clamp_min(1e-8))
    z = torch.cat([model.encoder(x)[0].T for x in clips])
    convs[-1].weight.div_(z.pow(2).mean().sqrt().clamp_min(1e-12))
    return fit_codebooks(model, clips if kmeans_wavs is None else kmeans_wavs, seed)


def load_for_export(source, calib_wavs=None, seed: int = 0, kmeans_wavs=None) -> tuple[nn.Module, str]:
    """The model an exporter works on, and a one-line description of it.

    Args:
        source: a model (used as it is), or a spec for :func:`tinycodec.pretrained.load_model`:
            a shipped name or a weights / checkpoint file (trained weights, used as they are), or
            a bare preset name: seeded random weights made exportable by :func:`prepare_untrained`.
        calib_wavs: real audio for :func:`prepare_untrained` (see :func:`calibration_audio`); read
            only for a bare preset.
        seed (int): seed of the random weights and of k-means.
        kmeans_wavs: see :func:`prepare_untrained`.

    Returns:
        tuple: (model in eval mode, description).
    """
    from tinycodec.models import PRESETS
    from tinycodec.pretrained import canonical_name, load_model, shipped_names

    if isinstance(source, nn.Module):
        return source.eval(), f"model {getattr(source, 'model_id', None) or source.family}"
    spec = str(source)
    if canonical_name(spec) in shipped_names():
        return load_model(spec), f"shipped reference model '{spec}' (trained weights)"
    if spec not in PRESETS:
        return load_model(spec), f"weights {spec}"
    model = prepare_untrained(load_model(spec, seed=seed), calib_wavs, seed, kmeans_wavs)
    logger.warning("preset %r exported with random weights (no trained model given)", spec)
    return model, (f"preset '{spec}' with RANDOM weights (seed {seed}; untrained), prepared for export: "
                   "zero biases, unit-variance convs, k-means codebooks")


def export_name(source) -> str:
    """The name an export records for ``source`` (see :func:`load_for_export`): a preset or shipped
    name as given, a file's stem, a model's family."""
    if isinstance(source, nn.Module):
        return getattr(getattr(source, "config", None), "family", "model")
    path = Path(str(source))
    return path.stem if path.suffix in (".pt", ".safetensors") else str(source)
