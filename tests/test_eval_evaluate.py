"""Tests for tinycodec.eval.evaluate and ``tinycodec eval`` on a tiny seeded folder (speech/ and nature/)."""

import json
import math
import subprocess
import sys

import pytest
import torch

from tinycodec.audio import save
from tinycodec.data.synth import NatureConfig, synth_nature
from tinycodec.eval.clips import TRAINING_CORPUS_FILES, list_clips, load_clips
from tinycodec.eval.evaluate import evaluate

SR = 16000


@pytest.fixture(scope="module")
def folder(tmp_path_factory, speech_like):
    root = tmp_path_factory.mktemp("evaldata")
    for i in range(2):
        save(root / "speech" / f"talk_{i}.wav", speech_like(1.5, SR, seed=i)[None], SR)
    wav, _ = synth_nature(0, NatureConfig(duration=1.5, sample_rate=SR))
    save(root / "nature" / "birds.wav", wav, SR)
    (root / ".hidden").mkdir()
    save(root / ".hidden" / "skip.wav", wav, SR)  # hidden folders are not evaluated
    return root


@pytest.fixture(scope="module")
def result(folder):
    torch.manual_seed(0)
    return evaluate("ultra_tiny", folder, baselines=["opus_6k", "codec2_2400"], progress=False)


def test_per_category_means_and_clip_rows(result):
    cats = result.categories
    assert set(cats) == {"speech", "nature"}
    assert set(result.codecs) == {"ultra_tiny_nq2", "opus_6k", "codec2_2400"}
    assert len(result.clips) == 3 * 3  # 3 clips x 3 codecs
    speech = cats["speech"]["ultra_tiny_nq2"]
    assert speech["n_clips"] == 2 and math.isclose(speech["duration_s"], 3.0)
    rows = [r for r in result.clips if r["category"] == "speech" and r["codec"] == "ultra_tiny_nq2"]
    assert math.isclose(speech["si_sdr"], sum(r["si_sdr"] for r in rows) / 2, rel_tol=1e-9)


def test_speech_has_pesq_stoi_nature_does_not(result):
    for codec, e in result.categories["speech"].items():
        assert {"pesq_wb", "stoi", "log_mel", "mr_stft", "si_sdr"} <= set(e), codec
        assert 1.0 <= e["pesq_wb"] <= 4.7 and 0.0 <= e["stoi"] <= 1.0
    for codec, e in result.categories["nature"].items():
        assert "pesq_wb" not in e and "stoi" not in e and "log_mel" in e, codec


def test_measured_bitrate_is_packed_payload(result):
    # 1.5 s -> ceil(24000 / 256) = 94 frames x 2 quantizers x 8 bits = 1504 bits over 1.5 s
    e = result.categories["nature"]["ultra_tiny_nq2"]
    assert e["nominal_bitrate"] == 1000.0
    assert math.isclose(e["bitrate"], 94 * 2 * 8 / 1.5)
    assert 0.5 * 6000 < result.categories["speech"]["opus_6k"]["bitrate"] < 1.2 * 6000


def test_json_and_markdown(result, tmp_path):
    data = json.loads(result.to_json(tmp_path / "sub" / "eval.json").read_text())
    assert data["format"] == "tinycodec-eval" and data["model"] == "ultra_tiny" and data["n_q"] == 2
    assert set(data["categories"]) == {"speech", "nature"}
    assert len(data["clips"]) == 9 and data["split"] is None
    md = result.to_markdown()
    assert "**speech**" in md and "pesq_wb" in md and md.count("| opus_6k |") == 2


