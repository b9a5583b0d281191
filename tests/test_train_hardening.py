"""Training hardening: ``--resume CKPT`` alone continues the run exactly, flags that would change it
are refused, stale temporaries go, malformed checkpoints fail with one line, a checkpoint chooses
neither where a run writes nor how much it allocates, a divergence names a good checkpoint that
exists, and a folder of hostile files trains on its good files."""

from __future__ import annotations

import copy
import math
import os
import re
import warnings
from dataclasses import asdict

import numpy as np
import pytest
import soundfile as sf
import torch

from tinycodec.cli import build_parser, main
from tinycodec.cli.train import config_from_args
from tinycodec.data.folder import AudioFolder, AudioSkipWarning
from tinycodec.models import TinyStreamConfig
from tinycodec.train import TrainConfig, load_checkpoint, train
from tinycodec.train.checkpoint import CheckpointError, CheckpointManager, check_resumable, read_checkpoint
from tinycodec.train.discriminators import DiscriminatorConfig
from tinycodec.train.loop import Trainer
from tinycodec.train.losses import MultiScaleMelLoss

SMALL = TinyStreamConfig(C=2, D=16, codebook_size=16, num_quantizers=2)


def _chirps(root, n: int = 8, sr: int = 16000, seconds: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    for i in range(n):
        wav = 0.4 * np.sin(2 * np.pi * (rng.uniform(200, 2000) + 300 * t) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(root / f"clip_{i:02d}.wav", wav.astype(np.float32), sr)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _chirps(tmp_path_factory.mktemp("corpus"))


def _flags(corpus, out, steps: int) -> list[str]:
    # every flag differs from its default: a resume that reset any of them would diverge
    return ["train", "--config", "ultra_tiny", "--audio_dir", str(corpus), "--C", "2", "--D", "16",
            "--codebook_size", "16", "--num_quantizers", "2", "--batch_size", "3", "--audio_length", "0.3",
            "--disc_warmup_steps", "7", "--save_interval", "5", "--max_steps", str(steps), "--seed", "3",
            "--checkpoint_dir", str(out / "ckpt"), "--log_dir", str(out / "tb"), "--device", "cpu"]


def test_resume_alone_continues_the_run_bit_identically(corpus, tmp_path):
    assert main(_flags(corpus, tmp_path, 10)) == 0
    ckpt = tmp_path / "ckpt"
    straight = torch.load(ckpt / "step_00000010.pt", weights_only=True)
    os.replace(ckpt / "step_00000005.pt", ckpt / "half.pt")  # the run as a crash at step 5 left it
    for p in ckpt.glob("step_*.pt"):
        p.unlink()
    (ckpt / ".step_00000010.pt.x1y2.tmp").write_bytes(b"half a save")  # what kill -9 mid-save leaves
    assert main(["train", "--resume", str(ckpt / "half.pt")]) == 0  # nothing else: the run continues
    resumed = torch.load(ckpt / "step_00000010.pt", weights_only=True)  # beside the checkpoint it resumed
    assert not (ckpt / ".step_00000010.pt.x1y2.tmp").exists()
    assert resumed["train_config"]["batch_size"] == 3 and resumed["train_config"]["disc_warmup_steps"] == 7
    assert resumed["train_config"]["log_dir"] == str(ckpt / "runs") and (ckpt / "runs").is_dir()
    for part in ("model", "discriminator"):
        for k, v in straight[part].items():
            assert torch.equal(v, resumed[part][k]), (part, k)
    assert resumed["history"]["reconstruction"] == straight["history"]["reconstruction"]


def test_flags_that_change_the_run_are_refused_by_name(corpus, tmp_path, capsys):
    assert main(_flags(corpus, tmp_path, 1)) == 0
    capsys.readouterr()
    ckpt = str(tmp_path / "ckpt" / "step_00000001.pt")
    parse = build_parser().parse_args
    cfg = config_from_args(parse(["train", "--resume", ckpt, "--max_steps", "50", "--log_dir", str(tmp_path)]))
    assert (cfg.max_steps, cfg.batch_size, cfg.audio_length, cfg.disc_warmup_steps, cfg.save_interval, cfg.seed) == (
        50, 3, 0.3, 7, 5, 3)
    same = config_from_args(parse(["train", "--resume", ckpt, "--batch_size", "3", "--config", "ultra_tiny"]))
    assert same.batch_size == 3  # a flag equal to the run's is fine
    assert main(["train", "--resume", ckpt, "--batch_size", "16", "--audio_dir", "data/demo", "--max_steps", "9"]) == 1
    err = capsys.readouterr().err
    assert "--batch_size 16 (the run has 3)" in err and "--audio_dir 'data/demo'" in err
    assert "--max_steps 9" not in err  # a safe flag is not named
    assert err.count("\n") == 1


def test_stale_temporaries_are_removed_when_a_run_opens_its_folder(tmp_path):
    (tmp_path / ".best.pt.abcd.tmp").write_bytes(b"x")
    (tmp_path / "notes.tmp").write_bytes(b"keep")
    CheckpointManager(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp"]


def _valid_ckpt() -> dict:
    torch.manual_seed(0)
    from tinycodec.models import build_model

    model = build_model("tinystream", asdict(SMALL))
    return {"format": "tinycodec-checkpoint", "version": 1, "family": "tinystream", "model_config": asdict(SMALL),
            "train_config": TrainConfig(preset="ultra_tiny").to_dict(), "model": model.state_dict(), "step": 0}


def _bad(kind: str) -> dict:
    c = _valid_ckpt()
    first = next(k for k, v in c["model"].items() if v.is_floating_point())
    if kind == "missing key":
        del c["model_config"]
    elif kind == "unknown field":
        c["model_config"]["bogus"] = 1
    elif kind == "wrong type":
        c["model_config"]["C"] = "two"
    elif kind == "over a cap":
        c["model_config"]["C"] = 200_000
    elif kind == "shape mismatch":
        c["model"][first] = torch.zeros(3, 3)
    elif kind == "non-finite":
        c["model"][first] = c["model"][first].clone().fill_(float("nan"))
    elif kind == "too large":  # every field within its cap, the whole too large
        c["model_config"]["C"] = 1024
    elif kind == "tensor type":
        c["model"][first] = [1.0, 2.0]
    elif kind == "step type":
        c["step"] = "ten"
    return c


@pytest.mark.parametrize("kind, message", [
    ("missing key", "missing key"), ("unknown field", "unexpected keyword argument 'bogus'"),
    ("wrong type", "C='two' must be an integer"), ("over a cap", "C=200000 is above its cap of 1024"),
    ("shape mismatch", "has shape (3, 3)"),
    ("non-finite", "non-finite weights"), ("too large", "M parameters (limit"), ("tensor type", "not a tensor"),
    ("step type", "step must be"),
])
def test_malformed_checkpoints_raise_one_error_type_with_one_line(tmp_path, capsys, kind, message):
    path = tmp_path / "bad.pt"
    torch.save(_bad(kind), path)
    with pytest.raises(CheckpointError, match=re.escape(message)) as exc:
        load_checkpoint(path)
    assert "\n" not in str(exc.value)
    assert main(["train", "--resume", str(path)]) == 1  # the CLI: one line, no traceback
    err = capsys.readouterr().err
    assert err.startswith("tinycodec: error:") and message.split("'")[0] in err and err.count("\n") == 1


def test_resume_needs_its_training_state(tmp_path):
    c = _valid_ckpt()
    torch.save(c, tmp_path / "weights_only.pt")
    with pytest.raises(CheckpointError, match="cannot resume: missing key"):
        check_resumable(read_checkpoint(tmp_path / "weights_only.pt"), tmp_path / "weights_only.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x80\x02junk")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")


def test_weights_files_and_shipped_names_are_checked(tmp_path):
    import tinycodec
    from tinycodec.pretrained import load_pretrained, load_weights

    model = load_pretrained("ultra_tiny")
    with torch.no_grad():
        next(model.decoder.parameters()).view(-1)[0] = float("inf")
    path = tinycodec.export_weights(model, tmp_path / "inf.safetensors")
    with pytest.raises(CheckpointError, match="non-finite weights"):
        load_weights(path)
    for name in ("../../x", "../pretrained/tiny", "/etc/passwd", "tiny.safetensors"):
        with pytest.raises(ValueError, match="no shipped reference model"):
            load_pretrained(name)


def _hostile_folder(root):
    _chirps(root / "good", n=6)
    sr, t = 44101, np.arange(44101) / 44101
    sf.write(root / "odd_rate.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    sf.write(root / "huge.wav", np.full(16000, 1e30, np.float32), 16000, subtype="FLOAT")
    nan = np.zeros(16000, np.float32)
    nan[100] = np.nan
    sf.write(root / "nan.wav", nan, 16000, subtype="FLOAT")
    os.symlink(root, root / "good" / "loop")  # a directory symlink loop
    os.symlink(root / "good", root / "again")  # a second name for a folder
    return root


def test_a_folder_of_hostile_files_trains_on_its_good_files(tmp_path):
    root = _hostile_folder(tmp_path / "data")
    with pytest.warns(AudioSkipWarning) as rec:
        ds = AudioFolder(root, 16000, 0.25)
    reasons = {os.path.basename(p): r for p, r in ds.skipped}
    assert reasons["odd_rate.wav"].startswith("sample rate 44101 Hz cannot be resampled")
    assert reasons["huge.wav"].startswith("absurd amplitude")
    assert reasons["nan.wav"].startswith("non-finite")
    names = sorted(fi.rel for fi in ds.files)
    assert names == [f"good/clip_{i:02d}.wav" for i in range(6)]  # each once, by its own path
    assert any("symlink loop or duplicate" in str(w.message) for w in rec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train(TrainConfig(model="tinystream", preset="ultra_tiny", audio_dir=str(root), batch_size=4,
                                   audio_length=0.25, val_clips=2, val_length=0.25, model_overrides=asdict(SMALL),
                                   disc=DiscriminatorConfig(wave_channels=4, wave_max_channels=16,
                                                            wave_downsample_layers=2, stft_channels=4,
                                                            stft_n_fft=256, stft_hop_length=64),
                                   checkpoint_dir=str(tmp_path / "ckpt"), log_dir=None, max_steps=3,
                                   progress=False, num_threads=1))
    assert result.step == 3 and result.skipped_steps == 0  # k-means initialised on finite crops
    assert all(torch.isfinite(v).all() for v in result.model.state_dict().values() if v.is_floating_point())


def test_pruning_keeps_this_runs_latest_steps_and_never_touches_another_runs(tmp_path):
    other = [tmp_path / f"step_{s:08d}.pt" for s in (5000, 6000)]  # a later run's files in the same folder
    for path in other:
        path.write_bytes(b"x")
    manager = CheckpointManager(tmp_path, keep_last=2)
    written = [manager.save({"step": s, "w": torch.zeros(1)}) for s in (100, 200, 300)]
    assert all(p.exists() for p in other)  # sorted by name they would have been "newer" and survived, and
    assert [p.exists() for p in written] == [False, True, True]  # this run's own would have been deleted


def test_pruning_never_removes_the_protected_checkpoint(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=1)
    first = manager.save({"step": 100, "w": torch.zeros(1)})
    manager.protect(first)  # the last good checkpoint a divergence message would name
    second = manager.save({"step": 200, "w": torch.zeros(1)})
    manager.save({"step": 300, "w": torch.zeros(1)})
    assert first.exists() and not second.exists()


# -- a checkpoint's train_config: paths, resources, history (issue 29, point 5) --------------------
@pytest.fixture(scope="module")
def one_step(corpus, tmp_path_factory) -> dict:
    """A resumable checkpoint of a one-step run (its config names its own folders)."""
    out = tmp_path_factory.mktemp("one_step")
    assert main(_flags(corpus, out, 1)) == 0
    return torch.load(out / "ckpt" / "step_00000001.pt", weights_only=True)


def test_resume_writes_beside_the_checkpoint_or_where_told_never_where_the_file_says(one_step, tmp_path):
    c = copy.deepcopy(one_step)
    c["train_config"] |= {"checkpoint_dir": str(tmp_path / "file_ckpt"), "log_dir": str(tmp_path / "file_tb")}
    run = tmp_path / "run"
    run.mkdir()
    torch.save(c, run / "step_00000001.pt")
    assert main(["train", "--resume", str(run / "step_00000001.pt"), "--max_steps", "2"]) == 0
    assert (run / "step_00000002.pt").is_file() and (run / "runs").is_dir()
    told = tmp_path / "told"
    assert main(["train", "--resume", str(run / "step_00000001.pt"), "--max_steps", "2",
                 "--checkpoint_dir", str(told / "ckpt"), "--log_dir", str(told / "tb")]) == 0
    assert (told / "ckpt" / "step_00000002.pt").is_file() and (told / "tb").is_dir()
    assert not (tmp_path / "file_ckpt").exists() and not (tmp_path / "file_tb").exists()


def _set(path: str, value):
    def change(c: dict) -> None:
        *parents, leaf = path.split(".")
        d = c["train_config"]
        for key in parents:
            d = d[key]
        d[leaf] = value
    return change


@pytest.mark.parametrize("change, message", [
    (_set("batch_size", 10**9), "batch_size=1000000000 is above its cap of 4096"),
    (_set("audio_length", 1e6), "audio_length=1000000.0 s must lie in (0, 60] s"),
    (_set("val_clips", 10**7), "val_clips=10000000 is above its cap of 1024"),
    (_set("val_length", 1e5), "val_length=100000.0 s must lie in (0, 60] s"),
    (_set("num_workers", 10**5), "num_workers=100000 is above its cap of 64"),
    (_set("save_interval", 0), "save_interval=0 is below its minimum of 1"),
    (_set("disc.wave_scales", 10**6), "wave_scales=1000000 is above its cap of 8"),
    (_set("disc.stft_n_ffts", [256] * 10**5), "stft_n_ffts has 100000 entries, above its cap of 8"),
])
def test_resource_fields_of_a_checkpoint_are_capped_before_anything_is_built(one_step, tmp_path, capsys,
                                                                              monkeypatch, change, message):
    c = copy.deepcopy(one_step)
    change(c)
    torch.save(c, tmp_path / "c.pt")
    built = []
    monkeypatch.setattr(Trainer, "__init__", lambda self, config: built.append(config))  # nothing may start
    assert main(["train", "--resume", str(tmp_path / "c.pt")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tinycodec: error:") and message in err and err.count("\n") == 1
    with pytest.raises(CheckpointError, match=re.escape(message)):
        train(resume=str(tmp_path / "c.pt"))
    assert built == []


def test_resource_flags_of_a_new_run_are_capped_too(corpus, tmp_path, capsys):
    assert main(_flags(corpus, tmp_path, 1) + ["--batch_size", "100000"]) == 1
    err = capsys.readouterr().err
    assert "batch_size=100000 is above its cap of 4096" in err and err.count("\n") == 1
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("history, message", [
    ("oops", "history must be a dict of lists, got str"),
    ({"step": [1], "val_step": 0, "val_mel_distance": []}, "history['val_step'] must be a list, got int"),
    ({"step": [1], "val_step": [0], "val_mel_distance": ["x"]}, "history['val_mel_distance'] holds something"),
    ({"step": [1]}, "history lacks ['val_step', 'val_mel_distance']"),
])
def test_a_history_of_the_wrong_type_is_one_line(one_step, tmp_path, capsys, history, message):
    c = copy.deepcopy(one_step)
    c["history"] = history
    torch.save(c, tmp_path / "c.pt")
    assert main(["train", "--resume", str(tmp_path / "c.pt")]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    with pytest.raises(CheckpointError, match="cannot resume: history"):
        train(resume=str(tmp_path / "c.pt"))


def test_a_training_state_that_does_not_load_is_one_line(one_step, tmp_path, capsys):
    c = copy.deepcopy(one_step)
    c["opt_g"]["param_groups"] = c["opt_g"]["param_groups"] * 2  # a group the model does not have
    torch.save(c, tmp_path / "c.pt")
    assert main(["train", "--resume", str(tmp_path / "c.pt"), "--checkpoint_dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "cannot resume: its training state does not load (ValueError:" in err and err.count("\n") == 1


# -- divergence (issue 29, point 6) -----------------------------------------------------------------
def _finite(path) -> bool:
    return all(torch.isfinite(v).all() for v in load_checkpoint(path).state_dict().values() if v.is_floating_point())


def test_lr_1e8_ruins_the_weights_at_step_0_and_no_checkpoint_is_called_good(corpus, tmp_path, tiny_config):
    ckpt = tmp_path / "ckpt"
    with pytest.raises(RuntimeError, match="training diverged") as exc:
        train(tiny_config(corpus, tmp_path, g_lr=1e8, max_steps=10, max_bad_steps=3, save_interval=1))
    message = str(exc.value)
    # step 0's update left finite weights of about 1e8 (saved as step 1); every step from them is non-finite
    assert sorted(p.name for p in ckpt.glob("*.pt")) == ["step_00000001.pt"]  # skipped steps saved nothing
    assert "no checkpoint of this run is known good: start again with a lower --g_lr/--d_lr" in message
    assert f"({ckpt / 'step_00000001.pt'} was saved just before the first non-finite step: do not resume" in message
    assert "\n" not in message


def test_divergence_names_the_last_good_checkpoint_and_it_exists(corpus, tmp_path, tiny_config, monkeypatch):
    original, calls = MultiScaleMelLoss.forward, {"n": 0}

    def nan_from_the_fourth_step(self, x, y):
        calls["n"] += 1
        loss = original(self, x, y)
        return loss * math.nan if calls["n"] >= 4 else loss

    monkeypatch.setattr(MultiScaleMelLoss, "forward", nan_from_the_fourth_step)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(RuntimeError, match="training diverged") as exc:
        train(tiny_config(corpus, tmp_path, max_steps=20, max_bad_steps=3, save_interval=1, keep_last=1))
    good, suspect = ckpt / "step_00000002.pt", ckpt / "step_00000003.pt"
    assert f"the last good checkpoint is {good}: resume from it" in str(exc.value)
    assert f"({suspect} was saved just before the first non-finite step" in str(exc.value)
    # keep_last=1 would have pruned it when step 3 was saved; nothing was saved from the skipped steps 4-6
    assert sorted(p.name for p in ckpt.glob("step_*.pt")) == [good.name, suspect.name]
    assert _finite(good)


def test_no_checkpoint_is_saved_from_non_finite_weights(corpus, tmp_path, tiny_config):
    trainer = Trainer(tiny_config(corpus, tmp_path))
    assert trainer.nonfinite() is None
    assert trainer.save(step_finite=False) is None  # the step just run was skipped
    for module, part in ((trainer.disc, "discriminator."), (trainer.model.decoder, "model.decoder.")):
        weight = next(module.parameters())
        with torch.no_grad():
            kept = weight.view(-1)[0].item()
            weight.view(-1)[0] = float("inf")
        assert trainer.nonfinite().startswith(part) and trainer.save() is None
        with torch.no_grad():
            weight.view(-1)[0] = kept
    assert not list((tmp_path / "ckpt").glob("*.pt"))
    assert trainer.nonfinite() is None and _finite(trainer.save())  # the check is not always "no"
