"""Tests for tinycodec.bitstream: packing, the .tcz container, packets, and the fuzz rule
"only BitstreamError, or a correct decode when the CRC passes"."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinycodec
from tinycodec.bitstream import (
    HEADER_SIZE,
    PACKET_OVERHEAD,
    TRAILER_SIZE,
    BitstreamError,
    Packet,
    decode_bytes,
    depacketize,
    encode_bytes,
    entropy,
    pack_codes,
    packetize,
    read_packet,
    read_tcz,
    read_tcz_header,
    unpack_codes,
    weights_hash,
    write_tcz,
)
from tinycodec.bitstream.container import MAX_SYMBOLS
from tinycodec.models import TinyStream

WHASH = bytes(range(8))


def _codes(seed: int, n_q: int = 4, frames: int = 40, bits: int = 9) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # skewed, like real codebooks: a few indices dominate
    return np.minimum(rng.geometric(0.05, size=(n_q, frames)) - 1, (1 << bits) - 1)


def _file(codes, bits=9, **kw) -> bytes:
    return write_tcz(codes, model_id="tiny", model_hash=WHASH, sample_rate=16000, hop_length=256,
                     length=codes.shape[-1] * 256 - 17, bits=bits, **kw)


def _recrc(data: bytes) -> bytes:
    """Fix the trailing CRC after editing a field, to reach the checks behind it."""
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def _with_field(data: bytes, offset: int, fmt: str, value) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return _recrc(bytes(b))


def test_public_name():
    assert tinycodec.BitstreamError is BitstreamError


@pytest.mark.parametrize("bits", [1, 3, 7, 8, 9, 10, 13, 16, 20, 31])
def test_pack_unpack_exact(bits):
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 1 << bits, size=257, dtype=np.int64)
    codes[:2] = [0, (1 << bits) - 1]  # both extremes
    data = pack_codes(codes, bits)
    assert len(data) == (257 * bits + 7) // 8
    np.testing.assert_array_equal(unpack_codes(data, bits, 257), codes)


def test_pack_rejects_out_of_range():
    with pytest.raises(ValueError, match="codes must be in"):
        pack_codes(np.array([0, 512]), 9)
    with pytest.raises(BitstreamError, match="padding"):
        unpack_codes(b"\xff", 3, 2)  # 6 bits used, 2 padding bits set


@pytest.mark.parametrize("entropy_mode", ["packed", "external", "embedded"])
def test_container_round_trip(entropy_mode):
    codes = _codes(0)
    tables = entropy.fit_tables(codes, 512) if entropy_mode != "packed" else None
    data = _file(codes, tables=tables, embed_tables=entropy_mode == "embedded")
    header, decoded = read_tcz(data, tables if entropy_mode == "external" else None)
    np.testing.assert_array_equal(decoded[0], codes)
    assert (header.model_id, header.model_hash, header.n_q, header.bits, header.num_frames) == (
        "tiny", WHASH, 4, 9, 40)
    assert header.entropy_coded == (entropy_mode != "packed")
    assert header.length == 40 * 256 - 17


def test_bitpacked_size_is_nominal_bitrate_times_duration_plus_header():
    torch.manual_seed(0)
    model = TinyStream.from_preset("tiny").eval()
    frames = 64
    wav = 0.1 * torch.randn(1, 1, frames * model.hop_length, generator=torch.Generator().manual_seed(1))
    data = encode_bytes(model, wav)
    duration = wav.shape[-1] / model.sample_rate
    nominal_bytes = model.bitrate() * duration / 8
    assert nominal_bytes == int(nominal_bytes)  # 4 x 9 bits x 62.5 Hz x 1.024 s = 288 bytes
    assert len(data) == HEADER_SIZE + TRAILER_SIZE + int(nominal_bytes)
    # and n_q changes the size exactly as the formula says
    data2 = encode_bytes(model, wav, n_q=2)
    assert len(data2) == HEADER_SIZE + TRAILER_SIZE + int(model.bitrate(2) * duration / 8)


def test_model_round_trip_and_wrong_model():
    torch.manual_seed(0)
    model = TinyStream.from_preset("tiny").eval()
    wav = 0.1 * torch.randn(1, 1, 5000, generator=torch.Generator().manual_seed(2))
    data = encode_bytes(model, wav)
    out, sr = decode_bytes(data, model)
    with torch.inference_mode():
        ref = model.decode(model.encode(wav), length=5000)
    assert sr == 16000 and out.shape == (1, 1, 5000)
    torch.testing.assert_close(out, ref)
    torch.manual_seed(1)
    other = TinyStream.from_preset("tiny").eval()
    assert weights_hash(other) != weights_hash(model)
    with pytest.raises(BitstreamError, match="wrong model"):
        decode_bytes(data, other)


def test_specific_errors():
    data = _file(_codes(1))
    with pytest.raises(BitstreamError, match="magic"):
        read_tcz(b"RIFF" + data[4:])
    with pytest.raises(BitstreamError, match="unsupported .tcz version 3"):
        read_tcz(_with_field(data, 4, "<B", 3))
    with pytest.raises(BitstreamError, match="truncated"):
        read_tcz(data[:-1])
    with pytest.raises(BitstreamError, match="trailing"):
        read_tcz(data + b"\0")
    with pytest.raises(BitstreamError, match="CRC32 mismatch"):
        read_tcz(data[:HEADER_SIZE] + bytes([data[HEADER_SIZE] ^ 1]) + data[HEADER_SIZE + 1:])
    with pytest.raises(BitstreamError, match="needs the model's entropy tables"):
        read_tcz(_file(_codes(1), tables=entropy.fit_tables(_codes(1), 512)))
    with pytest.raises(BitstreamError, match="do not match"):
        read_tcz(_file(_codes(1), tables=entropy.fit_tables(_codes(1), 512)), entropy.fit_tables(_codes(2), 512))


def test_absurd_sizes_fail_fast_without_allocating():
    data = _file(_codes(3))
    # a payload size of 4 GiB: refused as truncated before anything is read
    with pytest.raises(BitstreamError, match="truncated"):
        read_tcz(_with_field(data, 68, "<I", 0xFFFFFFFF))
    # 255 quantizers x 2**32-1 frames: over the symbol limit, even with a valid CRC
    huge = _with_field(_with_field(data, 54, "<B", 64), 56, "<I", 0xFFFFFFFF)
    with pytest.raises(BitstreamError, match="exceed the limit"):
        read_tcz(huge)
    # an entropy-coded file claiming many more symbols than its bytes can hold
    codes = _codes(3)
    ent = _file(codes, tables=entropy.fit_tables(codes, 512), embed_tables=True)
    many = _with_field(_with_field(ent, 56, "<I", MAX_SYMBOLS // 4), 60, "<I", 0)
    with pytest.raises(BitstreamError, match="cannot hold"):
        read_tcz(many)


_VALID = {
    "packed": _file(_codes(10)),
    "entropy": _file(_codes(10), tables=entropy.fit_tables(_codes(10), 512), embed_tables=True),
}
_EXPECTED = _codes(10)


def _mutate(data: bytes, draw_ops) -> bytes:
    b = bytearray(data)
    for kind, pos, val in draw_ops:
        if not b:
            break
        i = pos % len(b)
        if kind == "flip":
            b[i] ^= 1 << (val % 8)
        elif kind == "byte":
            b[i] = val % 256
        elif kind == "truncate":
            del b[i:]
        elif kind == "delete":
            del b[i]
        elif kind == "insert":
            b.insert(i, val % 256)
    return bytes(b)


_ops = st.lists(
    st.tuples(st.sampled_from(["flip", "byte", "truncate", "delete", "insert"]),
              st.integers(0, 1 << 16), st.integers(0, 255)),
    min_size=1, max_size=4,
)


@settings(max_examples=2000, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from(sorted(_VALID)), ops=_ops, fix_crc=st.booleans())
def test_fuzz_mutations_raise_bitstream_error_or_decode_correctly(which, ops, fix_crc):
    data = _mutate(_VALID[which], ops)
    if fix_crc and len(data) > 8:
        data = _recrc(data)  # CRC passes: the field checks behind it must still hold the line
    try:
        header, codes = read_tcz(data)
    except BitstreamError as exc:
        assert str(exc)
        return
    if not fix_crc and data != _VALID[which]:
        # a changed file whose CRC still passes is a 2**-32 event; a decode must then be exact
        np.testing.assert_array_equal(codes[0], _EXPECTED)
    assert codes.shape == (1, header.n_q, header.num_frames)


def test_packets_round_trip_and_errors():
    codes = _codes(4, frames=23)
    packets = packetize(codes, 9, frames_per_packet=5, first_seq=7)
    assert [p.seq for p in packets] == [7, 8, 9, 10, 11] and packets[-1].last and not packets[0].last
    stream = b"".join(p.to_bytes() for p in packets)
    assert len(packets[0].to_bytes()) == Packet.size(5, 4, 9) == PACKET_OVERHEAD + (5 * 4 * 9 + 7) // 8
    parsed, offset = [], 0
    while offset < len(stream):
        packet, offset = read_packet(stream, offset)
        parsed.append(packet)
    assert parsed == packets
    np.testing.assert_array_equal(depacketize(parsed)[0], codes)
    with pytest.raises(BitstreamError, match="sequence gap: 8 followed by 10"):
        depacketize([parsed[0], parsed[1], parsed[3]])
    raw = packets[1].to_bytes()
    with pytest.raises(BitstreamError, match="CRC32"):
        Packet.from_bytes(raw[:15] + bytes([raw[15] ^ 4]) + raw[16:])
    with pytest.raises(BitstreamError, match="truncated"):
        Packet.from_bytes(raw[:-3])
    with pytest.raises(BitstreamError, match="sync"):
        Packet.from_bytes(b"XX" + raw[2:])


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(ops=_ops)
def test_fuzz_packets(ops):
    raw = packetize(_codes(5, frames=8), 9, 8)[0].to_bytes()
    data = _mutate(raw, ops)
    try:
        packet = Packet.from_bytes(data)
    except BitstreamError:
        return
    np.testing.assert_array_equal(packet.codes, _codes(5, frames=8))


def test_cli_encode_decode_round_trip(tmp_path, capsys):
    from tinycodec.audio import load, save
    from tinycodec.cli import main
    from tinycodec.pretrained import list_pretrained

    assert "soundstream_tiny" not in list_pretrained()  # else pick another unshipped preset for the seed check
    wav = 0.1 * torch.randn(1, 12345, generator=torch.Generator().manual_seed(3))
    save(tmp_path / "in.wav", wav, 24000)  # soundstream_tiny's rate
    for extra in ([], ["--entropy", "--n_q", "2"]):
        # a preset with no shipped weights: its seed picks the (random) weights
        args = ["encode", str(tmp_path / "in.wav"), str(tmp_path / "x.tcz"), "--model", "soundstream_tiny", *extra]
        assert main(args) == 0
        header = read_tcz_header((tmp_path / "x.tcz").read_bytes())
        assert header.model_id == "soundstream_tiny" and header.length == 12345 and header.entropy_coded == bool(extra)
        # no --model: a preset's random weights are never picked for the user
        assert main(["decode", str(tmp_path / "x.tcz"), str(tmp_path / "out.wav")]) == 1
        assert "pass --model soundstream_tiny" in capsys.readouterr().err
        assert main(["decode", str(tmp_path / "x.tcz"), str(tmp_path / "out.wav"), "--model", "soundstream_tiny"]) == 0
        assert "RANDOM weights" in capsys.readouterr().err
        out, sr = load(tmp_path / "out.wav")
        assert sr == 24000 and out.shape == (1, 12345)
    # another seed is another set of weights: refused with one clear line
    assert main(["decode", str(tmp_path / "x.tcz"), str(tmp_path / "out.wav"), "--model", "soundstream_tiny",
                 "--seed", "1"]) == 1
    assert "wrong model" in capsys.readouterr().err
