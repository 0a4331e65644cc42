"""Sync cost on the phone: 30 daily deltas on a layered pack (base + overlays), measured per operation.

Every measured operation (expand, apply, compaction, and the baselines) runs in a fresh child process
(forkserver) that reports the OS's accounting of its own I/O (`/proc/self/io` write_bytes: bytes sent
to the storage layer), its peak resident memory (`VmHWM`, so the interpreter and numpy are included)
and its wall time. Baselines, same run: a plain SQLite bulk insert of the same rows (for expand and
compaction) and the copy-on-write single-file apply of `callmark.pack.apply_delta` (for apply).

Used by tools/bench/packs.py (`--layer-sizes`); runnable alone:
  .venv/bin/python -m tools.bench.pack_sync --sizes 1000000 --days 30
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
import time

import click
import numpy as np

from callmark.pack import LABEL_COLS, RANGE_COLS, SCHEMA, PackTable, hash_hex, rows_hash, table_hash
from callmark.pack_codec import quantize_reporters
from callmark.pack_wire import Delta, encode_delta, encode_full
from trainer.packs import synthetic_table

NAME = "CN-full"


# ---------------------------------------------------------------- measured child processes

def _proc_io() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("write_bytes:")).split()[1])


def _vm(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(field + ":")).split()[1]) * 1024


def _child(q, op: str, args: tuple):
    from callmark import pack, pack_layers
    fns = {"install": pack_layers.install_full, "apply": pack_layers.apply_delta, "compact": pack_layers.compact,
           "apply_file": pack.apply_delta, "bulk_insert": _bulk_insert}
    rss0, w0, t0 = _vm("VmRSS"), _proc_io(), time.perf_counter()
    out = fns[op](*args)
    t = time.perf_counter() - t0
    q.put({"s": t, "write_bytes": _proc_io() - w0, "peak_rss": _vm("VmHWM"), "rss_before": rss0,
           "layer": out.get("layer") if isinstance(out, dict) else None})


def measure(op: str, *args) -> dict:
    """Run one operation in a fresh child; {s, write_bytes, peak_rss, rss_before, layer}."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["callmark.pack_layers", "numpy", "zstandard"])
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q, op, args))
    p.start()
    out = q.get(timeout=3600)
    p.join()
    if p.exitcode:
        raise RuntimeError(f"{op} failed in the child (exit {p.exitcode})")
    return out


