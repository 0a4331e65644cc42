"""Benchmark the number normaliser on a real complaint stream.

Example:
    python tools/bench/normalize.py --data ../shared/data/ftc-dnc/complaint_numbers_by_day.csv.gz

Prints rows per second with the cache (how callmark runs) against the uncached baseline measured in the
same run on a sample, and the share of irregular numbers with their reasons. The PhoneBlock list
(E.164, mostly German) can be passed as well with --phoneblock.
"""
from __future__ import annotations

import collections
import csv
import gzip
import time

import click
import phonenumbers
from phonenumbers import carrier, geocoder
from tqdm import tqdm

from callmark import numbers


def read_column(path: str, column: str) -> list[str]:
    """Every value of `column` in a CSV file (gzip allowed)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="") as handle:
        return [row[column] for row in csv.DictReader(handle)]


def naive_facts(raw: str, region: str):
    """The baseline: the same facts from phonenumbers' public calls, one after another."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    return (phonenumbers.is_valid_number(number), phonenumbers.number_type(number),
            phonenumbers.region_code_for_number(number), carrier.name_for_number(number, "en"),
            geocoder.description_for_number(number, "en"))


def run(rows: list[str], region: str, sample: int) -> dict:
    """Normalise `rows` with the cache; time an uncached sample as the baseline."""
    numbers._normalize.cache_clear()
    reasons = collections.Counter()
    start = time.perf_counter()
    for raw in tqdm(rows, desc=f"normalise ({region})", unit="row", mininterval=1.0):
        facts = numbers.normalize(raw, region)
        if not facts.valid:
            reasons[facts.irregular] += 1
    cached_s = time.perf_counter() - start
    numbers._key.cache_clear()
    start = time.perf_counter()
    for raw in rows:
        numbers.key_of(raw, region)
    key_rate = len(rows) / (time.perf_counter() - start)
    distinct = sorted(set(rows))[:sample]
    start = time.perf_counter()
    for raw in distinct:
        numbers._normalize.__wrapped__(raw, region)
    uncached_rate = len(distinct) / (time.perf_counter() - start)
    start = time.perf_counter()
    for raw in distinct:
        naive_facts(raw, region)
    naive_rate = len(distinct) / (time.perf_counter() - start)
    irregular = sum(reasons.values())
    return {"rows": len(rows), "distinct": len(set(rows)), "seconds": cached_s,
            "rows_per_s": len(rows) / cached_s, "uncached_rows_per_s": uncached_rate,
            "naive_rows_per_s": naive_rate, "key_of_rows_per_s": key_rate,
            "irregular": irregular, "irregular_share": irregular / max(len(rows), 1),
            "reasons": dict(reasons.most_common())}


@click.command()
@click.option("--data", "data_path", required=True, help="FTC complaint CSV (.csv or .csv.gz).")
@click.option("--column", default="company_phone_number", show_default=True)
@click.option("--region", default="US", show_default=True, help="Where the numbers were dialled.")
@click.option("--phoneblock", default=None, help="Optional PhoneBlock blocklist CSV (column 'phone').")
@click.option("--sample", default=20000, show_default=True, help="Distinct numbers for the uncached baseline.")
def main(data_path, column, region, phoneblock, sample):
    """Normalise a real number stream and print throughput and irregular share."""
    jobs = [(data_path, column, region)]
    if phoneblock:
        jobs.append((phoneblock, "phone", "DE"))
    for path, col, reg in jobs:
        rows = read_column(path, col)
        r = run(rows, reg, sample)
        click.echo(f"{path}: {r['rows']:,} rows, {r['distinct']:,} distinct, {r['seconds']:.1f} s, "
                   f"{r['rows_per_s']:,.0f} rows/s; key_of only (the ingest path) {r['key_of_rows_per_s']:,.0f} rows/s")
        click.echo(f"  on {min(sample, r['distinct']):,} distinct numbers: callmark uncached "
                   f"{r['uncached_rows_per_s']:,.0f}/s vs naive phonenumbers calls "
                   f"{r['naive_rows_per_s']:,.0f}/s = {r['uncached_rows_per_s'] / r['naive_rows_per_s']:.2f}x")
        click.echo(f"  irregular: {r['irregular']:,} ({r['irregular_share']:.2%}) {r['reasons']}")


if __name__ == "__main__":
    main()
