"""AudioFolder on a folder of pathological files, splits, the scan cache and the TensorCorpus fast path."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tinycodec.data.fixtures import tone as _tone
from tinycodec.data.fixtures import write_pathological_folder
from tinycodec.data.folder import SPLITS, AudioFolder, AudioSkipWarning, split_of
from tinycodec.data.tensorcorpus import TensorCorpus, build_tensor_corpus

SR, SECONDS = 16000, 0.5
T = int(SR * SECONDS)


@pytest.fixture()
def bad_folder(tmp_path):
    expected = write_pathological_folder(tmp_path / "bad")
    return tmp_path / "bad", expected


def test_pathological_files_are_skipped_exactly_with_reasons(bad_folder):
    root, expected = bad_folder
    with pytest.warns(AudioSkipWarning) as rec:
        ds = AudioFolder(root, sample_rate=SR, audio_length=SECONDS)
    skipped = {Path(p).name: reason for p, reason in ds.skipped}
    want_skipped = {k: v for k, v in expected.items() if v is not None}
    assert set(skipped) == set(want_skipped)
    for name, prefix in want_skipped.items():
        assert skipped[name].startswith(prefix), (name, skipped[name])
    msgs = [str(w.message) for w in rec if issubclass(w.category, AudioSkipWarning)]
    assert len(msgs) == len(want_skipped)  # one warning per skipped file
    for name in want_skipped:
        assert sum(name in m for m in msgs) == 1
    used = sorted(Path(fi.rel).name for fi in ds.files)
    assert used == sorted(k for k, v in expected.items() if v is None)
    assert "five_ms.wav" in skipped and "5.0 ms" in skipped["five_ms.wav"]


@pytest.mark.parametrize("workers", [0, 2])
def test_every_yielded_crop_is_finite_mono_rate_and_length(bad_folder, workers):
    root, _ = bad_folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AudioSkipWarning)
        ds = AudioFolder(root, sample_rate=SR, audio_length=SECONDS, crops_per_file=3)
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=workers, shuffle=True)
    n = 0
    for batch in loader:  # an epoch over the good files never raises
        assert batch.shape[1:] == (1, T) and batch.dtype == torch.float32
        assert torch.isfinite(batch).all() and batch.abs().max() <= 1.0
        n += batch.shape[0]
    assert n == len(ds) == 3 * len(ds.files)


def test_crops_are_at_the_requested_rate(bad_folder):
    root, _ = bad_folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AudioSkipWarning)
        ds = AudioFolder(root, sample_rate=SR, audio_length=SECONDS)
    i = [Path(fi.rel).name for fi in ds.files].index("ok_44k.flac")  # a 1 kHz tone at 44.1 kHz
    crop = ds.crop(i, 0.2)[0].numpy()
    spec = np.abs(np.fft.rfft(crop * np.hanning(crop.size)))
    peak_hz = spec.argmax() * SR / crop.size
    assert abs(peak_hz - 1000) < 5
    short = ds.crop([Path(fi.rel).name for fi in ds.files].index("short_but_ok.wav"), 0.0)
    assert short.shape == (1, T) and (short[0, 1700:] == 0).all()  # 0.1 s of tone, then zero padding


def test_empty_or_all_bad_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="no usable audio"):
        AudioFolder(tmp_path / "empty")
    bad = tmp_path / "allbad"
    bad.mkdir()
    (bad / "a.wav").write_bytes(b"")
    (bad / "b.flac").write_text("nope")
    with pytest.warns(AudioSkipWarning), pytest.raises(RuntimeError, match=r"2 skipped.*a.wav: empty file"):
        AudioFolder(bad)
    with pytest.raises(FileNotFoundError):
        AudioFolder(tmp_path / "missing")


def test_split_is_deterministic_disjoint_and_near_fractions(tmp_path):
    names = [f"spk{i // 10}/utt{i}.wav" for i in range(4000)]
    splits = [split_of(n) for n in names]
    assert splits == [split_of(n) for n in names]
    for name, (lo, hi) in SPLITS.items():
        assert abs(splits.count(name) / len(names) - (hi - lo)) < 0.02
    root = tmp_path / "many"
    for i in range(60):
        (root / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        sf.write(root / f"d{i % 3}" / f"{i}.wav", _tone(16000, 0.05, f=200 + i), 16000)
    everything = {fi.rel for fi in AudioFolder(root).files}
    train = {fi.rel for fi in AudioFolder(root, split="train").files}
    assert train == {r for r in everything if split_of(r) == "train"}
    assert 0 < len(train) < len(everything)
    with pytest.raises(ValueError, match="split"):
        AudioFolder(root, split="dev")


def test_scan_cache_is_reused_and_invalidated(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    for i in range(4):
        sf.write(root / f"{i}.wav", _tone(16000, 0.2, f=300 + 50 * i), 16000)
    a = AudioFolder(root)
    assert a.scanned_fresh == 4 and (root / ".tinycodec_manifest.json").is_file()
    b = AudioFolder(root)
    assert b.scanned_fresh == 0 and [f.rel for f in b.files] == [f.rel for f in a.files]
    sf.write(root / "2.wav", np.zeros((1600, 1), np.float32), 16000)  # now silent: must be re-checked
    os.utime(root / "2.wav", ns=(1, 1))
    with pytest.warns(AudioSkipWarning, match="2.wav: silent"):
        c = AudioFolder(root)
    assert c.scanned_fresh == 1 and len(c.files) == 3


def test_peak_normalize_and_vanished_file(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    sf.write(root / "quiet.wav", _tone(16000, 0.25, amp=0.1), 16000)
    ds = AudioFolder(root, audio_length=0.5, peak_normalize=0.9)
    assert float(ds[0].abs().max()) == pytest.approx(0.9, abs=1e-3)
    (root / "quiet.wav").unlink()
    with pytest.warns(AudioSkipWarning, match="failed after scan"):
        x = ds[0]
    assert x.shape == (1, 8000) and (x == 0).all()


def test_tensor_corpus_fast_path(tmp_path):
    root = tmp_path / "tc"
    root.mkdir()
    rng = np.random.default_rng(0)
    clips = {
        f"{i}.wav": (rng.uniform(-0.5, 0.5, int(16000 * d))).astype(np.float32)
        for i, d in enumerate([1.0, 0.3, 2.0])
    }
    for name, x in clips.items():
        sf.write(root / name, x, 16000, subtype="PCM_16")
    path = build_tensor_corpus(root, tmp_path / "tc.safetensors", 16000)
    corpus = TensorCorpus(path, audio_length=0.5, seed=1)
    assert len(corpus) == 3 and corpus.hours == pytest.approx(3.3 / 3600, rel=1e-3)
    batch = corpus.sample(64)
    assert batch.shape == (64, 1, 8000) and batch.dtype == torch.float32 and torch.isfinite(batch).all()
    again = TensorCorpus(path, audio_length=0.5, seed=1).sample(64)
    assert torch.equal(batch, again)  # seeded
    # every crop is a contiguous piece of one file (or that file then zeros, for the short one)
    pcm = {n: sf.read(root / n, dtype="float32")[0] for n in clips}
    for crop in batch[:16, 0].numpy():
        hit = False
        for x in pcm.values():
            nz = crop[: min(len(crop), len(x))]
            idx = np.flatnonzero(np.isclose(x, nz[0], atol=1e-4))
            hit |= any(np.allclose(x[i : i + len(nz)], nz, atol=2e-4) for i in idx if i + len(nz) <= len(x))
        assert hit


def _write_speakers(root: Path) -> None:
    for spk in ("alice", "bob", "carol", "carol_junior"):
        for i in range(3):
            (root / "speech" / spk).mkdir(parents=True, exist_ok=True)
            sf.write(root / "speech" / spk / f"{i}.wav", _tone(16000, 0.05, f=200 + 50 * i), 16000)


def test_splits_json_holds_out_whole_speakers_and_single_recordings(tmp_path):
    import json

    from tinycodec.eval.clips import list_clips

    _write_speakers(tmp_path)
    (tmp_path / "splits.json").write_text(json.dumps({
        "_comment": "bob tests; carol validates except one recording, which tests",
        "test": ["speech/bob", "speech/carol/2.wav"], "val": ["speech/carol/"],
    }))
    rels = {s: {fi.rel for fi in AudioFolder(tmp_path, split=s).files} for s in SPLITS}
    assert rels["test"] == {"speech/bob/0.wav", "speech/bob/1.wav", "speech/bob/2.wav", "speech/carol/2.wav"}
    assert rels["val"] == {"speech/carol/0.wav", "speech/carol/1.wav"}  # longest prefix wins for 2.wav
    # "speech/carol" matches whole path components: carol_junior is another speaker and trains
    assert rels["train"] == {f"speech/{s}/{i}.wav" for s in ("alice", "carol_junior") for i in range(3)}
    assert {rel for rel, _ in list_clips(tmp_path, split="test")} == rels["test"]  # eval agrees


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a readable JSON"),
    ('["speech/bob"]', "expected an object"),
    ('{"dev": ["speech/bob"]}', "unknown split 'dev'"),
    ('{"test": "speech/bob"}', "list of non-empty"),
    ('{"test": ["speech/bob"], "val": ["speech/bob/"]}', "both 'test' and 'val'"),
])
def test_bad_splits_json_is_a_clear_error(tmp_path, content, message):
    _write_speakers(tmp_path)
    (tmp_path / "splits.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        AudioFolder(tmp_path, split="train")


def test_reference_splits_hold_out_speakers_that_never_train():
    """The committed reference split: no test or val speaker folder also trains."""
    import csv
    import json

    from tinycodec.data.folder import load_split_rules

    manifests = Path(__file__).resolve().parents[1] / "data" / "manifests"
    rules = load_split_rules(manifests / "reference_splits.json")
    speakers: dict[str, set[str]] = {}
    for name in ("speech", "nature"):
        for row in csv.DictReader(open(manifests / f"{name}.csv", encoding="utf-8")):
            folder = row["file"].rsplit("/", 1)[0]
            speakers.setdefault(folder, set()).add(split_of(row["file"], rules))
    speech = {f: s for f, s in speakers.items() if f.startswith("speech/")}
    assert all(len(s) == 1 for s in speech.values()), "a speaker folder spans two splits"
    held = [f for f, s in speech.items() if s != {"train"}]
    assert {"test", "val"} <= set().union(*speech.values()) and len(held) >= 6
    nature_test = [f for f in json.loads((manifests / "reference_splits.json").read_text())["test"]
                   if f.startswith("nature/")]
    assert len(nature_test) >= 20  # whole recordings: enough test clips for a per-category mean
