"""Tests for tinycodec.bitstream.entropy: rANS round trip, size against empirical entropy, tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinycodec.bitstream import BitstreamError, entropy


def _zipf_codes(seed: int, shape, codebook_size: int = 1024, s: float = 1.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, codebook_size + 1) ** s
    return rng.choice(codebook_size, size=shape, p=p / p.sum())


@pytest.mark.parametrize("zipf_s", [1.2, 2.0, 3.0])
def test_coded_size_within_2_percent_of_empirical_entropy(zipf_s):
    codes = _zipf_codes(0, (1, 4, 6000), s=zipf_s)  # 24k symbols, about 6 / 2.3 / 1 bits each
    tables = entropy.fit_tables(codes, 1024)
    data = entropy.encode(codes, tables)
    h_bits = entropy.entropy_bits(codes, 1024)
    overhead = len(data) * 8 / h_bits - 1
    assert 0 <= overhead < 0.02, overhead  # measured: 0.03 / 0.11 / 0.28 %
    assert len(data) * 8 < 0.61 * codes.size * 10  # at most 6 bits, not the 10 of bit-packing
    np.testing.assert_array_equal(entropy.decode(data, tables, codes.shape), codes)


@pytest.mark.parametrize("shape", [(3, 1), (2, 3, 17), (1, 1, 500), (8, 0)])
def test_round_trip_shapes(shape):
    codes = _zipf_codes(1, shape, codebook_size=64)
    tables = entropy.fit_tables(np.zeros((shape[-2], 1), np.int64) if codes.size == 0 else codes, 64)
    data = entropy.encode(codes, tables)
    decoded = entropy.decode(data, tables, shape)
    assert decoded.shape == shape
    np.testing.assert_array_equal(decoded, codes)


def test_unseen_symbols_stay_codable():
    train = np.zeros((2, 100), np.int64)  # only index 0 seen
    tables = entropy.fit_tables(train, 256)
    assert tables.freqs.min() >= 1 and np.all(tables.freqs.sum(axis=1) == 1 << tables.prob_bits)
    codes = np.array([[0, 255, 7, 0], [3, 0, 0, 255]])
    np.testing.assert_array_equal(entropy.decode(entropy.encode(codes, tables), tables, codes.shape), codes)


def test_uniform_codes_cost_log2_codebook_size():
    codes = np.random.default_rng(2).integers(0, 256, size=(2, 10000))
    tables = entropy.fit_tables(codes, 256)
    bits_per_symbol = len(entropy.encode(codes, tables)) * 8 / codes.size
    assert 7.95 < bits_per_symbol < 8.02


def test_empirical_entropy_known_values():
    codes = np.array([[0, 1, 0, 1], [2, 2, 2, 2], [0, 1, 2, 3]])
    np.testing.assert_allclose(entropy.empirical_entropy(codes, 4), [1.0, 0.0, 2.0])
    assert entropy.entropy_bits(torch.as_tensor(codes)[None], 4) == pytest.approx(12.0)


def test_tables_serialise_and_reject_corruption():
    tables = entropy.fit_tables(_zipf_codes(3, (4, 2000)), 1024)
    blob = tables.to_bytes()
    assert entropy.EntropyTables.from_bytes(blob) == tables
    assert len(blob) < 4 * 1024 * 4 / 2  # zlib shrinks the many count-1 entries
    for bad in (blob[:-1], blob[:10], b"XXXX" + blob[4:], blob[:20] + bytes([blob[20] ^ 1]) + blob[21:]):
        with pytest.raises(BitstreamError):
            entropy.EntropyTables.from_bytes(bad)


def test_decode_detects_corruption_and_truncation():
    codes = _zipf_codes(4, (2, 300), codebook_size=128)
    tables = entropy.fit_tables(codes, 128)
    data = entropy.encode(codes, tables)
    with pytest.raises(BitstreamError):
        entropy.decode(data[:-3], tables, codes.shape)
    with pytest.raises(BitstreamError):
        entropy.decode(data + b"\0", tables, codes.shape)
    with pytest.raises(BitstreamError, match="cannot hold"):
        entropy.decode(data, tables, (2, 10**9))


def test_quantize_counts_sums_and_floor():
    rng = np.random.default_rng(5)
    for _ in range(20):
        counts = rng.integers(0, 1000, size=rng.integers(2, 600)) * (rng.random(1) < 0.5)
        freqs = entropy.quantize_counts(counts, 12)
        assert freqs.sum() == 4096 and freqs.min() >= 1


def test_fitted_tables_cap_every_symbol_and_degenerate_ones_are_refused():
    peaked = entropy.fit_tables(np.zeros((2, 1000), np.int64), 256)  # only index 0 ever seen
    assert peaked.freqs.max() == entropy.max_freq(20) and np.all(peaked.freqs.sum(axis=1) == 1 << 20)
    bad = peaked.freqs.copy()
    bad[:, 0] += bad[:, 1] - 1
    bad[:, 1] = 1
    blob = entropy.EntropyTables(bad, 20).to_bytes()
    with pytest.raises(BitstreamError, match="degenerate entropy table"):
        entropy.EntropyTables.from_bytes(blob)
    with pytest.raises(ValueError, match="at least 2 symbols"):
        entropy.quantize_counts([5], 12)


@pytest.mark.parametrize("seed", range(6))
def test_the_size_bound_never_refuses_a_real_stream(seed):
    # the exact lower bound on payload bits holds for every stream the encoder writes, even the most
    # compressible (a table as peaked as fitting allows, and codes that are all its likeliest symbol)
    rng = np.random.default_rng(seed)
    k = int(rng.choice([2, 16, 512]))
    codes = np.zeros((3, 2000), np.int64) if seed % 2 else _zipf_codes(seed, (3, 2000), codebook_size=k, s=3.0)
    tables = entropy.fit_tables(codes, k, prob_bits=int(rng.choice([12, 16, 20])))
    data = entropy.encode(codes, tables)
    assert tables.min_payload_bits(codes.size) <= 8 * (len(data) - 4)
    chunks = list(entropy.iter_decode(data, tables, codes.size, chunk=3 * 64))
    assert max(c.size for c in chunks) == 192  # memory bounded by the chunk
    np.testing.assert_array_equal(np.concatenate(chunks).reshape(-1, 3).T, codes)
