"""Server decoders: a large frame-rate decoder behind a tiny microcontroller encoder.

The mirror decoder (:class:`~tinycodec.modules.seanet.SEANetDecoder`) is as small as the encoder,
because it mirrors it. A server can afford 50x more: :class:`ServerDecoder` works at the frame rate
(62.5 Hz for TinyStream) on the quantized embeddings with ConvNeXt blocks (dense 1x1 layers, where
CPUs are efficient) and turns each frame into a spectrum, which an inverse FFT and an overlap-add
make into audio (the Vocos recipe, Siuzdak 2023), made causal::

    q [B, D, F] -> causal conv k=7 -> N x ConvNeXt block -> LayerNorm -> Linear -> (log|X|, phase)
        -> irfft (n_fft) * window -> causal overlap-add (hop) -> wav [B, 1, F * hop]

    ConvNeXt block:  x + gamma * W2 GELU(W1 LN(dwconv_k7(x)))     (depthwise conv causal)

Causal overlap-add: frame ``f`` synthesises samples ``[f hop, f hop + n_fft)`` of the decoder's
output; output block ``f`` (samples ``[f hop, (f + 1) hop)``) is complete once frame ``f`` is in.
Streaming keeps the ``n_fft - hop`` samples of overlap (and each depthwise conv its ``k - 1``
inputs), so chunked == offline exactly.

Delay. The encoder's frame ``f`` has heard the input up to the end of block ``f``. Read without
delay, output block ``f`` gets only the rising first ``hop`` samples of frame ``f``'s window: the
rest comes from frames ``f - 1, f - 2, ...``, which never heard block ``f``, so the decoder must
*predict* it. With ``delay = d hop`` the output lags the codes by ``d`` blocks: input block ``f``
is output block ``f + d``, drawn from frames ``f .. f + d`` that heard it (for ``n_fft = 2 hop``,
``d = 1``: the falling half of frame ``f``'s window plus the rising half of frame ``f + 1``'s;
no window reaches past what its frame heard). :class:`~tinycodec.models.base.CodecModel` removes
the lag offline; a stream hears it as ``d`` hops of extra latency. :class:`HeadGeometry` holds the
FFT size and the delay, their defaults and their checks, for the decoder and the model config alike.

Heads (``HEADS``). ``"istft"`` is the head above; ``"hn"`` (:class:`HarmonicNoiseHead`, experimental) adds
a harmonic excitation at a predicted f0 to each frame's spectrum (:mod:`tinycodec.modules.harmonic`).

Notebook: book/04_training.md
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinycodec.modules.conv import StreamingConv1d, exporting
from tinycodec.modules.harmonic import HarmonicSource
from tinycodec.modules.prepared import tensor_key, tensor_slots
from tinycodec.modules.server_runner import ServerRunner
from tinycodec.modules.streaming import State, StreamingModule

# The defaults: an FFT of two hops and one frame of delay (d = n_fft / hop - 1). Measured on tiny's
# frozen codes, 3000 steps each, they beat no delay and an FFT of four hops (the first server
# decoders, whose stored configs keep it: models.config.upgrade_config_dict) on validation mel,
# PESQ-WB and STOI (book chapter 04).
DEFAULT_FFT_HOPS = 2
DEFAULT_DELAY = 1


@dataclass(frozen=True)
class HeadGeometry:
    """How the server decoder's frames become samples (see the module docstring), checked once.

    Args:
        hop_length (int): samples per frame.
        n_fft (int): FFT size of the iSTFT head, a positive multiple of ``hop_length``;
            0: ``DEFAULT_FFT_HOPS`` hops.
        delay (int): frames the output lags the codes, ``0 .. n_fft / hop_length - 1``.

    Raises:
        ValueError: an FFT size that is no multiple of the hop, or a delay beyond the window.
    """

    hop_length: int
    n_fft: int = 0
    delay: int = DEFAULT_DELAY

    def __post_init__(self) -> None:
        if not self.n_fft:
            object.__setattr__(self, "n_fft", DEFAULT_FFT_HOPS * self.hop_length)
        if self.hop_length < 1 or self.n_fft % self.hop_length or self.n_fft < self.hop_length:
            raise ValueError(f"n_fft={self.n_fft} must be a positive multiple of hop_length={self.hop_length}")
        if not 0 <= self.delay < self.hops:
            raise ValueError(f"delay={self.delay} frames must lie in 0..{self.hops - 1} "
                             f"(the head's window of n_fft={self.n_fft} spans {self.hops} hops)")

    @property
    def hops(self) -> int:
        """Hops one synthesis window spans: ``n_fft / hop_length``."""
        return self.n_fft // self.hop_length


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a [B, C, T] tensor."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ConvNeXtBlock(StreamingModule):
    """Causal ConvNeXt block at constant width ``dim`` and frame rate.

    Args:
        dim (int): channels.
        mult (int): width of the 1x1 MLP is ``mult * dim``.
        kernel_size (int): taps of the causal depthwise conv.
        layer_scale (float): initial residual-branch scale ``gamma``.
    """

    def __init__(self, dim: int, mult: int = 3, kernel_size: int = 7, layer_scale: float = 0.1) -> None:
        super().__init__()
        self.dwconv = StreamingConv1d(dim, dim, kernel_size, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, mult * dim)
        self.pw2 = nn.Linear(mult * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (Tensor): [B, dim, F]. Returns: Tensor: [B, dim, F]."""
        h = self.dwconv(x).transpose(1, 2)  # [B, F, dim]: the MLP is two dense matmuls
        h = self.pw2(F.gelu(self.pw1(self.norm(h)))) * self.gamma
        return x + h.transpose(1, 2)


