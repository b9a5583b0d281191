"""Model size and cost, counted analytically by walking the modules.

``summary(model)`` reports parameters (encoder / codebooks / decoder), fp32 and int8
sizes, MACs per second of audio (encoder convs, codebook search, decoder), the
encoder's receptive field and the algorithmic latency. MACs count multiply-accumulates
of convolutions (biases and activations excluded) and ``n_q * K * D`` per frame for an
exhaustive nearest-code search. ``SEED_CLAIMS`` records the figures published in the
seed READMEs so ``check_seed_claims`` can say which ones hold.

Notebook: book/02_architecture.md
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import nn

from tinycodec.models.base import CodecModel


def conv_macs_per_second(module: nn.Module, input_rate: float) -> tuple[float, float]:
    """MACs/s of every Conv1d / ConvTranspose1d / Linear in ``module`` (in forward order).

    The walk relies on children being registered in the order they run, which holds for
    the SEANet stacks (residual branches keep the rate, so a linear walk is exact).

    Args:
        module (nn.Module): encoder or decoder.
        input_rate (float): frames per second entering ``module``.

    Returns:
        tuple[float, float]: (MACs per second, output frame rate).
    """
    rate, macs = float(input_rate), 0.0
    for m in module.modules():
        if isinstance(m, nn.ConvTranspose1d):
            # every input frame writes k samples of C_out / groups outputs from C_in inputs
            macs += rate * m.in_channels * (m.out_channels // m.groups) * m.kernel_size[0]
            rate *= m.stride[0]
        elif isinstance(m, nn.Conv1d):
            rate /= m.stride[0]
            macs += rate * m.out_channels * (m.in_channels // m.groups) * m.kernel_size[0]
        elif isinstance(m, nn.Linear):  # per frame at the current rate (ConvNeXt MLPs, iSTFT head, attention)
            macs += rate * m.in_features * m.out_features
    return macs, rate


def receptive_field(module: nn.Module) -> int:
    """Input samples that one output frame of a strided conv stack depends on."""
    field_, jump = 1, 1
    for m in module.modules():
        if isinstance(m, nn.Conv1d) and not isinstance(m, nn.ConvTranspose1d):
            field_ += (m.kernel_size[0] - 1) * m.dilation[0] * jump
            jump *= m.stride[0]
    return field_


def decoder_history_frames(decoder: nn.Module) -> int:
    """Code frames (worst alignment) that one decoded sample depends on."""
    span = 1
    for m in reversed(list(decoder.modules())):
        if isinstance(m, nn.ConvTranspose1d):
            span = (span + m.kernel_size[0] - 2) // m.stride[0] + 1
        elif isinstance(m, nn.Conv1d):
            span += (m.kernel_size[0] - 1) * m.dilation[0]
    return span


@dataclass
class ModelSummary:
    """Size and cost of one model. Sizes in bytes, MACs per second of audio."""

    name: str
    family: str
    sample_rate: int
    hop_length: int
    frame_rate: float
    num_quantizers: int
    codebook_size: int
    params_encoder: int
    params_codebooks: int  # n_q * K * D code vectors (EMA statistics are training state)
    params_decoder: int
    macs_encoder: float
    macs_search: float
    macs_decoder: float
    bitrate: float  # bits/s at all quantizers
    receptive_field: int  # input samples behind one code frame
    decoder_history: int  # code frames behind one decoded sample
    latency_ms: float  # algorithmic: one frame of input must arrive before its code exists, plus the decoder's delay
    notes: list[str] = field(default_factory=list)

    @property
    def params_total(self) -> int:
        return self.params_encoder + self.params_codebooks + self.params_decoder

    @property
    def params_device(self) -> int:
        """What an encoder-only device stores: encoder + codebooks."""
        return self.params_encoder + self.params_codebooks

    @property
    def macs_device(self) -> float:
        return self.macs_encoder + self.macs_search

    def size_bytes(self, bits: int = 32, device_only: bool = False) -> int:
        """Weight storage at ``bits`` per parameter (scales and zero points ignored)."""
        return (self.params_device if device_only else self.params_total) * bits // 8

    @property
    def receptive_field_ms(self) -> float:
        return 1000.0 * self.receptive_field / self.sample_rate

    def as_dict(self) -> dict:
        """Fields plus derived totals, JSON-ready."""
        d = asdict(self)
        d.update(params_total=self.params_total, params_device=self.params_device,
                 fp32_bytes=self.size_bytes(32), int8_bytes=self.size_bytes(8),
                 int8_bytes_device=self.size_bytes(8, device_only=True),
                 receptive_field_ms=self.receptive_field_ms)
        return d

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("family", self.family),
            ("sample rate / hop / frame rate", f"{self.sample_rate} Hz / {self.hop_length} / {self.frame_rate:g} Hz"),
            ("quantizers", f"{self.num_quantizers} x {self.codebook_size}"),
            ("params encoder", _count(self.params_encoder)),
            ("params codebooks", _count(self.params_codebooks)),
            ("params decoder", _count(self.params_decoder)),
            ("params total", _count(self.params_total)),
            ("size fp32 / int8 (total)", f"{_bytes(self.size_bytes(32))} / {_bytes(self.size_bytes(8))}"),
            ("size int8 (encoder + codebooks)", _bytes(self.size_bytes(8, device_only=True))),
            ("MACs/s encoder", _count(self.macs_encoder)),
            ("MACs/s codebook search", _count(self.macs_search)),
            ("MACs/s decoder", _count(self.macs_decoder)),
            ("bitrate", f"{self.bitrate / 1000:g} kbps"),
            ("receptive field", f"{self.receptive_field} samples ({self.receptive_field_ms:.1f} ms)"),
            ("algorithmic latency", f"{self.latency_ms:.1f} ms"),
        ]

    def to_markdown(self) -> str:
        lines = [f"| {self.name} | |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in self.rows()]
        return "\n".join(lines)

    def __str__(self) -> str:
        width = max(len(k) for k, _ in self.rows())
        return "\n".join([self.name] + [f"  {k:<{width}}  {v}" for k, v in self.rows()])


def _count(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def _bytes(n: int) -> str:
    for unit, scale in (("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def summary(model: CodecModel, name: str | None = None) -> ModelSummary:
    """Count parameters, sizes, MACs/s, receptive field and latency of ``model``.

    Args:
        model (CodecModel): a SoundStream or TinyStream.
        name (str | None): label for the table (default: the class name).
    """
    cfg = model.config
    macs_enc, frame_rate = conv_macs_per_second(model.encoder, cfg.sample_rate)
    float_encoder = getattr(model.encoder, "float_encoder", model.encoder)  # an int8-exact wrapper's own
    if hasattr(float_encoder, "device_macs_per_frame"):  # a spectral encoder: its FFT, not a DFT as a conv
        macs_enc = cfg.frame_rate * sum(float_encoder.device_macs_per_frame().values())
    macs_dec, _ = conv_macs_per_second(model.decoder, frame_rate)
    q = model.quantizer
    return ModelSummary(
        name=name or type(model).__name__,
        family=model.family,
        sample_rate=cfg.sample_rate,
        hop_length=cfg.hop_length,
        frame_rate=cfg.frame_rate,
        num_quantizers=cfg.num_quantizers,
        codebook_size=cfg.codebook_size,
        params_encoder=sum(p.numel() for p in model.encoder.parameters()),
        params_codebooks=sum(layer.embed.numel() for layer in q.layers),
        params_decoder=sum(p.numel() for p in model.decoder.parameters()),
        macs_encoder=macs_enc,
        macs_search=cfg.frame_rate * cfg.num_quantizers * cfg.codebook_size * cfg.D,
        macs_decoder=macs_dec,
        bitrate=cfg.bitrate(),
        receptive_field=receptive_field(model.encoder),
        decoder_history=decoder_history_frames(model.decoder),
        latency_ms=1000.0 * (cfg.hop_length + getattr(model, "delay", 0)) / cfg.sample_rate,
    )


@dataclass
class SummaryTable:
    """One row per model; ``to_markdown()`` / ``str()`` render it."""

    summaries: list[ModelSummary]

    COLUMNS = ("preset", "params enc", "codebooks", "params dec", "total", "int8 enc+cb",
               "MACs/s enc", "MACs/s search", "MACs/s dec", "kbps", "RF ms", "latency ms")

    def row(self, s: ModelSummary) -> list[str]:
        return [s.name, _count(s.params_encoder), _count(s.params_codebooks), _count(s.params_decoder),
                _count(s.params_total), _bytes(s.size_bytes(8, device_only=True)), _count(s.macs_encoder),
                _count(s.macs_search), _count(s.macs_decoder), f"{s.bitrate / 1000:g}",
                f"{s.receptive_field_ms:.1f}", f"{s.latency_ms:.1f}"]

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self.COLUMNS) + " |", "|" + "---|" * len(self.COLUMNS)]
        lines += ["| " + " | ".join(self.row(s)) + " |" for s in self.summaries]
        return "\n".join(lines)

    def __str__(self) -> str:
        rows = [list(self.COLUMNS)] + [self.row(s) for s in self.summaries]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.COLUMNS))]
        return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)

    def __getitem__(self, name: str) -> ModelSummary:
        for s in self.summaries:
            if s.name == name:
                return s
        raise KeyError(name)


def summary_table(presets: list[str] | None = None) -> SummaryTable:
    """Summaries of ``presets`` (default: every preset), built with random weights."""
    from tinycodec.models.config import list_presets

    names = list_presets() if presets is None else presets
    return SummaryTable([summary(CodecModel.from_preset(n), name=n) for n in names])


# Figures published in the seed READMEs (000: TinyStream, 001: SoundStream).
SEED_CLAIMS: dict[str, dict[str, float]] = {
    "ultra_tiny": {"params_total": 15e3, "fp32_bytes": 60e3, "int8_bytes": 15e3, "bitrate": 1100},
    "tiny": {"params_total": 290e3, "fp32_bytes": 1.1e6, "int8_bytes": 290e3, "bitrate": 2250},
    "small": {"params_total": 1.1e6, "fp32_bytes": 4.2e6, "int8_bytes": 1.1e6, "bitrate": 2250},
    "soundstream_tiny": {"params_total": 2.4e6, "bitrate": 3000},
    "soundstream_small": {"params_total": 8.4e6, "bitrate": 3000},
    "soundstream_base": {"params_total": 33e6, "fp32_bytes": 132e6, "bitrate": 6000},
}
# Seed 000: "for ESP32 deployment (encoder only), divide by ~2": the device share of the model.
SEED_DEVICE_SHARE = 0.5


@dataclass
class ClaimCheck:
    """One published figure against the measured one."""

    preset: str
    quantity: str
    claimed: float
    measured: float

    @property
    def ratio(self) -> float:
        return self.measured / self.claimed

    def holds(self, tolerance: float | None = None) -> bool:
        """Within ``tolerance`` (relative; default 1% for bitrates, which are exact
        formulas, and 20% for sizes, which a "~" figure rounds)."""
        if tolerance is None:
            tolerance = 0.01 if self.quantity == "bitrate" else 0.2
        return abs(self.ratio - 1) <= tolerance


def check_seed_claims(table: SummaryTable | None = None) -> list[ClaimCheck]:
    """Compare ``SEED_CLAIMS`` (and the "encoder-only is half the model" rule) with ``table``."""
    table = table or summary_table(list(SEED_CLAIMS))
    checks = []
    for preset, claims in SEED_CLAIMS.items():
        measured = table[preset].as_dict()
        for quantity, claimed in claims.items():
            checks.append(ClaimCheck(preset, quantity, claimed, float(measured[quantity])))
        if table[preset].family == "tinystream":
            s = table[preset]
            checks.append(ClaimCheck(preset, "device_share", SEED_DEVICE_SHARE, s.params_device / s.params_total))
    return checks
