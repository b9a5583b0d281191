"""Discriminators for adversarial codec training: multi-scale waveform, multi-period and complex STFT.

Each discriminator maps audio to ``(logits, features)``: ``logits`` is one score map per
sub-discriminator (higher = "real"), ``features`` the intermediate activations that the
feature-matching loss compares between real and decoded audio.

    wav [B, 1, T] -+-> WaveDiscriminator(raw)          -> logits [B, 1, T/256]  + 6 feature maps
                   +-> avgpool 2x -> WaveDiscriminator -> ...
                   +-> avgpool 4x -> WaveDiscriminator -> ...
                   +-> |STFT| (real, imag) -> 2-D conv stack -> logits [B, 1, F', T'] + feature maps
                   +-> fold every p samples (p = 2, 3, 5, 7, 11) -> (k x 1) 2-D convs -> logits + features

Notebook: book/04_training.md
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["DiscriminatorConfig", "WaveDiscriminator", "MultiScaleWaveDiscriminator", "PeriodDiscriminator",
           "MultiPeriodDiscriminator", "STFTDiscriminator", "Discriminator"]

DiscOutput = tuple[list[Tensor], list[list[Tensor]]]  # (logits per sub-discriminator, features per one)


@dataclass
class DiscriminatorConfig:
    """Sizes of the discriminators (defaults fit the tiny presets on a laptop CPU)."""

    wave_scales: int = 3  # raw, 2x and 4x average-pooled
    wave_channels: int = 16  # first layer; x4 per strided layer
    wave_max_channels: int = 128  # cap (MelGAN uses 1024; tiny codecs on a CPU do not need it)
    wave_downsample_layers: int = 3  # strided grouped convs, stride 4 each
    stft_n_fft: int | None = None  # None: 1024 at 24 kHz, scaled to the nearest power of two (512 at 16 kHz)
    stft_hop_length: int | None = None  # None: n_fft / 4
    stft_channels: int = 16  # first 2-D conv; doubled by every other block
    # multi-scale STFT (EnCodec): one STFT discriminator per FFT size, e.g. [256, 512, 1024]; empty: the one above
    stft_n_ffts: list[int] = field(default_factory=list)
    use_wave: bool = True
    use_stft: bool = True
    # multi-period (HiFi-GAN): one 2-D discriminator per period on the waveform folded every p samples;
    # empty: none. Periodic structure (pitch harmonics, their phase) is what it judges.
    periods: list[int] = field(default_factory=list)
    period_channels: int = 16  # first layer; x2 per strided layer
    period_max_channels: int = 128


class WaveDiscriminator(nn.Module):
    """MelGAN-style 1-D discriminator: a wide conv, strided grouped convs, two 1-D heads.

    Args:
        channels (int): channels of the first conv.
        max_channels (int): channel cap of the strided layers.
        downsample_layers (int): number of stride-4 grouped convs.
    """

    def __init__(self, channels: int = 16, max_channels: int = 256, downsample_layers: int = 3) -> None:
        super().__init__()
        layers = [nn.Sequential(nn.ReflectionPad1d(7), weight_norm(nn.Conv1d(1, channels, 15)), nn.LeakyReLU(0.2))]
        c = channels
        for _ in range(downsample_layers):
            c_out = min(c * 4, max_channels)
            groups = max(1, c // 4)  # grouped convs keep the wide layers cheap (MelGAN)
            layers.append(nn.Sequential(
                weight_norm(nn.Conv1d(c, c_out, 41, stride=4, padding=20, groups=groups)), nn.LeakyReLU(0.2)))
            c = c_out
        layers.append(nn.Sequential(weight_norm(nn.Conv1d(c, c, 5, padding=2)), nn.LeakyReLU(0.2)))
        self.layers = nn.ModuleList(layers)
        self.head = weight_norm(nn.Conv1d(c, 1, 3, padding=1))

    def forward(self, wav: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Args: wav (Tensor): [B, 1, T]. Returns: logits [B, 1, T / 4**layers], feature maps."""
        features = []
        x = wav
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return self.head(x), features


