"""Causal streaming convolutions: Conv1d, depthwise-separable Conv1d, ConvTranspose1d.

Causal padding. A conv with kernel ``k``, stride ``s`` and dilation ``d`` spans
``k_eff = (k - 1) * d + 1`` input samples. We pad ``P = k_eff - s`` zeros on the
left and none on the right. Output frame ``j`` then reads padded samples
``[j*s, j*s + k_eff)``, i.e. original samples ``[(j+1)*s - k_eff, (j+1)*s)``: it ends
exactly at the last sample of input block ``j`` (no look-ahead), and for ``T`` a
multiple of ``s`` the output has exactly ``T / s`` frames::

    k=4, s=2, d=1  ->  k_eff=4, P=k_eff-s=2

    padded input:   0  0 | x0 x1 | x2 x3 | x4 x5 |
                    [-----------]                    frame 0 = f(0, 0, x0, x1)
                          [-----------]              frame 1 = f(x0..x3)
                                  [-----------]      frame 2 = f(x2..x5)
    T = 6 samples -> 3 frames; frame j never sees x_{2j+2} or later.

In streaming mode the ``P`` zeros are replaced by the last ``P`` samples of the
previous call (the state), so a chunked run computes the very same windows.
A transposed conv of stride ``s`` and kernel ``k`` writes ``k`` samples per input
frame, overlapping the next frame's output by ``k - s``; we emit the first
``N * s`` samples of ``N`` frames and keep the ``k - s`` sample overlap tail
(without bias) as state, added to the start of the next call.

Notebook: book/02_architecture.md
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinycodec.modules.streaming import State, StreamingModule


@dataclass
class _ConvState(State):
    previous: Tensor  # [B, C_in, P] input samples not yet consumed


@dataclass
class _ConvTrState(State):
    partial: Tensor  # [B, C_out, k - s] overlap tail of the previous call, bias removed


# Up to this many output frames, depthwise convs use a multiply-and-sum path instead of
# the grouped-conv kernel, whose fixed per-call cost dominates one-frame streaming.
FAST_PATH_MAX_FRAMES = 512


def exporting() -> bool:
    """Inside an ONNX export or a trace: graphs get the plain conv (unfold of a symbolic length has no
    ONNX form); the fast path is an eager-mode saving only. ``torch.onnx`` is asked only once an
    export has imported it: touching it imports it (tens of ms at every command-line decode)."""
    onnx = sys.modules.get("torch.onnx")
    return torch.jit.is_tracing() or (onnx is not None and onnx.is_in_onnx_export())


def _recording(weight: Tensor) -> bool:
    """Autograd records a call with this weight: the multiply-and-sum path saves per-call overhead in
    inference, but its backward is 5-7x slower than the conv kernel's, so training takes the kernel."""
    return torch.is_grad_enabled() and weight.requires_grad


def causal_padding(kernel_size: int, stride: int = 1, dilation: int = 1) -> int:
    """Left padding ``(k - 1) * d + 1 - s`` that gives ``T / s`` causal frames.

    Args:
        kernel_size (int): k.
        stride (int): s; must not exceed the effective kernel ``(k - 1) * d + 1``.
        dilation (int): d.
    """
    k_eff = (kernel_size - 1) * dilation + 1
    if stride > k_eff:
        raise ValueError(f"stride {stride} larger than effective kernel {k_eff}: samples would be skipped")
    return k_eff - stride


