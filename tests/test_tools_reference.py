"""tools/train_reference.py: runs recorded as data (the model's own encoder and decoder), older records read
with the script's parser, curves from records, model cards from one function (tools/model_card.py), and
merge (new eval rows replace old ones in place, renames come first)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tinycodec.eval.evaluate import EvalResult

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import model_card  # noqa: E402
import train_reference  # noqa: E402


def result(model: str, rows: list[tuple[str, str, float]]) -> EvalResult:
    clips = [dict(file=f, category="speech", duration_s=4.0, codec=c, bitrate=2250.0, nominal_bitrate=2250.0,
                  log_mel=v) for f, c, v in rows]
    return EvalResult(model, None, 16000, "data/reference", "test", 4.0, clips)


def test_merge_replaces_rows_in_place_and_renames_the_old_version(tmp_path):
    into = tmp_path / "quality.json"
    result("a, b", [("x.wav", "a_nq4", 1.0), ("x.wav", "b_nq4", 2.0), ("y.wav", "a_nq4", 3.0),
                    ("y.wav", "b_nq4", 4.0)]).to_json(into)
    new = tmp_path / "new.json"
    result("a", [("x.wav", "a_nq4", 10.0), ("y.wav", "a_nq4", 30.0)]).to_json(new)
    args = argparse.Namespace(new=[str(new)], into=str(into), rename=["a=a_v1"])
    assert train_reference.cmd_merge(args) == 0
    merged = EvalResult.from_json(into)
    assert [(r["file"], r["codec"], r["log_mel"]) for r in merged.clips] == [
        ("x.wav", "a_v1_nq4", 1.0), ("x.wav", "b_nq4", 2.0), ("y.wav", "a_v1_nq4", 3.0), ("y.wav", "b_nq4", 4.0),
        ("x.wav", "a_nq4", 10.0), ("y.wav", "a_nq4", 30.0)]
    assert merged.model == "a_v1, b, a"
    # the same model again: its rows are replaced where they stand
    result("b", [("x.wav", "b_nq4", 5.0), ("y.wav", "b_nq4", 6.0)]).to_json(new)
    train_reference.cmd_merge(argparse.Namespace(new=[str(new)], into=str(into), rename=[]))
    assert [r["log_mel"] for r in EvalResult.from_json(into).clips] == [1.0, 5.0, 3.0, 6.0, 10.0, 30.0]


def _server_config():
    from tinycodec.models import get_preset

    cfg = get_preset("ultra_tiny")
    cfg.decoder = "server"
    return cfg


def test_a_run_is_recorded_with_the_models_own_decoder():
    """``--init tinycodec`` names no decoder: the record says the one the trained model has (the flagship's
    server decoder), where the command's words once made it "mirror"."""
    argv = "train tiny --init tinycodec --freeze-encoder --levels 4 5 --stft-loss 100 --run lever".split()
    args = train_reference.build_parser().parse_args(argv)
    args.argv = argv
    config = SimpleNamespace(g_lr=2e-4, batch_size=16, audio_length=0.5)
    result = SimpleNamespace(step=500, interrupted=True, best_val=0.99)
    run = train_reference.run_record(args, config, _server_config(), result, seconds=1800.0)
    assert (run["init"], run["encoder"], run["encoder_int8"], run["decoder"]) == ("tinycodec", "seanet", False, "server")
    assert run["options"]["levels"] == [4, 5] and run["options"]["stft_loss"] == 100 and run["hours"] == 0.5
    assert run["command"] == "python tools/train_reference.py " + " ".join(argv)
    assert json.loads(json.dumps(run)) == run  # plain data: runs.json holds it as it is
    assert train_reference.losses_label(run) == "mel + stft x100"
    assert train_reference.losses_label(run | {"gan_from_step": 0}) == "mel + stft x100 + GAN (wave + STFT) from step 0"
    gan = run | {"gan_from_step": 0, "options": run["options"] | {"mpd": True, "ms_stft": True, "disc_window": 0.25}}
    assert train_reference.losses_label(gan) == ("mel + stft x100 + GAN (multi-period + 2-scale STFT, 0.25 s windows) "
                                                 "from step 0")
    augmented = run | {"options": run["options"] | {"augment": 0.5}}
    assert train_reference.losses_label(augmented) == "mel + stft x100, augmentation p=0.5"