class MultiScaleWaveDiscriminator(nn.Module):
    """``scales`` wave discriminators on the raw signal and on 2x, 4x, ... average-pooled copies.

    Args:
        scales (int): number of sub-discriminators (3 in SoundStream / MelGAN).
        **kwargs: sizes passed to :class:`WaveDiscriminator`.
    """

    def __init__(self, scales: int = 3, **kwargs) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(WaveDiscriminator(**kwargs) for _ in range(scales))
        # padding=1 without counting it keeps the edges' level (zero padding would darken them)
        self.pool = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)

    def forward(self, wav: Tensor) -> DiscOutput:
        """Args: wav (Tensor): [B, 1, T]. Returns: (logits list, feature-map lists), one per scale."""
        logits, features = [], []
        x = wav
        for i, disc in enumerate(self.discriminators):
            if i:
                x = self.pool(x)  # scale i sees the signal low-passed and decimated by 2**i
            out, feats = disc(x)
            logits.append(out)
            features.append(feats)
        return logits, features


class PeriodDiscriminator(nn.Module):
    """A 2-D conv discriminator on the waveform folded into rows of ``period`` samples.

    Folding ``[B, 1, T]`` to ``[B, 1, T / p, p]`` puts samples ``p`` apart in one column, so the
    ``(k x 1)`` kernels compare each sample with the ones a period earlier and later: a voice's
    pitch pulses line up when ``p`` is near a multiple of the pitch period, and a decoder whose
    harmonics drift in phase from pulse to pulse is told apart from speech.

    Args:
        period (int): samples per row (prime periods overlap least: 2, 3, 5, 7, 11).
        channels (int): channels of the first conv; doubled per strided layer up to ``max_channels``.
        max_channels (int): channel cap.
        layers (int): stride-3 convs along time.
    """

    def __init__(self, period: int, channels: int = 16, max_channels: int = 128, layers: int = 4) -> None:
        super().__init__()
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.period = period
        convs, c_in, c = [], 1, channels
        for _ in range(layers):
            convs.append(weight_norm(nn.Conv2d(c_in, c, (5, 1), stride=(3, 1), padding=(2, 0))))
            c_in, c = c, min(c * 2, max_channels)
        convs.append(weight_norm(nn.Conv2d(c_in, c_in, (5, 1), padding=(2, 0))))
        self.convs = nn.ModuleList(convs)
        self.head = weight_norm(nn.Conv2d(c_in, 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Args: wav (Tensor): [B, 1, T]. Returns: logits [B, 1, T' , period], feature maps."""
        b, c, t = wav.shape
        pad = -t % self.period
        if pad:  # reflect the tail so the last row is whole (zeros would be an easy "fake" cue)
            wav = F.pad(wav, (0, pad), mode="reflect" if pad < t else "replicate")
        x = wav.view(b, c, -1, self.period)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            features.append(x)
        return self.head(x), features


class MultiPeriodDiscriminator(nn.Module):
    """One :class:`PeriodDiscriminator` per period.

    Args:
        periods (list[int]): the periods, e.g. ``[2, 3, 5, 7, 11]``.
        **kwargs: sizes passed to :class:`PeriodDiscriminator`.
    """

    def __init__(self, periods: list[int], **kwargs) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(int(p), **kwargs) for p in periods)

    def forward(self, wav: Tensor) -> DiscOutput:
        """Args: wav (Tensor): [B, 1, T]. Returns: (logits list, feature-map lists), one per period."""
        logits, features = [], []
        for disc in self.discriminators:
            out, feats = disc(wav)
            logits.append(out)
            features.append(feats)
        return logits, features


class _STFTResBlock(nn.Module):
    """SoundStream's STFT-discriminator unit: 3x3 conv, then a strided (kt+2) x (kf+2) conv."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int]) -> None:
        super().__init__()
        st, sf = stride
        self.conv1 = weight_norm(nn.Conv2d(c_in, c_in, 3, padding=1))
        # kernel s + 2 with padding 1 maps n -> n / s exactly for s in {1, 2} (n even)
        self.conv2 = weight_norm(nn.Conv2d(c_in, c_out, (sf + 2, st + 2), stride=(sf, st), padding=1))
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv2(self.act(self.conv1(x))))


class STFTDiscriminator(nn.Module):
    """2-D conv discriminator on the complex STFT (real and imaginary parts as two channels).

    Args:
        n_fft (int): window and FFT size (1024 at 24 kHz; 512 suits 16 kHz at the same resolution in ms).
        hop_length (int): STFT hop (n_fft / 4).
        channels (int): channels of the first conv; doubled at every other block.
    """

    # (time, frequency) strides of the six blocks (SoundStream, Fig. 4)
    STRIDES = ((1, 2), (2, 2), (1, 2), (2, 2), (1, 2), (2, 2))

    def __init__(self, n_fft: int = 1024, hop_length: int = 256, channels: int = 16) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.stem = weight_norm(nn.Conv2d(2, channels, 7, padding=3))
        blocks, c = [], channels
        for i, stride in enumerate(self.STRIDES):
            c_out = c * 2 if i % 2 else c
            blocks.append(_STFTResBlock(c, c_out, stride))
            c = c_out
        self.blocks = nn.ModuleList(blocks)
        freq_left = n_fft // 2 // 2 ** len(self.STRIDES)  # bins that survive the six frequency halvings
        self.head = weight_norm(nn.Conv2d(c, 1, (max(1, freq_left), 1)))  # collapse frequency
        self.set_memory_format(torch.channels_last)

    def set_memory_format(self, memory_format: torch.memory_format) -> STFTDiscriminator:
        """Lay out the spectrogram and so every activation as ``memory_format`` (the convs follow their input).

        Channels-last (NHWC, the default) runs oneDNN's 2-D convs at these small channel counts
        about 1.2-1.5x faster on CPU, forward and backward (``benchmarks/bench_training.py``); the
        values are the same up to float rounding (a memory layout, not another computation).
        ``torch.contiguous_format`` is the plain NCHW layout.
        """
        self.memory_format = memory_format
        return self

    def spectrogram(self, wav: Tensor) -> Tensor:
        """Args: wav (Tensor): [B, 1, T]. Returns: Tensor [B, 2, n_fft / 2, frames] (real, imag)."""
        spec = torch.stft(wav[:, 0].float(), self.n_fft, self.hop_length, window=self.window,
                          center=True, return_complex=True)  # [B, n_fft/2 + 1, frames]
        spec = spec[:, :-1]  # drop the Nyquist bin: n_fft/2 halves cleanly six times
        return torch.stack([spec.real, spec.imag], dim=1)

    def forward(self, wav: Tensor) -> DiscOutput:
        """Args: wav (Tensor): [B, 1, T]. Returns: ([logits [B, 1, 1, frames']], [feature maps])."""
        x = F.leaky_relu(self.stem(self.spectrogram(wav).contiguous(memory_format=self.memory_format)), 0.2)
        features = [x]
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return [self.head(x)], [features]


class Discriminator(nn.Module):
    """All discriminators of one training run behind one call.

    Args:
        config (DiscriminatorConfig | None): sizes (defaults when ``None``).
        sample_rate (int): Hz; sets the STFT window when the config leaves it ``None``.
    """

    def __init__(self, config: DiscriminatorConfig | None = None, sample_rate: int = 24000) -> None:
        super().__init__()
        self.config = config = config or DiscriminatorConfig()
        n_fft = config.stft_n_fft or 2 ** round(math.log2(1024 * sample_rate / 24000))  # same window in ms
        hop = config.stft_hop_length or n_fft // 4
        if not (config.use_wave or config.use_stft or config.periods):
            raise ValueError("enable at least one discriminator (use_wave, use_stft or periods)")
        self.wave = MultiScaleWaveDiscriminator(
            config.wave_scales, channels=config.wave_channels, max_channels=config.wave_max_channels,
            downsample_layers=config.wave_downsample_layers) if config.use_wave else None
        if not config.use_stft:
            self.stft = None
        elif config.stft_n_ffts:  # several resolutions: time and frequency detail at once
            self.stft = nn.ModuleList(STFTDiscriminator(int(n), int(n) // 4, config.stft_channels)
                                      for n in config.stft_n_ffts)
        else:
            self.stft = STFTDiscriminator(n_fft, hop, config.stft_channels)
        self.period = MultiPeriodDiscriminator(
            config.periods, channels=config.period_channels,
            max_channels=config.period_max_channels) if config.periods else None

    def forward(self, wav: Tensor) -> DiscOutput:
        """Args: wav (Tensor): [B, 1, T] float in [-1, 1].

        Returns:
            tuple: logits (list of Tensor, one per sub-discriminator) and features (list of
            lists of Tensor, the same order).
        """
        logits, features = [], []
        stft = list(self.stft) if isinstance(self.stft, nn.ModuleList) else [self.stft]
        for disc in (self.wave, *stft, self.period):
            if disc is not None:
                out, feats = disc(wav)
                logits += out
                features += feats
        return logits, features
