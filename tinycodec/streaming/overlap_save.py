"""Two ways to run a causal codec on live audio: overlap-save (OaS) and the streaming state.

Overlap-save (the seed package's way) runs the model *offline* on a sliding window::

    input   |--240--|--240--|--240--|--240--| ...
    window  [ old 240 | new 240 ]  -> encode -> decode -> keep the last 240 samples
                      [ old 240 | new 240 ]  -> ...       (the first 240 are "warm-up")

Every window starts from zero state, so each hop the model processes ``window`` samples to emit
``hop`` new ones (2x compute for 480/240), and its output differs from offline because the
model's receptive field (e.g. 2240 samples for transformer_tiny) is cut to ``window`` samples.

The streaming state (``with model.streaming(B):``, moshi style; :func:`run_streaming`) keeps the conv states and the KV
caches between calls: each input sample and each code frame is processed once, and the output
equals the offline output (up to float rounding). Both emit a hop as soon as it is complete, so
their algorithmic latency is the same: one hop.

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

__all__ = ["OverlapSave", "overlap_save", "run_streaming", "compare_stream_modes"]


def _model(codec_or_model):
    """A CodecModel from a CodecModel or a TinyCodec."""
    return getattr(codec_or_model, "model", codec_or_model)


class OverlapSave:
    """Push-style overlap-save: ``push(hop samples) -> hop reconstructed samples``.

    ``push`` is the two sides of a link in one call: :meth:`encode` (device: the window's codes)
    then :meth:`decode` (server: the window's last ``hop`` samples).

    Args:
        codec_or_model: a :class:`tinycodec.TinyCodec` or a ``CodecModel``.
        window (int | None): samples per model call (default ``2 * hop_length``; 480 for the
            transformer codec); a multiple of the model's ``hop_length``.
        hop (int | None): new samples per call (default ``hop_length``); a multiple of
            ``hop_length``, smaller than ``window``.
        batch_size (int): B parallel streams.

    Attributes:
        samples_processed (int): input samples the model has encoded (per stream), for compute counts.
    """

    def __init__(self, codec_or_model, window: int | None = None, hop: int | None = None,
                 batch_size: int = 1) -> None:
        self.model = _model(codec_or_model)
        h = self.model.hop_length
        self.window = 2 * h if window is None else int(window)
        self.hop = h if hop is None else int(hop)
        if self.window % h or self.hop % h or not 0 < self.hop < self.window:
            raise ValueError(f"window ({self.window}) and hop ({self.hop}) must be multiples of the model's "
                             f"hop_length={h} with 0 < hop < window: a window that is not a whole number of "
                             "frames would be zero-padded at its end, and the kept samples would depend on it")
        self.batch_size = batch_size
        self.reset()

    def reset(self) -> None:
        """Start a new stream: the history is zeros, as at the start of an offline run."""
        p = next(self.model.parameters())
        self.buffer = p.new_zeros(self.batch_size, 1, self.window - self.hop)
        self.samples_processed = 0

    @torch.no_grad()
    def encode(self, chunk: Tensor) -> Tensor:
        """Device side. Args: chunk (Tensor): [B, 1, hop] new input. Returns: Tensor: codes
        [B, n_q, window / hop_length] of the window that ends with ``chunk``."""
        if chunk.shape != (self.batch_size, 1, self.hop):
            raise ValueError(f"push() takes [B, 1, hop] = {(self.batch_size, 1, self.hop)}, got {tuple(chunk.shape)}")
        window = torch.cat([self.buffer, chunk.to(self.buffer)], dim=-1)  # [B, 1, window]
        self.samples_processed += self.window
        self.buffer = window[..., self.hop:]
        return self.model.encode(window)  # offline: fresh zero state

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """Server side. Args: codes (Tensor): what :meth:`encode` returned. Returns: Tensor: [B, 1, hop]."""
        return self.model.decode(codes)[..., -self.hop:]  # the first window - hop samples are warm-up

    def push(self, chunk: Tensor) -> Tensor:
        """Args: chunk (Tensor): [B, 1, hop] new input. Returns: Tensor: [B, 1, hop] output."""
        return self.decode(self.encode(chunk))


def _as_batch(wav: Tensor) -> tuple[Tensor, int]:
    if wav.dim() == 1:
        wav = wav[None, None]
    elif wav.dim() == 2:
        wav = wav[:, None]
    if wav.dim() != 3 or wav.shape[1] != 1:
        raise ValueError(f"wav must be (T,), (B, T) or [B, 1, T], got shape {tuple(wav.shape)}")
    return wav, wav.shape[-1]


def _pad(wav: Tensor, multiple: int) -> Tensor:
    extra = (-wav.shape[-1]) % multiple
    return torch.nn.functional.pad(wav, (0, extra)) if extra else wav


@torch.no_grad()
def overlap_save(codec_or_model, wav: Tensor, window: int | None = None, hop: int | None = None) -> Tensor:
    """Stream ``wav`` through :class:`OverlapSave` and return the reconstruction.

    Args:
        codec_or_model: TinyCodec or CodecModel.
        wav (Tensor): (T,), (B, T) or [B, 1, T] float in [-1, 1].
        window, hop: see :class:`OverlapSave` (480 / 240 for the transformer codec).

    Returns:
        Tensor: [B, 1, T], aligned with the input (output sample t is emitted with input sample t).
    """
    wav, T = _as_batch(wav)
    streamer = OverlapSave(codec_or_model, window, hop, wav.shape[0])
    chunks = _pad(wav, streamer.hop).split(streamer.hop, dim=-1)
    return torch.cat([streamer.push(c) for c in chunks], dim=-1)[..., :T]


@torch.no_grad()
def run_streaming(codec_or_model, wav: Tensor, chunk: int | None = None) -> Tensor:
    """Run ``wav`` through the model in streaming mode (``model.streaming(B)``), ``chunk`` samples a call.

    Args:
        codec_or_model: TinyCodec or CodecModel.
        wav (Tensor): (T,), (B, T) or [B, 1, T].
        chunk (int | None): samples per call, a multiple of ``hop_length`` (default one hop).

    Returns:
        Tensor: [B, 1, T]; equal to ``model.decode(model.encode(wav))`` up to float rounding.
    """
    model = _model(codec_or_model)
    wav, T = _as_batch(wav)
    chunk = model.hop_length if chunk is None else int(chunk)
    if chunk % model.hop_length or chunk <= 0:
        raise ValueError(f"chunk ({chunk}) must be a positive multiple of hop_length={model.hop_length}")
    wav = _pad(wav, model.hop_length).to(next(model.parameters()))
    with model.streaming(wav.shape[0]):  # a delayed decoder's lag dropped, its held-back end flushed
        out = list(model.align_stream(model.decode(model.encode(c)) for c in wav.split(chunk, dim=-1)))
    return torch.cat(out, dim=-1)[..., :T]


def stateful_stream(codec_or_model, wav: Tensor, chunk: int | None = None) -> Tensor:
    """Deprecated name of :func:`run_streaming` ("stream" is the pipeline's word)."""
    import warnings

    warnings.warn("tinycodec.streaming.overlap_save.stateful_stream is deprecated: use run_streaming",
                  DeprecationWarning, stacklevel=2)
    return run_streaming(codec_or_model, wav, chunk)


def _model_macs_per_second(model) -> float:
    if hasattr(model, "macs_per_second"):
        return float(sum(model.macs_per_second().values()))
    from tinycodec.models.summary import summary

    s = summary(model)
    return float(s.macs_encoder + s.macs_search + s.macs_decoder)


@torch.no_grad()
def compare_stream_modes(codec_or_model, wav: Tensor, window: int | None = None, hop: int | None = None,
                         repeats: int = 1) -> dict:
    """Overlap-save against the streaming state on ``wav``: compute, latency, RTF, and output error.

    Compute is counted, not timed: input samples (and code frames) the model processes per second
    of audio; MACs/s scale the model's one-pass MACs/s by that ratio (an estimate: for the
    transformer, attention over a 2-frame OaS window is cheaper than over the full context).

    Args:
        codec_or_model: TinyCodec or CodecModel (eval mode).
        wav (Tensor): (T,), (B, T) or [B, 1, T].
        window, hop: overlap-save geometry (default ``2 * hop_length`` / ``hop_length``).
        repeats (int): timing repeats; the fastest is reported (shared machines are noisy).

    Returns:
        dict: ``{"overlap_save": {...}, "stateful": {...}, "compute_ratio_stateful_over_oas": ...}``,
        each mode with ``samples_processed_per_second``, ``macs_per_second``,
        ``algorithmic_latency_ms``, ``rtf``, ``max_abs_diff_vs_offline``, ``snr_vs_offline_db``.
    """
    model = _model(codec_or_model)
    wav, T = _as_batch(wav)
    wav = _pad(wav, model.hop_length).to(next(model.parameters()))
    sr, audio_s = model.sample_rate, wav.shape[-1] / model.sample_rate
    offline = model.decode(model.encode(wav))
    one_pass = _model_macs_per_second(model)
    streamer = OverlapSave(model, window, hop, wav.shape[0])

    def timed(fn):
        best, out = float("inf"), None
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t0)
        return out, best

    def report(out: Tensor, processed: float, latency: int, seconds: float) -> dict:
        err = out - offline
        snr = 10 * torch.log10(offline.pow(2).sum() / err.pow(2).sum().clamp_min(1e-20))
        ratio = processed / wav.shape[-1]
        return {"samples_processed_per_second": ratio * sr, "compute_ratio_vs_offline": ratio,
                "macs_per_second": ratio * one_pass, "algorithmic_latency_ms": 1000.0 * latency / sr,
                "rtf": seconds / audio_s, "max_abs_diff_vs_offline": float(err.abs().max()),
                "snr_vs_offline_db": float(snr)}

    def run_oas():
        streamer.reset()
        return overlap_save(model, wav, streamer.window, streamer.hop)

    oas_out, oas_t = timed(run_oas)
    oas_processed = streamer.window * (wav.shape[-1] // streamer.hop)  # every push encodes a whole window
    st_out, st_t = timed(lambda: run_streaming(model, wav))
    result = {
        "model": getattr(model, "model_id", model.family), "family": model.family,
        "sample_rate": sr, "hop_length": model.hop_length, "audio_seconds": audio_s,
        "batch_size": wav.shape[0], "one_pass_macs_per_second": one_pass,
        "overlap_save": dict(report(oas_out, oas_processed, streamer.hop, oas_t),
                             window=streamer.window, hop=streamer.hop),
        "stateful": dict(report(st_out, wav.shape[-1], model.hop_length, st_t), chunk=model.hop_length),
    }
    result["compute_ratio_stateful_over_oas"] = (result["stateful"]["compute_ratio_vs_offline"]
                                                 / result["overlap_save"]["compute_ratio_vs_offline"])
    result["rtf_ratio_stateful_over_oas"] = result["stateful"]["rtf"] / result["overlap_save"]["rtf"]
    return result
