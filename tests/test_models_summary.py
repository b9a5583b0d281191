"""summary(): analytic MACs against a forward-hook counter, parameter split, receptive field."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tinycodec.modules.conv as conv_module
from tinycodec.models import CodecModel, SoundStream, TinyStream, list_presets
from tinycodec.models.summary import check_seed_claims, summary, summary_table


def _hook_macs(module: nn.Module, x: torch.Tensor) -> int:
    """MACs of Conv1d / ConvTranspose1d / Linear layers counted from the shapes they really see."""
    total = 0

    def hook(m, inputs, output):
        nonlocal total
        if isinstance(m, nn.Linear):  # one matrix-vector product per row of its input
            total += (output.numel() // m.out_features) * m.in_features * m.out_features
        elif isinstance(m, nn.ConvTranspose1d):
            frames = inputs[0].shape[-1] * inputs[0].shape[0]
            total += frames * m.in_channels * (m.out_channels // m.groups) * m.kernel_size[0]
        else:
            frames = output.shape[-1] * output.shape[0]
            total += frames * m.out_channels * (m.in_channels // m.groups) * m.kernel_size[0]

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, nn.Conv1d | nn.ConvTranspose1d | nn.Linear)]
    with torch.no_grad():
        module(x)
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("name", list_presets())
def test_analytic_macs_match_hook_count(name, monkeypatch):
    # the few-frame depthwise path skips nn.Conv1d.forward (and its hooks): count the conv path
    monkeypatch.setattr(conv_module, "FAST_PATH_MAX_FRAMES", 0)
    torch.manual_seed(0)
    model = CodecModel.from_preset(name).eval()
    s = summary(model, name)
    n_frames = 4
    seconds = n_frames * model.hop_length / model.sample_rate
    wav = torch.randn(1, 1, n_frames * model.hop_length)
    assert _hook_macs(model.encoder, wav) == pytest.approx(s.macs_encoder * seconds, rel=1e-9)
    z = torch.randn(1, model.config.D, n_frames)
    assert _hook_macs(model.decoder, z) == pytest.approx(s.macs_decoder * seconds, rel=1e-9)
    cfg = model.config
    assert s.macs_search == pytest.approx(cfg.frame_rate * cfg.num_quantizers * cfg.codebook_size * cfg.D)


@pytest.mark.parametrize("name", list_presets())
def test_parameter_split_is_complete(name):
    model = CodecModel.from_preset(name)
    s = summary(model)
    cfg = model.config
    assert s.params_codebooks == cfg.num_quantizers * cfg.codebook_size * cfg.D
    assert s.params_encoder + s.params_decoder == sum(p.numel() for p in model.parameters())
    assert s.size_bytes(32) == 4 * s.params_total and s.size_bytes(8) == s.params_total
    assert s.bitrate == model.bitrate()


def test_issue_figures_for_tiny_and_ultra_tiny():
    tiny = summary(TinyStream.from_preset("tiny"))
    assert tiny.params_codebooks == 4 * 512 * 128 == 262144
    assert tiny.params_encoder < 0.5 * tiny.params_total  # "the encoder is about half" does not hold
    assert tiny.latency_ms == 16.0 and tiny.frame_rate == 62.5
    assert summary(TinyStream.from_preset("ultra_tiny")).bitrate == 1000.0
    ss = summary(SoundStream.from_preset("soundstream_base"))
    assert ss.latency_ms == pytest.approx(1000 * 320 / 24000) and ss.bitrate == 6000.0


def _empirical_receptive_field(encoder: nn.Module, hop: int) -> int:
    """Earliest input sample with a non-zero gradient on the last output frame."""
    n = 64 * hop
    x = torch.randn(1, 1, n, requires_grad=True)
    encoder(x)[..., -1].sum().backward()
    nonzero = (x.grad[0, 0] != 0).nonzero()
    return n - int(nonzero.min())


@pytest.mark.parametrize("family", ["soundstream", "tinystream"])
def test_receptive_field_matches_autograd(family):
    torch.manual_seed(0)
    if family == "soundstream":
        model = SoundStream(C=2, D=8, strides=[2, 3, 4], num_quantizers=1, codebook_size=4)
    else:
        model = TinyStream(C=2, D=8, strides=[4, 4], num_quantizers=1, codebook_size=4)
    for m in model.encoder.modules():  # ReLU could zero a path: make every unit pass gradient
        if isinstance(m, nn.ReLU):
            m.forward = lambda x: x
    rf = summary(model).receptive_field
    assert rf < 64 * model.hop_length
    assert _empirical_receptive_field(model.encoder, model.hop_length) == rf


def test_separable_convs_cost_less():
    sep, std = TinyStream(C=8, D=128), TinyStream(C=8, D=128, separable=False)
    assert summary(sep).macs_encoder < 0.5 * summary(std).macs_encoder
    assert summary(sep).params_encoder < 0.5 * summary(std).params_encoder


def test_table_and_seed_claims():
    table = summary_table()
    md = table.to_markdown().splitlines()
    assert len(md) == 2 + len(list_presets()) and md[2].startswith("| ultra_tiny |")
    assert "tiny" in str(table) and "params total" in str(table["tiny"])
    checks = {(c.preset, c.quantity): c for c in check_seed_claims(table)}
    assert not checks[("ultra_tiny", "params_total")].holds()  # seed: ~15K; codebooks alone 32.8K
    assert not checks[("ultra_tiny", "bitrate")].holds()  # seed: 1.1 kbps; 2 x 8 bit x 62.5 Hz = 1.0
    assert checks[("tiny", "bitrate")].holds()
    assert not checks[("small", "bitrate")].holds()  # seed: 2.25; 4 x 10 bit x 62.5 Hz = 2.5
    assert not checks[("tiny", "device_share")].holds()
    assert not checks[("soundstream_base", "params_total")].holds()


def test_top_level_summary_is_the_function_after_the_module_is_imported():
    import tinycodec
    import tinycodec.models.summary as module

    model = TinyStream(C=2, D=8, num_quantizers=1, codebook_size=4)
    assert tinycodec.summary is module.summary is summary  # the module has its own name: no clash
    assert tinycodec.summary(model).params_total == summary(model).params_total
