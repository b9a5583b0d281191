"""Causal streaming convolutions: padding, exact chunked == offline, causality, state API."""

from __future__ import annotations

import itertools

import pytest
import torch

from tinycodec.modules import (
    ResidualUnit,
    SEANetDecoder,
    SEANetEncoder,
    StreamingConv1d,
    StreamingConvTranspose1d,
    StreamingModule,
    StreamingSeparableConv1d,
    StreamingSeparableConvTranspose1d,
    causal_padding,
)


def _random_split(total: int, unit: int, gen: torch.Generator) -> list[int]:
    """Split ``total`` (a multiple of ``unit``) into random multiples of ``unit``."""
    sizes, left = [], total // unit
    while left:
        n = int(torch.randint(1, min(left, 5) + 1, (1,), generator=gen))
        sizes.append(n * unit)
        left -= n
    return sizes


def _chunked(module, x, sizes):
    with module.streaming(x.shape[0]):
        return torch.cat([module(c) for c in torch.split(x, sizes, dim=-1)], dim=-1)


def test_causal_padding_formula():
    assert causal_padding(4, 2) == 2
    assert causal_padding(7, 1, 9) == 54
    assert causal_padding(16, 8) == 8
    with pytest.raises(ValueError):
        causal_padding(1, 2)


@pytest.mark.parametrize("k,s,d", [(k, s, d) for k, s, d in itertools.product([1, 3, 4, 7, 16], [1, 2, 4, 5, 8], [1, 3])
                                   if (k - 1) * d + 1 >= s])
