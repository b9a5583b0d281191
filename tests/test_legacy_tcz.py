"""Version-1 ``.tcz`` files written by the releases before c7eba2f (tests/data/legacy/v1_*.tcz, see its README).

Their weights hash is their identity: weights renamed since decode under the new name; the first
``tiny`` (450abf3), whose weights are no longer shipped, is refused in one line that says so.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
import torch

from tinycodec.bitstream import BitstreamError, check_model, decode_bytes, read_tcz, read_tcz_header
from tinycodec.bitstream.model_io import find_model, v1_weights_hashes
from tinycodec.pretrained import load_pretrained

LEGACY_FILES = Path(__file__).resolve().parent / "data" / "legacy"
# file written by 5469d4e (a3fd2c3's weights) -> the shipped model that holds those weights today
V1_NOW = {
    "v1_tiny": "tiny_v1",
    "v1_ultra_tiny": "ultra_tiny_v1",
    "v1_small": "small_mirror",
    "v1_soundstream_16k": "soundstream_16k",  # same name, but written before the codebooks' usage buffers
    "v1_transformer_tiny": "transformer_tiny",
}
RETIRED = LEGACY_FILES / "v1_tiny_450abf3.tcz"


def _with_hash(data: bytes, model_hash: bytes) -> bytes:
    """``data`` with another 8-byte model hash and a CRC32 that fits it (a well-formed file for unknown weights)."""
    body = data[:40] + model_hash + data[48:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def test_every_committed_version_1_file_is_accounted_for():
    files = {p.stem for p in LEGACY_FILES.glob("v1_*.tcz")}
    assert files == set(V1_NOW) | {RETIRED.stem}
    assert all(read_tcz_header((LEGACY_FILES / f"{f}.tcz").read_bytes()).version == 1 for f in files)


@pytest.mark.parametrize("stem", sorted(V1_NOW))
def test_a_version_1_file_decodes_with_the_weights_that_wrote_it_under_their_current_name(stem):
    data = (LEGACY_FILES / f"{stem}.tcz").read_bytes()
    header = read_tcz_header(data)
    assert header.version == 1 and header.model_id == stem.removeprefix("v1_")  # the name it had then
    model = find_model(header)  # no --model: found by the weights hash alone
    assert model.model_id == V1_NOW[stem]
    current = load_pretrained(V1_NOW[stem])
    assert header.model_hash in v1_weights_hashes(current)
    check_model(header, current)  # --model with the new name is accepted too
    wav, sr = decode_bytes(data, model)
    _, codes = read_tcz(data)
    with torch.inference_mode():
        ref = current.decode(torch.from_numpy(codes), length=header.length)
    assert sr == 16000 and wav.shape == ref.shape == (1, 1, header.length)
    assert (wav - ref).abs().max() <= 1e-5
    assert ref.abs().max() > 0.01  # speech, not silence


def test_a_version_1_file_is_still_refused_by_other_weights():
    data = (LEGACY_FILES / "v1_tiny.tcz").read_bytes()
    with pytest.raises(BitstreamError, match=r"^wrong model: the file \(version 1\) was encoded with model 'tiny' "
                                             r"\(weights aa04ecee381379a4\), the decoder has 'tiny' ") as exc:
        decode_bytes(data, load_pretrained("tiny"))  # today's tiny: other weights under the old name
    assert "\n" not in str(exc.value)


def test_a_version_1_hash_that_matches_no_model_fails_in_one_line():
    data = (LEGACY_FILES / "v1_tiny.tcz").read_bytes()
    unknown = _with_hash(data, bytes.fromhex("0123456789abcdef"))
    with pytest.raises(BitstreamError, match=r"^wrong model: the file \(version 1\) was encoded with model 'tiny' "
                                             r"\(weights 0123456789abcdef\)") as exc:
        find_model(read_tcz_header(unknown))
    assert "\n" not in str(exc.value)
    corrupted = data[:40] + bytes(8) + data[48:]  # the hash damaged, the CRC not updated
    with pytest.raises(BitstreamError, match="^CRC32 mismatch") as exc:
        find_model(read_tcz_header(corrupted))
    assert "\n" not in str(exc.value)


def test_the_first_tiny_is_refused_with_its_name_and_that_its_weights_are_gone(tmp_path, capsys):
    from tinycodec.cli import main

    data = RETIRED.read_bytes()
    header = read_tcz_header(data)
    expected = ("wrong model: the file (version 1, model 'tiny', weights 73c9ffe535dd6c8b) was encoded by the first "
                "'tiny' (commit 450abf3, shipped a few hours on 2026-11-22), whose weights are no longer shipped: "
                "no model here decodes it")
    with pytest.raises(BitstreamError) as exc:
        find_model(header)
    assert str(exc.value) == expected
    for name in ("tiny_v1", "tiny"):  # --model names the same refusal
        with pytest.raises(BitstreamError) as exc:
            check_model(header, load_pretrained(name))
        assert str(exc.value) == expected
    assert main(["decode", str(RETIRED), str(tmp_path / "out.wav")]) == 1
    err = capsys.readouterr().err
    assert err == f"tinycodec: error: {expected}\n"
    assert not (tmp_path / "out.wav").exists()