@dataclass
class _OLAState(State):
    tail: Tensor  # [B, n_fft - hop] overlap not yet emitted


class ISTFTHead(StreamingModule):
    """Frames -> waveform: per frame a log-magnitude and a phase per bin, an inverse real FFT, a
    Hann window and a causal overlap-add.

    Args:
        dim (int): input channels.
        hop_length (int): samples per frame.
        n_fft (int): FFT size (a multiple of ``hop_length``; 0: the default of :class:`HeadGeometry`).
    """

    def __init__(self, dim: int, hop_length: int, n_fft: int) -> None:
        super().__init__()
        n_fft = HeadGeometry(hop_length, n_fft, delay=0).n_fft  # checked
        self.hop_length, self.n_fft = hop_length, n_fft
        self.bins = n_fft // 2 + 1
        self.proj = nn.Linear(dim, 2 * self.bins)
        self.register_buffer("window", _synthesis_window(hop_length, n_fft).to(torch.empty(0).device),
                             persistent=False)

    def _init_streaming_state(self, batch_size: int) -> _OLAState:
        return _OLAState(batch_size, self.window.new_zeros(batch_size, self.n_fft - self.hop_length))

    def spectrum(self, x: Tensor) -> Tensor:
        """Args: x (Tensor): [B, dim, F]. Returns: Tensor: complex [B, F, bins], each frame's spectrum."""
        p = self.proj(x.transpose(1, 2)).float()  # [B, F, 2 * bins]
        log_mag, phase = p[..., : self.bins], p[..., self.bins:]
        mag = torch.exp(log_mag.clamp(max=8.0))  # |X| <= e^8: no inf from a wild step
        return torch.polar(mag, phase)

    def frames(self, x: Tensor) -> Tensor:
        """Args: x (Tensor): [B, dim, F]. Returns: Tensor: [B, F, n_fft] windowed frames."""
        return torch.fft.irfft(self.spectrum(x), n=self.n_fft) * self.window

    def forward(self, x: Tensor, tail: bool = False) -> Tensor:
        """Args: x (Tensor): [B, dim, F]; tail (bool): offline only, also return the ``n_fft - hop``
        samples after the last block, which later frames would complete (the end of a file).

        Returns: Tensor: [B, 1, F * hop] (``+ n_fft - hop`` with ``tail``)."""
        state, persistent = self._get_state(x.shape[0])
        B, _, n = x.shape
        hop, overlap = self.hop_length, self.n_fft - self.hop_length
        if tail and persistent:
            raise RuntimeError("tail=True is for offline decoding; a stream's tail arrives with its next frames")
        if n == 0:
            return x.new_zeros(B, 1, overlap if tail else 0)
        frames = self.frames(x)  # [B, F, n_fft]
        length = (n - 1) * hop + self.n_fft
        y = F.fold(frames.transpose(1, 2), output_size=(1, length), kernel_size=(1, self.n_fft),
                   stride=(1, hop)).reshape(B, length)
        if overlap:
            y = torch.cat([y[:, :overlap] + state.tail, y[:, overlap:]], dim=1)
        if persistent:
            state.tail = y[:, n * hop:]
        return y[:, None] if tail else y[:, None, : n * hop]


