"""tools/train_reference.py merge: new eval rows replace old ones in place, renames come first."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tinycodec.eval.evaluate import EvalResult

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

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
