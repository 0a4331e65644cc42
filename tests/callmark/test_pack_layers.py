"""The layered pack on the phone: base + overlays, delta apply, compaction, snapshots, refusals."""
import json
import os
import sqlite3
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from callmark import pack_layers as L
from callmark.pack import (
    PackIntegrityError, PackReader, PackStateMismatch, expand_wire, hash_hex, table_hash,
)
from callmark.pack_codec import PackTable
from callmark.pack_wire import encode_delta, encode_full
from trainer.packs import diff_tables, synthetic_table

from tests.callmark.test_pack_client import _st_table

NAME = "CN-full"


def _wire(t: PackTable, path, version=1):
    with open(path, "wb") as f:
        f.write(encode_full(t, {"name": NAME, "region": "CN", "tier": "full", "version": version,
                                "state_hash": hash_hex(table_hash(t))}))
    return str(path)


def _delta(a: PackTable, b: PackTable, path, va, vb=None):
    with open(path, "wb") as f:
        f.write(encode_delta(diff_tables(a, b), {
            "name": NAME, "from_version": va, "version": vb or va + 1, "from_state_hash": hash_hex(table_hash(a)),
            "state_hash": hash_hex(table_hash(b)), "entries": b.entries}))
    return str(path)


def _next(t: PackTable, seed: int) -> PackTable:
    """Remove 3 %, relabel 3 % (some renamed businesses), add 3 % new numbers, change the ranges."""
    rng = np.random.default_rng(seed)
    keep = rng.random(t.n_labels) > 0.03
    t2 = t.subset(keep)
    bump = rng.random(t2.n_labels) < 0.03
    t2.labels["category"][bump] = 2
    t2.labels["last_day"][bump] += 1
    for k in list(t2.names)[:3]:
        t2.names[k] = t2.names[k] + "·"
    new = synthetic_table(int(0.03 * t.n_labels) + 1, seed=seed + 500)
    fresh = ~np.isin(new.labels["key"], t2.labels["key"])
    lab = {c: np.concatenate([t2.labels[c], new.labels[c][fresh]]) for c in t2.labels}
    names = dict(t2.names)
    names.update({k: v for k, v in new.names.items() if k in set(new.labels["key"][fresh].tolist())})
    ranges = {c: v[1:].copy() for c, v in t.ranges.items()}  # one range removed, one changed, one added
    if len(ranges["start"]):
        ranges["confidence"][0] = (ranges["confidence"][0] + 7) % 100
    add = {"start": [8613900000000 + seed * 1000], "size": [100], "category": [3], "confidence": [77],
           "numbers": [9], "flags": [2], "last_day": [20400]}
    ranges = {c: np.concatenate([ranges[c], np.array(add[c], np.int64)]) for c in ranges}
    return PackTable(lab, ranges, names).sort().validate()


def _same_lookups(pack_dir: str, plain_path: str, keys):
    with L.LayeredReader(pack_dir) as lr, PackReader(plain_path) as pr:
        for k in keys:
            assert lr.lookup(k) == pr.lookup(k), k
            assert lr.block_harmful(k) == pr.block_harmful(k), k  # removed (dead) overlay rows drop out


def _plain(t: PackTable, d, name):
    p = os.path.join(d, name)
    expand_wire(_wire(t, p + ".pack"), p)
    return p


@pytest.fixture(scope="module")
def chain():
    t = synthetic_table(4000, seed=21, ranges=30)
    out = [t]
    for i in range(7):
        out.append(_next(out[-1], seed=i))
    return out


def _probe_keys(*tables):
    keys = set()
    for t in tables:
        keys.update(t.labels["key"][::37].tolist())
        keys.update((t.ranges["start"] + 5).tolist())
        keys.update(t.names)
    return sorted(keys)


def test_chain_of_deltas_through_every_level(chain, tmp_path):
    pack = str(tmp_path / NAME)
    meta = L.install_full(_wire(chain[0], tmp_path / "v1.pack"), pack)
    assert meta["version"] == "1" and L.read_table(pack)[1].equals(chain[0])
    policy = L.LayerPolicy(recent_share=0.12, settled_share=0.4)
    levels = []
    for v in range(1, len(chain)):
        a, b = chain[v - 1], chain[v]
        meta = L.apply_delta(pack, _delta(a, b, tmp_path / f"d{v}.delta", v), hash_hex(table_hash(b)),
                             policy=policy)
        levels.append(meta.pop("layer"))
        assert meta["version"] == str(v + 1) and meta["state_hash"] == hash_hex(table_hash(b))
        assert L.verify(pack)["entries"] == str(b.entries)
        assert L.read_table(pack)[1].equals(b)
        _same_lookups(pack, _plain(b, str(tmp_path), f"plain{v}.sqlite"), _probe_keys(a, b))
        head = L.read_head(pack)
        # exactly the files HEAD names (plus HEAD and LOCK) are left
        assert sorted(os.listdir(pack)) == sorted(list(head["files"].values()) + ["HEAD", "LOCK"])
    assert {"recent", "settled", "base"} <= set(levels), levels
    # only the written level changed: a base survives every non-compacting delta
    assert L.layer_stats(pack)["rows"]["base"] > 0


