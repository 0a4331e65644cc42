"""Does a caller's 100-number block say anything on real data? (the model's `pack_block_harmful` fact)

    python -m tools.bench.block_fact --ftc ../shared/data/ftc-dnc/complaint_numbers_by_day.csv.gz \
        --phoneblock ../shared/data/phoneblock-de/blocklist_votes_2026-05.csv

- **FTC complaints** (a real report stream): for each published day, the "pack" is every number
  reported on earlier days; for the day's numbers that are *not* in it (what the model must score),
  the share with a reported number in their 100-number block (`callmark.pack.block_start` of the
  number key). Baseline in the same run: the same count for a control number per new number, drawn
  uniformly from the same 10,000-number block (same area and exchange, other last four digits), so
  the ratio is the lift of the 100-block over the local density of reports.
- **PhoneBlock** (a real published blocklist): the share of listed numbers with another listed
  number in their 100-block, against controls drawn the same way.
Prints one JSON line per data set. Keys come from `callmark.numbers.key_of` (region US / DE).
"""
from __future__ import annotations

import csv
import gzip
import json
from collections import defaultdict

import click
import numpy as np

from callmark.numbers import key_of
from callmark.pack import block_start


def _with_neighbour(keys: list[int], blocks: dict[int, set[int]]) -> int:
    """How many of `keys` have another key of `blocks` in their 100-number block."""
    def others(k: int) -> int:
        b = blocks.get(block_start(k), set())
        return len(b) - (k in b)
    return sum(1 for k in keys if others(k) > 0)


def _controls(keys: list[int], rng: np.random.Generator) -> list[int]:
    """One number per key from the same 10,000-number block, last four digits drawn at random."""
    return [k - k % 10_000 + int(rng.integers(0, 10_000)) for k in keys]


def ftc(path: str, seed: int = 0) -> dict:
    by_day: dict[str, set[int]] = defaultdict(set)
    with gzip.open(path, "rt", newline="") as f:
        for row in csv.DictReader(f):
            k = key_of(row["company_phone_number"], "US")
            if k is not None:
                by_day[row["snapshot_date_utc"]].add(k)
    days = sorted(by_day)  # "backfill_to_…" sorts after the dates: put it first
    days = [d for d in days if d.startswith("backfill")] + [d for d in days if not d.startswith("backfill")]
    rng = np.random.default_rng(seed)
    seen: set[int] = set()
    blocks: dict[int, set[int]] = defaultdict(set)
    new_total = hits = ctrl_hits = 0
    per_day = []
    for i, day in enumerate(days):
        if i > 0:
            new = sorted(by_day[day] - seen)
            h, c = _with_neighbour(new, blocks), _with_neighbour(_controls(new, rng), blocks)
            per_day.append(h / len(new))
            new_total, hits, ctrl_hits = new_total + len(new), hits + h, ctrl_hits + c
        for k in by_day[day]:
            seen.add(k)
            blocks[block_start(k)].add(k)
    return {"data": "ftc-dnc", "days_scored": len(per_day), "new_numbers": new_total,
            "new_with_reported_neighbour": round(hits / new_total, 4),
            "control_same_10k_block": round(ctrl_hits / new_total, 4),
            "lift": round(hits / max(ctrl_hits, 1), 2),
            "per_day_range": [round(min(per_day), 4), round(max(per_day), 4)]}


def phoneblock_check(path: str, seed: int = 0) -> dict:
    with open(path, newline="") as f:
        keys = sorted({k for k in (key_of(r["phone"], "DE") for r in csv.DictReader(f)) if k is not None})
    blocks: dict[int, set[int]] = defaultdict(set)
    for k in keys:
        blocks[block_start(k)].add(k)
    h = _with_neighbour(keys, blocks)
    c = _with_neighbour(_controls(keys, np.random.default_rng(seed)), blocks)
    return {"data": "phoneblock-de", "numbers": len(keys), "listed_with_listed_neighbour": round(h / len(keys), 4),
            "control_same_10k_block": round(c / len(keys), 4), "lift": round(h / max(c, 1), 2)}


@click.command()
@click.option("--ftc", "ftc_path", type=click.Path(exists=True, dir_okay=False), help="FTC complaint numbers (.csv.gz).")
@click.option("--phoneblock", type=click.Path(exists=True, dir_okay=False), help="PhoneBlock blocklist CSV.")
@click.option("--seed", default=0, show_default=True, help="Seed of the control numbers.")
def main(ftc_path, phoneblock, seed):
    """Real-data check of the 100-number-block fact (see the module docstring).

    Example: python -m tools.bench.block_fact --phoneblock ../shared/data/phoneblock-de/blocklist_votes_2026-05.csv
    """
    if not (ftc_path or phoneblock):
        raise click.UsageError("pass --ftc and/or --phoneblock")
    if ftc_path:
        click.echo(json.dumps(ftc(ftc_path, seed)))
    if phoneblock:
        click.echo(json.dumps(phoneblock_check(phoneblock, seed)))


if __name__ == "__main__":
    main()
