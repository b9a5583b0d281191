"""The server decoder at inference speed: the same arithmetic in fewer, larger torch calls.

Streaming one frame (16 ms) per call, :class:`~tinycodec.modules.server_decoder.ServerDecoder` spends
its time dispatching about a hundred small modules and their ``[B, C, T] <-> [B, T, C]`` transposes,
and reading its 8 MB of float32 weights (more than a core's L2 cache) once per call.
:class:`ServerRunner` prepares the weights once and runs the decoder as a flat list of calls on
time-major activations, the residual stream one ``[B F, C]`` matrix::

    embed:      cat(history [B, k-1, D], q [B, F, D]) -> windows [B F, k D] -> addmm
    per block:  cat(history [B, k-1, C], x) -> taps * window, sum -> + b          (depthwise)
                layer_norm -> addmm (pw1 / sqrt 2) = u -> u (1 + erf u)           (GELU, see _Block)
                -> addmm (gamma pw2 / sqrt 2) + x + gamma b2                      (residual)
    head:       layer_norm -> addmm (proj) -> exp, polar -> irfft * window -> overlap-add with the tail

The weights' bytes per call stay (only more frames per call share them); the number of calls drops
by about half. Nothing is approximated: outputs equal the module path within float32 rounding
(summation order and the constants folded into the weights). It runs in ``torch.inference_mode``
(~10 % less dispatch than ``no_grad``): the states it writes are inference tensors (read by either
path, written in place only inside inference mode, as the batched server does) and its output is
copied out.

The streaming states are the modules' own (:mod:`tinycodec.modules.streaming`): each conv's
``previous`` [B, C, k - 1] (a transposed view of the runner's time-major history) and the head's
overlap ``tail`` [B, n_fft - hop], so ``get_streaming_state``/``set_streaming_state``, the batched
server (:mod:`tinycodec.streaming.batch`) and the module path can take over a stream at any call.
:meth:`ServerDecoder.runner` builds a runner on first use and again after any parameter or buffer
changes or is replaced (an in-place update bumps a tensor's version; a move, a load or a new
``Parameter`` brings new storage); replacing a whole submodule is not followed.

Notebook: book/06_streaming.md
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SQRT_HALF = math.sqrt(0.5)


@dataclass
class _Block:
    """One ConvNeXt block's prepared weights (``C`` channels, ``H`` hidden, ``k`` taps).

    GELU is ``x/2 (1 + erf(x/sqrt 2))``: with ``u = x/sqrt 2`` it is ``u (1 + erf u) / sqrt 2``, so
    ``1/sqrt 2`` goes into both pointwise layers and GELU becomes ``erf`` and one ``addcmul``
    (``F.gelu``'s fixed cost is ~3x theirs on one frame); ``gamma`` goes into the second layer.
    """

    taps: Tensor  # [k, C]: depthwise taps, for one frame's window [B, k, C]
    taps_t: Tensor  # [C, k]: the same, for unfolded windows [B, F, C, k]
    dw_bias: Tensor  # [C]
    norm: tuple  # (normalized_shape, weight [C], bias [C], eps) of torch.layer_norm
    w1: Tensor  # [C, H]: W1^T / sqrt 2
    b1: Tensor  # [H]: b1 / sqrt 2
    w2: Tensor  # [H, C]: (gamma W2)^T / sqrt 2
    b2: Tensor  # [C]: gamma b2


def _norm(ln: nn.LayerNorm) -> tuple:
    return ln.normalized_shape, ln.weight.detach(), ln.bias.detach(), ln.eps


class ServerRunner:
    """A :class:`~tinycodec.modules.server_decoder.ServerDecoder`'s weights, prepared for inference.

    Args:
        decoder (ServerDecoder): the decoder; its current weights are copied (``ServerDecoder.runner``
            builds a new runner after a change).

    Raises:
        ValueError: a conv this runner does not cover (strided, dilated, or kernels of two sizes).
    """

    @torch.no_grad()
    def __init__(self, decoder) -> None:
        conv = decoder.embed.conv
        self.k = k = conv.kernel_size[0]
        for c in [conv] + [b.dwconv.conv for b in decoder.blocks]:
            if c.kernel_size[0] != k or c.stride[0] != 1 or c.dilation[0] != 1:
                raise ValueError(f"the runner covers convs of stride 1 and one kernel size ({k}), not {c}")
        # [C_out, C_in, k] -> [k C_in, C_out]: rows in the order of a time-major window [k, C_in]
        self.embed_weight = conv.weight.detach().permute(2, 1, 0).reshape(-1, conv.out_channels).contiguous()
        self.embed_bias = conv.bias.detach().clone()
        self.convs = [decoder.embed] + [b.dwconv for b in decoder.blocks]  # where the histories live
        self.blocks = [self._block(b) for b in decoder.blocks]
        self.norm = _norm(decoder.norm)
        head = decoder.head
        self.head = head
        self.proj_weight = head.proj.weight.detach().t().contiguous()  # [C, 2 bins]
        self.proj_bias = head.proj.bias.detach().clone()
        self.window = head.window.detach().clone()  # [n_fft]
        self.hop, self.n_fft, self.bins = head.hop_length, head.n_fft, head.bins
        self.hops = self.n_fft // self.hop

    @staticmethod
    def _block(block) -> _Block:
        dw, gamma = block.dwconv.conv, block.gamma.detach()
        taps = dw.weight.detach()[:, 0]  # [C, k]
        return _Block(taps.t().contiguous(), taps.clone(), dw.bias.detach().clone(), _norm(block.norm),
                      block.pw1.weight.detach().t() * SQRT_HALF, block.pw1.bias.detach() * SQRT_HALF,
                      (block.pw2.weight.detach() * gamma[:, None]).t() * SQRT_HALF,
                      block.pw2.bias.detach() * gamma)

    def forward(self, q: Tensor, tail: bool = False) -> Tensor:
        """The decoder's forward on its streaming states (fresh zero ones offline), in inference mode.

        Args:
            q (Tensor): [B, D, F] quantized embeddings.
            tail (bool): offline only: also return the ``n_fft - hop`` samples after the last block.

        Returns:
            Tensor: [B, 1, F * hop] (``+ n_fft - hop`` with ``tail``), an ordinary tensor.
        """
        if torch.is_inference_mode_enabled():
            return self._forward(q, tail)
        with torch.inference_mode():
            y = self._forward(q, tail)
        return y.clone()  # a copy made outside: the caller may write into it

    def _forward(self, q: Tensor, tail: bool) -> Tensor:
        """:meth:`forward` without the switch to inference mode (see the module docstring's diagram)."""
        B, _, n = q.shape
        head_state, persistent = self.head._get_state(B)  # checks B; one batch size for all states
        if tail and persistent:
            raise RuntimeError("tail=True is for offline decoding; a stream's tail arrives with its next frames")
        if n == 0:
            return q.new_zeros(B, 1, self.n_fft - self.hop if tail else 0)
        k, convs = self.k, iter(self.convs)
        h = self._window(q.transpose(1, 2), next(convs), persistent)  # [B, k - 1 + F, D]
        windows = h.view(B, -1) if n == 1 else h.unfold(1, k, 1).transpose(2, 3).reshape(B * n, -1)
        x = torch.addmm(self.embed_bias, windows, self.embed_weight)  # [B F, C]: the residual stream
        C = x.shape[1]
        for w in self.blocks:
            h = self._window(x.view(B, n, C), next(convs), persistent)  # [B, k - 1 + F, C]
            if n == 1:
                y = (h * w.taps).sum(1)
            else:
                y = (h.unfold(1, k, 1) * w.taps_t).sum(-1).view(B * n, C)
            u = torch.addmm(w.b1, torch.layer_norm(y + w.dw_bias, *w.norm), w.w1)  # [B F, H]
            x = torch.addmm(x, torch.addcmul(u, u, torch.erf(u)), w.w2) + w.b2
        p = torch.addmm(self.proj_bias, torch.layer_norm(x, *self.norm), self.proj_weight)  # [B F, 2 bins]
        p = p if p.dtype == torch.float32 else p.float()
        mag = torch.exp(p[:, : self.bins].clamp(max=8.0))
        frames = torch.fft.irfft(torch.polar(mag, p[:, self.bins:]), n=self.n_fft) * self.window
        return self._overlap_add(frames.view(B, n, self.n_fft), head_state, persistent, tail)

    @staticmethod
    def _window(x: Tensor, conv, persistent: bool) -> Tensor:
        """``x`` [B, F, C] after the conv's history [B, k - 1, C]; the history moves on in a stream.
        The state keeps the module's layout [B, C, k - 1] (a view), so either path can resume it."""
        n = x.shape[1]
        if persistent:
            state = conv._streaming_state
            h = torch.cat([state.previous.transpose(1, 2), x], dim=1)
            state.previous = h[:, n:].transpose(1, 2)
            return h
        return torch.cat([x.new_zeros(x.shape[0], conv.padding, x.shape[2]), x], dim=1)

    def _overlap_add(self, frames: Tensor, state, persistent: bool, tail: bool) -> Tensor:
        """Args: frames (Tensor): [B, F, n_fft] windowed. Returns: Tensor: [B, 1, F * hop] (+ tail)."""
        B, n, _ = frames.shape
        hop, overlap = self.hop, self.n_fft - self.hop
        if self.hops == 2:  # block f = first half of frame f + second half of frame f - 1 (or the tail)
            halves = frames.view(B, n, 2, hop)
            before = state.tail[:, None] if n == 1 else torch.cat([state.tail[:, None], halves[:, :-1, 1]], 1)
            y = (halves[:, :, 0] + before).view(B, n * hop)
            rest = halves[:, -1, 1]  # [B, hop]
        else:
            length = (n - 1) * hop + self.n_fft
            full = F.fold(frames.transpose(1, 2), output_size=(1, length), kernel_size=(1, self.n_fft),
                          stride=(1, hop)).view(B, length)
            if overlap:
                full[:, :overlap] += state.tail
            y, rest = full[:, : n * hop], full[:, n * hop:]
        if persistent:
            state.tail = rest
        return torch.cat([y, rest], 1)[:, None] if tail else y[:, None]