def test_delta_writes_only_the_overlay(chain, tmp_path):
    pack = str(tmp_path / NAME)
    L.install_full(_wire(chain[0], tmp_path / "v1.pack"), pack)
    base = L.read_head(pack)["files"]["base"]
    st0 = os.stat(os.path.join(pack, base))
    meta = L.apply_delta(pack, _delta(chain[0], chain[1], tmp_path / "d.delta", 1))
    assert meta["layer"] == "settled"  # 9 % of the rows changed: more than the recent share
    head = L.read_head(pack)
    assert head["files"]["base"] == base and os.stat(os.path.join(pack, base)).st_mtime_ns == st0.st_mtime_ns
    d = diff_tables(chain[0], chain[1])
    assert head["rows"]["settled"] == d.changed  # upserts and tombstones, nothing else
    assert head["bytes"]["settled"] < head["bytes"]["base"] / 3  # small files pay whole pages per table


def test_refusals_write_nothing(chain, tmp_path):
    pack = str(tmp_path / NAME)
    L.install_full(_wire(chain[0], tmp_path / "v1.pack"), pack)
    good = _delta(chain[0], chain[1], tmp_path / "d12.delta", 1)
    L.apply_delta(pack, good)
    before = (L.read_head(pack), sorted(os.listdir(pack)))
    with pytest.raises(PackStateMismatch, match="fetch the full pack"):
        L.apply_delta(pack, good)  # already applied: wrong starting state
    with pytest.raises(PackStateMismatch):
        L.apply_delta(pack, _delta(chain[1], chain[2], tmp_path / "d23.delta", 2), expected_state_hash="1" * 64)
    with pytest.raises(PackIntegrityError, match="SHA-256"):
        L.apply_delta(pack, str(tmp_path / "d23.delta"), expected_sha256="ab" * 32)
    with pytest.raises(PackStateMismatch):  # a full pack that does not hash to the manifest's state
        L.install_full(_wire(chain[2], tmp_path / "v3.pack", 3), pack, expected_state_hash="2" * 64)
    assert (L.read_head(pack), sorted(os.listdir(pack))) == before
    assert L.verify(pack)["state_hash"] == hash_hex(table_hash(chain[1]))


def test_readers_keep_their_snapshot(chain, tmp_path):
    pack = str(tmp_path / NAME)
    L.install_full(_wire(chain[0], tmp_path / "v1.pack"), pack)
    L.apply_delta(pack, _delta(chain[0], chain[1], tmp_path / "d1.delta", 1))
    gone = np.setdiff1d(chain[1].labels["key"], chain[2].labels["key"])
    gone = [k for k in gone.tolist() if k not in set(chain[2].labels["key"].tolist())][:20]
    old = L.LayeredReader(pack)
    before = [old.lookup(k) for k in gone]
    assert all(x is not None and x.source == "exact" for x in before)
    # the next delta compacts: base and overlays are replaced and the old files deleted
    L.apply_delta(pack, _delta(chain[1], chain[2], tmp_path / "d2.delta", 2), policy=L.LayerPolicy(0, 0))
    assert set(L.read_head(pack)["files"]) == {"base"}
    assert [old.lookup(k) for k in gone] == before and old.version == 2
    old.close()
    with L.LayeredReader(pack) as new:
        assert new.version == 3
        assert all(new.lookup(k) is None or new.lookup(k).source == "range" for k in gone)


def test_compact_keeps_the_state(chain, tmp_path):
    pack = str(tmp_path / NAME)
    L.install_full(_wire(chain[0], tmp_path / "v1.pack"), pack)
    for v in (1, 2):
        L.apply_delta(pack, _delta(chain[v - 1], chain[v], tmp_path / f"d{v}.delta", v),
                      policy=L.LayerPolicy(0.5, 0.9))
    assert set(L.read_head(pack)["files"]) == {"base", "recent"}
    h = L.read_meta(pack)["state_hash"]
    head = L.compact(pack)
    assert set(head["files"]) == {"base"} and head["rows"]["base"] == chain[2].entries
    assert L.verify(pack)["state_hash"] == h and L.read_table(pack)[1].equals(chain[2])
    assert L.compact(pack)["generation"] == head["generation"]  # nothing to do
    # the compacted base is a plain format-1 pack any client reads
    with PackReader(os.path.join(pack, head["files"]["base"])) as r:
        assert r.state_hash == h and r.meta["version"] == "3"


