"""Results JSONs name the weights they measured, and those are still the weights that ship."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tinycodec.eval.provenance import stale_models, stamp_results
from tinycodec.pretrained import ALIASES, shipped_names

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


APPENDIX = ROOT / "book" / "appendix_reference_models.md"  # the one page that tells how the models were made


def quoted_results(pages=None) -> list[Path]:
    """Every benchmarks/*.json (results/ included) that the given pages name (default: README, book and
    model cards), as a path or by its file name alone (a chapter may join the path piece by piece)."""
    pages = pages or [ROOT / "README.md", *sorted((ROOT / "book").glob("*.md")),
                      *sorted((ROOT / "tinycodec" / "pretrained").glob("*.md"))]
    text = "\n".join(p.read_text() for p in pages)
    names = set(re.findall(r"[\w.-]+\.json", text))
    return sorted(d / n for n in names for d in (BENCH, BENCH / "results") if (d / n).is_file())


def models_in(data) -> set[str]:
    """Shipped model names that a results JSON has rows for (keys ``NAME`` or ``NAME_nqN``, codec lists)."""
    shipped, found = set(shipped_names()) | set(ALIASES), set()  # an earlier name counts as its model

    def name_of(key: str) -> str | None:
        base = re.sub(r"_nq\d+$", "", key)
        return base if base in shipped else None

    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "weights":
                    continue
                if (n := name_of(k)) is not None:
                    found.add(n)
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, str) and x.startswith(tuple(shipped)) and (n := name_of(x)) is not None:
            found.add(n)

    walk({k: v for k, v in data.items() if k in ("codecs", "categories")} if "codecs" in data else data)
    return found


def test_the_quality_and_firmware_results_are_quoted():
    quoted = {p.name for p in quoted_results()}
    assert {"quality.json", "firmware.json"} <= quoted


def test_a_result_named_by_its_file_name_alone_is_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text('json.loads((REPO / "benchmarks" / "results" / "espdl_spectral.json").read_text())')
    assert [p.name for p in quoted_results([page])] == ["espdl_spectral.json"]


@pytest.mark.parametrize("path", quoted_results(), ids=lambda p: p.name)
def test_every_quoted_result_names_the_weights_of_each_shipped_model_it_measured(path):
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        pytest.fail(f"{path.name}: a results JSON is an object with a 'weights' block")
    if str(data.get("provenance", "")).startswith(("history", "architecture")):
        return  # runs of checkpoints / random-weight presets: no shipped weights to pin (see the next test)
    assert data.get("weights"), f"{path.name} is quoted but records no weights it measured (nor a provenance line)"
    missing = models_in(data) - set(data.get("weights", {}))
    assert not missing, f"{path.name} quotes {sorted(missing)} without recording which weights it measured"
    assert stale_models(data) == [], f"{path.name} measured other weights than ship now: stale, measure again"


def test_a_changed_model_makes_its_results_stale(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"tinycodec": {"pesq_wb": 1.0}}))
    stamp_results(path, ["tinycodec"])
    data = json.loads(path.read_text())
    assert stale_models(data) == []
    data["weights"]["tinycodec"]["weights_hash"] = "0" * 16  # the file was retrained after measuring
    assert stale_models(data) == [f"tinycodec: weights_hash recorded {'0' * 16}, shipped "
                                  f"{json.loads(path.read_text())['weights']['tinycodec']['weights_hash']}"]
    data["weights"]["gone"] = {"encoder_hash": "1" * 16}
    assert "gone: no longer shipped" in stale_models(data)


def test_history_results_are_quoted_by_the_appendix_only():
    # a history JSON measured checkpoints and earlier weights: a chapter quoting it would print numbers
    # of a model that no longer ships
    pages = [ROOT / "README.md", *sorted(p for p in (ROOT / "book").glob("*.md") if p != APPENDIX)]
    for page in pages:
        for path in quoted_results([page]):
            data = json.loads(path.read_text())
            prov = str(data.get("provenance", "")) if isinstance(data, dict) else ""
            assert not prov.startswith("history"), f"{page.name} quotes {path.name}, a history of earlier weights"
