"""Building packs: labels input, tiers and provinces, index layout, sizes against the reference."""
import csv
import hashlib
import json
import os

import numpy as np
import pytest

from callmark.numbers import normalize
from callmark.pack import PackReader, read_pack_table
from trainer.packs import (
    LabelsFormatError, PackConfig, PackError, build_packs, diff_tables, entropy_reference, make_deltas,
    read_labels_csv, synthetic_table,
)
from callmark.pack_wire import encode_delta, encode_full

HEAD = ["number", "category", "confidence", "reporters", "published", "key", "flags", "last_ts", "company"]
ROWS = [
    ["+8613812345678", "fraud", "0.93", "41", "1", "", "0", "1762000000", ""],
    ["+8613912345678", "harassment", "0.40", "2", "0", "", "0", "1762000000", ""],  # not published
    ["+8695583", "customer_service", "0.99", "3", "0", "10000860000195583", "1", "1762000000", "工商银行"],
    ["+8618612345678", "telemarketing", "0.75", "9", "0", "", "8", "1762000000", ""],  # suppressed
    ["+862088886666", "real_estate", "0.81", "15", "1", "862088886666", "2", "1762000000", "某中介"],
]


def _write_labels(path, rows=ROWS, head=HEAD, ranges=True):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(head)
        w.writerows(rows)
    if ranges:
        with open(str(path)[:-4] + ".ranges.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["start", "size", "category", "confidence", "numbers", "last_ts"])
            w.writerow(["+8617012345600", "100", "fraud", "0.88", "14", "1762000000"])


def test_read_labels_keeps_published_and_verified(tmp_path):
    p = tmp_path / "labels.csv"
    _write_labels(p)
    t = read_labels_csv(str(p))
    keys = t.labels["key"].tolist()
    assert keys == sorted([8613812345678, normalize("+8695583").key, 862088886666])
    assert normalize("+8695583").key == 10000860000195583  # odd key > 2**53: read exactly
    assert t.names == {normalize("+8695583").key: "工商银行"}  # company kept only for verified rows
    i = keys.index(8613812345678)
    assert t.labels["confidence"][i] == 93 and t.labels["reporters"][i] == 40  # bucketed 41 -> 40
    assert t.labels["last_day"][i] == 1762000000 // 86400
    assert t.labels["flags"][keys.index(862088886666)] == 2  # flags pass through
    assert 862088886666 not in t.names  # a company only counts for verified rows
    assert t.ranges["start"].tolist() == [8617012345600] and t.ranges["size"].tolist() == [100]


@pytest.mark.parametrize("rows, head, msg", [
    ([["+8613812345678", "fraud", "1.5", "3", "1"]], HEAD[:5], "confidence must be within"),
    ([["+8613812345678", "nonsense", "0.5", "3", "1"]], HEAD[:5], "unknown category"),
    ([["+8613812345678", "fraud", "high", "3", "1"]], HEAD[:5], "must be a number"),
    ([["hello", "fraud", "0.5", "3", "1"]], HEAD[:5], "line 2.*not a valid number"),
    ([["+8613812345678", "fraud", "0.5"]], HEAD[:3], "missing columns"),
    ([["+8613812345678", "fraud", "0.5", "3", "1"]] * 2, HEAD[:5], "appears twice"),
])
def test_bad_labels_give_clear_errors(tmp_path, rows, head, msg):
    p = tmp_path / "bad.csv"
    _write_labels(p, rows, head, ranges=False)
    with pytest.raises(LabelsFormatError, match=msg):
        read_labels_csv(str(p))


def test_build_writes_documented_index(tmp_path):
    t = synthetic_table(8000, seed=3, ranges=100)
    idx = build_packs(t, 7, str(tmp_path), PackConfig(lite_budget_bytes=12_000))
    on_disk = json.loads((tmp_path / "index.json").read_text())
    assert on_disk == idx and idx["format"] == 1 and idx["version"] == 7 and idx["built_at"]
    names = [p["name"] for p in idx["packs"]]
    assert names[:2] == ["CN-full", "CN-lite"] and len(names) > 20  # provinces too
    for p in idx["packs"]:
        assert set(p) == {"name", "region", "tier", "sqlite", "sqlite_bytes", "wire", "wire_bytes",
                          "wire_sha256", "entries", "state_hash"}
        blob = (tmp_path / p["wire"]).read_bytes()
        assert len(blob) == p["wire_bytes"] and hashlib.sha256(blob).hexdigest() == p["wire_sha256"]
        assert os.path.getsize(tmp_path / p["sqlite"]) == p["sqlite_bytes"]
        meta, tab = read_pack_table(str(tmp_path / p["sqlite"]))
        assert meta["state_hash"] == p["state_hash"] and tab.entries == p["entries"]
    full = idx["packs"][0]
    assert full["entries"] == t.entries


def test_lite_pack_fits_budget_and_keeps_the_most_reported_recent(tmp_path):
    t = synthetic_table(20_000, seed=4)
    budget = 25_000
    idx = build_packs(t, 1, str(tmp_path), PackConfig(lite_budget_bytes=budget, provinces=False))
    lite = idx["packs"][1]
    assert lite["tier"] == "lite" and budget * 0.9 <= lite["wire_bytes"] <= budget
    _, sub = read_pack_table(str(tmp_path / lite["sqlite"]))
    assert 0 < sub.n_labels < t.n_labels
    age = t.labels["last_day"].max() - t.labels["last_day"]
    score = np.log2(1 + t.labels["reporters"]) - age / 30.0 + (t.labels["flags"] & 1)
    inside = np.isin(t.labels["key"], sub.labels["key"])
    assert score[inside].min() >= score[~inside].max() - 1e-9


def test_province_packs_hold_only_their_province(tmp_path):
    t = synthetic_table(5000, seed=5)
    idx = build_packs(t, 1, str(tmp_path), PackConfig(lite=False))
    provs = [p for p in idx["packs"] if p["tier"] == "province"]
    with_province = sum(bool(normalize(f"+{k}").province) for k in t.labels["key"].tolist())
    assert with_province > 0.9 * t.n_labels
    assert sum(p["entries"] for p in provs) == with_province
    for p in provs[:3]:
        _, sub = read_pack_table(str(tmp_path / p["sqlite"]))
        want = p["name"].split("-", 1)[1]
        assert {normalize(f"+{k}").province for k in sub.labels["key"][:50].tolist()} == {want}


def test_wire_within_entropy_reference():
    t = synthetic_table(100_000, seed=6, ranges=500)
    blob = encode_full(t, {"name": "CN-full"})
    ref = entropy_reference(t)
    assert len(blob) <= 1.25 * ref["bytes"], (len(blob), ref)
    assert len(blob) / t.entries < 5.0


def test_delta_bytes_per_change_within_budget(tmp_path):
    t1 = synthetic_table(100_000, seed=8)
    rng = np.random.default_rng(0)
    keep = rng.random(t1.n_labels) > 0.01  # 1 % expire
    t2 = t1.subset(keep)
    bump = rng.random(t2.n_labels) < 0.01  # 1 % get more reports
    t2.labels["reporters"][bump] = np.minimum(t2.labels["reporters"][bump] * 2, 1 << 20)
    from trainer.packs import make_table
    fresh = synthetic_table(1500, seed=9)
    lab = {c: np.concatenate([t2.labels[c], fresh.labels[c]]) for c in t2.labels}
    _, first = np.unique(lab["key"], return_index=True)
    lab = {c: v[first] for c, v in lab.items()}
    lab["confidence"] = lab["confidence"] / 100
    lab["last_day"] = lab["last_day"] * 86400
    t2 = make_table(lab, {}, {k: v for k, v in {**t2.names, **fresh.names}.items()
                              if k in set(lab["key"][(lab["flags"] & 1) == 1].tolist())})
    d = diff_tables(t1, t2)
    full = len(encode_full(t2, {"name": "CN-full"}))
    blob = encode_delta(d, {"name": "CN-full", "from_version": 1, "version": 2})
    per_change = len(blob) / d.changed
    assert 2000 < d.changed < 5000
    assert per_change <= 1.5 * full / t2.entries, (per_change, full / t2.entries)


def test_make_deltas_directory(tmp_path):
    cfg = PackConfig(lite=False, provinces=False)
    t1 = synthetic_table(3000, seed=1)
    t2 = t1.subset(np.arange(t1.n_labels) % 5 != 0)
    build_packs(t1, 1, str(tmp_path / "a"), cfg)
    ib = build_packs(t2, 2, str(tmp_path / "b"), cfg)
    idx = make_deltas(str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "d"))
    assert idx["from_version"] == 1 and idx["to_version"] == 2
    d = idx["deltas"][0]
    assert {"name", "file", "bytes", "sha256", "upserts", "removals", "from_state_hash",
            "to_state_hash"} <= set(d)
    assert d["removals"] == t1.n_labels - t2.n_labels and d["upserts"] == 0
    with pytest.raises(PackError, match="v1, not newer than --old v2: .* swap --old and --new"):
        make_deltas(str(tmp_path / "b"), str(tmp_path / "a"), str(tmp_path / "back"))
    assert not (tmp_path / "back").exists()
    assert d["to_state_hash"] == ib["packs"][0]["state_hash"]
    with PackReader(str(tmp_path / "b" / ib["packs"][0]["sqlite"])) as r:
        assert r.version == 2 and r.state_hash == d["to_state_hash"]


def test_benchmark_smoke(tmp_path):
    from tools.bench.packs import bench_synthetic
    r = bench_synthetic(3000, str(tmp_path), 3)
    assert r["entries"] > 3000 and r["wire_over_reference"] < 1.25
    assert r["delta_changed"] > 0 and r["lookup_p99_us"] > 0 and r["sqlite_zstd_B_per_entry"] > r["wire_B_per_entry"]
