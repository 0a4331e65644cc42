"""Pack codec: quantisation, Rice coding, state hash, wire round trips and corrupt input."""
import hashlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from callmark import pack_codec as pc
from callmark.pack_wire import Delta, decode_delta, decode_full, encode_delta, encode_full
from trainer.packs import make_table, synthetic_table


@given(st.lists(st.integers(min_value=0, max_value=2**40), max_size=300), st.integers(0, 20))
@settings(max_examples=60, deadline=None)
def test_rice_round_trip_any_gaps(gaps, k):
    g = np.array(gaps, dtype=np.uint64)
    u, r, e = pc.rice_encode(g, k)
    assert np.array_equal(pc.rice_decode(u, r, e, len(g), k), g)
    assert 8 * (len(u) + len(r) + len(e)) - pc.rice_cost_bits(g, k) in range(0, 24)


def test_rice_size_near_geometric_optimum():
    rng = np.random.default_rng(3)
    g = rng.geometric(1 / 4000, 50_000).astype(np.uint64)
    k = pc.best_rice_k(g)
    bits = pc.rice_cost_bits(g, k) / len(g)
    # entropy of a geometric distribution with mean 4000 is about log2(e * 4000) = 13.4 bits
    assert 13.0 < bits < 14.2
    assert pc.rice_cost_bits(g, k) <= min(pc.rice_cost_bits(g, j) for j in range(0, 30))


def test_keys_gaps_inverse_and_unsorted_rejected():
    keys = np.array([5, 6, 100, 8613812345678], dtype=np.int64)
    assert np.array_equal(pc.gaps_to_keys(pc.keys_to_gaps(keys)), keys)
    with pytest.raises(pc.PackFormatError):
        pc.keys_to_gaps(np.array([3, 2]))


def test_reporters_buckets_are_lower_bounds_with_small_error():
    r = np.arange(0, 200_000)
    q = pc.quantize_reporters(r)
    assert np.array_equal(q[:16], r[:16])
    assert (q <= r).all() and (q[16:] >= 0.875 * r[16:]).all()
    assert np.array_equal(pc.quantize_reporters(q), q)  # idempotent
    assert pc.reporters_code(np.array([2**31 - 1])).max() < 256


def test_confidence_percent():
    assert pc.quantize_confidence([0, 0.004, 0.005, 0.876, 1.2]).tolist() == [0, 0, 0, 88, 100]
    with pytest.raises(pc.PackFormatError):
        pc.quantize_confidence([float("nan")])


def test_state_hash_is_order_free_and_incremental():
    t = synthetic_table(3000, seed=1, ranges=50)
    h = pc.table_hash(t)
    perm = np.random.default_rng(0).permutation(t.n_labels)
    shuffled = {c: v[perm] for c, v in t.labels.items()}
    assert pc.rows_hash(shuffled, t.ranges, t.names) == h
    # removing rows: subtract their hashes, same as hashing the rest
    mask = np.zeros(t.n_labels, bool)
    mask[::7] = True
    part = {c: v[mask] for c, v in t.labels.items()}
    rest = {c: v[~mask] for c, v in t.labels.items()}
    assert (h - pc.rows_hash(part)) % pc.HASH_MOD == pc.rows_hash(rest, t.ranges, t.names)
    # any attribute change changes the hash
    t.labels["confidence"][0] ^= 1
    assert pc.table_hash(t) != h


def test_state_hash_matches_documented_row_encoding():
    import struct
    labels = {"key": [8613812345678], "category": [1], "confidence": [87], "reporters": [12],
              "flags": [0], "last_day": [20400]}
    row = b"L" + struct.pack(">QHBIHI", 8613812345678, 1, 87, 12, 0, 20400)
    assert len(row) == 22
    want = int.from_bytes(hashlib.sha256(row).digest(), "big")
    name = b"B" + struct.pack(">Q", 8613812345678) + "顺丰".encode()
    want += int.from_bytes(hashlib.sha256(name).digest(), "big")
    got = pc.rows_hash({c: np.array(v) for c, v in labels.items()}, None, {8613812345678: "顺丰"})
    assert got == want % pc.HASH_MOD


def test_full_wire_round_trip_and_size():
    t = synthetic_table(20_000, seed=2, ranges=200)
    blob = encode_full(t, {"name": "CN-full", "version": 3})
    header, back, cats = decode_full(blob)
    assert back.equals(t) and header["version"] == 3 and header["entries"] == t.entries
    assert any(c["key"] == "fraud" for c in cats)
    assert len(blob) / t.entries < 6  # far below PhoneBlock's 8 B/entry even at this small size


def test_delta_wire_round_trip():
    t = synthetic_table(2000, seed=4, ranges=20)
    d = Delta(removals=np.array([5, 9, 8613800000000], dtype=np.int64), upserts=t,
              range_removals={"start": np.array([100]), "size": np.array([10])})
    blob = encode_delta(d, {"name": "CN-full", "from_version": 1, "version": 2})
    header, back = decode_delta(blob)
    assert back.upserts.equals(t)
    assert back.removals.tolist() == [5, 9, 8613800000000]
    assert back.range_removals["start"].tolist() == [100] and back.range_removals["size"].tolist() == [10]
    assert header["upserts"] == t.entries and header["removals"] == 4


@pytest.mark.parametrize("mutate, msg", [
    (lambda b: b[:10], "truncated|short|JSON"),
    (lambda b: b"XXXX" + b[4:], "magic"),
    (lambda b: b[:4] + b"\x09" + b[5:], "format 9"),
    (lambda b: b + b"junk", "trailing"),
    (lambda b: b[:-30], "truncated"),
])
def test_corrupt_wire_blobs_give_clear_errors(mutate, msg):
    blob = encode_full(synthetic_table(500, seed=5), {"name": "x"})
    with pytest.raises(pc.PackFormatError, match=msg):
        decode_full(mutate(blob))


def test_table_validation_messages():
    with pytest.raises(pc.PackFormatError, match="appears twice"):
        make_table({"key": [1, 1], "category": [1, 1], "confidence": [.5, .5], "reporters": [1, 1],
                    "flags": [0, 0], "last_day": [0, 0]})
    with pytest.raises(pc.PackFormatError, match="range size"):
        make_table({c: [] for c in pc.LABEL_COLS},
                   {"start": [100], "size": [7], "category": [1], "confidence": [.5], "numbers": [3],
                    "flags": [2], "last_day": [0]})
