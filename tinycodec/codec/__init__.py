"""``TinyCodec``: the small numpy-friendly API of the streaming chapter (and of the seed package).

::

    codec = TinyCodec(model_path="runs/x/checkpoints/last.pt")    # or a .safetensors, or a preset
    indices = codec.encode_audio(chunk)              # chunk (L,) or (B, L) -> [ (B, F) ] * n_q
    audio = codec.decode_audio(indices, original_length=L)          # (L,) or (B, L) tensor

Works for every model family (tinystream, soundstream, transformer): the device sends the integer
arrays, the server decodes them. Each call starts from a fresh streaming state and runs the model
a chunk of frames at a time (memory bounded by the chunk, results equal to one offline call), and
refuses inputs longer than ``max_seconds`` with ``LimitError``. For chunk-by-chunk use across calls
see :mod:`tinycodec.streaming.overlap_save`: overlap-save, and ``run_streaming`` (the model's
streaming state, ``model.streaming(B)``).

Notebook: book/06_streaming.md
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from tinycodec.bitstream.chunked import CHUNK_FRAMES, DEFAULT_MAX_SECONDS
from tinycodec.bitstream.errors import LimitError

__all__ = ["TinyCodec", "DEFAULT_MODEL"]

DEFAULT_MODEL = "tinycodec"  # the flagship: spectral int8 encoder, 5 codebooks (2.81 kbit/s; n_q=4: 2.25)


class TinyCodec:
    """Encoder + decoder of one model behind an array-in, integer-arrays-out API.

    Args:
        model_path (str | Path | None): a training checkpoint (``.pt``), a weights file
            (``.safetensors``), a shipped model name or a preset name (random weights; see
            :func:`tinycodec.pretrained.load_model`). ``None``: :data:`DEFAULT_MODEL`, the shipped
            ``"tinycodec"`` (RuntimeError in an install that ships none); ``"transformer_tiny"`` is the
            TinyTransformerCodec.
        device (str | torch.device): where the model runs.
        n_q (int | None): codebooks to send (default all).
        max_seconds (float | None): longest audio (or indices) one call accepts (None: no limit).

    Attributes:
        model (CodecModel): the loaded model, eval mode.
    """

    def __init__(self, model_path: str | Path | None = None, device: str | torch.device = "cpu",
                 n_q: int | None = None, max_seconds: float | None = DEFAULT_MAX_SECONDS) -> None:
        from tinycodec.pretrained import list_pretrained, load_model

        if model_path is None:
            if DEFAULT_MODEL not in list_pretrained():
                raise RuntimeError(
                    f"no shipped reference {DEFAULT_MODEL!r} model in this install (shipped: "
                    f"{', '.join(list_pretrained()) or 'none'}); pass model_path=: a checkpoint written by "
                    "`tinycodec train --model transformer`, a .safetensors from tinycodec.export_weights, "
                    "or a preset name (random weights)")
            model_path = DEFAULT_MODEL
        self.model = load_model(str(model_path)).to(device).eval()
        self._device = torch.device(device)
        self.max_seconds = max_seconds
        self.n_q = self.model.num_quantizers if n_q is None else int(n_q)
        if not 1 <= self.n_q <= self.model.num_quantizers:
            raise ValueError(f"n_q must be in [1, {self.model.num_quantizers}], got {n_q}")

    # -- properties ----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    @property
    def hop_length(self) -> int:
        """Samples per code frame: ``encode_audio`` of L samples gives ``ceil(L / hop_length)`` frames."""
        return self.model.hop_length

    @property
    def num_codebooks(self) -> int:
        return self.n_q

    @property
    def codebook_size(self) -> int:
        return self.model.config.codebook_size

    def __repr__(self) -> str:
        return (f"TinyCodec({getattr(self.model, 'model_id', self.model.family)!r}, family={self.model.family}, "
                f"{self.sample_rate} Hz, hop {self.hop_length}, {self.n_q} x {self.codebook_size}, "
                f"device={self.device})")

    # -- validation -----------------------------------------------------------------------
    def _as_audio(self, chunk) -> tuple[Tensor, bool]:
        """(L,) or (B, L) array/tensor -> ([B, 1, L] float32 on device, was_1d)."""
        if isinstance(chunk, np.ndarray):
            chunk = torch.from_numpy(chunk)
        if not isinstance(chunk, Tensor):
            raise TypeError(f"audio must be a torch.Tensor or numpy array, got {type(chunk).__name__}")
        if not chunk.is_floating_point():
            raise TypeError(f"audio must be floating point in [-1, 1], got dtype {chunk.dtype}; "
                            "convert int16 PCM with x / 32768")
        if chunk.dim() not in (1, 2):
            raise ValueError(f"audio must be (L,) or (B, L), got shape {tuple(chunk.shape)}")
        if chunk.shape[-1] == 0 or chunk.shape[0] == 0:
            raise ValueError(f"audio is empty: shape {tuple(chunk.shape)}")
        if not torch.isfinite(chunk).all():
            raise ValueError("audio contains NaN or Inf")
        was_1d = chunk.dim() == 1
        wav = chunk.reshape(1 if was_1d else chunk.shape[0], 1, chunk.shape[-1])
        return wav.to(device=self.device, dtype=torch.float32), was_1d

    def _as_codes(self, indices_list) -> Tensor:
        """List of n (B, F) or (F,) integer arrays -> LongTensor [B, n, F] on device."""
        if isinstance(indices_list, (np.ndarray, Tensor)) or not isinstance(indices_list, (list, tuple)):
            raise TypeError("indices_list must be a list with one integer array per codebook "
                            f"(as encode_audio returns), got {type(indices_list).__name__}")
        n = len(indices_list)
        if not 1 <= n <= self.model.num_quantizers:
            raise ValueError(f"got {n} codebook arrays; this model has {self.model.num_quantizers} codebooks "
                             f"(send 1..{self.model.num_quantizers}, coarse to fine)")
        arrays = []
        for i, a in enumerate(indices_list):
            a = torch.as_tensor(np.asarray(a) if not isinstance(a, Tensor) else a)
            if a.is_floating_point() or a.is_complex() or a.dtype == torch.bool:
                raise TypeError(f"codebook {i}: indices must be integers, got dtype {a.dtype}")
            if a.dim() == 1:
                a = a[None]
            if a.dim() != 2:
                raise ValueError(f"codebook {i}: indices must be (B, F) or (F,), got shape {tuple(a.shape)}")
            arrays.append(a.long())
        if any(a.shape != arrays[0].shape for a in arrays):
            raise ValueError(f"codebook arrays differ in shape: {[tuple(a.shape) for a in arrays]}")
        codes = torch.stack(arrays, dim=1)
        if codes.shape[-1] == 0:
            raise ValueError("indices are empty (0 frames)")
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi >= self.codebook_size:
            raise ValueError(f"indices out of range [0, {self.codebook_size}): min {lo}, max {hi}")
        return codes.to(self.device)

    def _check_seconds(self, samples: int, what: str) -> None:
        if self.max_seconds is not None and samples > self.max_seconds * self.sample_rate + self.hop_length:
            raise LimitError(f"{what} of {samples / self.sample_rate:.1f} s exceed max_seconds={self.max_seconds:g}")

    # -- codec ------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_audio(self, chunk) -> list[np.ndarray]:
        """Encode audio to integer tokens.

        Args:
            chunk (Tensor | np.ndarray): (L,) or (B, L) float in [-1, 1] at ``sample_rate``; L is
                zero-padded to a multiple of ``hop_length``.

        Returns:
            list[np.ndarray]: ``n_q`` int64 arrays (coarse to fine), each (B, ceil(L / hop_length));
            B = 1 for a (L,) input.
        """
        wav, _ = self._as_audio(chunk)
        self._check_seconds(wav.shape[-1], "audio")
        hop, step = self.hop_length, CHUNK_FRAMES * self.hop_length
        wav = torch.nn.functional.pad(wav, (0, -wav.shape[-1] % hop))  # as the offline encode pads
        with self.model.streaming(wav.shape[0]):
            codes = torch.cat([self.model.encode(wav[..., i:i + step], self.n_q)
                               for i in range(0, wav.shape[-1], step)], dim=-1)  # [B, n_q, F]
        return [c.cpu().numpy() for c in codes.unbind(1)]

    @torch.no_grad()
    def decode_audio(self, indices_list, original_length: int | None = None, squeeze: bool = True) -> Tensor:
        """Decode integer tokens to audio.

        Args:
            indices_list (list): 1..n_q integer arrays/tensors (coarse to fine), each (B, F) or (F,).
            original_length (int | None): trim to this many samples (at most F * hop_length).
            squeeze (bool): return (L,) when B == 1 (the seed API's round trip); False keeps (B, L).

        Returns:
            Tensor: (L,) or (B, L) float on ``device``.
        """
        codes = self._as_codes(indices_list)
        full = codes.shape[-1] * self.hop_length
        if original_length is not None and not 0 < int(original_length) <= full:
            raise ValueError(f"original_length must be in [1, {full}] for {codes.shape[-1]} frames, "
                             f"got {original_length}")
        self._check_seconds(full, "indices")
        with self.model.streaming(codes.shape[0]):  # aligned: a delayed server decoder's lag removed
            pieces = (self.model.decode(codes[..., i:i + CHUNK_FRAMES]) for i in range(0, codes.shape[-1], CHUNK_FRAMES))
            wav = torch.cat(list(self.model.align_stream(pieces)), dim=-1)[:, 0]
        if original_length is not None:
            wav = wav[:, : int(original_length)]
        return wav[0] if squeeze and wav.shape[0] == 1 else wav