def test_runs_recorded_before_their_fields_are_read_with_the_parser_and_the_checkpoint(corpus, tmp_path, tiny_config):
    from tinycodec.train import train

    over = dict(C=2, D=16, codebook_size=16, num_quantizers=2, decoder="server", decoder_dim=8, decoder_layers=1)
    train(tiny_config(corpus, tmp_path, model_overrides=over, save_interval=1))
    folder = tmp_path / "ckpt"
    assert list(folder.glob("step_*.pt"))
    old = {"command": "python tools/train_reference.py train tiny --init tinycodec --freeze-encoder --phase-loss 200 "
                      "--run phase_a (under timeout -s TERM 60m)", "gan_from_step": None}
    run = train_reference.recorded_run(old, folder)
    assert (run["init"], run["decoder"], run["encoder"]) == ("tinycodec", "server", "seanet")  # the checkpoint's
    assert run["options"]["phase_loss"] == 200 and run["options"]["freeze_encoder"] and run["command"] == old["command"]
    assert train_reference.losses_label(run) == "mel + phase x200"
    assert train_reference.recorded_run(old)["decoder"] is None  # no checkpoint left: not guessed from words
    assert train_reference.recorded_run(run, folder) is run  # a record with its fields is taken as it is


def test_curves_come_from_the_records(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints" / "reference_lever"
    folder.mkdir(parents=True)
    record = {"command": "python tools/train_reference.py train tiny --init tinycodec --stft-loss 100",
              "options": {"init": "tinycodec", "encoder": None, "stft_loss": 100.0, "phase_loss": 0.0},
              "init": "tinycodec", "decoder": "server", "steps_end": 500, "hours": 0.5, "hardware": "cpu",
              "date": "2026-12-07", "gan_from_step": None}
    (folder / "runs.json").write_text(json.dumps([record]))
    (folder / "val_speech.json").write_text(json.dumps({"500": {"pesq_wb": 1.9}}))
    monkeypatch.setattr(train_reference, "ROOT", tmp_path)
    monkeypatch.setattr(train_reference, "link_corpora", lambda: tmp_path)
    scored = []
    monkeypatch.setattr(train_reference, "val_speech_scores", lambda spec, data, n_q: scored.append(spec) or {"pesq_wb": 1.8})
    out = tmp_path / "runs.json"
    assert train_reference.cmd_curves(argparse.Namespace(runs=["lever"], n_q=None, json=str(out), merge=False)) == 0
    entry = json.loads(out.read_text())["runs"]["lever"]
    assert (entry["init"], entry["decoder"], entry["losses"], entry["steps"]) == ("tinycodec", "server", "mel + stft x100", 500)
    assert entry["curve"] == {"0": {"pesq_wb": 1.8}, "500": {"pesq_wb": 1.9}} and scored == ["tinycodec"]
    record["options"]["encoder"] = "stft"  # a new encoder: the init model's scores are no starting point
    (folder / "runs.json").write_text(json.dumps([record]))
    train_reference.cmd_curves(argparse.Namespace(runs=["lever"], n_q=None, json=str(out), merge=False))
    entry = json.loads(out.read_text())["runs"]["lever"]
    assert entry["init"] is None and list(entry["curve"]) == ["500"]


RUN = {"command": "python tools/train_reference.py train tiny --init checkpoints/reference_srv/step_00001500.pt --run x",
       "steps_end": 3000, "hours": 1.25, "hardware": "AMD EPYC CPU, 1 thread(s) of 2, no GPU", "date": "2026-12-07",
       "interrupted": True, "g_lr": 2e-4, "batch": "16 x 0.5 s", "gan_from_step": None, "best_val_mel_distance": 0.99}


@pytest.mark.parametrize("int8", [False, True])
def test_model_card_is_built_from_data(int8):
    from tinycodec.models import build_model
    from tinycodec.models.config import config_to_dict

    cfg = config_to_dict(_server_config()) | dict(decoder_dim=16, decoder_layers=1, encoder_int8=int8)
    model = build_model("tinystream", cfg)
    model.checkpoint_step = 2750
    tried = [RUN | {"outcome": "no better than the control", "gan_from_step": 0}]
    history = {"val_step": list(range(0, 3250, 250)), "val_mel_distance": [1.0 - 0.01 * i for i in range(13)]}
    card = model_card.model_card(
        "tiny_x", model, file_bytes=1234567, runs=[RUN, RUN | {"interrupted": False, "gan_from_step": 100}],
        tried=tried, history=history, split_hours={"speech": {"train": 5.0, "val": 0.5}},
        speech_curve={str(k): {"log_mel": 1.0, "pesq_wb": 1.5 + k / 1e4, "stoi": 0.8} for k in (500, 1000)},
        quality=["**speech** (3 clips of 4 s)", "", "| codec |", "|---|", "| tiny_x_nq4 |", ""],
        eval_json="benchmarks/quality.json", encoder_from="tiny", notes="  Limits: none known.  ")
    lines = card.splitlines()
    assert lines[0] == "# `tiny_x`: tinystream reference model" and card.endswith("none known.\n")
    assert "| bitrate | 1000 bit/s at 16000 Hz (62.5 frames/s) |" in lines
    assert "| training steps | 2750 (checkpoint with the best validation) |" in lines
    encoder = "int8-exact (the firmware arithmetic), SEANet" if int8 else "float, SEANet"
    assert f"| encoder / decoder | {encoder} / server |" in lines
    file_line = next(line for line in lines if line.startswith("| file |"))
    assert "(1,234,567 bytes, float16" in file_line and "read from `tiny.safetensors`" in file_line
    assert ("int8-exact encoder's biases (float32" in file_line) == int8
    assert "- speech: train 5.00 h, val 0.50 h, test 0.00 h" in lines
    shipped = [line for line in lines if line.startswith("- `python")]
    assert shipped == [
        "- `python tools/train_reference.py train tiny --init {run srv, step 1500} --run x`: 3000 steps reached, "
        "1.25 h on AMD EPYC CPU, 1 thread(s) of 2, no GPU, 2026-12-07 (stopped before its step limit); Adam lr "
        "0.0002, batch 16 x 0.5 s; mel reconstruction + commitment only",
        "- `python tools/train_reference.py train tiny --init {run srv, step 1500} --run x`: 3000 steps reached, "
        "1.25 h on AMD EPYC CPU, 1 thread(s) of 2, no GPU, 2026-12-07; Adam lr 0.0002, batch 16 x 0.5 s; "
        "adversarial + feature matching from step 100"]
    assert any(line.startswith("- tried, not shipped: `python") and line.endswith(
        "best validation mel 0.990; no better than the control") for line in lines)
    assert "| step | 0 | 500 | 750 | 1000 | 1500 | 2000 | 2250 | 2500 | 3000 |" in lines  # nine, ends included
    assert "| pesq_wb | 1.550 | 1.600 |" in lines
    assert lines[lines.index("## Held-out evaluation") + 2] == \
        "`tinycodec eval` on the test split (full numbers in `benchmarks/quality.json`):"
    assert "| tiny_x_nq4 |" in lines and lines[-3:] == ["## Notes", "", "Limits: none known."]
    bare = model_card.model_card("tiny_x", model, file_bytes=1, runs=[], history=history, split_hours={})
    assert "## Held-out evaluation" not in bare and "## Notes" not in bare and "Validation speech" not in bare
