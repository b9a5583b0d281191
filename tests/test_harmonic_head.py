"""The harmonic-plus-noise decoder head: the pitch tracker, exact streaming with a carried phase, the
config that picks it, --init from the flagship, and training with the f0 loss."""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tinycodec.modules.harmonic import ENVELOPE_RATE, estimate_f0, harmonic_sum
from tinycodec.modules.server_decoder import HarmonicNoiseHead, ISTFTHead, ServerDecoder

SR, HOP = 16000, 256


def tone(f0: float, seconds: float = 0.5, seed: int = 0) -> torch.Tensor:
    """A harmonic tone (harmonics 1/k up to Nyquist, random phases), [T]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    ks = range(1, int(SR / 2 / f0) + 1)
    return 0.3 * sum(torch.cos(2 * math.pi * k * f0 * t + 6.28 * torch.rand((), generator=g)) / k for k in ks)


@pytest.mark.parametrize("f0", [150.0, 220.0])
def test_estimate_f0_finds_the_pitch_of_a_harmonic_tone(f0):
    est, voiced = estimate_f0(tone(f0)[None], SR, HOP)
    assert est.shape == voiced.shape == (1, 8000 // HOP)
    assert float(voiced.mean()) >= 0.9  # (the first frame is half silence)
    inner = est[0, 1:-1]
    assert float((inner / f0 - 1).abs().max()) < 0.03


def test_estimate_f0_calls_white_noise_and_silence_unvoiced():
    noise = 0.3 * torch.randn(4, 8000, generator=torch.Generator().manual_seed(0))
    _, voiced = estimate_f0(noise, SR, HOP)
    assert float(voiced.mean()) < 0.1
    _, voiced = estimate_f0(torch.zeros(1, 8000), SR, HOP)
    assert float(voiced.sum()) == 0


def test_harmonic_sum_is_the_sum_of_cosines():
    theta = torch.cat([torch.linspace(0, 2 * math.pi, 1001)[:-1], torch.tensor([0.0, 1e-6, 2 * math.pi - 1e-6])])
    for K in (1, 7, 50):
        direct = sum(torch.cos(k * theta.double()) for k in range(1, K + 1))
        assert float((harmonic_sum(theta, torch.tensor(float(K))) - direct).abs().max()) < 2e-3 * K


def _hn_decoder(seed: int, loud: bool) -> ServerDecoder:
    """A small hn decoder whose harmonic source is quiet (each harmonic at about -78 dBFS) or as loud as
    the noise part (not near silent, as it starts)."""
    torch.manual_seed(seed)
    dec = ServerDecoder(D=16, hop_length=64, dim=32, num_layers=2, head="hn").eval()
    with torch.no_grad():
        dec.head.harmonic.proj.bias[-1] = 3.0 if loud else -3.0  # voicing logit
        dec.head.harmonic.proj.bias[:-2] = (-3.0 if loud else -6.0) / ENVELOPE_RATE  # log-envelope
    return dec


def _chunked(dec: ServerDecoder, q: torch.Tensor, seed: int, keep_phase: bool = True) -> torch.Tensor:
    """``dec`` streamed over ``q`` [B, D, F] in random chunks of 1-8 frames (the phase dropped between
    calls unless ``keep_phase``)."""
    g = torch.Generator().manual_seed(seed)
    sizes, left = [], q.shape[-1]
    while left:
        sizes.append(min(left, int(torch.randint(1, 9, (1,), generator=g))))
        left -= sizes[-1]
    parts = []
    with torch.no_grad(), dec.streaming(q.shape[0]):
        for part in q.split(sizes, -1):
            parts.append(dec(part))
            if not keep_phase:
                dec.get_streaming_state()["head.harmonic"].phase.zero_()
    return torch.cat(parts, -1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hn_streaming_equals_offline_for_random_chunkings(seed):
    dec = _hn_decoder(seed, loud=False)
    q = torch.randn(2, 16, 60)
    with torch.no_grad():
        offline = dec(q)
    streamed = _chunked(dec, q, seed)
    assert streamed.shape == offline.shape == (2, 1, 60 * 64)
    assert float((streamed - offline).abs().max()) < 1e-4
    assert float((_chunked(dec, q, seed, keep_phase=False) - offline).abs().max()) > 1e-3  # the phase carries


@pytest.mark.parametrize("seed", [0, 1])
def test_a_loud_source_drifts_only_by_rounding(seed):
    """The phase integrates f0, so float32 rounding differences of the trunk between chunkings (an ulp of
    f0 in a few frames) add up: with the source as loud as the noise, a drift of about 1e-3 of the peak
    after 60 frames, far below what dropping the carried phase costs."""
    dec = _hn_decoder(seed, loud=True)
    q = torch.randn(2, 16, 60)
    with torch.no_grad():
        offline = dec(q)
    peak = float(offline.abs().max())
    assert float((_chunked(dec, q, seed) - offline).abs().max()) < 1e-3 * peak
    assert float((_chunked(dec, q, seed, keep_phase=False) - offline).abs().max()) > 0.05 * peak


def test_hn_decoder_output_and_predictions_have_the_istft_decoders_shape():
    torch.manual_seed(0)
    q = torch.randn(3, 16, 11)
    hn = ServerDecoder(D=16, hop_length=64, dim=32, num_layers=2, head="hn")
    istft = ServerDecoder(D=16, hop_length=64, dim=32, num_layers=2)
    assert isinstance(hn.head, HarmonicNoiseHead) and type(istft.head) is ISTFTHead
    with torch.no_grad():  # eval + no_grad: the iSTFT decoder takes its runner, the hn one its modules
        assert hn.eval()(q).shape == istft.eval()(q).shape == (3, 1, 11 * 64)
        assert hn(q, tail=True).shape == istft(q, tail=True).shape
    assert hn.head.last_f0.shape == hn.head.last_voicing.shape == (3, 11)
    assert float(hn.head.last_f0.min()) >= 60 and float(hn.head.last_f0.max()) <= 400
    with pytest.raises(ValueError, match="iSTFT head only"):
        hn.runner()
    with pytest.raises(ValueError, match="unknown decoder head"):
        ServerDecoder(D=16, hop_length=64, head="sine")


def test_quiet_start_leaves_the_istft_branch_nearly_alone():
    torch.manual_seed(0)
    hn = ServerDecoder(D=16, hop_length=64, dim=32, num_layers=2, head="hn").eval()
    istft = ServerDecoder(D=16, hop_length=64, dim=32, num_layers=2).eval()
    istft.load_state_dict({k: v for k, v in hn.state_dict().items() if not k.startswith("head.harmonic.")})
    q = torch.randn(1, 16, 20)
    with torch.no_grad():
        a, b = hn(q), istft(q)
    assert 0 < float((a - b).abs().max()) < 0.05 * float(b.abs().max())


def test_a_config_with_the_hn_head_builds_saves_and_reloads(tmp_path):
    from tinycodec.models import TinyStream, build_model, get_preset
    from tinycodec.pretrained import load_weights
    from tinycodec.train import export_weights

    config = replace(get_preset("ultra_tiny"), decoder="server", decoder_dim=16, decoder_layers=1, decoder_head="hn")
    model = TinyStream(config).eval()
    assert isinstance(model.decoder.head, HarmonicNoiseHead)
    again = load_weights(export_weights(model, tmp_path / "hn.safetensors"))
    assert again.config.decoder_head == "hn" and isinstance(again.decoder.head, HarmonicNoiseHead)
    wav = 0.1 * torch.randn(1, 1, 2048)
    with torch.no_grad():
        assert torch.equal(again(wav).reconstruction, model(wav).reconstruction)
    stored = {k: v for k, v in model.config_dict().items() if k != "decoder_head"}  # a config from before the field
    assert type(build_model("tinystream", stored).decoder.head) is ISTFTHead
    with pytest.raises(ValueError, match="unknown decoder_head"):
        replace(config, decoder_head="sine")


def test_init_from_the_flagship_keeps_its_trunk_and_istft_layer_and_starts_the_source_fresh():
    from tinycodec.models import build_model
    from tinycodec.pretrained import load_model
    from tinycodec.train import TrainConfig
    from tinycodec.train.init import init_from, load_init_state

    cfg = TrainConfig(init="tinycodec", freeze_encoder=True, frozen_levels=(4, 5),
                      model_overrides={"decoder_head": "hn"})
    family, model_config, state = init_from(cfg)
    model = build_model(family, model_config)
    load_init_state(model, state)
    flagship = load_model("tinycodec").state_dict()
    own = model.state_dict()
    kept = [k for k in flagship if k.startswith(("encoder.", "quantizer.", "decoder."))]
    assert any(k.startswith("decoder.head.proj.") for k in kept)
    assert any(k.startswith("decoder.blocks.") for k in kept)
    for k in kept:
        assert torch.equal(own[k], flagship[k]), k
    fresh = [k for k in own if k.startswith("decoder.head.harmonic.")]
    assert fresh and not any(k in flagship for k in fresh)
    assert float(own["decoder.head.harmonic.proj.bias"][-1]) == -3.0  # quiet start: voicing logit -3


def test_pitch_loss_is_zero_for_the_right_pitch_and_one_octave_off():
    from tinycodec.train.losses import PitchLoss

    wav = tone(150.0)[None, None]
    loss = PitchLoss(SR, HOP, offset=0)
    frames = 8000 // HOP + 1  # the decoder may have a frame more than the tracker: ignored
    _, tracked = estimate_f0(wav[0], SR, HOP)
    voiced = 20 * (2 * torch.nn.functional.pad(tracked, (0, 1)) - 1)  # logits saying what the tracker says
    right = loss(wav, torch.full((1, frames), 150.0), voiced)
    octave = loss(wav, torch.full((1, frames), 300.0), voiced)
    assert float(right) < 0.05 and abs(float(octave - right) - 1.0) < 0.05
    assert float(loss(wav, torch.full((1, frames), 150.0), -voiced)) > 10  # voicing called unvoiced


def test_one_training_step_with_the_f0_loss(corpus, tmp_path, tiny_config, tiny_model_overrides):
    from tinycodec.train import train
    from tinycodec.train.losses import LossWeights

    hn = tiny_model_overrides | {"decoder": "server", "decoder_dim": 8, "decoder_layers": 1, "decoder_head": "hn"}
    result = train(tiny_config(corpus, tmp_path, model_overrides=hn, weights=LossWeights(f0=1.0),
                               disc_warmup_steps=10))
    assert result.skipped_steps == 0
    assert len(result.history["f0"]) == 1 and 0 < result.history["f0"][0] < 100
    torch.manual_seed(0)
    start = ServerDecoder(16, 256, 8, 1, head="hn").head.harmonic.proj.bias  # (any seed: the bias is set)
    assert not torch.equal(result.model.decoder.head.harmonic.proj.bias.cpu(), start)  # the source learned
    with pytest.raises(ValueError, match="harmonic-plus-noise"):
        train(tiny_config(corpus, tmp_path / "istft", weights=LossWeights(f0=1.0),
                          model_overrides=tiny_model_overrides | {"decoder": "server", "decoder_dim": 8}))


def test_train_reference_flags_reach_the_run():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import train_reference

    argv = "train tiny --init tinycodec --freeze-encoder --decoder-head hn --f0-loss 2".split()
    args = train_reference.build_parser().parse_args(argv)
    assert train_reference.decoder_overrides(args) == {"decoder_head": "hn"}
    assert args.f0_loss == 2.0
    assert train_reference.losses_label({"options": vars(args)}) == "mel + f0 x2"


def test_hn_decoder_refuses_onnx_export(tmp_path):
    import dataclasses

    from tinycodec.export.onnx_decoder import export_decoder_onnx
    from tinycodec.models import CodecModel
    from tinycodec.pretrained import load_pretrained

    config = dataclasses.replace(load_pretrained("tinycodec").config, decoder_head="hn")
    with pytest.raises(ValueError, match="does not export to ONNX"):
        export_decoder_onnx(CodecModel(config), tmp_path / "hn.onnx")
    assert not (tmp_path / "hn.onnx").exists()


def test_the_envelope_moves_envelope_rate_times_faster_than_its_layer():
    # Adam moves each parameter by about lr per step: the envelope's multiplier is what lets a near-silent
    # source open within a run (the bias starts at -12 / ENVELOPE_RATE)
    torch.manual_seed(0)
    head = HarmonicNoiseHead(dim=8, hop_length=64, n_fft=128)
    x = torch.randn(1, 8, 5)
    opt = torch.optim.Adam(head.harmonic.parameters(), lr=1e-3)

    def log_envelope():
        return ENVELOPE_RATE * head.harmonic.proj(x.transpose(1, 2))[..., : head.bins]

    before = log_envelope().detach()
    assert -13 < float(before.mean()) < -11  # the quiet start
    (-log_envelope().mean()).backward()
    opt.step()
    moved = float((log_envelope().detach() - before).mean())
    assert 2 * ENVELOPE_RATE * 1e-3 < moved < 20 * ENVELOPE_RATE * 1e-3  # without it: about 7e-3
