"""Client side of packs: expand, lookup, delta apply, verification, update planning."""
import hashlib
import os
import sqlite3
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from callmark.pack import (
    PackIntegrityError, PackReader, PackStateMismatch, UpdatePolicy, apply_delta, expand_wire,
    pack_state_hash, plan_update, read_pack_meta, read_pack_table, verify_pack,
)
from callmark.pack_wire import decode_delta, encode_delta
from trainer.packs import PackConfig, build_packs, make_deltas, make_table, synthetic_table

CFG = PackConfig(lite=False, provinces=False)
K_EXACT = 8613812345678
K_RANGE_BASE = 8613812345600  # a block of 100 covering K_EXACT, and a block of 10 inside it
K_BIZ = 8695588


def _table(n=3000, seed=0, extra=True):
    t = synthetic_table(n, seed=seed)
    lab = {c: v.tolist() for c, v in t.labels.items()}
    names = dict(t.names)
    if extra:
        for k, cat, flags in ((K_EXACT, 1, 0), (K_BIZ, 17, 1)):
            if k not in lab["key"]:
                lab["key"].append(k)
                lab["category"].append(cat)
                lab["confidence"].append(90)  # percent, like the synthetic rows
                lab["reporters"].append(40)
                lab["flags"].append(flags)
                lab["last_day"].append(20400)
        names[K_BIZ] = "工商银行 ICBC"
    lab["last_day"] = [d * 86400 for d in lab["last_day"]]
    lab["confidence"] = [c / 100 for c in lab["confidence"]]
    ranges = {"start": [K_RANGE_BASE, K_RANGE_BASE + 70], "size": [100, 10], "category": [3, 5],
              "confidence": [0.7, 0.8], "numbers": [12, 6], "flags": [2, 2],
              "last_day": [20400 * 86400] * 2}
    return make_table(lab, ranges, names)


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    root = tmp_path_factory.mktemp("packs")
    t1 = _table(seed=0)
    idx1 = build_packs(t1, 1, str(root / "v1"), CFG)
    # v2: drop every 10th row, change some reporters, add new numbers, rename the business
    keep = np.ones(t1.n_labels, bool)
    keep[::10] = False
    keep[np.searchsorted(t1.labels["key"], [K_EXACT, K_BIZ])] = True
    t2 = t1.subset(keep)
    t2.labels["reporters"][:50] = 64
    t2.names[K_BIZ] = "中国工商银行"
    new = synthetic_table(300, seed=99)
    lab = {c: np.concatenate([t2.labels[c], new.labels[c]]) for c in t2.labels}
    fresh = ~np.isin(new.labels["key"], t2.labels["key"])
    lab = {c: np.concatenate([t2.labels[c], new.labels[c][fresh]]) for c in t2.labels}
    names = dict(t2.names)
    names.update({k: v for k, v in new.names.items() if k in set(new.labels["key"][fresh].tolist())})
    from callmark.pack_codec import PackTable
    t2 = PackTable(lab, {c: v[:1] for c, v in t1.ranges.items()}, names).sort().validate()
    idx2 = build_packs(t2, 2, str(root / "v2"), CFG)
    didx = make_deltas(str(root / "v1"), str(root / "v2"), str(root / "d12"))
    return root, t1, t2, idx1, idx2, didx


def _expand(root, idx, name="phone.sqlite"):
    p = idx["packs"][0]
    dest = str(root / name)
    if os.path.exists(dest):
        os.remove(dest)
    expand_wire(str(root / f"v{idx['version']}" / p["wire"]), dest, expected_sha256=p["wire_sha256"],
                expected_state_hash=p["state_hash"])
    return dest


def test_expanded_pack_equals_built_pack(two_versions):
    root, t1, _, idx1, _, _ = two_versions
    dest = _expand(root, idx1, "e1.sqlite")
    meta, t = read_pack_table(dest)
    assert t.equals(t1)
    assert meta["state_hash"] == idx1["packs"][0]["state_hash"] == pack_state_hash(dest)
    assert meta["name"] == "CN-full" and meta["version"] == "1" and int(meta["entries"]) == t1.entries
    _, built = read_pack_table(str(root / "v1" / idx1["packs"][0]["sqlite"]))
    assert built.equals(t)
    verify_pack(dest)
    # same rows, same statements, same SQLite library: the client's file is the builder's, byte for byte
    assert _digest(dest) == _digest(str(root / "v1" / idx1["packs"][0]["sqlite"]))