def test_overlays_stay_android_compatible(chain, tmp_path):
    pack = str(tmp_path / NAME)
    L.install_full(_wire(chain[0], tmp_path / "v1.pack"), pack)
    L.apply_delta(pack, _delta(chain[0], chain[1], tmp_path / "d1.delta", 1))
    L.apply_delta(pack, _delta(chain[1], chain[2], tmp_path / "d2.delta", 2), policy=L.LayerPolicy(0.5, 0.9))
    for f in L.read_head(pack)["files"].values():
        con = sqlite3.connect(os.path.join(pack, f))
        text = " ".join(s for (s,) in con.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")).upper()
        con.close()
        assert "STRICT" not in text and "GENERATED" not in text and " AS (" not in text
        with open(os.path.join(pack, f), "rb") as fh:
            hdr = fh.read(100)
        assert hdr[18] == 1 and hdr[19] == 1 and int.from_bytes(hdr[44:48], "big") == 4
    for sql in [L.lookup_sql(["recent", "settled"])] + [L.merge_select(t, [("a", True), ("main", False)], False)
                                                         for t in ("labels", "ranges", "businesses")]:
        assert "ON CONFLICT" not in sql.upper() and " OVER" not in sql.upper() and "WITH " not in sql.upper()


def test_bad_head_and_stale_files(chain, tmp_path):
    pack = tmp_path / NAME
    with pytest.raises(FileNotFoundError, match="install a full pack"):
        L.read_meta(str(pack))
    L.install_full(_wire(chain[0], tmp_path / "v1.pack"), str(pack))
    (pack / "recent-000009.sqlite").write_bytes(b"junk of a killed writer")
    (pack / ".HEAD.tmp-99999").write_text("{")
    L.apply_delta(str(pack), _delta(chain[0], chain[1], tmp_path / "d1.delta", 1))
    assert not (pack / "recent-000009.sqlite").exists() and not (pack / ".HEAD.tmp-99999").exists()
    (pack / "HEAD").write_text(json.dumps({"layout": 99}))
    with pytest.raises(L.PackFormatError, match="install the full pack"):
        L.LayeredReader(str(pack))
    (pack / "HEAD").write_text("{not json")
    with pytest.raises(PackIntegrityError):
        L.read_meta(str(pack))


def test_adopt_plain_file(chain, tmp_path):
    plain = _plain(chain[0], str(tmp_path), "old.sqlite")
    pack = str(tmp_path / NAME)
    meta = L.adopt_file(plain, pack, move=True)
    assert not os.path.exists(plain) and meta["state_hash"] == hash_hex(table_hash(chain[0]))
    L.apply_delta(pack, _delta(chain[0], chain[1], tmp_path / "d1.delta", 1))
    assert L.verify(pack)["version"] == "2"


@st.composite
def _three_tables(draw):
    universe = [8613800000000 + 37 * i for i in range(60)] + [10**16 + 860000195588, 12025550100]
    return [_st_table(draw, universe) for _ in range(3)], draw(st.sampled_from(
        [(0.0, 0.0), (0.0, 100.0), (100.0, 100.0), (0.2, 0.6)]))


@given(_three_tables())
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_delta_chain_gives_exactly_the_new_pack(tmp_path, case):
    tables, (rs, ss) = case
    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        pack = os.path.join(d, NAME)
        L.install_full(_wire(tables[0], os.path.join(d, "a.pack")), pack)
        for v in (1, 2):
            a, b = tables[v - 1], tables[v]
            L.apply_delta(pack, _delta(a, b, os.path.join(d, f"{v}.delta"), v), hash_hex(table_hash(b)),
                          policy=L.LayerPolicy(rs, ss))
            assert L.read_table(pack)[1].equals(b)
            assert L.verify(pack)["state_hash"] == hash_hex(table_hash(b))
        universe = sorted(set(k for t in tables for k in t.labels["key"].tolist())
                          | set(k + 3 for t in tables for k in t.ranges["start"].tolist()))
        _same_lookups(pack, _plain(tables[2], d, "c.sqlite"), universe)


def test_block_harmful_counts_other_harmful_labels_of_the_100_block(chain, tmp_path):
    from callmark import categories
    t = chain[0]
    harmful = {c.code for c in categories.CATEGORIES if c.harmful}
    keys, cats = t.labels["key"], t.labels["category"]
    probe = sorted(set(keys[::11].tolist()) | {int(k) + 1 for k in keys[::13]})
    with PackReader(_plain(t, str(tmp_path), "p.sqlite")) as pr:
        for k in probe:
            block = (keys // 100 == k // 100) & (keys != k)
            assert pr.block_harmful(k) == int(np.isin(cats[block], list(harmful)).sum()), k
        assert any(pr.block_harmful(k) > 0 for k in probe)
