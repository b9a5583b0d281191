"""Model specs: shipped names, presets, safetensors weights, checkpoints; bad files fail clearly."""

from __future__ import annotations

import pytest
import torch

import tinycodec
from tinycodec.pretrained import list_pretrained, load_model, load_pretrained, load_weights, shipped_names


def test_preset_spec_is_deterministic_in_its_seed():
    spec = "soundstream_tiny"  # a preset no shipped model shadows
    assert spec not in list_pretrained()
    a, b, c = load_model(spec, seed=3), load_model(spec, seed=3), load_model(spec, seed=4)
    assert a.model_id == spec and not a.training
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


# One round trip per encoder kind: float SEANet (tiny_v1), int8-exact SEANet (ultra_tiny), float FFT
# frontend (tiny_stft_v1), int8-exact FFT frontend (tinycodec); as a full float32 file and as the
# float16 inference file that ships (shipped weights are float16 already, so both are exact).
@pytest.mark.parametrize("half", [False, True], ids=["float32", "float16_inference"])
@pytest.mark.parametrize("name", ["tiny_v1", "ultra_tiny", "tiny_stft_v1", "tinycodec"])
def test_exported_weights_round_trip(tmp_path, name, half):
    from tinycodec.bitstream import encoder_hash

    model = load_model(name)
    kw = dict(dtype=torch.float16, inference_only=True) if half else {}
    again = load_model(str(tinycodec.export_weights(model, tmp_path / "m.safetensors", **kw)))  # the file alone
    assert again.config == model.config and again.family == model.family
    assert encoder_hash(again) == encoder_hash(model)
    wav = 0.1 * torch.randn(1, 1, 16 * model.hop_length, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        codes = model.encode(wav)
        assert torch.equal(again.encode(wav), codes)
        assert torch.equal(again.decode(codes), model.decode(codes))


def test_half_precision_inference_file_is_smaller_and_fine_tunes(tmp_path):
    model = load_model("tiny_v1", seed=1)  # all float (a deployed encoder keeps float32, see below)
    full = tinycodec.export_weights(model, tmp_path / "full.safetensors")
    slim = tinycodec.export_weights(model, tmp_path / "slim.safetensors", dtype=torch.float16, inference_only=True)
    ema = sum(v.numel() for k, v in model.state_dict().items() if k.endswith((".embed_avg", ".cluster_size")))
    n_float = sum(v.numel() for v in model.state_dict().values() if v.is_floating_point())
    # float32 -> float16 on what is kept, nothing for the EMA statistics (headers aside)
    assert abs(slim.stat().st_size - 2 * (n_float - ema) - (full.stat().st_size - 4 * n_float)) < 4096
    again = load_weights(slim)
    state = again.state_dict()
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    for key, value in model.state_dict().items():
        if key.endswith(".embed_avg"):  # restarted as a fresh codebook's statistics
            assert torch.equal(state[key], state[key[: -len("embed_avg")] + "embed"])
        elif key.endswith(".cluster_size"):
            assert torch.equal(state[key], torch.ones_like(value))
        elif value.is_floating_point():
            assert torch.equal(state[key], value.half().float()), key
    wav = torch.randn(1, 1, 16 * model.hop_length, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (again.decode(model.encode(wav), wav.shape[-1]) - model.decode(model.encode(wav), wav.shape[-1]))
    assert diff.abs().max() < 1e-2  # half-precision weights: same codec to the ear


def test_a_missing_weight_is_refused_even_in_an_inference_file(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = tinycodec.export_weights(load_model("ultra_tiny"), tmp_path / "m.safetensors", inference_only=True)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    state = load_file(str(path))
    dropped = next(k for k in state if k.endswith(".embed"))  # the codes themselves are not optional
    del state[dropped]
    save_file(state, str(path), metadata=meta)
    with pytest.raises(ValueError, match="missing"):
        load_weights(path)


def test_unknown_names_and_bad_files_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="no shipped reference model 'nope'"):
        load_pretrained("nope")
    with pytest.raises(FileNotFoundError, match="neither a shipped model"):
        load_model("no_such_preset_or_file")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_weights(junk)


def test_weights_that_do_not_fit_their_config_are_refused(tmp_path):
    from safetensors.torch import save_file

    model = load_model("ultra_tiny")
    path = tinycodec.export_weights(model, tmp_path / "m.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    state = {k: v for k, v in model.state_dict().items()}
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = torch.zeros(3, 3)  # wrong shape for the config in the metadata
    save_file(state, str(path), metadata=meta)
    with pytest.raises(ValueError, match="do not match their config"):
        load_weights(path)


@pytest.mark.parametrize("name", shipped_names())
def test_every_shipped_model_loads_offline(name):
    model = load_pretrained(name)
    wav = torch.zeros(1, 1, 8 * model.hop_length)
    codes = model.encode(wav)
    assert codes.shape == (1, model.num_quantizers, 8)


@pytest.mark.parametrize("name", shipped_names())
def test_shipped_model_reconstructs_real_speech_better_than_untrained(name):
    from pathlib import Path

    from tinycodec.audio import load
    from tinycodec.eval.metrics import log_mel_distance
    trained = load_pretrained(name)
    torch.manual_seed(0)
    untrained = type(trained)(trained.config).eval()  # same architecture, no training
    clip = Path(__file__).resolve().parents[1] / "data" / "demo" / "speech" / "pyannote_sample.wav"
    wav, sr = load(clip, trained.sample_rate)
    wav = wav[:, 7 * sr : 10 * sr][None]  # [1, 1, T]: 3 s of conversation
    with torch.no_grad():
        d_trained = log_mel_distance(wav, trained.decode(trained.encode(wav), wav.shape[-1]), sr)
        d_untrained = log_mel_distance(wav, untrained.decode(untrained.encode(wav), wav.shape[-1]), sr)
    assert d_trained < 0.7 * d_untrained, (d_trained, d_untrained)


def test_shipped_weights_fit_the_budget_and_each_has_a_model_card():
    from tinycodec.pretrained import PRETRAINED_DIR

    files = sorted(PRETRAINED_DIR.glob("*.safetensors"))
    assert {"ultra_tiny", "tiny", "small", "soundstream_16k", "transformer_tiny"} <= {f.stem for f in files}
    assert sum(f.stat().st_size for f in files) <= 30_000_000  # the package ships at most 30 MB of weights
    for f in files:
        card = f.with_suffix(".md").read_text()
        assert "## Held-out evaluation" in card and "## Training" in card, f.name


def test_a_deployed_model_ships_its_biases_in_float32_and_the_rest_in_float16(tmp_path):
    """float16 cannot hold every int32 bias of the int8 grid: those stay float32, the int8-grid
    weights go to float16 (exactly), and the float16 copy still computes the device's codes."""
    from safetensors import safe_open

    model = load_model("tiny")
    path = tinycodec.export_weights(model, tmp_path / "t.safetensors", dtype=torch.float16, inference_only=True)
    with safe_open(str(path), framework="pt") as f:
        dtypes = {k: f.get_tensor(k).dtype for k in f.keys()}
    encoder = {k: d for k, d in dtypes.items() if k.startswith("encoder.") and "exponents" not in k}
    assert {d for k, d in encoder.items() if k.endswith(".weight")} == {torch.float16}
    assert torch.float32 in {d for k, d in encoder.items() if k.endswith(".bias")}
    assert dtypes["quantizer.layers.0.embed"] == torch.float16
    wav = 0.1 * torch.randn(1, 1, 16 * model.hop_length, generator=torch.Generator().manual_seed(0))
    assert torch.equal(load_weights(path).encode(wav), model.encode(wav))


def test_a_decoder_file_can_share_its_siblings_encoder_and_codebooks(tmp_path):
    """Two decoders of one deployed encoder ship its tensors once; the pair is checked by encoder hash."""
    import shutil

    from safetensors import safe_open

    from tinycodec.bitstream import encoder_hash
    from tinycodec.pretrained import PRETRAINED_DIR
    from tinycodec.train import share_encoder

    for name in ("ultra_tiny", "tiny"):
        shutil.copyfile(PRETRAINED_DIR / f"{name}.safetensors", tmp_path / f"{name}.safetensors")
    # the mirror as one whole file (the shipped one already reads its encoder from ultra_tiny)
    tinycodec.export_weights(load_pretrained("ultra_tiny_mirror"), tmp_path / "ultra_tiny_mirror.safetensors",
                             dtype=torch.float16, inference_only=True)
    full = load_weights(tmp_path / "ultra_tiny_mirror.safetensors")
    before = (tmp_path / "ultra_tiny_mirror.safetensors").stat().st_size
    share_encoder(tmp_path / "ultra_tiny_mirror.safetensors", tmp_path / "ultra_tiny.safetensors")
    with safe_open(str(tmp_path / "ultra_tiny_mirror.safetensors"), framework="pt") as f:
        assert not any(k.startswith(("encoder.", "quantizer.")) for k in f.keys())
    assert (tmp_path / "ultra_tiny_mirror.safetensors").stat().st_size < before
    shared = load_weights(tmp_path / "ultra_tiny_mirror.safetensors")
    assert encoder_hash(shared) == encoder_hash(full)
    for key, value in full.state_dict().items():
        assert torch.equal(shared.state_dict()[key], value), key
    with pytest.raises(ValueError, match="do not share an encoder"):
        share_encoder(tmp_path / "tiny.safetensors", tmp_path / "ultra_tiny.safetensors")
    # the sibling replaced by another encoder (same shapes): refused by hash, not decoded wrongly
    other = load_weights(tmp_path / "ultra_tiny.safetensors")
    with torch.no_grad():
        other.quantizer.layers[0].embed.mul_(-1)
    tinycodec.export_weights(other, tmp_path / "ultra_tiny.safetensors", dtype=torch.float16, inference_only=True)
    with pytest.raises(ValueError, match="encoder hash is now"):
        load_weights(tmp_path / "ultra_tiny_mirror.safetensors")
    (tmp_path / "ultra_tiny.safetensors").unlink()
    with pytest.raises(ValueError, match="cannot be read beside it"):
        load_weights(tmp_path / "ultra_tiny_mirror.safetensors")
