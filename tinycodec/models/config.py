"""Model configs (dataclasses) and the named presets.

A config round-trips through ``dataclasses.asdict`` (plain ints, floats, lists), so a
checkpoint stores ``(family, asdict(config))`` and :func:`tinycodec.models.build_model`
rebuilds the model without other arguments.

Notebook: book/02_architecture.md
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

# encoders a config can name (see tinycodec.models.base.CodecModel)
ENCODERS = {"seanet": "SEANet convs on the waveform (book chapter 02; the firmware's int8 encoder)",
            "stft": "causal log power spectrum (one FFT per frame), then frame-rate layers of width 16 C"}
# decoders a config can name (see tinycodec.models.base.make_decoder)
DECODERS = {"mirror": "SEANet mirror of the encoder (book chapter 02)",
            "server": "frame-rate ConvNeXt blocks + causal iSTFT head (Vocos-style, 1-5 M parameters)"}


@dataclass
class CodecConfig:
    """Fields shared by both families (defaults are SoundStream's paper configuration)."""

    family: ClassVar[str] = ""
    C: int = 32  # base channels; encoder block i has C * 2**(i+1)
    D: int = 512  # embedding dimension (quantizer input)
    strides: list[int] = field(default_factory=lambda: [2, 4, 5, 8])  # hop_length = prod(strides)
    num_quantizers: int = 8  # N_q residual quantizers
    codebook_size: int = 1024  # K codes per quantizer (log2 K bits each)
    sample_rate: int = 24000  # Hz
    dilations: list[int] = field(default_factory=lambda: [1, 3, 9])  # one residual unit per entry
    kernel_size: int = 7  # first conv and residual-unit kernels
    activation: str = "elu"  # "elu" | "relu"
    separable: bool = False  # depthwise-separable convs
    quantizer_dropout: bool = True  # n_q ~ U{1..N_q} per example in training
    ema_decay: float = 0.99  # codebook EMA decay
    kmeans_init: bool = True  # k-means on the first training batch
    kmeans_iters: int = 10
    threshold_ema_dead_code: float = 2.0  # fewer uses than this within the window -> code re-seeded
    dead_code_window: float = 32.0  # that window, in frames per code (32 * codebook_size frames)
    # the two halves of the asymmetric codec, chosen independently
    encoder: str = "seanet"  # "seanet": SEANet convs on the waveform | "stft": FFT frontend + frame-rate layers
    encoder_int8: bool = False  # encoder computed in the firmware's exact int8 arithmetic (ReLU models)
    decoder: str = "mirror"  # "mirror": SEANet mirror of the encoder | "server": ConvNeXt + iSTFT head
    decoder_dim: int = 256  # server decoder: ConvNeXt width
    decoder_layers: int = 8  # server decoder: ConvNeXt blocks
    decoder_n_fft: int = 0  # server decoder: FFT size of its head (0: 2 * hop_length)
    # server decoder: frames its output lags the codes. 0: frame f's synthesis window starts at block f, so
    # each block is mostly drawn from frames that have not heard it; d >= 1 lets frames up to f + d shape
    # block f, at d hops of latency (d = n_fft / hop - 1: no window reaches past what its frame heard).
    # Measured on tiny's frozen codes, 3000 steps each: d=1, n_fft=2 hops beat d=0, n_fft=4 hops (the
    # first server decoders) on validation mel, PESQ-WB and STOI (book chapter 04).
    decoder_delay: int = 1

    def __post_init__(self) -> None:
        self.strides = [int(s) for s in self.strides]
        self.dilations = [int(d) for d in self.dilations]
        if self.codebook_size < 2 or self.codebook_size & (self.codebook_size - 1):
            raise ValueError(f"codebook_size must be a power of two >= 2, got {self.codebook_size}")
        if min(self.C, self.D, self.num_quantizers, *self.strides) < 1:
            raise ValueError("C, D, num_quantizers and strides must be positive")
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r}; choose from {list(ENCODERS)}")
        if self.decoder not in DECODERS:
            raise ValueError(f"unknown decoder {self.decoder!r}; choose from {list(DECODERS)}")
        n_fft = self.server_n_fft
        if not 0 <= self.decoder_delay * self.hop_length <= n_fft - self.hop_length:
            raise ValueError(f"decoder_delay={self.decoder_delay} frames must lie in 0..{n_fft // self.hop_length - 1} "
                             f"(the head's window of n_fft={n_fft} spans {n_fft // self.hop_length} hops)")
        if self.encoder_int8 and self.activation != "relu":
            raise ValueError("encoder_int8 needs activation='relu' (the int8 arithmetic has no ELU)")

    @property
    def hop_length(self) -> int:
        """Samples per frame: the product of the strides."""
        return math.prod(self.strides)

    @property
    def server_n_fft(self) -> int:
        """The server decoder's FFT size: ``decoder_n_fft``, or two hops."""
        return self.decoder_n_fft or 2 * self.hop_length

    @property
    def frame_rate(self) -> float:
        """Frames (code vectors) per second."""
        return self.sample_rate / self.hop_length

    def bitrate(self, n_q: int | None = None) -> float:
        """Bits per second at ``n_q`` quantizers (default all): ``n_q * log2(K) * frame_rate``."""
        n_q = self.num_quantizers if n_q is None else n_q
        return n_q * math.log2(self.codebook_size) * self.frame_rate


