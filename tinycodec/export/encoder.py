"""The encoder as one traceable graph for ONNX and ESP-DL: waveform -> codes in one ``nn.Module``.

The device runs the encoder and the residual-VQ search, nothing else. The training
modules carry Python-side streaming state (``torch.cat`` with a fresh zero state, then a
slice whose length is computed with ``max()``), which a tracer freezes to one input
length. Here every causal conv becomes ``conv(pad_left(x, P))`` sharing the original
weights: for ``T`` a multiple of ``hop_length`` that computes the very same windows (see
``tinycodec.modules.conv``), and it exports to one ``Pad`` + ``Conv`` that
:func:`tinycodec.export.onnx.fold_pad_into_conv` merges into a left-padded ``Conv``,
the pattern ESP-DL's auto-streaming recognises as causal.

The nearest-codeword search reuses :func:`tinycodec.quantization.squared_distances`
(one matmul per level) followed by ``argmin``, so for a float encoder the codes are
bit-identical to ``model.encode`` in PyTorch. A deployed (int8-exact) encoder exports its
float twin, whose weights sit on their int8 grid: graph runtimes quantize them again their
own way, and the device's own integer arithmetic is the C export
(:mod:`tinycodec.export.c_export`), not this graph.

Notebook: book/07_deployment.md
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinycodec.modules.conv import StreamingConv1d
from tinycodec.quantization import squared_distances


class CausalConv1d(nn.Module):
    """Export form of :class:`~tinycodec.modules.conv.StreamingConv1d`: left zero-pad, then conv.

    Args:
        conv (nn.Conv1d): the layer's conv (shared, not copied).
        padding (int): left padding ``k_eff - s``.
    """

    def __init__(self, conv: nn.Conv1d, padding: int) -> None:
        super().__init__()
        self.conv = conv
        self.padding = padding

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (Tensor): [B, C_in, T], T a multiple of the stride. Returns: [B, C_out, T / s]."""
        return self.conv(F.pad(x, (self.padding, 0)) if self.padding else x)


def _replace_convs(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, StreamingConv1d):
            setattr(module, name, CausalConv1d(child.conv, child.padding))
        else:
            _replace_convs(child)


def causal_encoder(model: nn.Module) -> nn.Module:
    """The model's encoder with every streaming conv replaced by :class:`CausalConv1d`.

    Parameters and buffers are shared with ``model`` (later weight updates show through).

    Args:
        model (CodecModel): a tinycodec model (``model.encoder``: [B, 1, T] -> [B, D, F]).

    Returns:
        nn.Module: [B, 1, T] -> [B, D, T / hop_length] for T a multiple of ``hop_length``.
    """
    # a deployed (int8-exact) encoder exports its float weights, which sit on its int8 grid: graph
    # runtimes (onnxruntime, ESP-DL) quantize them again their own way
    encoder = getattr(model.encoder, "float_encoder", model.encoder)
    memo = {id(t): t for t in list(encoder.parameters()) + list(encoder.buffers())}
    clone = copy.deepcopy(encoder, memo)
    _replace_convs(clone)
    return clone.eval()


class EncoderExport(nn.Module):
    """Encoder + residual VQ search as one module: wav [B, 1, T] -> codes [B, n_q, F] (int64).

    Args:
        model (CodecModel): source model; weights are shared, the module is put in eval mode.
        n_q (int | None): number of quantizer levels (default all).
        with_embeddings (bool): also return the encoder embeddings (parity checks).

    Returns of ``forward``:
        codes (LongTensor): [B, n_q, ceil(T / hop_length)], equal to ``model.encode(wav, n_q)``;
        with ``with_embeddings`` a tuple ``(codes, embeddings [B, D, F])``.
    """

    def __init__(self, model: nn.Module, n_q: int | None = None, with_embeddings: bool = False) -> None:
        super().__init__()
        n_q = model.quantizer._check_n_q(n_q)
        self.encoder = causal_encoder(model)
        # the codebooks as plain buffers [n_q, K, D]: the graph holds them as initializers
        self.register_buffer("codebooks", torch.stack([layer.embed.detach() for layer in
                                                       model.quantizer.layers[:n_q]]).clone())
        self.hop_length = int(model.hop_length)
        self.n_q = n_q
        self.with_embeddings = with_embeddings
        self.eval()

    def embed(self, wav: Tensor) -> Tensor:
        """Args: wav (Tensor): [B, 1, T]. Returns: Tensor: [B, D, ceil(T / hop_length)]."""
        extra = (-wav.shape[-1]) % self.hop_length  # offline zero-padding, as model.encode does
        return self.encoder(F.pad(wav, (0, extra)))

    def quantize(self, z: Tensor) -> Tensor:
        """Nearest-codeword residual search. Args: z (Tensor): [B, D, F]. Returns: LongTensor [B, n_q, F]."""
        B, D = z.shape[0], z.shape[1]
        residual = z.transpose(1, 2).reshape(-1, D)  # [B*F, D], the layout the model uses
        codes = []
        for i in range(self.n_q):
            embed = self.codebooks[i]  # [K, D]
            idx = squared_distances(residual, embed).argmin(1)  # [B*F]; ties -> lowest index
            residual = residual - F.embedding(idx, embed)
            codes.append(idx.reshape(B, -1))
        return torch.stack(codes, dim=1)

    def forward(self, wav: Tensor):
        """Args: wav (Tensor): [B, 1, T] float in [-1, 1].

        Returns:
            LongTensor codes [B, n_q, F], or ``(codes, embeddings [B, D, F])``.
        """
        z = self.embed(wav)
        codes = self.quantize(z)
        return (codes, z) if self.with_embeddings else codes