class HarmonicNoiseHead(ISTFTHead):
    """The iSTFT head plus a harmonic source (:class:`~tinycodec.modules.harmonic.HarmonicSource`): each
    frame's spectrum is the iSTFT head's (the noise and whatever the source misses) plus a shaped
    harmonic excitation at a predicted f0, whose phase runs on across frames and streaming calls.

    ``proj`` is the iSTFT head's own layer (same name and shape: a trained ``ISTFTHead`` loads into it);
    the source's layer is ``harmonic.proj``. After each forward ``last_f0`` [B, F] (Hz) and
    ``last_voicing`` [B, F] (logits) hold the source's predictions, for a pitch loss.

    Args:
        dim (int): input channels.
        hop_length (int): samples per frame.
        n_fft (int): FFT size, at least two hops (0: the default of :class:`HeadGeometry`).
        sample_rate (int): Hz.
    """

    def __init__(self, dim: int, hop_length: int, n_fft: int, sample_rate: int = 16000) -> None:
        super().__init__(dim, hop_length, n_fft)
        self.harmonic = HarmonicSource(dim, hop_length, self.n_fft, sample_rate,
                                       _synthesis_window(hop_length, self.n_fft))

    @property
    def last_f0(self) -> Tensor | None:
        return self.harmonic.last_f0

    @property
    def last_voicing(self) -> Tensor | None:
        return self.harmonic.last_voicing

    def noise_spectrum(self, x: Tensor) -> Tensor:
        """The iSTFT branch alone: :meth:`ISTFTHead.spectrum`."""
        return super().spectrum(x)

    def spectrum(self, x: Tensor) -> Tensor:
        """Args: x (Tensor): [B, dim, F]. Returns: Tensor: complex [B, F, bins], noise + harmonic part."""
        return self.noise_spectrum(x) + self.harmonic(x)


# decoder heads a config can name (CodecConfig.decoder_head)
HEADS = {"istft": "log-magnitude and phase per bin, inverse FFT, overlap-add (Vocos)",
         "hn": "harmonic + noise: the iSTFT head plus a harmonic excitation at a predicted f0 (experimental)"}


