"""tools/class_activity.py: grid parsing, the parameter check, and real papermill runs of a tiny notebook."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import class_activity as ca  # noqa: E402

# A MyST notebook whose result is a known function of its parameters: A * B (+ 100 when FAST), and a curve.
FIXTURE = '''\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# Fixture

```{code-cell} ipython3
:tags: [parameters]

FAST = False
A = 1
B = 2.0
NAME = "x"
```

```{code-cell} ipython3
:tags: [activity-result]

import json
from pathlib import Path

assert A != 99, "A = 99 is refused"
print("some chatter first")
print(json.dumps({"product": A * B + (100 if FAST else 0), "name": NAME, "fast": FAST,
                  "cwd": Path.cwd().name, "curve": {"step": [0, 1, 2], "value": [A, A * B, A * B * B]}}))
```
'''


@pytest.fixture
def chapter(tmp_path: Path) -> Path:
    folder = tmp_path / "book"
    folder.mkdir()
    path = folder / "99_fixture.md"
    path.write_text(FIXTURE)
    return path


def test_parse_value():
    assert ca.parse_value("3") == 3 and isinstance(ca.parse_value("3"), int)
    assert ca.parse_value("3e-4") == pytest.approx(3e-4) and isinstance(ca.parse_value("3e-4"), float)
    assert ca.parse_value("True") is True and ca.parse_value("false") is False
    assert ca.parse_value("None") is None
    assert ca.parse_value("ultra_tiny") == "ultra_tiny"
    assert ca.parse_value("'12'") == "12"


def test_parse_grid_and_product():
    grid = ca.parse_grid(["LR=3e-4,1e-3", "PRESET=ultra_tiny,tiny,small"])
    assert [name for name, _ in grid] == ["LR", "PRESET"]
    points = ca.grid_points(grid)
    assert len(points) == 6
    assert points[0] == ("LR-3e-4_PRESET-ultra_tiny", {"LR": pytest.approx(3e-4), "PRESET": "ultra_tiny"})
    assert points[-1][1] == {"LR": pytest.approx(1e-3), "PRESET": "small"}
    assert len({name for name, _ in points}) == 6  # run names are distinct file names
    assert ca.grid_points([]) == [("default", {})]


@pytest.mark.parametrize("spec", ["LR", "=1,2", "LR=", "LR=1,,2", "LR=1,1", "1LR=2"])
def test_parse_grid_rejects(spec):
    with pytest.raises(ca.ActivityError, match="--grid"):
        ca.parse_grid([spec])


def test_parse_grid_rejects_repeated_name():
    with pytest.raises(ca.ActivityError, match="twice"):
        ca.parse_grid(["LR=1", "LR=2"])


def test_parameter_check(chapter):
    nb = ca.read_notebook(chapter)
    params = ca.check_parameters(nb, ["A", "NAME"], "fixture")
    assert list(params) == ["FAST", "A", "B", "NAME"] and params["B"] == "2.0"
    with pytest.raises(ca.ActivityError, match=r"fixture has no parameter LR in its `parameters` cell \(it has: FAST, A"):
        ca.check_parameters(nb, ["A", "LR"], "fixture")


def test_unknown_chapter_and_missing_result_cell(chapter, tmp_path):
    with pytest.raises(ca.ActivityError, match="unknown chapter"):
        ca.resolve_chapter(str(tmp_path / "book" / "98_missing"))
    assert ca.resolve_chapter(str(chapter.with_suffix(""))) == chapter
    plain = chapter.with_name("97_plain.md")
    plain.write_text(FIXTURE.replace(":tags: [activity-result]", ""))
    with pytest.raises(ca.ActivityError, match="activity-result"):
        ca.run_activity(str(plain), ["A=1"], tmp_path / "out", log=lambda *a, **k: None)


def test_bad_parameter_fails_before_running(chapter, tmp_path):
    with pytest.raises(ca.ActivityError, match="no parameter LR"):
        ca.run_activity(str(chapter), ["LR=1e-3"], tmp_path / "out", log=lambda *a, **k: None)
    assert not (tmp_path / "out" / "runs").exists()  # nothing ran


def test_real_runs_collect_the_numbers(chapter, tmp_path, capsys):
    out = tmp_path / "out"
    rc = ca.main([str(chapter), "--grid", "A=2,3", "--grid", "B=0.5,4", "--set", "NAME=hello",
                  "--metric", "product", "--out", str(out)])
    assert rc == 0
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["A-2_B-0.5", "A-2_B-4", "A-3_B-0.5", "A-3_B-4"]
    for r in rows:
        a, b = int(r["A"]), float(r["B"])
        assert float(r["product"]) == pytest.approx(a * b + 100)  # FAST=True was passed
        assert r["name"] == "hello" and r["fast"] == "True"
        assert r["cwd"] == "book"  # executed in the chapter's folder, like tools/book.py
        assert "curve" not in r  # lists stay out of the table
        executed = json.loads((out / "runs" / f"{r['run']}.ipynb").read_text())
        assert executed["cells"]  # each run's executed notebook is kept
    printed = capsys.readouterr().out
    assert "| run | A | B | product |" in printed and "| A-3_B-4 | 3 | 4 | 112 |" in printed
    assert (out / "results.md").read_text().startswith("| run | A | B | product |")
    png = (out / "results.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_failed_run_is_named_and_the_others_continue(chapter, tmp_path, capsys):
    out = tmp_path / "out"
    rc = ca.main([str(chapter), "--grid", "A=99,5", "--metric", "product", "--out", str(out)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "FAILED run A-99" in err and "A = 99 is refused" in err
    assert "1 of 2 runs failed: A-99" in err
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["run"], float(r["product"])) for r in rows] == [("A-5", pytest.approx(110.0))]


def test_main_usage_errors_are_one_line(chapter, tmp_path, capsys):
    assert ca.main([str(chapter), "--grid", "LR=1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no parameter LR" in err and "\n" not in err
    assert ca.main(["book/98_nothing_here", "--grid", "A=1", "--out", str(tmp_path / "o")]) == 2
    assert "unknown chapter" in capsys.readouterr().err


def test_curve_forms():
    assert ca.curve_of({"c": {"step": [0, 5], "v": [1.0, 0.5]}}, "c") == ([0, 5], [1.0, 0.5], "step", "v")
    assert ca.curve_of({"c": [[0, 1.0], [5, 0.5]]}, "c") == ([0, 5], [1.0, 0.5], "x", "c")
    assert ca.curve_of({"c": [3.0, 2.0]}, "c") == ([0, 1], [3.0, 2.0], "index", "c")
    assert ca.curve_of({"c": 1.0}, "c") is None and ca.curve_of({}, "c") is None