@torch.no_grad()
def test_conv_chunked_equals_offline(k, s, d):
    torch.manual_seed(k * 100 + s * 10 + d)
    conv = StreamingConv1d(3, 5, k, stride=s, dilation=d)
    T = s * 24
    x = torch.randn(2, 3, T)
    y = conv(x)
    assert y.shape == (2, 5, T // s)
    gen = torch.Generator().manual_seed(k + s + d)
    for _ in range(3):
        ys = _chunked(conv, x, _random_split(T, s, gen))
        assert (ys - y).abs().max() <= 1e-6


@pytest.mark.parametrize("k,s", [(2, 1), (4, 2), (8, 4), (10, 5), (16, 8), (3, 3)])
@torch.no_grad()
def test_conv_transpose_chunked_equals_offline(k, s):
    torch.manual_seed(k + s)
    for conv in (StreamingConvTranspose1d(4, 3, k, s), StreamingSeparableConvTranspose1d(4, 3, k, s)):
        x = torch.randn(2, 4, 20)
        y = conv(x)
        assert y.shape == (2, 3, 20 * s)
        gen = torch.Generator().manual_seed(k * s)
        ys = _chunked(conv, x, _random_split(20, 1, gen))
        assert (ys - y).abs().max() <= 1e-6


@torch.no_grad()
def test_conv_transpose_offline_is_the_causal_prefix_of_full_output():
    torch.manual_seed(0)
    conv = StreamingConvTranspose1d(2, 2, 8, 4)
    x = torch.randn(1, 2, 6)
    full = conv.convtr(x)  # [(N - 1) s + k] samples, no trimming
    assert torch.allclose(conv(x), full[..., :24])


@torch.no_grad()
def test_frame_depends_only_on_its_own_and_past_samples():
    torch.manual_seed(0)
    k, s = 4, 2
    conv = StreamingConv1d(1, 1, k, stride=s)
    x = torch.randn(1, 1, 12)
    y = conv(x)
    for j in range(5):
        x2 = x.clone()
        x2[..., (j + 1) * s] += 1.0  # first sample after block j
        y2 = conv(x2)
        assert torch.equal(y2[..., : j + 1], y[..., : j + 1])
        assert not torch.equal(y2[..., j + 1], y[..., j + 1])


@torch.no_grad()
def test_separable_conv_matches_depthwise_then_pointwise_and_streams():
    torch.manual_seed(1)
    conv = StreamingSeparableConv1d(6, 10, 7, stride=1, dilation=3)
    x = torch.randn(2, 6, 40)
    ref = conv.pointwise.conv(torch.nn.functional.conv1d(
        torch.nn.functional.pad(x, (18, 0)), conv.depthwise.conv.weight, None, dilation=3, groups=6))
    assert torch.allclose(conv(x), ref, atol=1e-6)
    assert (_chunked(conv, x, [1, 7, 12, 20]) - conv(x)).abs().max() <= 1e-6
    assert conv.depthwise.conv.bias is None  # bias before a linear 1x1 is redundant


@pytest.mark.parametrize("separable,act", [(False, "elu"), (True, "relu")])
@torch.no_grad()
def test_seanet_stack_streams_exactly(separable, act):
    torch.manual_seed(2)
    strides = [2, 3]
    enc = SEANetEncoder(4, 16, strides, [1, 3], activation=act, separable=separable)
    dec = SEANetDecoder(4, 16, strides, [1, 3], activation=act, separable=separable)
    x = torch.randn(2, 1, 6 * 30)
    z, y = enc(x), dec(enc(x))
    assert z.shape == (2, 16, 30) and y.shape == (2, 1, 180)
    gen = torch.Generator().manual_seed(3)
    sizes = _random_split(180, 6, gen)
    assert (_chunked(enc, x, sizes) - z).abs().max() <= 1e-6
    with dec.streaming(2):
        ys = torch.cat([dec(c) for c in torch.split(z, [n // 6 for n in sizes], dim=-1)], dim=-1)
    assert (ys - y).abs().max() <= 1e-6


@torch.no_grad()
def test_streaming_state_api():
    torch.manual_seed(3)
    unit = ResidualUnit(4, dilation=3)
    x = torch.randn(1, 4, 10)
    assert not unit.is_streaming
    with unit.streaming(1):
        assert unit.is_streaming and all(m.is_streaming for m in unit.modules() if hasattr(m, "is_streaming"))
        first = unit(x)
        second = unit(x)  # carries state: differs from a fresh start
        assert not torch.allclose(first, second)
        unit.reset_streaming()
        assert torch.equal(unit(x), first)
        with pytest.raises(ValueError):
            unit(torch.randn(2, 4, 10))  # batch size differs from the block's
        with pytest.raises(RuntimeError):
            with unit.streaming(1):
                pass
    assert not unit.is_streaming
    assert torch.equal(unit(x), first)  # offline == fresh zero state
    with pytest.raises(RuntimeError):
        unit.reset_streaming()


@torch.no_grad()
def test_streaming_state_get_and_set_resume_a_stream():
    """moshi's pattern: a stream's states, taken out with get_streaming_state and put back later with
    set_streaming_state (after another stream ran in between), continue exactly where it stopped."""
    torch.manual_seed(5)
    unit = ResidualUnit(4, dilation=3)
    a, b = torch.randn(1, 4, 30), torch.randn(1, 4, 10)
    offline = unit(a)
    with unit.streaming(1):
        straight = torch.cat([unit(a[..., :10]), unit(a[..., 10:])], -1)
    names = [n for n, m in unit.named_modules() if isinstance(m, StreamingModule)]
    assert list(unit.get_streaming_state()) == names and "" in names
    assert all(v is None for v in unit.get_streaming_state().values())  # outside a block
    saved = unit.initial_streaming_state(1)
    assert not unit.is_streaming  # only built, not installed
    unit.set_streaming_state(saved)
    first = unit(a[..., :10])
    saved = unit.get_streaming_state()
    unit.set_streaming_state(unit.initial_streaming_state(1))
    unit(b)  # another stream moves the states on
    unit.set_streaming_state(saved)
    assert torch.equal(torch.cat([first, unit(a[..., 10:])], -1), straight)
    unit.set_streaming_state(dict.fromkeys(names))  # all None: streaming stops
    assert not unit.is_streaming and torch.equal(unit(a), offline)  # each call from a fresh zero state again
    with pytest.raises(KeyError, match="missing"):
        unit.set_streaming_state({"": None})
    mixed = unit.initial_streaming_state(1) | {"": unit.initial_streaming_state(2)[""]}
    with pytest.raises(ValueError, match="batch size"):
        unit.set_streaming_state(mixed)
    with pytest.raises(ValueError, match="batch_size"):
        unit.initial_streaming_state(0)


def test_a_new_stream_sees_the_modules_as_they_are_now():
    # the tree of streaming modules is kept between calls (a server gets and sets states on every one)
    # and walked again when a stream starts: a layer added between two streams streams in the second
    unit = ResidualUnit(4, dilation=1)
    with unit.streaming(1):
        assert "extra" not in unit.get_streaming_state()
    unit.extra = StreamingConv1d(4, 4, 3)
    with unit.streaming(1):
        assert unit.extra.is_streaming and "extra" in unit.get_streaming_state()
    assert not unit.extra.is_streaming


@torch.no_grad()
def test_streaming_conv_buffers_partial_strides():
    torch.manual_seed(4)
    conv = StreamingConv1d(1, 2, 8, stride=4)
    x = torch.randn(1, 1, 40)
    with conv.streaming(1):
        outs = [conv(c) for c in torch.split(x, [3, 5, 2, 14, 16], dim=-1)]
    assert [o.shape[-1] for o in outs] == [0, 2, 0, 4, 4]
    assert (torch.cat(outs, -1) - conv(x)).abs().max() <= 1e-6


@pytest.mark.parametrize("k,s,d", [(7, 1, 1), (7, 1, 3), (8, 4, 1), (10, 5, 1)])
@torch.no_grad()
def test_depthwise_fast_path_equals_grouped_conv(k, s, d, monkeypatch):
    import tinycodec.modules.conv as conv_module

    torch.manual_seed(k * s * d)
    conv = StreamingConv1d(6, 6, k, stride=s, dilation=d, groups=6)
    convtr = StreamingConvTranspose1d(6, 6, 2 * s, s, groups=6)
    x, z = torch.randn(2, 6, 8 * s), torch.randn(2, 6, 5)
    fast, fast_tr = conv(x), convtr(z)
    monkeypatch.setattr(conv_module, "FAST_PATH_MAX_FRAMES", 0)
    assert (fast - conv(x)).abs().max() <= 1e-6
    assert (fast_tr - convtr(z)).abs().max() <= 1e-6
