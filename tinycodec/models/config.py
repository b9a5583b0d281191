"""Model configs (dataclasses) and the named presets.

A config round-trips through ``dataclasses.asdict`` (plain ints, floats, lists), so a
checkpoint stores ``(family, asdict(config))`` and :func:`tinycodec.models.build_model`
rebuilds the model without other arguments.

Notebook: book/02_architecture.md
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import ClassVar

from tinycodec.modules.server_decoder import DEFAULT_DELAY, HEADS, HeadGeometry

# encoders a config can name (see tinycodec.models.base.CodecModel)
ENCODERS = {"seanet": "SEANet convs on the waveform (book chapter 02; the firmware's int8 encoder)",
            "stft": "causal log power spectrum (one FFT per frame), then frame-rate layers of width 16 C"}
# decoders a config can name (see tinycodec.models.base.make_decoder)
DECODERS = {"mirror": "SEANet mirror of the encoder (book chapter 02)",
            "server": "frame-rate ConvNeXt blocks + causal iSTFT head (Vocos-style, 1-5 M parameters)"}

# Caps on every size-bearing field, checked before any module exists (a config read from a weights
# file or a checkpoint is a claim: `decoder_layers=10**6` would cost minutes to build even on the meta
# device). Each cap is far above every preset and shipped model; the parameter count is checked after
# (``tinycodec.models.validate.MAX_PARAMETERS``). n_q, codebook size and sample rate match the
# container's and the entropy tables' own limits.
LIMITS: dict[str, tuple[int, int]] = {  # field: (smallest, largest)
    "C": (1, 1024), "D": (1, 4096), "num_quantizers": (1, 64), "codebook_size": (2, 1 << 16),
    "sample_rate": (1, 384_000), "kernel_size": (1, 63), "kmeans_iters": (0, 1000),
    "decoder_dim": (1, 4096), "decoder_layers": (0, 64), "decoder_n_fft": (0, 1 << 16), "decoder_delay": (0, 64),
}
LIST_LIMITS: dict[str, tuple[int, int, int]] = {  # field: (most entries, smallest entry, largest entry)
    "strides": (8, 1, 64),  # one encoder block (and one decoder block) per entry
    "dilations": (8, 1, 1024),  # one residual unit per entry in every block
}
MAX_HOP_LENGTH = 8192  # samples per frame (the product of the strides)
MAX_STFT_HOP = 1024  # the stft encoder's fixed DFT basis is (hop + 1) x 2 hop, computed in float64


def _shown(value) -> str:
    """A value for a one-line message: huge ints as a power of two, long reprs cut."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"~2**{value.bit_length() - 1}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_caps(values: Mapping, limits: Mapping[str, tuple[int, int]],
               list_limits: Mapping[str, tuple[int, int, int]] | None = None) -> None:
    """Check the fields of ``values`` that ``limits`` / ``list_limits`` name (absent ones are skipped).

    A field set to ``None`` is left alone (where ``None`` means "the default"). Cost is bounded by the
    caps, never by the values: a list's length is checked before its entries.

    Raises:
        ValueError: one line naming the field, its value and the cap, e.g.
            ``decoder_layers=1000000 is above its cap of 64``.
    """
    def integer(name: str, value, lo: int, hi: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name}={_shown(value)} must be an integer")
        if value > hi:
            raise ValueError(f"{name}={_shown(value)} is above its cap of {hi}")
        if value < lo:
            raise ValueError(f"{name}={_shown(value)} is below its minimum of {lo}")

    for name, (lo, hi) in limits.items():
        if name in values and values[name] is not None:
            integer(name, values[name], lo, hi)
    for name, (most, lo, hi) in (list_limits or {}).items():
        if name not in values:
            continue
        items = values[name]
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"{name}={_shown(items)} must be a list of integers")
        if len(items) > most:
            raise ValueError(f"{name} has {len(items)} entries, above its cap of {most}")
        for i, value in enumerate(items):
            integer(f"{name}[{i}]", value, lo, hi)


@dataclass
class CodecConfig:
    """Fields shared by both families (defaults are SoundStream's paper configuration)."""

    family: ClassVar[str] = ""
    LIMITS: ClassVar[dict[str, tuple[int, int]]] = LIMITS  # see check_caps (a family adds its own fields)
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
    decoder_n_fft: int = 0  # server decoder: FFT size of its head (0: two hops, HeadGeometry's default)
    # server decoder: frames its output lags the codes. 0: frame f's synthesis window starts at block f, so
    # each block is mostly drawn from frames that have not heard it; d >= 1 lets frames up to f + d shape
    # block f, at d hops of latency (tinycodec.modules.server_decoder: the geometry, its defaults and checks)
    decoder_delay: int = DEFAULT_DELAY
    # server decoder: its head, "istft" | "hn" (harmonic + noise, experimental; server_decoder.HEADS)
    decoder_head: str = "istft"

    def __post_init__(self) -> None:
        self.check_limits(vars(self))
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
        _ = self.server_geometry  # checks decoder_n_fft and decoder_delay
        if not isinstance(self.decoder_head, str) or self.decoder_head not in HEADS:
            raise ValueError(f"unknown decoder_head {_shown(self.decoder_head)}; choose from {list(HEADS)}")
        if self.encoder_int8 and self.activation != "relu":
            raise ValueError("encoder_int8 needs activation='relu' (the int8 arithmetic has no ELU)")

    @classmethod
    def check_limits(cls, values: Mapping) -> None:
        """Check a config's size-bearing fields against their caps before anything is built.

        Args:
            values: config fields (a stored config dict, or ``vars(config)``); absent fields take
                the class defaults, unknown ones are left to the dataclass.

        Raises:
            ValueError: one line naming the field, its value and the cap.
        """
        if not isinstance(values, Mapping):
            raise ValueError(f"a model config must be a dict, got {type(values).__name__}")
        check_caps(values, cls.LIMITS, LIST_LIMITS)
        strides = values["strides"] if "strides" in values else _default(cls, "strides")
        hop = math.prod(strides)  # at most 8 entries of at most 64: cheap
        if hop > MAX_HOP_LENGTH:
            raise ValueError(f"hop_length={hop} (the product of strides {list(strides)}) is above its cap of {MAX_HOP_LENGTH}")
        encoder = values["encoder"] if "encoder" in values else _default(cls, "encoder")
        if encoder == "stft" and hop > MAX_STFT_HOP:
            raise ValueError(f"hop_length={hop} is above the stft encoder's cap of {MAX_STFT_HOP}")

    @property
    def hop_length(self) -> int:
        """Samples per frame: the product of the strides."""
        return math.prod(self.strides)

    @property
    def server_geometry(self) -> HeadGeometry:
        """The server decoder's FFT size and delay (``decoder_n_fft`` 0: the default of two hops), checked."""
        return HeadGeometry(self.hop_length, self.decoder_n_fft, self.decoder_delay)

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


def _default(cls: type, name: str):
    """A dataclass field's default value (``default_factory`` called)."""
    f = next(f for f in fields(cls) if f.name == name)
    return f.default_factory() if f.default is MISSING else f.default


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