def test_categories_from_manifest_and_max_clips(folder, tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("x.wav", "y.wav"):
        (tmp_path / "a" / name).write_bytes((folder / "nature" / "birds.wav").read_bytes())
    (tmp_path / "manifest.csv").write_text("file,category\na/x.wav,speech\na/y.wav,rain\n")
    assert list_clips(tmp_path) == [("a/x.wav", "speech"), ("a/y.wav", "rain")]
    clips = load_clips(folder, SR, categories=["speech"], max_clips=1, clip_seconds=0.5)
    assert [c.file for c in clips] == ["speech/talk_0.wav"] and clips[0].wav.shape == (1, 1, 8000)


def test_training_corpus_uses_test_split(tmp_path):
    from tinycodec.data.folder import split_of

    wav = torch.zeros(1, 160)
    for i in range(TRAINING_CORPUS_FILES + 20):
        save(tmp_path / "speech" / f"f{i:03d}.wav", wav, SR)
    listed = list_clips(tmp_path)
    assert listed and all(split_of(rel) == "test" for rel, _ in listed)
    assert len(list_clips(tmp_path, split=None)) == TRAINING_CORPUS_FILES + 20


def test_errors(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_clips(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no audio files"):
        list_clips(folder, categories=["music"])
    with pytest.raises(ValueError, match="n_q"):
        evaluate("ultra_tiny", folder, n_q=5, progress=False)


def test_cli_prints_table_and_writes_json(folder, tmp_path):
    out = tmp_path / "cli.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tinycodec",
            "eval",
            "ultra_tiny",
            "ultra_tiny@2",
            "--data",
            str(folder),
            "--n_q",
            "1",
            "--max_clips",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "**speech**" in proc.stdout and "ultra_tiny_nq1" in proc.stdout and "pesq_wb" in proc.stdout
    data = json.loads(out.read_text())
    assert data["codecs"] == ["ultra_tiny_nq1", "ultra_tiny_nq2"] and data["n_q"] is None  # --n_q, then @2
    assert set(data["categories"]) == {"speech", "nature"}


def test_cli_user_error_is_one_line(tmp_path, capsys):
    from tinycodec.cli import main

    assert main(["eval", "ultra_tiny", "--data", str(tmp_path / "x")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_top_level_evaluate_is_the_function_after_the_module_is_imported(folder):
    import tinycodec
    import tinycodec.eval.evaluate as module

    assert tinycodec.evaluate is module.evaluate  # the module lives in tinycodec.eval: no name clash
    res = tinycodec.evaluate("ultra_tiny", folder, categories=["nature"], clip_seconds=0.5, progress=False)
    assert isinstance(res, tinycodec.EvalResult) and list(res.categories) == ["nature"]


def test_result_json_round_trip(tmp_path):
    from tinycodec.eval.evaluate import EvalResult

    rows = [{"file": "speech/a.wav", "category": "speech", "duration_s": 1.0, "codec": "tiny_nq4",
             "bitrate": 2250.0, "nominal_bitrate": 2250.0, "log_mel": 1.5, "pesq_wb": None}]
    result = EvalResult("tiny", 4, 16000, "data", "test", 4.0, [dict(r, pesq_wb=float("nan")) for r in rows])
    again = EvalResult.from_json(result.to_json(tmp_path / "q.json"))
    assert again.to_markdown() == result.to_markdown()
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a tinycodec eval JSON"):
        EvalResult.from_json(tmp_path / "bad.json")


def test_several_models_share_one_table_and_one_baseline_run(folder):
    from tinycodec.cli.eval import parse_model_arg
    from tinycodec.eval.evaluate import EvalResult

    torch.manual_seed(0)
    a = evaluate("ultra_tiny", folder, baselines=["codec2_2400"], max_clips=1, progress=False)
    b = evaluate("ultra_tiny", folder, baselines=["codec2_2400"], max_clips=1, n_q=1, progress=False)
    both = EvalResult.combine([a, b])
    assert both.codecs == ["ultra_tiny_nq2", "codec2_2400", "ultra_tiny_nq1"]
    assert len(both.clips) == len(a.clips) + len(b.clips) // 2  # codec2 rows kept once
    assert both.n_q is None and both.model == "ultra_tiny"
    c = evaluate("ultra_tiny", folder, max_clips=1, clip_seconds=0.5, progress=False)
    with pytest.raises(ValueError, match="same clips"):
        EvalResult.combine([a, c])
    assert parse_model_arg("soundstream_16k@4", None) == ("soundstream_16k", 4)
    assert parse_model_arg("tiny", 2) == ("tiny", 2)
    with pytest.raises(SystemExit, match="MODEL@N_Q"):
        parse_model_arg("tiny@x", None)


def test_two_checkpoints_of_one_family_get_two_rows(folder, tmp_path):
    # row names come from the files: checkpoints of one family must not collapse into one row
    from tinycodec.eval.evaluate import EvalResult, row_name_of_file
    from tinycodec.pretrained import load_model
    from tinycodec.train.checkpoint import export_weights

    model = load_model("ultra_tiny")
    paths = [export_weights(model, tmp_path / run / "best.safetensors") for run in ("run_a", "run_b")]
    assert [row_name_of_file(p) for p in paths] == ["run_a_best", "run_b_best"]
    assert row_name_of_file(tmp_path / "mine.safetensors") == "mine"
    results = [evaluate(str(p), folder, categories=["nature"], progress=False) for p in paths]
    combined = EvalResult.combine(results)
    assert combined.codecs == ["run_a_best_nq2", "run_b_best_nq2"]
    a, b = (combined.categories["nature"][c]["log_mel"] for c in combined.codecs)
    assert a == b  # the same weights: the same numbers, in two rows


def test_summary_table_picks_full_depth_or_the_named_depth_and_appends_baselines():
    from tinycodec.eval.evaluate import EvalResult

    def row(codec, category, log_mel, nominal, **speech):
        return {"file": f"{category}/a.wav", "category": category, "duration_s": 4.0, "codec": codec,
                "bitrate": nominal, "nominal_bitrate": nominal, "log_mel": log_mel, **speech}

    clips = [row("tiny_nq4", "speech", 1.7, 2250.0, pesq_wb=1.08, stoi=0.66),
             row("tiny_nq1", "speech", 2.1, 562.5, pesq_wb=1.05, stoi=0.55),
             row("tiny_mirror_nq4", "speech", 1.9, 2250.0, pesq_wb=1.07, stoi=0.63),
             row("codec2_3200", "speech", 2.9, 3200.0, pesq_wb=1.40, stoi=0.85),
             row("tiny_nq4", "nature", 2.09, 2250.0), row("codec2_3200", "nature", 2.51, 3200.0)]
    table = EvalResult("tiny", None, 16000, "data", "test", 4.0, clips).summary_table(["tiny", "tiny@1", "tiny_mirror"])
    lines = table.splitlines()
    assert lines[0].startswith("| model | kbit/s | speech log-mel")
    assert lines[2] == "| `tiny` | 2.25 | 1.700 | 1.080 | 0.660 | 2.090 |"  # the deepest row, not tiny_mirror's
    assert lines[3] == "| `tiny@1` | 0.56 | 2.100 | 1.050 | 0.550 |  |"
    assert lines[4].startswith("| `tiny_mirror` | 2.25 | 1.900 |")
    assert lines[5] == "| Codec 2 3200 | 3.20 | 2.900 | 1.400 | 0.850 | 2.510 |" and len(lines) == 6  # no opus row
    with pytest.raises(KeyError, match="no speech row for 'tiny@2'"):
        EvalResult("tiny", None, 16000, "data", "test", 4.0, clips).summary_table(["tiny@2"])
