"""Corpus recipes: resumable download + checksum + extraction from a local HTTP server, the demo
recipe from local wheels, manifests, idempotency, and clear errors without network or apt."""

from __future__ import annotations

import csv
import hashlib
import http.server
import io
import subprocess
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tinycodec.cli import main
from tinycodec.data.corpora import apt, demo, fetch
from tinycodec.data.corpora.manifest import (
    COLUMNS,
    Entry,
    is_up_to_date,
    read_manifest,
    totals,
    write_manifest,
)
from tinycodec.data.corpora.web import download


def _wav_bytes(seconds=0.5, sr=44100, f=440.0) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(sr * seconds)) / sr
    sf.write(buf, (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _tiny_esc50() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        rows = ["filename,fold,target,category,esc10,src_file,take"]
        for i, (target, cat) in enumerate([(0, "dog"), (14, "chirping_birds"), (41, "chainsaw")]):
            name = f"1-{i}-A-{target}.wav"
            zf.writestr(f"ESC-50-master/audio/{name}", _wav_bytes(f=300 + 100 * i))
            rows.append(f"{name},1,{target},{cat},False,{i},A")
        zf.writestr("ESC-50-master/meta/esc50.csv", "\n".join(rows) + "\n")
        zf.writestr("ESC-50-master/README.md", "tiny test archive")
    return buf.getvalue()


def _tiny_librispeech() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for spk, utt in [("19", "0000"), ("19", "0001"), ("84", "0000")]:
            fb = io.BytesIO()
            sf.write(fb, np.zeros(8000, np.float32) + 0.01 * np.sin(np.arange(8000)), 16000, format="FLAC")
            data = fb.getvalue()
            info = tarfile.TarInfo(f"LibriSpeech/test-clean/{spk}/198/{spk}-198-{utt}.flac")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class _Server:
    """A local HTTP server with Range support that records the requests it served."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Range")))
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng := self.headers.get("Range"):
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_esc50_recipe_through_local_http(tmp_path):
    archive = _tiny_esc50()
    with _Server({"/esc50.zip": archive}) as srv:
        url = f"{srv.url}/esc50.zip"
        path = fetch("esc50", tmp_path / "esc50", url=url)
        rows = read_manifest(path)
        assert [r.category for r in rows] == ["nature", "nature", "environment"]  # dog, birds, chainsaw
        assert all(r.sample_rate == 44100 and r.duration_s == 0.5 and r.source_package == url for r in rows)
        assert all((tmp_path / "esc50" / r.file).is_file() for r in rows)
        n = len(srv.requests)
        assert fetch("esc50", tmp_path / "esc50", url=url) == path  # up to date: no request
        assert len(srv.requests) == n
        # trust on first use: the recorded checksum now guards later downloads
        sums = (tmp_path / "esc50/.cache/checksums.json").read_text()
        assert hashlib.sha256(archive).hexdigest() in sums


def test_librispeech_recipe_with_checksum(tmp_path):
    archive = _tiny_librispeech()
    with _Server({"/test-clean.tar.gz": archive}) as srv:
        url = f"{srv.url}/test-clean.tar.gz"
        path = fetch("librispeech", tmp_path / "ls", url=url, sha256=hashlib.sha256(archive).hexdigest())
        rows = read_manifest(path)
        assert len(rows) == 3 and {r.category for r in rows} == {"speech"} and rows[0].licence == "CC-BY-4.0"
        assert rows[0].file.startswith("LibriSpeech/test-clean/19/198/") and rows[0].file.endswith(".flac")
        with pytest.raises(RuntimeError, match="checksum mismatch"):
            fetch("librispeech", tmp_path / "ls2", url=url, sha256="0" * 64)
        assert not list((tmp_path / "ls2/.cache").glob("*.part"))


def test_download_resumes_with_range(tmp_path):
    body = bytes(range(256)) * 4000
    with _Server({"/big.bin": body}) as srv:
        dest = tmp_path / "big.bin"
        (tmp_path / "big.bin.part").write_bytes(body[:300_000])  # an interrupted download
        download(f"{srv.url}/big.bin", dest, hashlib.sha256(body).hexdigest())
        assert dest.read_bytes() == body
        assert srv.requests == [("/big.bin", "bytes=300000-")]
        with pytest.raises(RuntimeError, match="HTTP 404"):
            download(f"{srv.url}/missing.zip", tmp_path / "m.zip")


def test_no_network_is_a_clear_error(tmp_path):
    with _Server({}) as srv:
        dead = srv.url  # the port is closed once the server stops
    with pytest.raises(RuntimeError, match=r"download of http://127\.0\.0\.1:\d+/x\.zip failed"):
        fetch("esc50", tmp_path / "e", url=f"{dead}/x.zip")


def _fake_wheels(cache: Path) -> None:
    cache.mkdir(parents=True)
    with zipfile.ZipFile(cache / "onsen-0.1.1-py3-none-any.whl", "w") as zf:
        for name in ("thank_you", "welcome", "water"):
            zf.writestr(f"onsen/assets/{name}.wav", _wav_bytes(0.3, 96000 if name != "water" else 44100))
    with zipfile.ZipFile(cache / "pyannote_audio-4.0.7-py3-none-any.whl", "w") as zf:
        zf.writestr("pyannote/audio/sample/sample.wav", _wav_bytes(1.0, 16000))


def test_demo_recipe_from_cached_wheels_is_idempotent(tmp_path, monkeypatch):
    root = tmp_path / "demo"
    _fake_wheels(root / ".cache")
    monkeypatch.setattr(demo, "N_SYNTH", 3)
    monkeypatch.setattr(demo, "pip_download", lambda *a: pytest.fail("wheels are cached: no pip call"))
    path = fetch("demo", root)
    rows = read_manifest(path)
    with path.open() as fh:
        assert tuple(next(csv.reader(fh))) == COLUMNS
    assert {r.file for r in rows} == {
        "speech/pyannote_sample.wav",
        "speech/onsen_thank_you.wav",
        "speech/onsen_welcome.wav",
        "nature/onsen_water.wav",
        "synthetic/birds_00.wav",
        "synthetic/birds_01.wav",
        "synthetic/birds_02.wav",
    }
    assert all(r.sample_rate == 16000 and sf.info(str(root / r.file)).channels == 1 for r in rows)
    assert totals(rows)["speech"]["files"] == 3
    mtime = path.stat().st_mtime_ns
    assert main(["data", "fetch", "demo", "--to", str(root)]) == 0  # "up to date"
    assert path.stat().st_mtime_ns == mtime
    (root / "synthetic/birds_01.wav").write_bytes(b"x")  # a damaged file: the next fetch rebuilds
    assert not is_up_to_date(root, "demo")
    fetch("demo", root)
    assert sf.info(str(root / "synthetic/birds_01.wav")).frames == 80_000


def test_pip_failure_names_what_failed(tmp_path, monkeypatch):
    def failing_run(cmd, **kw):
        return subprocess.CompletedProcess(
            cmd, 1, "", "ERROR: Could not find a version that satisfies onsen==0.1.1\n"
        )

    monkeypatch.setattr(demo.subprocess, "run", failing_run)
    with pytest.raises(RuntimeError, match=r"pip download of onsen==0\.1\.1 pyannote\.audio==4\.0\.7 failed"):
        fetch("demo", tmp_path / "d")


def test_apt_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(apt.shutil, "which", lambda name: None if name == "apt-get" else f"/usr/bin/{name}")
    with pytest.raises(RuntimeError, match="apt-get not found"):
        fetch("speech", tmp_path / "s")
    with pytest.raises(RuntimeError, match="apt-get not found"):
        fetch("nature", tmp_path / "n", sources=("widelands",))


def test_speech_without_a_g722_decoder_refuses_before_downloading(tmp_path, monkeypatch):
    # without ffmpeg or PyAV every Asterisk voice would be skipped and the corpus silently 2.2 h smaller
    import importlib.util

    from tinycodec.data.corpora import speech

    monkeypatch.setattr(apt.shutil, "which", lambda name: None)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "av" else real_find_spec(name, *a))
    monkeypatch.setattr(speech, "apt_download", lambda *a, **k: pytest.fail("downloaded anyway"))
    with pytest.raises(RuntimeError, match=r"speech corpus: decoding G\.722 needs ffmpeg"):
        fetch("speech", tmp_path / "s")
    assert not any((tmp_path / "s").rglob("*.wav"))


def test_manifest_round_trip_and_cli(tmp_path, capsys):
    sf.write(tmp_path / "a.wav", np.zeros(1600, np.float32) + 0.1, 16000)
    e = Entry("a.wav", "speech", "pkg_1.0", "x/a.ogg", "GPL-2.0", 0.1, 16000)
    write_manifest(tmp_path, [e], "r")
    assert (
        read_manifest(tmp_path) == [e]
        and is_up_to_date(tmp_path, "r")
        and not is_up_to_date(tmp_path, "other")
    )
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("demo", "speech", "nature", "esc50", "librispeech"))
    assert main(["data", "fetch", "no-such-corpus"]) == 1
    assert "unknown corpus 'no-such-corpus'" in capsys.readouterr().err


def test_voices_check_set_is_synthesised_locally(tmp_path):
    import soundfile as sf

    from tinycodec.data.corpora import fetch
    from tinycodec.data.corpora.voices import VOICES

    root = fetch("voices", to=tmp_path / "voices").parent  # fetch returns the manifest
    wavs = sorted((root / "speech").glob("*.wav"))
    assert len(wavs) == 2 * len(VOICES)
    for path in wavs:
        info = sf.info(str(path))
        assert info.samplerate == 16000 and 1.0 < info.frames / 16000 < 8.0
    assert (root / "manifest.csv").read_text().count("espeak-ng") == len(wavs)
