"""A spectral encoder: a fixed causal STFT frontend, then a small frame-rate network.

The SEANet encoder learns its filterbank with a handful of channels at the full sample rate
(``tiny``: 8), where a microcontroller pays for every sample. This encoder starts from what a
microcontroller computes cheaply with an FFT: the log power spectrum of the last ``2 * hop``
samples (Hann window), once per frame. Everything learned runs at the frame rate::

    wav [B, 1, T] -> |STFT|^2 (n_fft = 2 hop, causal) -> log -> [B, n_fft/2 + 1, F]
        -> 1x1 conv to H -> residual units (k = 3, dilations 1, 2, 4; past frames only)
        -> ReLU -> 1x1 conv to D                                    -> [B, D, F]

The STFT is a strided causal conv with a fixed (not trained) windowed-DFT basis, so streaming
equals offline exactly, as for every other module: frame ``f`` reads samples
``[(f + 1) hop - n_fft, (f + 1) hop)``, the same window the SEANet encoder's last frame ends on.

Device cost (:meth:`SpectralEncoder.device_macs_per_frame`): one integer FFT of ``n_fft`` points
per frame plus the frame-rate layers, about ``params * frame_rate`` MACs per second.

Notebook: book/04_training.md
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tinycodec.modules.conv import StreamingConv1d, make_conv
from tinycodec.modules.int8_spectrum import spectrum_affine
from tinycodec.modules.seanet import ResidualUnit, make_activation
from tinycodec.modules.streaming import StreamingModule

DILATIONS = (1, 2, 4)  # frame-rate residual units: 1 + 2 * (1 + 2 + 4) = 15 frames of context
LOG_FLOOR = 1e-8  # power floor before the log (below 16-bit quantization noise in one bin)
LOG_SHIFT, LOG_SCALE = 9.0, 4.0  # (log p + 9) / 4: speech bins land mostly in [-2.5, 2]


class CausalLogSpectrum(StreamingModule):
    """Waveform [B, 1, T] -> log power spectrum [B, n_fft // 2 + 1, T // hop] (causal, fixed).

    Args:
        n_fft (int): window and FFT size (even, at least ``hop``).
        hop (int): samples per frame.
    """

    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        if n_fft % 2 or n_fft < hop:
            raise ValueError(f"n_fft must be even and >= hop ({hop}), got {n_fft}")
        self.n_fft, self.hop, self.bins = n_fft, hop, n_fft // 2 + 1
        # the fixed basis is computed on the CPU even while a model is built on the meta device: a meta
        # hann_window runs its decomposition, which imports torch._dynamo (seconds at every CLI start)
        cpu = torch.device("cpu")
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64, device=cpu)
        t = torch.arange(n_fft, dtype=torch.float64, device=cpu)
        k = torch.arange(self.bins, dtype=torch.float64, device=cpu)[:, None]
        angle = 2 * math.pi * k * t / n_fft
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window / window.sum()
        self.dft = StreamingConv1d(1, 2 * self.bins, n_fft, stride=hop, bias=False)
        # a fixed transform: a buffer, so it is never trained, never stored (no float16 rounding in
        # shipped weights) and always exact in float32
        del self.dft.conv.weight
        here = torch.empty(0).device  # the device the model is being built on (meta inside build_on_meta)
        self.dft.conv.register_buffer("weight", basis[:, None, :].float().to(here), persistent=False)

    def int8_affine(self, e_y: int) -> tuple[int, int, int]:
        """``(F, A, B)`` of the integer frontend (:func:`tinycodec.modules.int8_spectrum.log_spectrum`)
        that computes this feature as int8 at exponent ``e_y``."""
        return spectrum_affine(self.n_fft, e_y, LOG_FLOOR, LOG_SHIFT, LOG_SCALE)

    def forward(self, wav: Tensor) -> Tensor:
        spec = self.dft(wav)
        power = spec[:, : self.bins].square() + spec[:, self.bins:].square()
        return (torch.log(power + LOG_FLOOR) + LOG_SHIFT) / LOG_SCALE


class SpectralEncoder(StreamingModule):
    """Waveform [B, 1, T] -> embeddings [B, D, T // hop] from a causal log power spectrum.

    Args:
        hidden (int): width H of the frame-rate layers.
        D (int): embedding dimension.
        hop (int): samples per frame (the STFT uses ``n_fft = 2 * hop``).
        activation (str): ``"relu"`` or ``"elu"``.
        separable (bool): depthwise-separable residual convs.
    """

    def __init__(self, hidden: int, D: int, hop: int, activation: str = "relu", separable: bool = True) -> None:
        super().__init__()
        self.spectrum = CausalLogSpectrum(2 * hop, hop)
        layers: list[nn.Module] = [make_conv(False, self.spectrum.bins, hidden, 1)]
        layers += [ResidualUnit(hidden, d, 3, activation, separable) for d in DILATIONS]
        layers += [make_activation(activation), make_conv(False, hidden, D, 1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, wav: Tensor) -> Tensor:
        """Args: wav (Tensor): [B, 1, T]. Returns: Tensor: [B, D, T // hop]."""
        return self.layers(self.spectrum(wav))

    def device_macs_per_frame(self) -> dict[str, int]:
        """Multiplies per frame on a device: the integer frontend (:func:`spectrum_macs_per_frame`)
        and the learned layers (one MAC per weight per frame)."""
        learned = sum(p.numel() for p in self.layers.parameters() if p.dim() > 1)
        return {"fft": spectrum_macs_per_frame(self.spectrum.n_fft), "layers": learned}


def spectrum_macs_per_frame(n_fft: int) -> int:
    """The int64 multiplies the firmware's ``tc_log_spectrum`` executes per frame: the window (``N``),
    4 per butterfly whose twiddle is not 1 or ``-i`` (those and the first two stages on the real
    input take no multiply), and 3 per bin (``re^2``, ``im^2``, the affine ``A L``)."""
    stages = n_fft.bit_length() - 1
    butterflies = sum((n_fft // (2 * half)) * (half - 2) for half in (2**s for s in range(2, stages)))
    return n_fft + 4 * butterflies + 3 * (n_fft // 2 + 1)
