"""The shipped line-up: a short list with the flagship first, retired weights apart, old files decodable."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tinycodec
from tinycodec.bitstream import decode_bytes, read_tcz_header
from tinycodec.bitstream.model_io import find_model, shipped_encoder_hashes
from tinycodec.pretrained import ALIASES, LEGACY, LINEUP, list_pretrained, load_pretrained, shipped_names

LEGACY_FILES = Path(__file__).resolve().parent / "data" / "legacy"


def test_lineup_is_short_flagship_first_and_every_entry_says_what_it_is_for():
    lineup = list_pretrained()
    assert lineup[0] == "tinycodec" and 2 <= len(lineup) <= 5
    assert all(len(LINEUP[n]) > 20 for n in lineup)
    assert set(lineup).isdisjoint(list_pretrained(legacy=True))
    # every weights file is in exactly one of the two listings: none ships unexplained
    assert sorted(lineup + list_pretrained(legacy=True)) == shipped_names()
    assert set(LEGACY) <= set(shipped_names())


def test_flagship_is_the_default_of_the_api_and_the_cli():
    from tinycodec.cli import build_parser

    assert tinycodec.TinyCodec().model.model_id == "tinycodec"
    parser = build_parser()
    assert parser.parse_args(["encode", "a.wav", "b.tcz"]).model == "tinycodec"
    assert parser.parse_args(["eval", "--data", "d"]).model == ["tinycodec"]
    assert parser.parse_args(["serve"]).model == "tinycodec"
    assert parser.parse_args(["stream", "x.wav"]).model == "tinycodec"
    assert parser.parse_args(["export", "c", "--out", "o"]).preset == "tinycodec"
    assert parser.parse_args(["export", "espdl", "--out", "o"]).preset == "tiny"  # ESP-DL cannot run the FFT frontend


def test_an_earlier_name_loads_the_same_weights():
    for old, new in ALIASES.items():
        a, b = load_pretrained(old), load_pretrained(new)
        assert a.model_id == new
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_committed_file_exists_for_every_retired_encoder():
    hashes = shipped_encoder_hashes()
    current = {hashes[n] for n in list_pretrained()}
    retired = {hashes[n] for n in LEGACY} - current  # mirrors share their twin's encoder
    on_disk = {read_tcz_header(p.read_bytes()).model_hash.hex() for p in LEGACY_FILES.glob("*.tcz")}
    assert retired <= on_disk


@pytest.mark.parametrize("path", sorted(p for p in LEGACY_FILES.glob("*.tcz") if not p.name.startswith("v1_")),
                         ids=lambda p: p.stem)
def test_every_earlier_shipped_models_file_still_decodes(path):  # version 2; v1_*.tcz: tests/test_legacy_tcz.py
    data = path.read_bytes()
    header = read_tcz_header(data)
    assert header.model_id == path.stem  # written under the name it had then
    model = find_model(header)  # no --model: found by the encoder hash in the header
    assert shipped_encoder_hashes()[model.model_id] == header.model_hash.hex()
    wav, sr = decode_bytes(data, model)
    assert sr == 16000 and wav.shape[-1] == header.length
    assert torch.isfinite(wav).all() and wav.abs().max() > 0.01  # a real decode, not silence


def test_the_index_of_shipped_hashes_is_current():
    import json

    from tinycodec.bitstream.model_io import shipped_weights_hashes
    from tinycodec.pretrained import PRETRAINED_DIR

    index = json.loads((PRETRAINED_DIR / "index.json").read_text())
    enc, full = shipped_encoder_hashes(), shipped_weights_hashes()
    assert {n: (e["encoder_hash"], e["weights_hash"]) for n, e in index.items()} == \
        {n: (enc[n], full[n].hex()) for n in shipped_names()}, "run python tools/golden.py --update"


def test_a_stale_index_entry_is_checked_not_trusted(monkeypatch):
    # an index that points the file's hash at the wrong model: find_model loads it, sees the hash differ
    # and falls back to the exact hashes
    from tinycodec.bitstream import model_io

    data = (LEGACY_FILES / "tiny_v1.tcz").read_bytes()
    header = read_tcz_header(data)
    monkeypatch.setattr(model_io, "indexed_hashes", lambda kind: {"ultra_tiny": header.model_hash.hex()})
    assert find_model(header).model_id == "tiny_v1"