@dataclass
class SoundStreamConfig(CodecConfig):
    """SoundStream (Zeghidour et al. 2021): standard convs, ELU, 3 residual units per block."""

    family: ClassVar[str] = "soundstream"


@dataclass
class TinyStreamConfig(CodecConfig):
    """TinyStream: depthwise-separable convs, ReLU, 1 residual unit, fixed quantizers."""

    family: ClassVar[str] = "tinystream"
    C: int = 8
    D: int = 128
    strides: list[int] = field(default_factory=lambda: [4, 4, 4, 4])
    num_quantizers: int = 4
    codebook_size: int = 512
    sample_rate: int = 16000
    dilations: list[int] = field(default_factory=lambda: [1])
    activation: str = "relu"
    separable: bool = True
    quantizer_dropout: bool = False


CONFIG_CLASSES: dict[str, type[CodecConfig]] = {"soundstream": SoundStreamConfig, "tinystream": TinyStreamConfig}

PRESETS: dict[str, CodecConfig] = {
    # TinyStream (16 kHz, hop 256 -> 62.5 Hz frames)
    "ultra_tiny": TinyStreamConfig(C=4, D=64, num_quantizers=2, codebook_size=256),  # 1.0 kbps
    "tiny": TinyStreamConfig(C=8, D=128, num_quantizers=4, codebook_size=512),  # 2.25 kbps
    "small": TinyStreamConfig(C=12, D=192, num_quantizers=4, codebook_size=1024),  # 2.5 kbps
    # SoundStream (24 kHz, hop 320 -> 75 Hz frames, 8 x 1024 -> 6 kbps)
    "soundstream_tiny": SoundStreamConfig(C=16, D=256),
    "soundstream_small": SoundStreamConfig(C=16, D=512),
    "soundstream_base": SoundStreamConfig(C=32, D=512),
    # 16 kHz SoundStream for the reference model, slimmed to train on CPUs and ship in < 4 MB:
    # hop 320 -> 50 Hz frames, 6 x 1024 -> 3 kbps at full depth (quantizer dropout: 0.5-3 kbps)
    "soundstream_16k": SoundStreamConfig(C=8, D=128, num_quantizers=6, sample_rate=16000),
}


def list_presets(family: str | None = None) -> list[str]:
    """Preset names, optionally only those of ``family`` ("soundstream" / "tinystream")."""
    return [name for name, cfg in PRESETS.items() if family is None or cfg.family == family]


def get_preset(name: str) -> CodecConfig:
    """A fresh copy of preset ``name``'s config."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {list(PRESETS)}")
    cfg = PRESETS[name]
    return type(cfg)(**config_to_dict(cfg))


def upgrade_config_dict(config_dict: dict) -> dict:
    """A stored config with the meaning it was trained with, under today's defaults: server decoders
    saved before ``decoder_delay`` existed had no delay and a 4-hop FFT (their shipped weights need it)."""
    d = dict(config_dict)
    if d.get("decoder") == "server" and "decoder_delay" not in d:
        d["decoder_delay"] = 0
        d["decoder_n_fft"] = d.get("decoder_n_fft") or 4 * math.prod(d.get("strides") or [1])
    return d


def config_to_dict(config: CodecConfig) -> dict:
    """``dataclasses.asdict`` (plain types, JSON-ready)."""
    from dataclasses import asdict

    return asdict(config)