class StreamingConv1d(StreamingModule):
    """Causal Conv1d with streaming state (left padding ``k_eff - s``, see module docstring).

    Args:
        in_channels, out_channels, kernel_size, stride, dilation, groups, bias: as ``nn.Conv1d``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation,
                              groups=groups, bias=bias)
        self.padding = causal_padding(kernel_size, stride, dilation)
        self.k_eff = (kernel_size - 1) * dilation + 1

    @property
    def stride(self) -> int:
        return self.conv.stride[0]

    @property
    def _is_depthwise(self) -> bool:
        c = self.conv
        return c.groups > 1 and c.groups == c.in_channels == c.out_channels

    def _depthwise_few_frames(self, x: Tensor, n_frames: int) -> Tensor:
        """Depthwise conv as multiply-and-sum over unfolded windows: the same math as
        ``conv1d(groups=C)``, whose CPU kernel costs ~40 us per call even for one frame."""
        c = self.conv
        windows = x[..., : (n_frames - 1) * self.stride + self.k_eff].unfold(-1, self.k_eff, self.stride)
        windows = windows[..., :: c.dilation[0]]  # [B, C, n, k]
        y = (windows * c.weight[:, None, 0, :]).sum(-1)
        return y if c.bias is None else y + c.bias[:, None]

    def _init_streaming_state(self, batch_size: int) -> _ConvState:
        w = self.conv.weight
        return _ConvState(batch_size, w.new_zeros(batch_size, self.conv.in_channels, self.padding))

    def forward(self, x: Tensor) -> Tensor:
        """Args:
            x (Tensor): [B, C_in, T]; offline any T (the tail that does not fill a
                stride is dropped), streaming any T (the remainder is buffered).

        Returns:
            Tensor: [B, C_out, T // s] (offline, or streaming with T a multiple of s).
        """
        state, persistent = self._get_state(x.shape[0])
        x = torch.cat([state.previous, x], dim=-1) if state.previous.shape[-1] else x
        s = self.stride
        n_frames = max(0, (x.shape[-1] - self.k_eff) // s + 1)
        fast = self._is_depthwise and not _recording(self.conv.weight) and not exporting()
        if 0 < n_frames <= FAST_PATH_MAX_FRAMES and fast:
            y = self._depthwise_few_frames(x, n_frames)
        elif n_frames > 0:
            y = self.conv(x[..., : (n_frames - 1) * s + self.k_eff])
        else:
            y = x.new_zeros(x.shape[0], self.conv.out_channels, 0)
        if persistent:
            state.previous = x[..., n_frames * s:]
        return y


class StreamingSeparableConv1d(StreamingModule):
    """Causal depthwise-separable conv: depthwise ``k``-tap conv, then 1x1 pointwise.

    Costs ``C_in * k + C_in * C_out`` MACs per output frame instead of ``C_in * C_out * k``.
    The depthwise conv has no bias: a bias followed by a linear 1x1 is redundant.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.depthwise = StreamingConv1d(in_channels, in_channels, kernel_size, stride, dilation,
                                         groups=in_channels, bias=False)
        self.pointwise = StreamingConv1d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (Tensor): [B, C_in, T]. Returns: Tensor: [B, C_out, T // s]."""
        return self.pointwise(self.depthwise(x))


class StreamingConvTranspose1d(StreamingModule):
    """Causal transposed conv: ``N`` frames in, exactly ``N * s`` samples out.

    Args:
        in_channels, out_channels, kernel_size, stride, groups, bias: as ``nn.ConvTranspose1d``;
            ``kernel_size >= stride``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        if kernel_size < stride:
            raise ValueError(f"kernel_size {kernel_size} < stride {stride} would leave gaps in the output")
        self.convtr = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride,
                                         groups=groups, bias=bias)
        self.overlap = kernel_size - stride

    @property
    def stride(self) -> int:
        return self.convtr.stride[0]

    @property
    def _is_depthwise_multiple(self) -> bool:
        c = self.convtr
        return (c.groups > 1 and c.groups == c.in_channels == c.out_channels
                and c.kernel_size[0] % c.stride[0] == 0)

    def _depthwise_few_frames(self, x: Tensor) -> Tensor:
        """Depthwise transposed conv with ``k = m * s`` as overlap-add of ``m`` shifted
        blocks (same math as ``conv_transpose1d(groups=C)``, without its per-call cost)."""
        c = self.convtr
        s, (B, C, N) = self.stride, x.shape
        m = c.kernel_size[0] // s
        taps = (x[..., None] * c.weight[None, :, 0, None, :]).view(B, C, N, m, s)  # [B, C, N, m, s]
        y = x.new_zeros(B, C, N + m - 1, s)
        for i in range(m):  # block i of frame j lands on output block j + i
            y[:, :, i:i + N] += taps[:, :, :, i]
        y = y.view(B, C, (N + m - 1) * s)
        return y if c.bias is None else y + c.bias[:, None]

    def _init_streaming_state(self, batch_size: int) -> _ConvTrState:
        w = self.convtr.weight
        return _ConvTrState(batch_size, w.new_zeros(batch_size, self.convtr.out_channels, self.overlap))

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (Tensor): [B, C_in, N]. Returns: Tensor: [B, C_out, N * s]."""
        state, persistent = self._get_state(x.shape[0])
        n_out = x.shape[-1] * self.stride
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], self.convtr.out_channels, 0)
        fast = self._is_depthwise_multiple and not _recording(self.convtr.weight) and not exporting()
        if x.shape[-1] <= FAST_PATH_MAX_FRAMES and fast:
            y = self._depthwise_few_frames(x)
        else:
            y = self.convtr(x)  # [B, C_out, (N - 1) * s + k]
        if self.overlap:
            y = torch.cat([y[..., : self.overlap] + state.partial, y[..., self.overlap:]], dim=-1)
        if persistent:
            tail = y[..., n_out:]
            if self.convtr.bias is not None:
                # the next call adds its own bias to these samples: keep the tail bias-free
                tail = tail - self.convtr.bias[:, None]
            state.partial = tail
        return y[..., :n_out]


class StreamingSeparableConvTranspose1d(StreamingModule):
    """Depthwise-separable upsampling: 1x1 pointwise ``C_in -> C_out``, then a depthwise
    transposed conv (groups = ``C_out``) of kernel ``k`` and stride ``s``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 bias: bool = True) -> None:
        super().__init__()
        self.pointwise = StreamingConv1d(in_channels, out_channels, 1, bias=False)
        self.depthwise = StreamingConvTranspose1d(out_channels, out_channels, kernel_size, stride,
                                                  groups=out_channels, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (Tensor): [B, C_in, N]. Returns: Tensor: [B, C_out, N * s]."""
        return self.depthwise(self.pointwise(x))


def make_conv(separable: bool, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
              dilation: int = 1) -> StreamingModule:
    """A standard or depthwise-separable causal conv. A 1x1 conv or a 1-channel input is
    always standard (separating it saves nothing)."""
    if separable and kernel_size > 1 and in_channels > 1:
        return StreamingSeparableConv1d(in_channels, out_channels, kernel_size, stride, dilation)
    return StreamingConv1d(in_channels, out_channels, kernel_size, stride, dilation)


def make_conv_transpose(separable: bool, in_channels: int, out_channels: int, kernel_size: int,
                        stride: int) -> StreamingModule:
    """A standard or depthwise-separable causal transposed conv."""
    if separable:
        return StreamingSeparableConvTranspose1d(in_channels, out_channels, kernel_size, stride)
    return StreamingConvTranspose1d(in_channels, out_channels, kernel_size, stride)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Right-pad ``x`` [..., T] with zeros to a multiple of ``multiple`` samples (offline use)."""
    extra = (-x.shape[-1]) % multiple
    return F.pad(x, (0, extra)) if extra else x
