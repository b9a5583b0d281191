"""The trainer: smoke runs, exact resume, NaN guard, safe checkpoints, preset mismatch, SIGTERM, TensorBoard."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from tinycodec.train import TrainConfig, export_weights, load_checkpoint, train
from tinycodec.train.losses import MultiScaleMelLoss

ROOT = Path(__file__).resolve().parents[1]
STRIDES = {"tinystream": [4, 4, 4, 4], "soundstream": [2, 4, 5, 8], "transformer": [2, 4, 5, 6]}


@pytest.mark.parametrize("family", list(STRIDES))
def test_one_step_smoke_run_per_family(corpus, tmp_path, family, tiny_config, tiny_model_overrides):
    over = dict(tiny_model_overrides, strides=STRIDES[family], sample_rate=16000)
    if family == "transformer":
        over.update(num_heads=2, context=8)
    cfg = tiny_config(corpus, tmp_path, model=family, preset=None, model_overrides=over)
    result = train(cfg)
    assert result.step == 1 and result.skipped_steps == 0
    assert all(math.isfinite(result.history[k][0]) for k in ("reconstruction", "adversarial", "discriminator"))
    assert len(result.history["val_mel_distance"]) == 2  # step 0 and the last step
    model = load_checkpoint(result.checkpoint)  # no other argument
    assert model.family == family and model.config.C == 2
    for k, v in result.model.state_dict().items():
        assert torch.equal(v.cpu(), model.state_dict()[k]), k
    from safetensors import safe_open

    out = export_weights(result.checkpoint, tmp_path / "w.safetensors")
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
        assert set(f.keys()) == set(model.state_dict())
    assert meta["family"] == family and json.loads(meta["config"])["D"] == 16


def test_unknown_family_is_refused_clearly(corpus, tmp_path, tiny_config):
    with pytest.raises(ValueError, match="no_such_family"):
        train(tiny_config(corpus, tmp_path, model="no_such_family", preset=None))


def test_preset_of_another_family_is_refused(corpus, tmp_path, tiny_config):
    with pytest.raises(ValueError, match="is a tinystream preset, not soundstream"):
        train(tiny_config(corpus, tmp_path, model="soundstream", preset="tiny"))


def test_cli_flags_reach_the_config():
    from tinycodec.cli import build_parser

    args = build_parser().parse_args(
        "train --model soundstream --config soundstream_tiny --audio_dir a --batch_size 6 --audio_length 2.0 "
        "--C 32 --D 512 --num_quantizers 8 --codebook_size 1024 --sample_rate 24000 --g_lr 1e-4 --d_lr 2e-4 "
        "--disc_warmup_steps 5000 --disc_window 0.3 --save_interval 5000 --num_workers 4 --num_epochs 3 --checkpoint_dir c "
        "--log_dir l --resume r.pt --device cpu --seed 7".split())
    cfg = TrainConfig.from_args(args)
    assert (cfg.model, cfg.preset, cfg.batch_size, cfg.C, cfg.D, cfg.codebook_size) == (
        "soundstream", "soundstream_tiny", 6, 32, 512, 1024)
    assert (cfg.g_lr, cfg.d_lr, cfg.disc_warmup_steps, cfg.num_epochs, cfg.max_steps) == (1e-4, 2e-4, 5000, 3, None)
    assert (cfg.resume, cfg.seed, cfg.num_workers, cfg.sample_rate, cfg.disc_window) == ("r.pt", 7, 4, 24000, 0.3)


@pytest.mark.parametrize("on_device,window,augment", [(False, 0.0, 0.0), (True, 0.0, 0.0), (False, 0.1, 0.0),
                                                    (False, 0.0, 0.5)],
                         ids=["loader", "corpus_on_device", "disc_window", "augment"])
def test_resume_is_exact(corpus, tmp_path, on_device, window, augment, tiny_config):
    kw = dict(disc_warmup_steps=5, val_interval=7, save_interval=10, corpus_on_device=on_device, disc_window=window,
              augment=augment)
    straight = train(tiny_config(corpus, tmp_path / "a", max_steps=20, **kw))
    first = train(tiny_config(corpus, tmp_path / "b", max_steps=10, **kw))
    second = train(tiny_config(corpus, tmp_path / "b", max_steps=20, resume=first.checkpoint, **kw))
    assert second.step == 20
    a, b = straight.model.state_dict(), second.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert second.history["reconstruction"] == straight.history["reconstruction"]
    ca, cb = torch.load(straight.checkpoint, weights_only=True), torch.load(second.checkpoint, weights_only=True)
    for k in ca["discriminator"]:
        assert torch.equal(ca["discriminator"][k], cb["discriminator"][k]), k


def test_python_resume_continues_the_stored_run(corpus, tmp_path, tiny_config):
    # train(resume=CKPT) alone is the run the checkpoint names, as `tinycodec train --resume` is
    kw = dict(disc_warmup_steps=5, batch_size=2, audio_length=0.25, save_interval=4)
    straight = train(tiny_config(corpus, tmp_path / "a", max_steps=8, **kw))
    first = train(tiny_config(corpus, tmp_path / "b", max_steps=4, **kw))
    second = train(resume=first.checkpoint, max_steps=8)  # no audio_dir, batch or warm-up given
    assert second.step == 8 and second.history["reconstruction"] == straight.history["reconstruction"]
    with pytest.raises(ValueError, match=r"would change it: --batch_size 3 \(the run has 2\)"):
        train(resume=first.checkpoint, max_steps=8, batch_size=3)


def test_corpus_on_device_cuts_crops_from_one_cached_tensor_file(corpus, tmp_path, tiny_config):
    from tinycodec.data.folder import AudioFolder
    from tinycodec.data.tensorcorpus import TensorCorpus
    from tinycodec.train.data import DeviceCrops

    result = train(tiny_config(corpus, tmp_path, max_steps=3, corpus_on_device=True))
    cached = tmp_path / "ckpt" / "train_corpus_16000hz.safetensors"
    train_files = [fi.rel for fi in AudioFolder(corpus, 16000, split="train").files]
    assert result.step == 3 and TensorCorpus(cached).names == train_files  # the train split only
    stamp = cached.stat().st_mtime_ns
    train(tiny_config(corpus, tmp_path, max_steps=1, corpus_on_device=True))
    assert cached.stat().st_mtime_ns == stamp  # reused, not rebuilt
    # two processes of a global batch of 4 take contiguous halves of the same crops
    whole = next(iter(DeviceCrops(cached, 0.25, 4, "cpu", seed=1)))
    halves = [next(iter(DeviceCrops(cached, 0.25, 4, "cpu", seed=1, rank=r, world_size=2))) for r in (0, 1)]
    assert whole.shape == (4, 1, 4000) and torch.equal(torch.cat(halves), whole)


def test_resume_from_another_preset_names_the_mismatch(corpus, tmp_path, tiny_config, tiny_model_overrides):
    first = train(tiny_config(corpus, tmp_path))
    over = dict(tiny_model_overrides, C=4)
    with pytest.raises(ValueError, match=r"cannot resume .*preset 'ultra_tiny'.* C 2 -> 4"):
        train(tiny_config(corpus, tmp_path, max_steps=2, resume=first.checkpoint, model_overrides=over))
    with pytest.raises(ValueError, match=r"holds preset 'ultra_tiny', this run asks for 'tiny': .*codebook_size 16 -> 512"):
        train(tiny_config(corpus, tmp_path, max_steps=2, resume=first.checkpoint, preset="tiny",
                          model_overrides={}))


def test_nan_guard_skips_then_aborts(corpus, tmp_path, monkeypatch, caplog, tiny_config):
    original, calls = MultiScaleMelLoss.forward, {"n": 0}

    def sometimes_nan(self, x, y):
        calls["n"] += 1
        loss = original(self, x, y)
        return loss * math.nan if calls["n"] in (2, 3) else loss

    monkeypatch.setattr(MultiScaleMelLoss, "forward", sometimes_nan)
    with caplog.at_level(logging.WARNING, logger="tinycodec.train.loop"):
        result = train(tiny_config(corpus, tmp_path, max_steps=5, max_bad_steps=3))
    assert result.step == 5 and result.skipped_steps == 2
    assert sum("non-finite" in r.getMessage() for r in caplog.records) == 2
    assert all(torch.isfinite(v).all() for v in result.model.state_dict().values())

    monkeypatch.setattr(MultiScaleMelLoss, "forward", lambda self, x, y: original(self, x, y) * math.inf)
    with pytest.raises(RuntimeError, match="3 non-finite steps in a row"):
        train(tiny_config(corpus, tmp_path / "b", max_steps=10, max_bad_steps=3))


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused(corpus, tmp_path, tiny_config):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "tinycodec-checkpoint", "payload": _Evil(marker)}, path)
    with pytest.raises(RuntimeError, match="refusing to load"):
        load_checkpoint(path)
    with pytest.raises(RuntimeError, match="refusing to load"):
        train(tiny_config(corpus, tmp_path, resume=str(path)))
    assert not marker.exists()


def test_sigterm_saves_a_checkpoint_and_exits_with_143(corpus, tmp_path):
    ckpt, logs = tmp_path / "ckpt", tmp_path / "runs"
    cmd = [sys.executable, "-m", "tinycodec", "train", "--config", "ultra_tiny", "--audio_dir", str(corpus),
           "--C", "2", "--D", "16", "--codebook_size", "16", "--batch_size", "2", "--audio_length", "0.25",
           "--max_steps", "100000", "--save_interval", "100000", "--checkpoint_dir", str(ckpt),
           "--log_dir", str(logs), "--device", "cpu"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, cwd=tmp_path)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(proc.stderr.fileno(), 4096), b"")),
                              daemon=True)
    reader.start()
    deadline = time.time() + 120
    while time.time() < deadline:  # a few steps in, read off the progress bar (no guess of a duration)
        done = [int(n) for n in re.findall(rb"(\d+)/100000", b"".join(chunks))]
        if done and max(done) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    reader.join(timeout=10)
    err = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]  # saved, but not finished: not 0
    assert "interrupted at step" in err
    saved = sorted(ckpt.glob("step_*.pt"))
    assert len(saved) == 1
    model = load_checkpoint(saved[0])
    assert 0 < model.checkpoint_step < 100000


def test_tensorboard_event_files_hold_the_expected_tags(corpus, tmp_path, tiny_config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config(corpus, tmp_path, max_steps=2, log_dir=str(tmp_path / "tb"), val_interval=2)
    train(cfg)
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "audio": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    expected = {"loss/total_g", "loss/reconstruction", "loss/commitment", "loss/adversarial", "loss/feature",
                "loss/discriminator", "quantizer/perplexity_0", "quantizer/usage_1", "quantizer/replaced_0",
                "grad_norm/generator",
                "grad_norm/discriminator", "lr/generator", "lr/discriminator", "val/mel_distance"}
    assert expected <= set(tags["scalars"])
    assert {"audio/original_0", "audio/reconstruction_0"} <= set(tags["audio"])
    assert "spectrogram/0" in tags["images"]
    assert [e.step for e in acc.Scalars("val/mel_distance")] == [0, 2]


def test_compiled_training_matches_eager(corpus, tmp_path, tiny_config):
    """torch.compile on CPU: the quantizer runs eagerly (its data-dependent updates), the rest compiles."""
    kw = dict(max_steps=2, disc_warmup_steps=1, log_interval=1)
    eager = train(tiny_config(corpus, tmp_path / "eager", **kw))
    compiled = train(tiny_config(corpus, tmp_path / "compiled", compile=True, **kw))
    assert compiled.step == 2 and compiled.skipped_steps == 0
    for key in ("reconstruction", "discriminator"):
        assert compiled.history[key] == pytest.approx(eager.history[key], rel=1e-3, abs=1e-5, nan_ok=True), key


def test_discriminators_see_a_random_window_of_real_and_decoded_audio(corpus, tmp_path, tiny_config):
    """``disc_window``: each discriminator input is the same random slice of the real and the decoded crop."""
    from tinycodec.train import Trainer

    trainer = Trainer(tiny_config(corpus, tmp_path, disc_warmup_steps=0, disc_window=0.1))
    seen = []
    trainer.disc.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[-1]))
    wav = torch.randn(4, 1, 4000) * 0.1
    starts = set()
    for _ in range(4):
        real, fake = trainer.disc_window(wav, wav.flip(0))
        assert real.shape[-1] == fake.shape[-1] == 1600
        start = int(torch.nonzero(wav[0, 0] == real[0, 0, 0])[0])
        assert torch.equal(real, wav[..., start:start + 1600]) and torch.equal(fake, wav.flip(0)[..., start:start + 1600])
        starts.add(start)
    assert len(starts) > 1  # random, not a fixed slice
    assert trainer.train_step(wav) is not None
    assert seen and set(seen) == {1600}
    with pytest.raises(ValueError, match="disc_window"):
        tiny_config(corpus, tmp_path, disc_window=0.5)  # longer than the 0.25 s crop


def test_a_skipped_step_rolls_the_codebook_statistics_back(corpus, tmp_path, tiny_config):
    # a NaN batch updates the EMA codebooks inside the forward; the guard must undo that update, or
    # one bad batch poisons every later code with NaN centroids
    import torch

    from tinycodec.train.loop import Trainer

    trainer = Trainer(tiny_config(corpus, tmp_path, max_steps=2))
    trainer.model.train()
    wav = torch.randn(4, 1, 4000, generator=torch.Generator().manual_seed(0)) * 0.1
    assert trainer.train_step(wav) is not None  # a good step moves the statistics
    before = [b.clone() for b in trainer.model.quantizer.buffers()]
    bad = wav.clone()
    bad[0, 0, 100] = math.nan
    assert trainer.train_step(bad) is None
    after = list(trainer.model.quantizer.buffers())
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert all(torch.isfinite(b.float()).all() for b in after)


def test_warmup_ramps_the_generator_rate_then_decays_it(corpus, tmp_path, tiny_config):
    from tinycodec.train.loop import Trainer

    trainer = Trainer(tiny_config(corpus, tmp_path, g_lr=1e-3, lr_gamma=0.5, warmup_steps=4, max_steps=8))
    rates = []
    for _ in range(6):
        rates.append(trainer.opt_g.param_groups[0]["lr"])
        trainer.sched_g.step()
    assert rates == pytest.approx([1e-3 * 0.5**s * min(1, (s + 1) / 4) for s in range(6)])
    with pytest.raises(ValueError, match="warmup_steps"):
        tiny_config(corpus, tmp_path, warmup_steps=-1)
