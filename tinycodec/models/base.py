"""The codec model: encoder -> residual VQ -> decoder, with one API for both families.

Notebook: book/02_architecture.md
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from tinycodec.models.config import CONFIG_CLASSES, CodecConfig, get_preset, upgrade_config_dict
from tinycodec.modules import SEANetDecoder, SEANetEncoder, StreamingModule, pad_to_multiple
from tinycodec.modules.int8_exact import Int8ExactEncoder
from tinycodec.modules.server_decoder import ServerDecoder
from tinycodec.modules.spectral_encoder import SpectralEncoder
from tinycodec.quantization import QuantizerStats, ResidualVectorQuantizer


@dataclass
class CodecOutput:
    """What ``model(wav)`` returns.

    Attributes:
        reconstruction (Tensor): [B, 1, T] decoded audio (trimmed to the input length).
        codes (Tensor): LongTensor [B, n, F]; ``-1`` where quantizer dropout dropped a level.
        commitment_loss (Tensor): scalar, summed over quantizers.
        stats (QuantizerStats): per-quantizer usage, perplexity, commitment and per-example n_q.
    """

    reconstruction: Tensor
    codes: Tensor
    commitment_loss: Tensor
    stats: QuantizerStats

    @property
    def losses(self) -> dict[str, Tensor]:
        """``{"commitment": ...}``: the losses the model itself defines."""
        return {"commitment": self.commitment_loss}


class CodecModel(StreamingModule):
    """Base class of SoundStream and TinyStream.

    Construct from a config or from its fields: ``TinyStream(C=8, D=128, ...)``,
    ``TinyStream(config=TinyStreamConfig())`` or ``TinyStream.from_preset("tiny")``.

    Attributes:
        encoder (SEANetEncoder): [B, 1, T] -> [B, D, F].
        quantizer (ResidualVectorQuantizer): ``quantizer(z) -> (quantized, codes, commitment_loss)``.
        decoder (SEANetDecoder): [B, D, F] -> [B, 1, F * hop_length].
        config (CodecConfig): dataclass; ``asdict`` round-trips it.
    """

    config_class: ClassVar[type[CodecConfig]] = CodecConfig
    family: ClassVar[str] = ""

    def __init__(self, config: CodecConfig | None = None, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = self.config_class(**kwargs)
        elif kwargs:
            raise TypeError("pass either config or keyword fields, not both")
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        arch = dict(C=config.C, D=config.D, strides=config.strides, dilations=config.dilations,
                    kernel_size=config.kernel_size, activation=config.activation, separable=config.separable)
        if config.encoder == "stft":
            encoder = SpectralEncoder(16 * config.C, config.D, config.hop_length, config.activation, config.separable)
        else:
            encoder = SEANetEncoder(**arch)
        self.encoder = Int8ExactEncoder(encoder) if config.encoder_int8 else encoder
        self.decoder = make_decoder(config)
        self.quantizer = ResidualVectorQuantizer(
            config.D, config.num_quantizers, config.codebook_size, config.quantizer_dropout,
            decay=config.ema_decay, kmeans_init=config.kmeans_init, kmeans_iters=config.kmeans_iters,
            threshold_ema_dead_code=config.threshold_ema_dead_code, dead_code_window=config.dead_code_window)

    # -- construction ----------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str) -> CodecModel:
        """Build preset ``name`` (see ``tinycodec.models.list_presets()``); on a subclass
        only that family's presets are accepted."""
        config = get_preset(name)
        model_cls = MODEL_CLASSES[config.family]
        if cls is not CodecModel and model_cls is not cls:
            raise ValueError(f"preset {name!r} is a {config.family} preset, not {cls.family}")
        return model_cls(config=config)

    # -- properties ------------------------------------------------------------------
    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def num_quantizers(self) -> int:
        return self.config.num_quantizers

    def bitrate(self, n_q: int | None = None) -> float:
        """Bits per second with ``n_q`` quantizers (default all)."""
        return self.config.bitrate(n_q)

    @property
    def delay(self) -> int:
        """Samples by which the decoder's output lags the input (``decoder_delay`` hops; 0 for the mirror).
        Offline calls remove it; a stream hears it as latency (see :mod:`tinycodec.modules.server_decoder`)."""
        return getattr(self.decoder, "delay", 0)

    def synthesize(self, quantized: Tensor) -> Tensor:
        """Quantized embeddings [B, D, F] -> audio [B, 1, F * hop_length], aligned with the input offline.

        Streaming returns the decoder's output as it comes (``delay`` samples late). Offline a delayed
        decoder's output is shifted back by ``delay``; its last ``delay`` samples would need frames
        after the last one and hold what the frames given contribute (a short fade at a file's end)."""
        if self.delay == 0 or self.decoder.is_streaming:  # (a BatchDecoder streams the decoder alone)
            return self.decoder(quantized)
        n = quantized.shape[-1] * self.hop_length
        return self.decoder(quantized, tail=True)[..., self.delay: self.delay + n]

    def flush(self) -> Tensor:
        """In a stream, after the last frame: the ``delay`` samples the decoder still holds back,
        [B, 1, delay] (empty for an undelayed decoder). Streamed output minus its first ``delay``
        samples, plus these, equals the offline output."""
        if not self.is_streaming:
            raise RuntimeError("flush() is for a stream (inside model.streaming()); offline decode returns every sample")
        if self.delay == 0:
            return next(self.parameters()).new_zeros(self._streaming_state.batch_size, 1, 0)
        return self.decoder.flush()

    def align_stream(self, pieces: Iterable[Tensor]) -> Iterator[Tensor]:
        """In a stream: consecutive decoded pieces [B, 1, L_i] -> the same audio aligned with the input.

        Drops the first ``delay`` samples (the lag of a delayed server decoder) and, after the last
        piece, yields the ``delay`` samples it held back (:meth:`flush`), so the pieces together equal
        the offline decode. For an undelayed decoder the pieces pass through unchanged.
        """
        lag = self.delay
        for wav in pieces:
            skip = min(lag, wav.shape[-1])
            lag -= skip
            yield wav[..., skip:]
        if self.delay:
            yield self.flush()[..., lag:]

    def config_dict(self) -> dict:
        """``asdict(self.config)``: with ``self.family``, enough to rebuild the model."""
        return asdict(self.config)

    # -- codec API ---------------------------------------------------------------------
    def _check_wav(self, wav: Tensor) -> Tensor:
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"wav must be [B, 1, T], got shape {tuple(wav.shape)}")
        if self.is_streaming:
            if wav.shape[-1] % self.hop_length:
                raise ValueError(f"streaming input length {wav.shape[-1]} is not a multiple of "
                                 f"hop_length={self.hop_length}; buffer the input first")
            return wav
        return pad_to_multiple(wav, self.hop_length)  # offline: zero-pad the last partial frame

    def pad_for_delay(self, wav: Tensor) -> Tensor:
        """Offline training input: ``wav`` [B, 1, T] with ``delay`` zeros appended, so that frames exist
        for every input sample's delayed output (no end fade in the loss), padded to whole frames."""
        return self._check_wav(F.pad(wav, (0, self.delay)) if self.delay else wav)

    def encode(self, wav: Tensor, n_q: int | None = None) -> Tensor:
        """Args:
            wav (Tensor): [B, 1, T] float in [-1, 1]; offline T is zero-padded to a multiple
                of ``hop_length``; streaming T must be a multiple (ValueError otherwise).
            n_q (int | None): number of quantizers (default all).

        Returns:
            LongTensor: codes [B, n_q, ceil(T / hop_length)].
        """
        return self.quantizer.encode(self.encoder(self._check_wav(wav)), n_q)

    def decode(self, codes: Tensor, length: int | None = None) -> Tensor:
        """Args:
            codes (LongTensor): [B, n, F], ``n <= num_quantizers`` (first ``n`` levels).
            length (int | None): trim the output to this many samples.

        Returns:
            Tensor: [B, 1, F * hop_length] (or [B, 1, length]).
        """
        wav = self.synthesize(self.quantizer.decode(codes))
        return wav if length is None else wav[..., :length]

    def forward(self, wav: Tensor, n_q: int | None = None) -> CodecOutput:
        """Training/evaluation pass (offline only).

        Args:
            wav (Tensor): [B, 1, T] float in [-1, 1].
            n_q (int | None): fixed number of quantizers (default: dropout in training for
                SoundStream, all otherwise).
        """
        length = wav.shape[-1]
        z = self.encoder(self.pad_for_delay(wav))
        quantized, codes, commitment = self.quantizer(z, n_q)
        recon = self.synthesize(quantized)[..., :length]
        return CodecOutput(recon, codes, commitment, self.quantizer.last_stats)


