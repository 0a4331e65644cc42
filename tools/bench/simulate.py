"""Simulator benchmark: call records per second, peak memory, and calibration against Sichuan.

Examples:
  python tools/bench/simulate.py --calls 1000000
  python tools/bench/simulate.py --calls 200000 --days 30 --calibrate \
      --data ../shared/data/sichuan-cdr/train.csv

Throughput is measured beside a baseline in the same run: writing the same number of rows of the
same width with plain Python `csv.writer` (no simulation at all), so the ratio says how close the
simulator is to the cost of just writing its output. Peak memory is the process's max RSS.
"""
from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, Python puts tools/bench/ first on sys.path, where numbers.py would shadow the
# standard library's `numbers`; use the project root instead.
_HERE, ROOT = Path(__file__).resolve().parent, Path(__file__).resolve().parents[2]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import csv  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402

import click  # noqa: E402
import numpy as np  # noqa: E402

from tools.sim_population import CALLS_PER_SUBSCRIBER_DAY  # noqa: E402
from tools.simulate import simulate  # noqa: E402

SICHUAN = {  # FACTS.md: (feature, column in train.csv)
    "calls": "opposite_count", "distinct counterparties": "opposite_unique",
    "share outgoing": "voc_calltype1", "calls per counterparty": "phone2opposite_mean",
    "mean call seconds": "call_dur_mean", "distinct hours": "voc_hour_nunique",
    "distinct days": "voc_day_nunique"}


def _baseline(path: Path, rows: int) -> float:
    """Seconds to write `rows` call-sized rows with csv.writer (the cost floor of the output)."""
    row = ["+8613812345678", "0123456789abcdef", "2026-03-02T01:02:03Z", "7.5", "45", "1", "in",
           "138 1234 5678", "passed"]
    t0 = time.perf_counter()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        for _ in range(rows):
            w.writerow(row)
    return time.perf_counter() - t0


def per_number_features(calls_csv: Path, truth_csv: Path) -> dict[str, dict[str, list[float]]]:
    """Sichuan-style per-number features from calls.csv, grouped normal / fraud."""
    role = {}
    with open(truth_csv, encoding="utf-8") as f:
        for r in csv.DictReader(f):
            role[r["number"]] = r["role"]
    acc = defaultdict(lambda: [0, 0, set(), 0.0, 0, set(), set()])
    with open(calls_csv, encoding="utf-8") as f:
        for r in csv.DictReader(f):
            a = acc[r["caller"]]
            a[0] += 1
            a[1] += r["direction"] == "in"
            a[2].add(r["callee_hash"])
            if r["answered"] == "1":
                a[3] += int(r["talk_s"])
                a[4] += 1
            h = int(r["start"][11:13])
            a[5].add((h + 8) % 24)
            a[6].add(r["start"][:13])  # day + hour, shifted to local below
    out = {"normal": defaultdict(list), "fraud": defaultdict(list)}
    for number, (n, outgoing, peers, talk, answered, hours, stamps) in acc.items():
        group = {"person": "normal", "fraud": "fraud"}.get(role.get(number))
        if group is None or n < 5:
            continue
        days = {np.datetime64(s + ":00") + np.timedelta64(8, "h") for s in stamps}
        feats = out[group]
        feats["calls"].append(n)
        feats["distinct counterparties"].append(len(peers))
        feats["share outgoing"].append(outgoing / n)
        feats["calls per counterparty"].append(n / len(peers))
        feats["mean call seconds"].append(talk / answered if answered else 0)
        feats["distinct hours"].append(len(hours))
        feats["distinct days"].append(len({d.astype("datetime64[D]") for d in days}))
    return out


def _pct(values) -> str:
    if not values:
        return "-"
    p = np.percentile(values, [10, 50, 90])
    return " / ".join(f"{v:,.2f}" if v < 10 else f"{v:,.0f}" for v in p)


def _sichuan(path: Path) -> dict[str, dict[str, list[float]]]:
    out = {"normal": defaultdict(list), "fraud": defaultdict(list)}
    with open(path, encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if not r.get("opposite_count"):
                continue
            group = "fraud" if r["label"] == "1" else "normal"
            for name, col in SICHUAN.items():
                try:
                    out[group][name].append(float(r[col]))
                except (TypeError, ValueError):
                    pass
    return out


@click.command()
@click.option("--calls", type=int, default=1_000_000, show_default=True,
              help="Approximate call records to simulate.")
@click.option("--days", type=int, default=14, show_default=True)
@click.option("--users", type=int, default=None, help="App users (default: subscribers / 2).")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output directory (default: a temporary one, removed afterwards).")
@click.option("--calibrate", is_flag=True, help="Print Sichuan-style per-number percentiles.")
@click.option("--data", type=click.Path(exists=True, dir_okay=False), default=None,
              help="../shared/data/sichuan-cdr/train.csv, printed beside the simulator's figures.")
def main(calls, days, users, seed, out, calibrate, data):
    """Time the simulator on ~CALLS call records and report peak memory.

    Example: python tools/bench/simulate.py --calls 1000000
    """
    per_day = max(100, calls // days)
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(out) if out else Path(tmp) / "sim"
        subscribers = int(per_day / CALLS_PER_SUBSCRIBER_DAY)
        users = users or max(1, subscribers // 2)
        t0 = time.perf_counter()
        summary = simulate(target, days=days, users=users, seed=seed, calls_per_day=per_day,
                           progress=True)
        elapsed = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        base = _baseline(Path(tmp) / "baseline.csv", summary["calls"])
        sizes = {p.name: p.stat().st_size for p in target.iterdir()}
        result = {"calls": summary["calls"], "tags": summary["tags"], "days": days,
                  "subscribers": summary["subscribers"], "users": summary["users"],
                  "seconds": round(elapsed, 2),
                  "calls_per_second": round(summary["calls"] / elapsed),
                  "baseline_csv_writer_seconds": round(base, 2),
                  "ratio_to_baseline": round(elapsed / base, 2),
                  "peak_rss_mb": round(peak_mb), "calls_csv_mb": round(sizes["calls.csv"] / 2**20, 1)}
        click.echo(json.dumps(result, indent=1))
        if calibrate:
            sim = per_number_features(target / "calls.csv", target / "truth.csv")
            real = _sichuan(Path(data)) if data else None
            click.echo("\nper-number features, 10th / 50th / 90th percentile "
                       f"(simulator over {days} days{'; Sichuan over months' if real else ''})")
            head = f"{'feature':<26}{'sim normal':>24}{'sim fraud':>24}"
            if real:
                head += f"{'Sichuan normal':>24}{'Sichuan fraud':>24}"
            click.echo(head)
            for name in SICHUAN:
                line = f"{name:<26}{_pct(sim['normal'][name]):>24}{_pct(sim['fraud'][name]):>24}"
                if real:
                    line += f"{_pct(real['normal'][name]):>24}{_pct(real['fraud'][name]):>24}"
                click.echo(line)


if __name__ == "__main__":
    main()