def test_lookup_exact_range_and_business(two_versions):
    root, t1, _, idx1, _, _ = two_versions
    dest = _expand(root, idx1, "e2.sqlite")
    with PackReader(dest) as r:
        hit = r.lookup(K_EXACT)
        assert hit.source == "exact" and hit.category_key == "fraud" and hit.action == "block"
        assert hit.confidence == pytest.approx(0.9) and hit.reporters == 40
        inner = r.lookup(K_RANGE_BASE + 75)  # inside both blocks: the block of 10 wins
        assert inner.source == "range" and inner.range_size == 10 and inner.category_key == "loans"
        outer = r.lookup(K_RANGE_BASE + 5)
        assert outer.range_start == K_RANGE_BASE and outer.range_size == 100 and outer.flags & 2
        assert r.lookup(K_RANGE_BASE + 100) is None or r.lookup(K_RANGE_BASE + 100).source == "exact"
        biz = r.lookup(K_BIZ)
        assert biz.company == "工商银行 ICBC" and biz.flags & 1
        for k in t1.labels["key"][::97].tolist():
            got = r.lookup(k)
            i = np.searchsorted(t1.labels["key"], k)
            assert got.key == k and got.category == t1.labels["category"][i]
            assert got.reporters == t1.labels["reporters"][i]
        assert r.lookup(1) is None
        assert r.lookup_number("+86 138-1234-5678").key == K_EXACT
        assert r.lookup_number("not a number") is None


