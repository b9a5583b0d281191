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
    from tinycodec.train.loop import load_init_state

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
    from tinycodec.train.loop import init_from

    with pytest.raises(ValueError, match="num_quantizers=5 would be ignored"):
        init_from(tiny_config(corpus, tmp_path, model=None, preset=None, init=str(trained), num_quantizers=5))