class ServerDecoder(StreamingModule):
    """Quantized embeddings [B, D, F] -> waveform [B, 1, F * hop] (see the module docstring).

    Args:
        D (int): embedding dimension (the quantizer's).
        hop_length (int): samples per frame.
        dim (int): width of the ConvNeXt blocks.
        num_layers (int): ConvNeXt blocks.
        n_fft (int): FFT size of the head (0: ``DEFAULT_FFT_HOPS`` hops); see :class:`HeadGeometry`.
        mult (int): MLP width multiplier.
        delay (int): frames the output lags the codes (module docstring); at most ``n_fft / hop - 1``.
        head (str): ``"istft"`` (:class:`ISTFTHead`) or ``"hn"`` (:class:`HarmonicNoiseHead`), see ``HEADS``.
        sample_rate (int): Hz (the ``"hn"`` head's f0 is in Hz).

    In eval mode with gradients off (``torch.no_grad``, ``torch.inference_mode``) the forward runs on
    :class:`~tinycodec.modules.server_runner.ServerRunner` (the same outputs within float32 rounding,
    ~2x faster streaming); ``use_runner = False`` keeps the modules, e.g. to compare the two. The runner
    knows the iSTFT head only: an ``"hn"`` decoder always runs its modules.
    """

    def __init__(self, D: int, hop_length: int, dim: int = 256, num_layers: int = 8, n_fft: int = 0,
                 mult: int = 3, delay: int = DEFAULT_DELAY, head: str = "istft", sample_rate: int = 16000) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown decoder head {head!r}; choose from {list(HEADS)}")
        self.geometry = geometry = HeadGeometry(hop_length, n_fft, delay)
        self.delay = geometry.delay * hop_length  # samples
        self.embed = StreamingConv1d(D, dim, 7)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, mult, layer_scale=1.0 / math.sqrt(num_layers))
                                    for _ in range(num_layers))
        self.norm = ChannelLayerNorm(dim)
        self.head_kind = head
        self.head = (ISTFTHead(dim, hop_length, geometry.n_fft) if head == "istft"
                     else HarmonicNoiseHead(dim, hop_length, geometry.n_fft, sample_rate))
        self.use_runner = True  # False: inference runs the modules too (to compare the two paths)
        self._runner: tuple | None = None  # (tensor slots, their key, ServerRunner, the tensors it read)

    def runner(self) -> ServerRunner:
        """The inference path's prepared weights (:mod:`tinycodec.modules.server_runner`), built on first
        use and again after any parameter or buffer of this decoder changed or was replaced.

        Raises:
            ValueError: the decoder's head is not the iSTFT head."""
        if self.head_kind != "istft":
            raise ValueError(f"ServerRunner runs the iSTFT head only, not {self.head_kind!r}")
        cached = self._runner
        if cached is None or _slots_key(cached[0]) != cached[1]:
            slots = tensor_slots(self)
            sources = [t for d in slots for t in d.values()]  # held: no new tensor reuses their storage
            cached = self._runner = (slots, _slots_key(slots), ServerRunner(self), sources)
        return cached[2]

    def flush(self) -> Tensor:
        """Streaming only: the ``delay`` samples still held back after the last frame, [B, 1, delay]
        (what the offline output ends with); the stream's state is left as it was."""
        if not self.is_streaming:
            raise RuntimeError("flush() is for a stream; offline decoding already returns every sample")
        return self.get_streaming_state()["head"].tail[:, None, : self.delay]

    def forward(self, q: Tensor, tail: bool = False) -> Tensor:
        """Args: q (Tensor): [B, D, F]; tail (bool): see :meth:`ISTFTHead.forward`.

        Returns: Tensor: [B, 1, F * hop_length] lagging the codes by ``self.delay`` samples."""
        inference = not (self.training or torch.is_grad_enabled() or exporting())
        if inference and self.use_runner and self.head_kind == "istft":
            return self.runner().forward(q, tail)
        return self.head(self.trunk(q), tail=tail)

    def trunk(self, q: Tensor) -> Tensor:
        """Everything before the head: ``q`` [B, D, F] -> embed, ConvNeXt blocks, LayerNorm -> [B, dim, F]."""
        x = self.embed(q)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


def _synthesis_window(hop_length: int, n_fft: int) -> Tensor:
    """The head's window after the inverse FFT, [n_fft], on the CPU."""
    # on the CPU even while a model is built on the meta device: a meta hann_window runs its
    # decomposition, which imports torch._dynamo (+2 s and 76 MiB for every CLI start)
    window = torch.hann_window(n_fft, periodic=True, device="cpu")
    # a periodic Hann window sums to n_fft / (2 hop) over overlapping frames: divide it out
    return window * (2 * hop_length / n_fft)


def _slots_key(slots: list[dict]) -> tuple:
    return tensor_key(t for d in slots for t in d.values())