def test_schema_opens_on_old_android_sqlite(two_versions):
    root, _, _, idx1, _, _ = two_versions
    dest = _expand(root, idx1, "e3.sqlite")
    con = sqlite3.connect(dest)
    sqls = [s for (s,) in con.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")]
    con.close()
    text = " ".join(sqls).upper()
    assert "STRICT" not in text and "GENERATED" not in text and " AS (" not in text
    with open(dest, "rb") as f:
        head = f.read(100)
    assert head[:16] == b"SQLite format 3\x00"
    assert head[18] == 1 and head[19] == 1  # rollback journal (legacy) read/write versions
    assert int.from_bytes(head[44:48], "big") == 4  # schema format 4: SQLite >= 3.3
    assert int.from_bytes(head[60:64], "big") == 1  # user_version = pack format


def test_apply_delta_reaches_new_state(two_versions):
    root, _, t2, idx1, idx2, didx = two_versions
    dest = _expand(root, idx1, "e4.sqlite")
    d = next(x for x in didx["deltas"] if x["name"] == "CN-full")
    assert d["upserts"] > 300 and d["removals"] > 250
    meta = apply_delta(dest, str(root / "d12" / d["file"]), expected_state_hash=d["to_state_hash"],
                       expected_sha256=d["sha256"])
    assert meta["state_hash"] == idx2["packs"][0]["state_hash"] == pack_state_hash(dest)
    assert meta["version"] == "2"
    _, got = read_pack_table(dest)
    assert got.equals(t2)
    verify_pack(dest)
    with PackReader(dest) as r:
        assert r.lookup(K_BIZ).company == "中国工商银行"
    assert not [f for f in os.listdir(root) if ".tmp-" in f]


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_delta_on_wrong_state_is_refused(two_versions):
    root, _, _, _, idx2, didx = two_versions
    dest = _expand(root, idx2, "e5.sqlite")  # already at v2
    before = _digest(dest)
    with pytest.raises(PackStateMismatch, match="fetch the full pack"):
        apply_delta(dest, str(root / "d12" / didx["deltas"][0]["file"]))
    assert _digest(dest) == before


def test_hash_mismatch_discards_result(two_versions, tmp_path):
    root, _, _, idx1, _, didx = two_versions
    dest = _expand(root, idx1, "e6.sqlite")
    before = _digest(dest)
    with open(root / "d12" / didx["deltas"][0]["file"], "rb") as f:
        header, d = decode_delta(f.read())
    header["state_hash"] = "0" * 64  # a delta whose result does not hash to what it claims
    bad = tmp_path / "bad.delta"
    bad.write_bytes(encode_delta(d, header))
    with pytest.raises(PackStateMismatch, match="discarded"):
        apply_delta(dest, str(bad))
    assert _digest(dest) == before
    assert not [f for f in os.listdir(root) if ".tmp-" in f]
    # right delta blob, but the manifest names another target state
    with pytest.raises(PackStateMismatch):
        apply_delta(dest, str(root / "d12" / didx["deltas"][0]["file"]), expected_state_hash="1" * 64)
    assert _digest(dest) == before
    with pytest.raises(PackIntegrityError, match="SHA-256"):
        apply_delta(dest, str(root / "d12" / didx["deltas"][0]["file"]), expected_sha256="ab" * 32)
    verify_pack(dest)


def test_expand_refuses_wrong_content(two_versions):
    root, _, _, idx1, idx2, _ = two_versions
    dest = _expand(root, idx1, "e7.sqlite")
    before = _digest(dest)
    p2 = idx2["packs"][0]
    with pytest.raises(PackStateMismatch):
        expand_wire(str(root / "v2" / p2["wire"]), dest, expected_state_hash=idx1["packs"][0]["state_hash"])
    with pytest.raises(PackIntegrityError):
        expand_wire(str(root / "v2" / p2["wire"]), dest, expected_sha256="00" * 32)
    assert _digest(dest) == before
    assert read_pack_meta(dest)["version"] == "1"


def test_corrupted_pack_file_is_detected(two_versions, tmp_path):
    root, _, _, idx1, _, _ = two_versions
    dest = _expand(root, idx1, "e8.sqlite")
    con = sqlite3.connect(dest)
    con.execute("UPDATE labels SET reporters = reporters + 1 WHERE rowid IN (SELECT rowid FROM labels LIMIT 1)")
    con.commit()
    con.close()
    with pytest.raises(PackIntegrityError, match="hash"):
        verify_pack(dest)


def test_plan_update_policy():
    deltas = [{"from_version": v, "to_version": v + 1, "length": 1000} for v in range(1, 40)]
    deltas.append({"from_version": 5, "to_version": 10, "length": 3000})
    full = 100_000
    assert plan_update(10, 10, deltas, full).action == "none"
    assert plan_update(None, 10, deltas, full).action == "full"
    p = plan_update(5, 10, deltas, full)
    assert p.action == "deltas" and p.bytes == 3000 and len(p.deltas) == 1
    p = plan_update(1, 12, deltas, full)
    assert p.action == "deltas" and p.bytes == 4000 + 3000 + 2000
    assert plan_update(1, 39, deltas, full, UpdatePolicy(max_chain=10)).action == "full"
    assert plan_update(1, 35, deltas, full, UpdatePolicy(max_versions_behind=20)).action == "full"
    assert plan_update(5, 10, deltas, 5000).action == "full"  # deltas > 50 % of the full pack
    assert plan_update(3, 12, [], full).action == "full"
    assert UpdatePolicy.from_dict(UpdatePolicy(max_chain=3).to_dict()).max_chain == 3


@pytest.mark.slow
def test_lookup_p99_at_one_million_entries(tmp_path):
    t = synthetic_table(1_000_000, seed=7, ranges=5000)
    build_packs(t, 1, str(tmp_path), CFG)
    path = str(tmp_path / "CN-full-v1.sqlite")
    rng = np.random.default_rng(0)
    probes = np.concatenate([rng.choice(t.labels["key"], 10_000), t.labels["key"][:10_000] + 1]).tolist()
    with PackReader(path) as r:
        for k in probes[:2000]:
            r.lookup(k)
        best = 1.0
        for _ in range(3):  # the machine is shared: take the best of three passes
            ts = []
            for k in probes:
                a = time.perf_counter()
                r.lookup(k)
                ts.append(time.perf_counter() - a)
            best = min(best, float(np.percentile(ts, 99)))
    assert best <= 50e-6, f"lookup p99 {best * 1e6:.1f} µs"


def test_empty_pack_and_deltas_to_and_from_it(tmp_path):
    from callmark.pack_codec import LABEL_COLS
    empty = make_table({c: [] for c in LABEL_COLS})
    full = synthetic_table(400, seed=3, ranges=5)
    for v, t in ((1, empty), (2, full), (3, empty)):
        build_packs(t, v, str(tmp_path / f"v{v}"), CFG)
    d12 = make_deltas(str(tmp_path / "v1"), str(tmp_path / "v2"), str(tmp_path / "d12"))["deltas"][0]
    d23 = make_deltas(str(tmp_path / "v2"), str(tmp_path / "v3"), str(tmp_path / "d23"))["deltas"][0]
    phone = str(tmp_path / "phone.sqlite")
    expand_wire(str(tmp_path / "v1" / "CN-full-v1.pack"), phone)
    assert verify_pack(phone)["state_hash"] == "0" * 64
    apply_delta(phone, str(tmp_path / "d12" / d12["file"]), d12["to_state_hash"])
    _, got = read_pack_table(phone)
    assert got.equals(full)
    apply_delta(phone, str(tmp_path / "d23" / d23["file"]), d23["to_state_hash"])
    assert verify_pack(phone)["entries"] == "0" and pack_state_hash(phone) == "0" * 64




def _st_table(draw, universe):
    from callmark.pack_codec import PackTable, quantize_reporters
    keys = sorted(draw(st.sets(st.sampled_from(universe), max_size=40)))
    n = len(keys)
    col = lambda lo, hi: draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n))  # noqa: E731
    flags = col(0, 1)
    labels = {"key": keys, "category": col(1, 18), "confidence": col(0, 100),
              "reporters": quantize_reporters(col(0, 5000)), "flags": flags, "last_day": col(0, 21000)}
    names = {k: draw(st.sampled_from(["", "甲公司", "Bank\n2"])) for k, f in zip(keys, flags) if f}
    names = {k: v for k, v in names.items() if v}
    starts = sorted(draw(st.sets(st.sampled_from(universe[:8]), max_size=3)))
    m = len(starts)
    ranges = {"start": starts, "size": draw(st.lists(st.sampled_from([10, 100]), min_size=m, max_size=m)),
              "category": [1] * m, "confidence": [80] * m, "numbers": [5] * m, "flags": [2] * m,
              "last_day": draw(st.lists(st.integers(0, 21000), min_size=m, max_size=m))}
    return PackTable(labels, ranges, names).sort().validate()


