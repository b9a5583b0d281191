"""Bounded encoding and decoding: chunked == whole-file, max_seconds, decompression bombs (memory
measured), non-finite input, and files naming the encoder so an upgraded decoder reads them."""

from __future__ import annotations

import copy
import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import soundfile as sf
import torch

from tinycodec.bitstream import (
    AudioInputError,
    BitstreamError,
    LimitError,
    decode_bytes,
    encode_bytes,
    encode_codes,
    encoder_hash,
    entropy,
    find_model,
    read_tcz_header,
    weights_hash,
    write_tcz,
)
from tinycodec.bitstream.container import HEADER, MAGIC
from tinycodec.cli import main
from tinycodec.pretrained import load_model


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


def _noise(seconds: float, sr: int = 16000, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(int(seconds * sr), generator=torch.Generator().manual_seed(seed))


def _new_decoder(model):
    """Model A's encoder and codebooks with a freshly initialised decoder (a decoder upgrade)."""
    b = copy.deepcopy(model)
    torch.manual_seed(123)
    for m in b.decoder.modules():
        if hasattr(m, "reset_parameters") and m is not b.decoder:
            m.reset_parameters()
    return b


def test_encoder_hash_names_encoder_and_codebooks_only(tiny, tmp_path):
    from tinycodec.pretrained import load_weights
    from tinycodec.train import export_weights

    h = encoder_hash(tiny)
    assert len(h) == 16 and int(h, 16) >= 0
    b = _new_decoder(tiny)
    assert encoder_hash(b) == h and weights_hash(b) != weights_hash(tiny)
    half = load_weights(export_weights(tiny, tmp_path / "half.safetensors", dtype=torch.float16))
    assert encoder_hash(half) == h  # float16 on disk, float32 in memory: the same encoder
    c = copy.deepcopy(tiny)
    with torch.no_grad():
        c.quantizer.layers[1].embed[3, 0] += 0.5  # one codebook entry moved
    assert encoder_hash(c) != h


def test_a_file_decodes_with_an_upgraded_decoder_and_not_with_another_encoder(tiny):
    wav = _noise(1.0)
    data = encode_bytes(tiny, wav)
    assert read_tcz_header(data).model_hash.hex() == encoder_hash(tiny)
    b = _new_decoder(tiny)
    out_a, _ = decode_bytes(data, tiny)
    out_b, _ = decode_bytes(data, b)
    assert out_b.shape == out_a.shape == (1, 1, wav.numel())
    assert not torch.allclose(out_a, out_b)  # B's own decoder did the work
    with torch.no_grad():
        ref = b.decode(tiny.encode(wav.view(1, 1, -1)), length=wav.numel())
    assert (out_b - ref).abs().max() <= 1e-5
    other = load_model("tiny", seed=0)
    with torch.no_grad():
        next(other.encoder.parameters()).mul_(1.01)
    with pytest.raises(BitstreamError, match=r"^wrong model: the file was encoded by encoder [0-9a-f]{16}") as exc:
        decode_bytes(data, other)
    assert "\n" not in str(exc.value)


def test_version_1_files_still_decode_with_the_model_that_wrote_them(tiny):
    wav = _noise(0.5)
    with torch.no_grad():
        codes = tiny.encode(wav.view(1, 1, -1))
    old = write_tcz(codes, model_id="tiny", model_hash=weights_hash(tiny), sample_rate=16000, hop_length=256,
                    length=wav.numel(), bits=9, version=1)
    assert read_tcz_header(old).version == 1
    out, _ = decode_bytes(old, tiny)
    with torch.no_grad():
        ref = tiny.decode(codes, length=wav.numel())
    assert (out - ref).abs().max() <= 1e-5
    assert find_model(read_tcz_header(old)).model_id == "tiny"
    with pytest.raises(BitstreamError, match="wrong model: the file \\(version 1\\)"):
        decode_bytes(old, _new_decoder(tiny))  # version 1 named all weights: only the writer decodes it


def test_a_model_id_from_a_file_is_never_opened_as_a_path(tiny):
    evil = write_tcz(np.zeros((4, 2), np.int64), model_id="/etc/passwd", model_hash=bytes(8), sample_rate=16000,
                     hop_length=256, length=512, bits=9)
    with pytest.raises(BitstreamError, match="not a shipped model or preset"):
        find_model(read_tcz_header(evil))


@pytest.mark.parametrize("name", ["tiny", "transformer_tiny"])
def test_chunked_encode_and_decode_equal_the_whole_file_path(name):
    model = load_model(name)
    wav = _noise(9.3, seed=1)  # several 256-frame chunks and a partial last frame
    with torch.no_grad():
        codes = model.encode(wav.view(1, 1, -1))
        ref = model.decode(codes, length=wav.numel())
    chunked, length = encode_codes(model, wav, chunk_frames=64)
    assert length == wav.numel() and torch.equal(chunked, codes)
    out, _ = decode_bytes(encode_bytes(model, wav), model)
    assert out.shape == ref.shape and (out - ref).abs().max() <= 1e-5


def test_max_seconds_refuses_long_inputs_and_files(tiny):
    wav = _noise(3.0)
    with pytest.raises(LimitError, match="max_seconds=2"):
        encode_bytes(tiny, wav, max_seconds=2)
    data = encode_bytes(tiny, wav)
    with pytest.raises(LimitError, match="declares 3.0 s"):
        decode_bytes(data, tiny, max_seconds=2)
    assert decode_bytes(data, tiny, max_seconds=None)[0].shape[-1] == wav.numel()


def test_non_finite_audio_is_refused_by_api_and_cli(tiny, tmp_path, capsys):
    wav = _noise(1.0)
    wav[7000] = float("nan")
    with pytest.raises(AudioInputError, match="NaN or Inf \\(first at sample 7000\\)"):
        encode_bytes(tiny, wav)
    sf.write(tmp_path / "nan.wav", wav.numpy(), 16000, subtype="FLOAT")
    assert main(["encode", str(tmp_path / "nan.wav"), str(tmp_path / "x.tcz"), "--model", "tiny"]) == 1
    err = capsys.readouterr().err
    assert "NaN or Inf" in err and err.count("\n") == 1 and not (tmp_path / "x.tcz").exists()


def test_cli_picks_the_shipped_model_of_the_encoder_and_refuses_a_mismatch(tiny, tmp_path, capsys):
    from tinycodec.train import export_weights

    sf.write(tmp_path / "in.wav", _noise(1.0).numpy(), 16000)
    assert main(["encode", str(tmp_path / "in.wav"), str(tmp_path / "x.tcz"), "--model", "tiny"]) == 0
    assert main(["decode", str(tmp_path / "x.tcz"), str(tmp_path / "out.wav")]) == 0
    assert "with 'tiny'" in capsys.readouterr().out
    upgraded = export_weights(_new_decoder(tiny), tmp_path / "tiny_v2.safetensors")
    assert main(["decode", str(tmp_path / "x.tcz"), str(tmp_path / "out2.wav"), "--model", str(upgraded)]) == 0
    assert sf.info(str(tmp_path / "out2.wav")).frames == 16000
    capsys.readouterr()
    assert main(["decode", str(tmp_path / "x.tcz"), str(tmp_path / "bad.wav"), "--model", "ultra_tiny"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tinycodec: error: wrong model") and err.count("\n") == 1
    assert not (tmp_path / "bad.wav").exists()
    assert main(["decode", str(tmp_path / "x.tcz"), str(tmp_path / "o.wav"), "--max-seconds", "0.5"]) == 1
    assert "more than max_seconds=0.5" in capsys.readouterr().err


def _bomb(frames: int, freqs: np.ndarray, model_hash: bytes = bytes(8), prob_bits: int = 20) -> bytes:
    """An entropy-coded .tcz for tiny (4 x 512 codes) claiming ``frames`` frames, with any tables."""
    tables = entropy.EntropyTables(freqs, prob_bits)
    blob = tables.to_bytes()
    payload = struct.pack("<I", len(blob)) + blob + entropy.RANS_L.to_bytes(4, "big") + bytes(16)
    head = HEADER.pack(MAGIC, 2, 3, 0, b"tiny".ljust(32, b"\0"), model_hash, 16000, 256, 4, 9, frames,
                       frames * 256, tables.digest(), len(payload))
    return head + payload + struct.pack("<I", zlib.crc32(head + payload))


def test_entropy_bombs_are_refused_before_decoding(tiny, monkeypatch):
    from bisect import bisect_right

    from tinycodec.bitstream import read_tcz

    searched = []  # the rANS decoder searches each symbol's slot once: a count of symbols decoded
    monkeypatch.setattr(entropy, "bisect_right", lambda a, x: searched.append(x) or bisect_right(a, x))
    degenerate = np.ones((4, 512), np.int64)
    degenerate[:, 0] = (1 << 20) - 511  # one symbol nearly certain: ~0 bits per frame
    bomb = _bomb(100_000, degenerate, bytes.fromhex(encoder_hash(tiny)))  # the attacker knows the model
    assert len(bomb) < 200
    with pytest.raises(BitstreamError, match="degenerate entropy table"):
        decode_bytes(bomb, tiny, max_seconds=None)
    fitted = entropy.fit_tables(np.zeros((4, 10), np.int64), 512).freqs  # as peaked as a fit allows
    with pytest.raises(BitstreamError, match="cannot hold"):
        read_tcz(_bomb(100_000, fitted))
    assert searched == []  # both refused before a single one of the 400 000 symbols was decoded
    with pytest.raises(BitstreamError, match="corrupted"):  # a short one is decoded (and found corrupt):
        read_tcz(_bomb(1, fitted))
    assert len(searched) == 4  # the count is live, one search per symbol
    assert entropy.EntropyTables(fitted, 20).min_bits_per_symbol().min() > 0.08


# Peak memory of one step, measured honestly: freed heap pages go back to the OS (malloc_trim) and the
# kernel's high-water mark is reset (/proc/self/clear_refs, "5") right before the step, so memory that an
# earlier step touched and freed can neither hide the step's peak nor be counted in it. glibc's mmap
# threshold is pinned at its initial 128 KiB: left dynamic, it moves large blocks onto the heap after the
# first frees, and the heap's fragmentation then grows RSS slowly with the length of a run (measured:
# 115 -> 183 MiB from 2 to 16 minutes of audio, 85 -> 87 MiB pinned) although nothing of ours is kept.
_PEAK = r"""
import ctypes, resource
def _status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(key))
def reset_peak():
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS:")
def peak_since(base):
    return _status("VmHWM:") - base
"""

_MEMORY_PROBE = _PEAK + r"""
import json, sys, numpy as np, torch
torch.set_num_threads(1)
from tinycodec.bitstream import iter_decode_bytes, to_tcz
from tinycodec.pretrained import load_model
model = load_model("tiny")
frames = int(sys.argv[1])
codes = torch.from_numpy(np.random.default_rng(0).integers(0, 512, (1, 4, frames)))
data = to_tcz(model, codes, frames * 256)
with torch.inference_mode():
    model.decode(codes[..., :256])  # warm-up: allocator and kernels
base = reset_peak()
if sys.argv[2] == "chunked":
    n = sum(p.numel() for p in iter_decode_bytes(data, model, max_seconds=None))
else:
    with torch.inference_mode():
        n = model.decode(codes).numel()
print(json.dumps({"samples": n, "bytes": len(data), "mib": peak_since(base)}))
"""


def _probe(source: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", source, *args], capture_output=True, text=True, timeout=300,
                         env={"OMP_NUM_THREADS": "1", "PATH": "", "MALLOC_MMAP_THRESHOLD_": "131072"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_decoding_a_long_file_takes_bounded_memory():
    # 120 s of tiny's codes: 34 kB on disk; the whole-file path needs hundreds of MiB of activations
    frames = str(int(120 * 62.5))
    chunked, whole = _probe(_MEMORY_PROBE, frames, "chunked"), _probe(_MEMORY_PROBE, frames, "whole")
    for r in (chunked, whole):
        assert r["samples"] == 120 * 16000 and r["bytes"] < 40_000, r
    assert chunked["mib"] < 64, chunked  # a constant: one 256-frame chunk's activations
    assert whole["mib"] > 4 * max(chunked["mib"], 16), (chunked, whole)  # what chunking saves


_ENCODE_PROBE = _PEAK + r"""
import json, sys, numpy as np, soundfile as sf, torch
torch.set_num_threads(1)
from tinycodec.bitstream import encode_codes
from tinycodec.pretrained import load_model
model = load_model("tiny")
path = sys.argv[1]
with sf.SoundFile(path, "w", samplerate=44100, channels=1, subtype="PCM_16") as f:  # another rate: resampled
    for i in range(int(sys.argv[2])):
        f.write(0.1 * np.random.default_rng(i).standard_normal(44100))
encode_codes(model, torch.zeros(4096))  # warm-up
base = reset_peak()
codes, length = encode_codes(model, path, max_seconds=None)
print(json.dumps({"frames": codes.shape[-1], "length": length, "mib": peak_since(base)}))
"""


def test_encoding_a_long_file_takes_bounded_memory(tmp_path):
    # read, resampled and encoded block by block: the peak does not grow with the file (whole-file: ~0.5 GiB)
    short, long = (_probe(_ENCODE_PROBE, str(tmp_path / f"{n}.wav"), str(n)) for n in (30, 120))
    assert long["length"] == 120 * 16000 and long["frames"] == 7500
    assert long["mib"] < short["mib"] + 32 and long["mib"] < 192, (short, long)


def test_a_file_written_when_tiny_had_the_mirror_decoder_decodes_with_its_server_decoder(tmp_path, speech):
    """``tests/data/tiny_before_decoder_upgrade.tcz`` was written by the package as it was before the
    plain name ``tiny`` became the server decoder (1 s of the demo speech; the mirror decoder is now
    ``tiny_mirror``). It names ``tiny`` and its encoder hash: ``tinycodec decode`` picks today's
    ``tiny``, and the server decoder does the work."""
    from pathlib import Path

    from tinycodec.bitstream import iter_codes
    from tinycodec.train.losses import mel_distance

    path = Path(__file__).parent / "data" / "tiny_before_decoder_upgrade.tcz"
    data = path.read_bytes()
    header = read_tcz_header(data)
    assert header.model_id == "tiny" and header.length == 16000
    model = find_model(header)
    assert model.model_id == "tiny" and model.config.decoder == "server"
    out, sr = decode_bytes(data, model)
    codes = torch.from_numpy(np.concatenate(list(iter_codes(data)), axis=-1))[None]
    with torch.no_grad():
        offline = model.decode(codes, 16000)
    assert sr == 16000 and out.shape == (1, 1, 16000) and torch.isfinite(out).all()
    assert float((out - offline).abs().max()) <= 1e-5
    mirror, _ = decode_bytes(data, load_model("tiny_mirror"))  # the decoder that was there when it was written
    assert float((out - mirror).abs().max()) > 1e-2
    ref = speech[:16000].reshape(1, 1, -1)  # what was encoded: seconds 1-2 of the demo speech
    noise = 1e-3 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(0))
    assert mel_distance(ref, out, 16000) < 0.8 * mel_distance(ref, noise, 16000)  # it is that speech
    assert main(["decode", str(path), str(tmp_path / "out.wav")]) == 0  # the CLI finds the model itself
    assert sf.info(str(tmp_path / "out.wav")).frames == 16000


def _table_blob(n_q: int, k: int, prob_bits: int, body: bytes) -> bytes:
    from tinycodec.bitstream import entropy

    blob = entropy._HEAD.pack(entropy._MAGIC, entropy._VERSION, prob_bits, n_q, k) + zlib.compress(body, 9)
    return blob + struct.pack("<I", zlib.crc32(blob))


def test_a_table_that_declares_a_huge_shape_is_refused_before_decompressing():
    from tinycodec.bitstream import BitstreamError
    from tinycodec.bitstream.entropy import EntropyTables

    bomb = _table_blob(4000, 1 << 20, 20, bytes(1 << 20))  # 1 MiB of zeros compresses to ~1 kB
    assert len(bomb) < 4096
    with pytest.raises(BitstreamError, match="declare 4000 levels x 1048576 symbols"):
        EntropyTables.from_bytes(bomb)
    # valid in shape, but more symbols than the file's 9-bit codes can name
    big = _table_blob(1, 4096, 16, np.full(4096, 15, dtype="<u2").tobytes())
    with pytest.raises(BitstreamError, match="at most 64 x 512"):
        EntropyTables.from_bytes(big, max_symbols=512)


def test_decode_bytes_without_a_length_limit_refuses_another_encoders_file_with_the_packages_error():
    from tinycodec.bitstream import BitstreamError, decode_bytes, encode_bytes
    from tinycodec.pretrained import load_model

    data = encode_bytes(load_model("ultra_tiny"), torch.zeros(1600), max_seconds=None)
    with pytest.raises(BitstreamError, match="wrong model"):
        decode_bytes(data, load_model("tinycodec"), max_seconds=None)
