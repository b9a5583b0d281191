"""Decoder training on a frozen encoder: --init, --decoder, --freeze-encoder."""

from __future__ import annotations

import pytest
import torch

from tinycodec.train import load_checkpoint, train


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory, tiny_config):
    out = tmp_path_factory.mktemp("base")
    result = train(tiny_config(corpus, out, max_steps=2))
    return result.checkpoint


def test_frozen_encoder_keeps_encoder_and_codebooks_and_trains_a_new_decoder(corpus, trained, tmp_path, tiny_config):
    base = load_checkpoint(trained)
    cfg = tiny_config(corpus, tmp_path, model=None, preset=None, init=trained, decoder="server",
                      freeze_encoder=True, max_steps=3, disc_warmup_steps=1,
                      model_overrides={"decoder_dim": 32, "decoder_layers": 2})
    result = train(cfg)
    model = result.model
    assert model.config.decoder == "server" and result.skipped_steps == 0
    for key, value in base.state_dict().items():
        if key.startswith(("encoder.", "quantizer.")):
            assert torch.equal(model.state_dict()[key].cpu(), value), key
    # the decoder learned (its first layer moved away from its seeded start)
    torch.manual_seed(cfg.seed)
    again = train(tiny_config(corpus, tmp_path / "zero", model=None, preset=None, init=trained, decoder="server",
                              freeze_encoder=True, max_steps=0,
                              model_overrides={"decoder_dim": 32, "decoder_layers": 2})).model
    assert not torch.equal(again.decoder.embed.conv.weight, model.decoder.embed.conv.weight)
    assert any(v == v for v in result.history["adversarial"])  # the GAN phase ran (not all NaN)


def test_unfrozen_init_fine_tunes_everything(corpus, trained, tmp_path, tiny_config):
    base = load_checkpoint(trained)
    model = train(tiny_config(corpus, tmp_path, model=None, preset=None, init=trained, max_steps=1)).model
    assert model.config.decoder == "mirror"
    assert not torch.equal(model.encoder.layers[0].conv.weight.cpu(), base.encoder.layers[0].conv.weight)


def test_init_that_lacks_the_encoder_is_refused(corpus, tmp_path):
    from tinycodec.models import TinyStream
    from tinycodec.train.init import load_init_state

    model = TinyStream.from_preset("ultra_tiny")
    with pytest.raises(ValueError, match="lacks encoder"):
        load_init_state(model, {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")})


def test_cli_flags_for_decoder_training_reach_the_config():
    import argparse

    from tinycodec.cli.train import config_from_args, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", "--init", "tiny", "--decoder", "server", "--freeze-encoder",
                              "--audio_dir", "x", "--max_steps", "5"])
    cfg = config_from_args(args)
    assert (cfg.init, cfg.decoder, cfg.freeze_encoder, cfg.max_steps) == ("tiny", "server", True, 5)


def test_shape_flags_with_init_are_refused_not_ignored(corpus, trained, tmp_path, tiny_config):
    from tinycodec.train.init import init_from

    with pytest.raises(ValueError, match="num_quantizers=2 would be ignored"):
        init_from(tiny_config(corpus, tmp_path, model=None, preset=None, init=str(trained), num_quantizers=2))
    with pytest.raises(ValueError, match="C=4 would be ignored"):
        init_from(tiny_config(corpus, tmp_path, model=None, preset=None, init=str(trained), C=4))


def test_init_with_more_codebook_levels_keeps_the_old_ones(corpus, trained, tmp_path, tiny_config):
    """--num_quantizers above --init's: its levels and encoder load, the added level starts fresh and is
    initialised from the data on the first step; frozen, the added level could never learn: refused."""
    base = load_checkpoint(trained)
    cfg = tiny_config(corpus, tmp_path, model=None, preset=None, init=str(trained), num_quantizers=3,
                      max_steps=0)
    grown = train(cfg).model
    assert grown.config.num_quantizers == 3 and len(grown.quantizer.layers) == 3
    for old, new in zip(base.quantizer.layers, grown.quantizer.layers[:2]):
        assert torch.equal(old.embed, new.embed.cpu())
    assert not bool(grown.quantizer.layers[2].initialized)  # k-means on the first training batch
    stepped = train(tiny_config(corpus, tmp_path / "one", model=None, preset=None, init=str(trained),
                                num_quantizers=3, max_steps=1)).model
    assert bool(stepped.quantizer.layers[2].initialized)
    with pytest.raises(ValueError, match="added codebook level"):
        train(tiny_config(corpus, tmp_path / "frozen", model=None, preset=None, init=str(trained),
                          num_quantizers=3, freeze_encoder=True))


def test_deeper_server_decoder_starts_as_the_init_model():
    """--decoder-layers above the init model's: the loaded blocks keep their weights, the added ones
    start as the identity, so the grown model decodes exactly what the init model decoded; training
    then moves the added blocks' layer scale off zero."""
    from dataclasses import replace

    from tinycodec.models import TinyStream
    from tinycodec.train.init import load_init_state

    torch.manual_seed(0)
    small = TinyStream.from_preset("ultra_tiny")
    config = replace(small.config, decoder="server", decoder_dim=32, decoder_layers=2)
    base = TinyStream(config).eval()
    for p in base.decoder.parameters():  # trained-looking weights, not the init's
        p.data.normal_(0, 0.1)
    deep = TinyStream(replace(config, decoder_layers=4)).eval()
    load_init_state(deep, base.state_dict())
    assert [b.gamma.abs().sum().item() for b in deep.decoder.blocks[2:]] == [0.0, 0.0]
    assert torch.equal(deep.decoder.blocks[1].gamma, base.decoder.blocks[1].gamma)
    x = torch.randn(1, 1, 16000)
    with torch.no_grad():
        assert torch.equal(deep(x).reconstruction, base(x).reconstruction)
    deep.train()
    deep(x).reconstruction.square().mean().backward()
    assert deep.decoder.blocks[3].gamma.grad.abs().sum() > 0  # the added block can learn


def test_spectral_and_phase_losses_train_a_decoder_on_chosen_levels(corpus, trained, tmp_path, tiny_config):
    from tinycodec.train.losses import LossWeights

    base = load_checkpoint(trained)
    cfg = tiny_config(corpus, tmp_path, model=None, preset=None, init=trained, freeze_encoder=True,
                      frozen_levels=(1,), weights=LossWeights(stft=10.0, phase=10.0), max_steps=2,
                      disc_warmup_steps=10)
    result = train(cfg)
    assert result.skipped_steps == 0
    for key in ("stft", "phase"):  # both terms were computed and logged, finite
        assert result.history[key] and all(v == v and v > 0 for v in result.history[key])
    for key, value in base.state_dict().items():
        if key.startswith(("encoder.", "quantizer.")):
            assert torch.equal(result.model.state_dict()[key].cpu(), value), key


def test_frozen_levels_are_checked_before_training(corpus, trained, tmp_path, tiny_config):
    with pytest.raises(ValueError, match="needs freeze_encoder"):
        tiny_config(corpus, tmp_path, frozen_levels=(1,))
    cfg = tiny_config(corpus, tmp_path, model=None, preset=None, init=trained, freeze_encoder=True,
                      frozen_levels=(9,), max_steps=1)
    with pytest.raises(ValueError, match="has only"):
        train(cfg)
