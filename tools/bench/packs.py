"""Benchmark label packs: sizes against an entropy reference and zstd of the SQLite file, build /
expand / apply times, lookup latency, real data (FTC complaint stream, PhoneBlock list), and the sync
cost on the phone's layered pack (tools/bench/pack_sync.py: bytes written as the OS accounts them,
peak memory and time of apply, compaction and expand, against baselines in the same run).

Example:
  .venv/bin/python -m tools.bench.packs --sizes 100000,1000000,5000000 --data ../shared/data \
      --layer-sizes 1000000,5000000
"""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import os
import shutil
import tempfile
import time

import click
import numpy as np
import zstandard

from callmark.pack import apply_delta, expand_wire, hash_hex, pack_state_hash, table_hash
from callmark.pack_wire import encode_delta, encode_full
from callmark.pack_layers import layer_stats, verify
from tools.bench.pack_sync import lookup_latency as _lookup_latency, measure
from trainer.packs import (
    PackConfig, build_packs, diff_tables, entropy_reference, make_table, synthetic_table,
)

FULL_ONLY = PackConfig(lite=False, provinces=False)


def _timed(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t0


def _churn(t, seed: int, share: float = 0.01):
    """Next version of a table: `share` of rows removed, `share` re-reported, `share` new numbers."""
    rng = np.random.default_rng(seed)
    t2 = t.subset(rng.random(t.n_labels) >= share)
    bump = rng.random(t2.n_labels) < share
    t2.labels["reporters"][bump] = np.minimum(t2.labels["reporters"][bump] * 2 + 1, 1 << 20)
    t2.labels["last_day"][bump] = t2.labels["last_day"].max()
    fresh = synthetic_table(max(1, int(share * t.n_labels)), seed=seed + 1)
    lab = {c: np.concatenate([t2.labels[c], fresh.labels[c]]) for c in t2.labels}
    _, first = np.unique(lab["key"], return_index=True)
    lab = {c: v[first] for c, v in lab.items()}
    lab["confidence"] = lab["confidence"] / 100.0
    lab["last_day"] = lab["last_day"] * 86400
    verified = set(lab["key"][(lab["flags"] & 1) == 1].tolist())
    names = {k: v for k, v in {**t2.names, **fresh.names}.items() if k in verified}
    return make_table(lab, t.ranges, names)


def bench_synthetic(n: int, tmp: str, sqlite_zstd_level: int) -> dict:
    """All figures for one synthetic size."""
    t, t_gen = _timed(synthetic_table, n, 1, 20400, max(10, n // 500))
    d = os.path.join(tmp, f"syn{n}")
    idx, t_build = _timed(build_packs, t, 1, d, FULL_ONLY)
    p = idx["packs"][0]
    ref = entropy_reference(t)
    sqlite_path = os.path.join(d, p["sqlite"])
    with open(sqlite_path, "rb") as f:
        raw = f.read()
    zsql, t_z = _timed(zstandard.ZstdCompressor(level=sqlite_zstd_level).compress, raw)
    del raw
    phone = os.path.join(tmp, f"phone{n}.sqlite")
    _, t_expand = _timed(expand_wire, os.path.join(d, p["wire"]), phone, p["wire_sha256"], p["state_hash"])
    t2 = _churn(t, seed=5)
    delta, t_diff = _timed(diff_tables, t, t2)
    h2 = hash_hex(table_hash(t2))
    blob = encode_delta(delta, {"name": "CN-full", "from_version": 1, "version": 2,
                                "from_state_hash": p["state_hash"], "state_hash": h2,
                                "entries": t2.entries})
    full2 = len(encode_full(t2, {"name": "CN-full"}))
    dpath = os.path.join(tmp, f"delta{n}.delta")
    with open(dpath, "wb") as f:
        f.write(blob)
    _, t_apply = _timed(apply_delta, phone, dpath, h2)
    assert pack_state_hash(phone) == h2, "delta result differs from the rebuilt pack"
    lat = _lookup_latency(phone, t2.labels["key"])
    out = {
        "entries": t.entries, "wire_bytes": p["wire_bytes"], "sqlite_bytes": p["sqlite_bytes"],
        "sqlite_zstd_bytes": len(zsql), "reference_bytes": round(ref["bytes"]),
        "wire_B_per_entry": p["wire_bytes"] / t.entries, "sqlite_B_per_entry": p["sqlite_bytes"] / t.entries,
        "sqlite_zstd_B_per_entry": len(zsql) / t.entries, "reference_B_per_entry": ref["bytes_per_entry"],
        "wire_over_reference": p["wire_bytes"] / ref["bytes"], "sqlite_zstd_over_wire": len(zsql) / p["wire_bytes"],
        "build_s": t_build, "sqlite_zstd_s": t_z, "expand_s": t_expand, "diff_s": t_diff, "apply_s": t_apply,
        "delta_changed": delta.changed, "delta_bytes": len(blob),
        "delta_B_per_change": len(blob) / delta.changed,
        "delta_over_full_B_per_entry": (len(blob) / delta.changed) / (full2 / t2.entries),
        "generate_s": t_gen, **lat,
    }
    shutil.rmtree(d, ignore_errors=True)
    for f in (phone, dpath):
        os.remove(f)
    return out


# ---------------------------------------------------------------- FTC stream

def _ftc_days(path: str):
    """{day label: [keys]} in published order, and the malformed row count."""
    from callmark.numbers import key_of
    days, bad, cache = {}, 0, {}
    with gzip.open(path, "rt", newline="") as f:
        for row in csv.DictReader(f):
            raw = (row.get("company_phone_number") or "").strip()
            if raw not in cache:
                k = key_of(raw, "US") if raw.isdigit() and len(raw) == 10 else None
                cache[raw] = k
            k = cache[raw]
            if k is None:
                bad += 1
                continue
            day = row["snapshot_date_utc"].replace("backfill_to_", "")
            days.setdefault(day, []).append(k)
    return dict(sorted(days.items())), bad


def _ftc_table(counts: dict, last: dict):
    keys = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
    rep = np.fromiter(counts.values(), dtype=np.int64, count=len(counts))
    lastd = np.fromiter((last[k] for k in counts), dtype=np.int64, count=len(counts))
    n = len(keys)
    return make_table({"key": keys, "category": np.full(n, 3), "confidence": rep / (rep + 1.0),
                       "reporters": rep, "flags": np.zeros(n, np.int64), "last_day": lastd * 86400})


def bench_ftc(path: str, tmp: str) -> dict:
    """A pack per published day (rule: every complained number so far is published as
    telemarketing, reporters = complaints, confidence = c / (c + 1)), daily deltas, next-day coverage."""
    days, bad = _ftc_days(path)
    counts, last, rows, prev_keys, prev_blob, prev_h = {}, {}, [], None, None, None
    phone = os.path.join(tmp, "ftc-phone.sqlite")
    layered = os.path.join(tmp, "ftc-phone")  # the handset's layered pack, fed the same deltas
    for i, (day, keys) in enumerate(days.items()):
        dnum = (dt.date.fromisoformat(day) - dt.date(1970, 1, 1)).days
        arr = np.array(keys, dtype=np.int64)
        row = {"day": day, "complaints": len(arr), "numbers": int(len(np.unique(arr)))}
        if prev_keys is not None:
            hit = np.isin(arr, prev_keys)
            row["covered_complaints"] = float(hit.mean())
            row["covered_numbers"] = float(np.isin(np.unique(arr), prev_keys).mean())
        for k in keys:
            counts[k] = counts.get(k, 0) + 1
            last[k] = dnum
        t = _ftc_table(counts, last)
        h = hash_hex(table_hash(t))
        blob, t_enc = _timed(encode_full, t, {"name": "US-full", "region": "US", "tier": "full",
                                              "version": i + 1, "state_hash": h})
        ref = entropy_reference(t)
        row.update(entries=t.entries, wire_bytes=len(blob), wire_B_per_entry=len(blob) / t.entries,
                   wire_over_reference=len(blob) / ref["bytes"], encode_s=t_enc)
        wire = os.path.join(tmp, "ftc.pack")
        with open(wire, "wb") as f:
            f.write(blob)
        if prev_blob is None:
            _, row["expand_s"] = _timed(expand_wire, wire, phone, None, h)
            measure("install", wire, layered, None, h)
        else:
            d = diff_tables(prev_blob, t)
            dblob = encode_delta(d, {"name": "US-full", "from_version": i, "version": i + 1,
                                     "from_state_hash": prev_h, "state_hash": h, "entries": t.entries})
            dpath = os.path.join(tmp, "ftc.delta")
            with open(dpath, "wb") as f:
                f.write(dblob)
            file_apply = measure("apply_file", phone, dpath, h)  # copy-on-write of the single file
            lay = measure("apply", layered, dpath, h)
            st = layer_stats(layered)
            row.update(apply_s=file_apply["s"], apply_write_bytes=file_apply["write_bytes"],
                       layered_apply_s=lay["s"], layered_write_bytes=lay["write_bytes"], layered_level=lay["layer"],
                       layered_base_bytes=st["bytes"]["base"])
            row.update(delta_bytes=len(dblob), delta_upserts=d.upserts.n_labels, delta_removals=len(d.removals),
                       delta_B_per_change=len(dblob) / max(1, d.changed),
                       delta_over_full_B_per_entry=(len(dblob) / max(1, d.changed)) / (len(blob) / t.entries),
                       delta_share_of_full=len(dblob) / len(blob))
        row["sqlite_bytes"] = os.path.getsize(phone)
        prev_keys, prev_blob, prev_h = t.labels["key"], t, h
        rows.append(row)
    assert pack_state_hash(phone) == prev_h, "FTC delta chain diverged from the rebuilt pack"
    assert verify(layered)["state_hash"] == prev_h, "layered FTC chain diverged from the rebuilt pack"
    os.remove(phone)
    shutil.rmtree(layered)
    dd = [r for r in rows if "layered_write_bytes" in r]
    summary = {"deltas": len(dd),
               "layered_write_share": float(np.mean([r["layered_write_bytes"] / r["layered_base_bytes"] for r in dd])),
               "file_write_share": float(np.mean([r["apply_write_bytes"] / r["layered_base_bytes"] for r in dd])),
               "levels": {lv: sum(r["layered_level"] == lv for r in dd) for lv in ("recent", "settled", "base")}}
    return {"malformed_rows": bad, "days": rows, "sync": summary}


def bench_phoneblock(path: str, tmp: str) -> dict:
    """PhoneBlock blocklist as a pack (votes -> reporters, Wilson-free rule conf = v / (v + 3))."""
    from callmark.numbers import key_of
    keys, votes, last, bad = [], [], [], 0
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            k = key_of(row["phone"], "DE")
            if k is None:
                bad += 1
                continue
            keys.append(k)
            votes.append(int(row["votes"]))
            last.append(int(row["lastActivity"]) / 1000)
    keys, first = np.unique(np.array(keys, dtype=np.int64), return_index=True)
    v = np.array(votes)[first]
    t = make_table({"key": keys, "category": np.full(len(keys), 2), "confidence": v / (v + 3.0),
                    "reporters": v, "flags": np.zeros(len(keys), np.int64), "last_day": np.array(last)[first]})
    idx = build_packs(t, 1, os.path.join(tmp, "pb"), FULL_ONLY)
    p = idx["packs"][0]
    ref = entropy_reference(t)
    return {"entries": t.entries, "unparsed": bad, "wire_bytes": p["wire_bytes"],
            "wire_B_per_entry": p["wire_bytes"] / t.entries, "sqlite_B_per_entry": p["sqlite_bytes"] / t.entries,
            "reference_B_per_entry": ref["bytes_per_entry"], "wire_over_reference": p["wire_bytes"] / ref["bytes"],
            "phoneblock_router_B_per_entry": 8.0}


@click.command()
@click.option("--sizes", default="100000,1000000,5000000", show_default=True, help="Synthetic sizes.")
@click.option("--data", default="../shared/data", show_default=True, type=click.Path(),
              help="Folder with ftc-dnc/ and phoneblock-de/ (skipped when missing).")
@click.option("--sqlite-zstd-level", default=19, show_default=True, help="zstd level for the SQLite baseline.")
@click.option("--json-out", default=None, type=click.Path(dir_okay=False), help="Also write all figures here.")
@click.option("--layer-sizes", default="", show_default=True,
              help="Entries for the layered-pack sync benchmark (30 daily deltas each), e.g. 1000000,5000000.")
@click.option("--layer-days", default=30, show_default=True, help="Daily deltas in the sync benchmark.")
def main(sizes, data, sqlite_zstd_level, json_out, layer_sizes, layer_days):
    """Pack benchmark (see module docstring).

    Example: python -m tools.bench.packs --sizes 100000,1000000 --data ../shared/data
    """
    res = {"synthetic": [], "ftc": None, "phoneblock": None, "layered": []}
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        for n in [int(s) for s in sizes.split(",") if s.strip()]:
            r = bench_synthetic(n, tmp, sqlite_zstd_level)
            res["synthetic"].append(r)
            click.echo(f"synthetic {r['entries']:>9,}: wire {r['wire_B_per_entry']:.2f} B/entry "
                       f"(reference {r['reference_B_per_entry']:.2f}, ratio {r['wire_over_reference']:.3f}); "
                       f"sqlite {r['sqlite_B_per_entry']:.1f}, sqlite+zstd{sqlite_zstd_level} "
                       f"{r['sqlite_zstd_B_per_entry']:.2f} ({r['sqlite_zstd_over_wire']:.2f}x wire); "
                       f"build {r['build_s']:.1f}s expand {r['expand_s']:.1f}s apply {r['apply_s']:.2f}s; "
                       f"delta {r['delta_B_per_change']:.2f} B/change "
                       f"({r['delta_over_full_B_per_entry']:.2f}x full B/entry); lookup p50 "
                       f"{r['lookup_p50_us']:.1f} µs p99 {r['lookup_p99_us']:.1f} µs")
        ftc = os.path.join(data, "ftc-dnc", "complaint_numbers_by_day.csv.gz")
        if os.path.isfile(ftc):
            res["ftc"] = f = bench_ftc(ftc, tmp)
            click.echo(f"FTC: {f['malformed_rows']} malformed rows skipped; on the phone's layered pack "
                       f"{f['sync']['deltas']} daily deltas wrote {f['sync']['layered_write_share']:.1%} of the "
                       f"base per delta on average (levels {f['sync']['levels']}), the single-file apply "
                       f"{f['sync']['file_write_share']:.0%}")
            for r in f["days"]:
                extra = ""
                if "delta_bytes" in r:
                    extra = (f" delta {r['delta_bytes']:,} B ({r['delta_upserts']:,} upserts, "
                             f"{r['delta_B_per_change']:.2f} B/change = {r['delta_over_full_B_per_entry']:.2f}x, "
                             f"{r['delta_share_of_full']:.1%} of full); phone writes "
                             f"{r['layered_write_bytes']:,} B ({r['layered_level']}) vs {r['apply_write_bytes']:,} "
                             f"B single file; next-day coverage "
                             f"{r['covered_complaints']:.1%} of complaints")
                click.echo(f"  {r['day']}: {r['entries']:,} entries, wire {r['wire_B_per_entry']:.2f} B/entry "
                           f"({r['wire_over_reference']:.3f}x ref){extra}")
        pb = os.path.join(data, "phoneblock-de", "blocklist_votes_2026-05.csv")
        if os.path.isfile(pb):
            res["phoneblock"] = p = bench_phoneblock(pb, tmp)
            click.echo(f"PhoneBlock: {p['entries']:,} entries, wire {p['wire_B_per_entry']:.2f} B/entry "
                       f"(reference {p['reference_B_per_entry']:.2f}, ratio {p['wire_over_reference']:.3f}; "
                       f"PhoneBlock's own router pack 8 B/entry), sqlite {p['sqlite_B_per_entry']:.1f} B/entry")
        from tools.bench.pack_sync import bench_sync, report
        for n in [int(s) for s in layer_sizes.split(",") if s.strip()]:
            r = bench_sync(n, tmp, layer_days)
            res["layered"].append(r)
            for line in report(r):
                click.echo(line)
    if json_out:
        with open(json_out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