def _bulk_insert(npz_path: str, dest: str) -> dict:
    """Baseline: the same rows, plain executemany into the same schema (journal off), fsync."""
    z = np.load(npz_path)
    con = sqlite3.connect(dest, isolation_level=None)
    con.execute("PRAGMA page_size = 4096")
    con.execute("PRAGMA journal_mode = OFF")
    con.execute("PRAGMA synchronous = OFF")
    con.execute("BEGIN")
    for stmt in SCHEMA:
        con.execute(stmt)
    con.executemany("INSERT INTO labels VALUES (?,?,?,?,?,?)", zip(*(z["l_" + c].tolist() for c in LABEL_COLS)))
    con.executemany("INSERT INTO ranges VALUES (?,?,?,?,?,?,?)", zip(*(z["r_" + c].tolist() for c in RANGE_COLS)))
    con.executemany("INSERT INTO businesses VALUES (?,?)", zip(z["n_key"].tolist(), z["n_name"].tolist()))
    con.execute("COMMIT")
    con.close()
    fd = os.open(dest, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    return {}


def lookup_latency(path: str, hits: np.ndarray, n: int = 20_000, seed: int = 0, layered: bool = False) -> dict:
    """Lookup p50 / p99 in µs: half hits, half misses (key + 1), 2,000 warm-up lookups."""
    from callmark.pack import PackReader
    from callmark.pack_layers import LayeredReader
    rng = np.random.default_rng(seed)
    probes = np.concatenate([rng.choice(hits, n // 2), rng.choice(hits, n // 2) + 1])
    rng.shuffle(probes)
    ts = []
    with (LayeredReader(path) if layered else PackReader(path)) as r:
        for k in probes[:2000].tolist():
            r.lookup(k)
        for k in probes.tolist():
            a = time.perf_counter()
            r.lookup(k)
            ts.append(time.perf_counter() - a)
    return {"lookup_p50_us": float(np.percentile(ts, 50) * 1e6), "lookup_p99_us": float(np.percentile(ts, 99) * 1e6)}


# ---------------------------------------------------------------- daily deltas

def daily_delta(t: PackTable, seed: int, relabel: float = 0.005, remove: float = 0.0025,
                add: float = 0.0025) -> tuple[Delta, PackTable]:
    """The issue's daily delta: 0.5 % of rows relabelled (more reporters, fresh evidence, 1 in 5 a new
    category), 0.25 % removed, 0.25 % new numbers. Returns (delta, next table)."""
    rng = np.random.default_rng(seed)
    n = t.n_labels
    pick = rng.choice(n, int(n * (relabel + remove)), replace=False)
    rel, rem = np.sort(pick[: int(n * relabel)]), np.sort(pick[int(n * relabel):])
    day = int(t.labels["last_day"].max()) + 1
    up = {c: v[rel].copy() for c, v in t.labels.items()}
    up["reporters"] = quantize_reporters(up["reporters"] * 2 + 1)
    up["last_day"][:] = day
    recat = rng.random(len(rel)) < 0.2
    up["category"][recat] = rng.choice([1, 2, 3], int(recat.sum()))
    fresh = synthetic_table(int(n * add) * 2, seed=seed + 10**6, day=day)
    new_keys = fresh.labels["key"][~np.isin(fresh.labels["key"], t.labels["key"])][: int(n * add)]
    sel = np.isin(fresh.labels["key"], new_keys)
    add_rows = {c: v[sel] for c, v in fresh.labels.items()}
    up = {c: np.concatenate([up[c], add_rows[c]]) for c in LABEL_COLS}
    o = np.argsort(up["key"])
    up = {c: v[o] for c, v in up.items()}
    names = {k: t.names[k] for k in t.labels["key"][rel].tolist() if k in t.names}
    names.update({k: v for k, v in fresh.names.items() if k in set(new_keys.tolist())})
    d = Delta(t.labels["key"][rem], PackTable(up, {}, names))
    keep = np.ones(n, bool)
    keep[rem] = False
    keep[rel] = False
    nxt = {c: np.concatenate([v[keep], up[c]]) for c, v in t.labels.items()}
    o = np.argsort(nxt["key"])
    gone = set(t.labels["key"][rem].tolist())
    nxt_names = {k: v for k, v in t.names.items() if k not in gone}
    nxt_names.update(names)
    return d, PackTable({c: v[o] for c, v in nxt.items()}, t.ranges, nxt_names)


def _hash_after(t: PackTable, h: int, d: Delta) -> int:
    """State hash after `d`, from the changed rows only (as the phone does)."""
    changed = np.union1d(d.removals, d.upserts.labels["key"])
    old = np.isin(t.labels["key"], changed)
    old_names = {k: t.names[k] for k in t.labels["key"][old].tolist() if k in t.names}
    minus = rows_hash({c: v[old] for c, v in t.labels.items()}, None, old_names)
    return (h - minus + rows_hash(d.upserts.labels, None, d.upserts.names)) % (1 << 256)


def _save_rows(t: PackTable, path: str):
    keys = sorted(t.names)
    np.savez(path, **{"l_" + c: v for c, v in t.labels.items()}, **{"r_" + c: v for c, v in t.ranges.items()},
             n_key=np.array(keys, np.int64), n_name=np.array([t.names[k] for k in keys]))


def bench_sync(n: int, tmp: str, days: int = 30, lookups: int = 20_000, policy=None) -> dict:
    """Expand a full pack of n entries onto a layered pack, then apply `days` daily deltas
    (`policy`: a callmark.pack_layers.LayerPolicy, default its defaults)."""
    from callmark import pack_layers
    policy = policy or pack_layers.LayerPolicy()
    work = os.path.join(tmp, f"sync{n}")
    os.makedirs(work, exist_ok=True)
    t = synthetic_table(n, 1, 20400, max(10, n // 500))
    h = table_hash(t)
    wire = os.path.join(work, "full.pack")
    with open(wire, "wb") as f:
        f.write(encode_full(t, {"name": NAME, "region": "CN", "tier": "full", "version": 1, "state_hash": hash_hex(h)}))
    _save_rows(t, os.path.join(work, "rows.npz"))
    res = {"entries": t.entries, "days": [], "policy": policy.to_dict()}
    res["bulk_insert"] = measure("bulk_insert", os.path.join(work, "rows.npz"), os.path.join(work, "bulk.sqlite"))
    res["base_bytes"] = os.path.getsize(os.path.join(work, "bulk.sqlite"))
    phone = os.path.join(work, "phone")
    res["expand"] = measure("install", wire, phone, None, hash_hex(h))
    plain = os.path.join(work, "plain.sqlite")
    head = pack_layers.read_head(phone)
    shutil.copyfile(os.path.join(phone, head["files"]["base"]), plain)
    res["base_bytes"] = head["bytes"]["base"]
    for day in range(1, days + 1):
        d, t2 = daily_delta(t, seed=day)
        h2 = _hash_after(t, h, d)
        blob = os.path.join(work, "day.delta")
        with open(blob, "wb") as f:
            f.write(encode_delta(d, {"name": NAME, "from_version": day, "version": day + 1,
                                     "from_state_hash": hash_hex(h), "state_hash": hash_hex(h2),
                                     "entries": t2.entries}))
        row = measure("apply", phone, blob, hash_hex(h2), None, policy)
        row.update(day=day, changed=d.changed, delta_bytes=os.path.getsize(blob), **pack_layers.layer_stats(phone))
        if day == 1:  # baseline: today's copy-on-write apply of the single file
            res["apply_file"] = measure("apply_file", plain, blob, hash_hex(h2))
            res["plain_lookup"] = lookup_latency(plain, t2.labels["key"], n=lookups)
            os.remove(plain)
        if row["layer"] != "base" and len(row["rows"]) == 3 or day == days:
            row.update(lookup_latency(phone, t2.labels["key"], n=lookups, layered=True))
        res["days"].append(row)
        t, h = t2, h2
    res["compact"] = measure("compact", phone)  # forced, on whatever overlays day `days` left (may be none)
    meta = pack_layers.read_meta(phone)
    assert meta["state_hash"] == hash_hex(h), "layered pack diverged from the table"
    if n <= 1_000_000:
        assert pack_layers.verify(phone)["state_hash"] == hash_hex(h)
    shutil.rmtree(work, ignore_errors=True)
    return summarize(res)


def summarize(res: dict) -> dict:
    """Averages and ratios of a bench_sync run."""
    days, base = res["days"], res["base_bytes"]
    w = [r["write_bytes"] for r in days]
    comp = [r for r in days if r["layer"] == "base"]
    lat = [r for r in days if "lookup_p99_us" in r]
    res.update(
        apply_write_mean=float(np.mean(w)), apply_write_share=float(np.mean(w)) / base,
        apply_write_max_share=max(w) / base, compactions=len(comp),
        apply_peak_rss_max=max(r["peak_rss"] for r in days),
        apply_s_mean=float(np.mean([r["s"] for r in days])),
        apply_file_write_share=res["apply_file"]["write_bytes"] / base,
        apply_vs_file_write=float(np.mean(w)) / max(1, res["apply_file"]["write_bytes"]),
        expand_vs_bulk_s=res["expand"]["s"] / res["bulk_insert"]["s"],
        expand_vs_bulk_write=res["expand"]["write_bytes"] / max(1, res["bulk_insert"]["write_bytes"]),
        compaction_s_mean=float(np.mean([r["s"] for r in comp])) if comp else None,
        compaction_vs_bulk_s=(float(np.mean([r["s"] for r in comp])) / res["bulk_insert"]["s"]) if comp else None,
        lookup_p99_us_max=max(r["lookup_p99_us"] for r in lat) if lat else None,
        lookup_p50_us_max=max(r["lookup_p50_us"] for r in lat) if lat else None,
        lookup_p99_us_median=float(np.median([r["lookup_p99_us"] for r in lat])) if lat else None,
        levels={lv: sum(r["layer"] == lv for r in days) for lv in ("recent", "settled", "base")},
    )
    return res


def report(r: dict) -> list[str]:
    """Printable lines of a bench_sync result."""
    mb = 1 << 20
    return [
        f"layered {r['entries']:>9,} (policy {r['policy']}): base {r['base_bytes'] / mb:.1f} MB; {len(r['days'])} daily deltas "
        f"(~{np.mean([d['changed'] for d in r['days']]):,.0f} changes each) wrote {r['apply_write_mean'] / mb:.2f} MB "
        f"per delta on average = {r['apply_write_share']:.1%} of the base (max {r['apply_write_max_share']:.0%}; "
        f"{r['compactions']} compaction(s); levels written {r['levels']}); copy-on-write file apply "
        f"(baseline) {r['apply_file_write_share']:.0%} of the base, ratio {r['apply_vs_file_write']:.3f}",
        f"  apply: mean {r['apply_s_mean']:.2f} s, peak RSS {r['apply_peak_rss_max'] / mb:.0f} MB (whole child); "
        f"baseline file apply {r['apply_file']['s']:.2f} s, {r['apply_file']['peak_rss'] / mb:.0f} MB",
        f"  compaction (in the delta that triggers it): "
        + (f"{r['compaction_s_mean']:.2f} s = {r['compaction_vs_bulk_s']:.2f}x bulk insert" if r["compactions"]
           else "none in this run")
        + f"; forced compaction at the end {r['compact']['s']:.2f} s, {r['compact']['write_bytes'] / mb:.1f} MB, "
          f"peak RSS {r['compact']['peak_rss'] / mb:.0f} MB",
        f"  expand (wire -> base): {r['expand']['s']:.2f} s = {r['expand_vs_bulk_s']:.2f}x plain bulk insert "
        f"({r['bulk_insert']['s']:.2f} s); writes {r['expand']['write_bytes'] / mb:.1f} MB "
        f"({r['expand_vs_bulk_write']:.2f}x); peak RSS {r['expand']['peak_rss'] / mb:.0f} MB "
        f"(bulk insert {r['bulk_insert']['peak_rss'] / mb:.0f} MB)",
        f"  lookup with overlays ({len([d for d in r['days'] if 'lookup_p99_us' in d])} days): p99 median "
        f"{r['lookup_p99_us_median']:.1f} µs, worst {r['lookup_p99_us_max']:.1f} µs (p50 worst "
        f"{r['lookup_p50_us_max']:.1f}); the single file, same run: p50 {r['plain_lookup']['lookup_p50_us']:.1f}, "
        f"p99 {r['plain_lookup']['lookup_p99_us']:.1f} µs"
        if r["lookup_p99_us_max"] is not None else "  lookup: not measured",
    ]


@click.command()
@click.option("--sizes", default="1000000", show_default=True, help="Entries per pack, comma-separated.")
@click.option("--days", default=30, show_default=True, help="Daily deltas to apply.")
@click.option("--recent-share", default=0.05, show_default=True, type=float,
              help="LayerPolicy.recent_share (a huge value: one overlay only).")
@click.option("--settled-share", default=0.25, show_default=True, type=float, help="LayerPolicy.settled_share.")
def main(sizes, days, recent_share, settled_share):
    """Daily-delta sync cost on a layered pack.

    Example: python -m tools.bench.pack_sync --sizes 100000 --days 10
    """
    import tempfile
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        for n in [int(s) for s in sizes.split(",") if s.strip()]:
            from callmark.pack_layers import LayerPolicy
            for line in report(bench_sync(n, tmp, days, policy=LayerPolicy(recent_share, settled_share))):
                click.echo(line)


if __name__ == "__main__":
    main()