@st.composite
def _two_tables(draw):
    universe = [8613800000000 + 37 * i for i in range(60)] + [10**16 + 860000195588, 12025550100]
    return _st_table(draw, universe), _st_table(draw, universe)


@given(_two_tables())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_delta_applied_gives_exactly_the_new_pack(tmp_path, pair):
    import tempfile
    from callmark.pack_codec import hash_hex, table_hash
    from callmark.pack_wire import encode_full
    from trainer.packs import diff_tables
    a, b = pair
    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        ha, hb = hash_hex(table_hash(a)), hash_hex(table_hash(b))
        wire = os.path.join(d, "a.pack")
        with open(wire, "wb") as f:
            f.write(encode_full(a, {"name": "CN-full", "version": 1, "state_hash": ha}))
        phone = os.path.join(d, "phone.sqlite")
        expand_wire(wire, phone)
        delta = os.path.join(d, "ab.delta")
        with open(delta, "wb") as f:
            f.write(encode_delta(diff_tables(a, b), {"name": "CN-full", "from_version": 1, "version": 2,
                                                     "from_state_hash": ha, "state_hash": hb,
                                                     "entries": b.entries}))
        apply_delta(phone, delta, expected_state_hash=hb)
        _, got = read_pack_table(phone)
        assert got.equals(b)
        assert verify_pack(phone)["state_hash"] == hb
