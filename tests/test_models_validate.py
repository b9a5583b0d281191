"""Model configs from files are checked against caps before anything is built: a weights file, a
checkpoint or ``--resume`` that claims ``decoder_layers=10**6`` is refused in one line with no module
constructed, and every preset and shipped model stays within the caps."""

from __future__ import annotations

import json
import re
from dataclasses import asdict

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tinycodec.cli import main
from tinycodec.models import CONFIG_CLASSES, PRESETS, TinyStreamConfig, build_model, get_preset
from tinycodec.models.validate import CheckpointError, build_on_meta
from tinycodec.pretrained import PRETRAINED_DIR, load_checkpoint, load_weights, shipped_names
from tinycodec.train import TrainConfig

HOSTILE = [  # (family, fields over the preset's, the one-line reason)
    ("tinystream", {"decoder": "server", "decoder_layers": 10**6}, "decoder_layers=1000000 is above its cap of 64"),
    ("tinystream", {"dilations": [1] * 100_000}, "dilations has 100000 entries, above its cap of 8"),
    ("tinystream", {"num_quantizers": 10**6}, "num_quantizers=1000000 is above its cap of 64"),
    ("tinystream", {"codebook_size": 1 << 30}, "codebook_size=1073741824 is above its cap of 65536"),
    ("tinystream", {"strides": [2] * 100_000}, "strides has 100000 entries, above its cap of 8"),
    ("tinystream", {"strides": [64, 64, 64]}, "hop_length=262144 (the product of strides [64, 64, 64]) is above"),
    ("tinystream", {"C": 10**400}, "C=~2**1328 is above its cap of 1024"),
    ("tinystream", {"kernel_size": True}, "kernel_size=True must be an integer"),
    ("soundstream", {"D": 10**7}, "D=10000000 is above its cap of 4096"),
    ("transformer", {"num_layers": 10**6}, "num_layers=1000000 is above its cap of 64"),
    ("transformer", {"context": 10**9}, "context=1000000000 is above its cap of 4096"),
]


@pytest.fixture
def modules_built(monkeypatch) -> list[str]:
    """Names of the ``nn.Module`` classes constructed while the test runs."""
    built, init = [], torch.nn.Module.__init__

    def counting(self, *args, **kwargs):
        built.append(type(self).__name__)
        init(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__init__", counting)
    return built


def _config(family: str, fields: dict) -> dict:
    preset = {"tinystream": "tiny", "soundstream": "soundstream_16k", "transformer": "transformer_tiny"}[family]
    return asdict(get_preset(preset)) | fields


def _weights_file(path, family: str, config: dict):
    meta = {"format": "tinycodec", "family": family, "config": json.dumps(config)}
    save_file({"x": torch.zeros(1)}, str(path), metadata=meta)
    return path


def _checkpoint_file(path, family: str, config: dict):
    torch.save({"format": "tinycodec-checkpoint", "version": 1, "family": family, "model_config": config,
                "model": {}, "step": 0, "train_config": TrainConfig().to_dict()}, path)
    return path


@pytest.mark.parametrize("family, fields, reason", HOSTILE)
def test_an_oversized_config_is_refused_before_any_module_is_built(tmp_path, capsys, modules_built, family, fields,
                                                                   reason):
    config = _config(family, fields)
    weights = _weights_file(tmp_path / "w.safetensors", family, config)
    ckpt = _checkpoint_file(tmp_path / "c.pt", family, config)
    for load, path in ((load_weights, weights), (load_checkpoint, ckpt)):
        with pytest.raises(CheckpointError, match=re.escape(reason)) as exc:
            load(path)
        assert str(exc.value).startswith(f"{path}: model config: ") and "\n" not in str(exc.value)
    for command in (["train", "--resume", str(ckpt)], ["encode", "in.wav", "out.tcz", "--model", str(weights)],
                    ["encode", "in.wav", "out.tcz", "--model", str(ckpt)]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert reason in err and err.count("\n") == 1
    with pytest.raises(ValueError, match=re.escape(reason)):  # the Python API: the same check
        build_model(family, config)
    with pytest.raises(ValueError, match=re.escape(reason)):
        CONFIG_CLASSES[family](**config)
    assert modules_built == []


def test_within_the_caps_building_is_bounded_and_the_parameter_count_still_decides(modules_built):
    # every size-bearing field at (or near) its cap: refused by parameter count after a bounded meta build
    config = _config("tinystream", dict(C=1024, D=4096, strides=[4, 4, 4, 4, 4, 8], dilations=[1024] * 8,
                                        kernel_size=63, num_quantizers=64, codebook_size=1 << 16))
    with pytest.raises(CheckpointError, match=r"M parameters \(limit 200 M\)"):
        build_on_meta("tinystream", config, "x")
    assert 0 < len(modules_built) < 2000
    modules_built.clear()
    server = _config("tinystream", dict(decoder="server", decoder_layers=64, decoder_dim=4096))
    with pytest.raises(CheckpointError, match="M parameters"):
        build_on_meta("tinystream", server, "x")
    assert 64 <= len(modules_built) < 2000


def test_every_preset_and_every_shipped_model_is_within_the_caps():
    for name, cfg in PRESETS.items():
        type(cfg).check_limits(asdict(cfg))  # raises on a cap that would refuse it
        assert build_on_meta(cfg.family, asdict(cfg), name) is not None
    names = shipped_names()
    assert "tinycodec" in names
    for name in names:
        with safe_open(str(PRETRAINED_DIR / f"{name}.safetensors"), framework="pt") as f:
            meta = f.metadata()
        CONFIG_CLASSES[meta["family"]].check_limits(json.loads(meta["config"]))


def test_a_command_line_override_beyond_a_cap_is_one_line(tmp_path, capsys):
    with pytest.raises(ValueError, match="num_quantizers=100 is above its cap of 64"):
        TinyStreamConfig(num_quantizers=100)
    assert main(["train", "--config", "tiny", "--num_quantizers", "1000", "--checkpoint_dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "num_quantizers=1000 is above its cap of 64" in err and err.count("\n") == 1
