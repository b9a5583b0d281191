"""Every shipped model still computes what it computed when it shipped (tools/golden.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from tinycodec.pretrained import load_pretrained, shipped_names

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import golden  # noqa: E402


@pytest.mark.parametrize("name", shipped_names())
def test_shipped_model_matches_its_golden_output(name):
    path = golden.GOLDEN / f"{name}.json"
    assert path.exists(), f"no golden output for {name}: python tools/golden.py --update {name}"
    assert golden.differences(name, json.loads(path.read_text()), golden.golden_of(load_pretrained(name))) == []


def test_a_changed_window_gain_in_the_decoder_is_caught():
    model = load_pretrained("tinycodec")
    want = json.loads((golden.GOLDEN / "tinycodec.json").read_text())
    windows = [m for m in model.decoder.modules() if isinstance(getattr(m, "window", None), torch.Tensor)]
    assert windows, "the server decoder's iSTFT head keeps its window as a buffer"
    windows[0].window.mul_(2.0)  # the overlap-add gain a reviewer doubled
    problems = golden.differences("tinycodec", want, golden.golden_of(model))
    assert any("rms_10ms" in p for p in problems) and not any("codes" in p for p in problems)


def test_a_changed_encoder_weight_changes_the_codes():
    model = load_pretrained("tinycodec")
    want = json.loads((golden.GOLDEN / "tinycodec.json").read_text())
    with torch.no_grad():
        model.quantizer.layers[0].embed[:] = model.quantizer.layers[0].embed.roll(1, 0)
    assert any("codes differ" in p for p in golden.differences("tinycodec", want, golden.golden_of(model)))