def make_decoder(config: CodecConfig) -> StreamingModule:
    """The decoder ``config.decoder`` names: ``"mirror"`` (SEANet, mirrors the encoder) or ``"server"``
    (:class:`~tinycodec.modules.server_decoder.ServerDecoder`). Both map [B, D, F] -> [B, 1, F * hop]."""
    if config.decoder == "server":
        geometry = config.server_geometry
        return ServerDecoder(config.D, config.hop_length, config.decoder_dim, config.decoder_layers,
                             geometry.n_fft, delay=geometry.delay, head=config.decoder_head,
                             sample_rate=config.sample_rate)
    return SEANetDecoder(C=config.C, D=config.D, strides=config.strides, dilations=config.dilations,
                         kernel_size=config.kernel_size, activation=config.activation, separable=config.separable)


MODEL_CLASSES: dict[str, type[CodecModel]] = {}


def register_model(cls: type[CodecModel]) -> type[CodecModel]:
    """Class decorator: make ``cls`` reachable by its ``family`` name."""
    MODEL_CLASSES[cls.family] = cls
    return cls


def build_model(family: str, config_dict: dict) -> CodecModel:
    """Rebuild a model from ``model.family`` and ``asdict(model.config)`` (e.g. from a checkpoint).

    Raises:
        ValueError: unknown family, or a size-bearing field beyond its cap (checked before any module
            is built, see :meth:`CodecConfig.check_limits`).
    """
    # the families register themselves: ``tinycodec.models`` imports every family module, and
    # importing this module runs that package first
    if family not in MODEL_CLASSES:
        raise ValueError(f"unknown model family {family!r}; choose from {sorted(MODEL_CLASSES)}")
    CONFIG_CLASSES[family].check_limits(config_dict)  # before anything reads the sizes (the upgrade multiplies strides)
    return MODEL_CLASSES[family](config=CONFIG_CLASSES[family](**upgrade_config_dict(config_dict)))
