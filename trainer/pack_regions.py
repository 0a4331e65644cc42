"""Packs per region: split a LABELS.csv by region, refuse labels of another region, and build
full/lite packs for several regions into one pack directory (one release, several regions).

A label's region is its country calling code's main region (callmark.numbers.calling_region:
every +1 number goes to US, +49 to DE, +86 and CN short numbers to CN).
"""
from __future__ import annotations

import datetime as _dt
import os

from callmark.pack import LABEL_COLS, PACK_FORMAT, PackTable
from trainer.packs import (INDEX, LabelTableError, PackConfig, build_packs, label_rows, make_table,
                           write_json)


class RegionMismatchError(LabelTableError):
    """Labels that do not belong to the region a pack is asked for."""


def _by_region(keys: list) -> list:
    from callmark.numbers import calling_region
    cache: dict = {}
    out = []
    for k in keys:
        p = k // 10**6 if k < 10**16 else k // 10**10  # the region depends on the leading digits
        r = cache.get(p)
        if r is None:
            r = cache[p] = calling_region(k) or "ZZ"
        out.append(r)
    return out


def read_labels_by_region(path: str, region: str = "CN") -> tuple[dict[str, PackTable], dict]:
    """{region: pack table} of a LABELS.csv (a label's region is its country calling code's main
    region: every +1 number goes to US; callmark.numbers.calling_region), and the rows dropped
    by reason. `region` is only the region raw numbers without `key` are read in."""
    cols, names, ranges, dropped = label_rows(path, region)
    lab_region = _by_region(cols["key"])
    rng_region = _by_region(ranges["start"])
    out = {}
    for r in sorted(set(lab_region) | set(rng_region)):
        li = [i for i, x in enumerate(lab_region) if x == r]
        ri = [i for i, x in enumerate(rng_region) if x == r]
        sub = {c: [v[i] for i in li] for c, v in cols.items()}
        sub_r = {c: [v[i] for i in ri] for c, v in ranges.items()}
        out[r] = make_table(sub, sub_r, {k: n for k, n in names.items() if k in set(sub["key"])})
    return out, dropped


def read_region_labels(path: str, region: str, allowed: list[str] | None = None) -> PackTable:
    """The pack table of `region` from a LABELS.csv holding only labels of `allowed` regions
    (default: `region` alone).

    Raises RegionMismatchError naming the regions found when any label belongs elsewhere or
    `region` has none (a US LABELS.csv never becomes a pack named CN-full)."""
    tables, _ = read_labels_by_region(path, region)
    found = {r: t.entries for r, t in tables.items() if t.entries}
    other = {r: n for r, n in found.items() if r not in (allowed or [region])}
    if other or not found.get(region):
        have = ", ".join(f"{r}: {n:,}" for r, n in sorted(found.items())) or "none"
        raise RegionMismatchError(
            f"{path}: labels of region(s) other than {region} (published entries per region: {have}); "
            f"build each region with its own --region, or all of them at once with "
            f"--region {','.join(sorted(found)) or region}")
    return tables.get(region) or make_table({c: [] for c in LABEL_COLS})


def build_region_packs(tables: dict[str, PackTable], version: int, out_dir: str,
                       config: PackConfig | None = None, built_at: str | None = None) -> dict:
    """Full/lite (and CN province) packs for every region of `tables` in one directory and one
    index.json (one release, several regions); returns the index dict."""
    config = config or PackConfig()
    built_at = built_at or _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    packs = []
    for region in sorted(tables):
        cfg = PackConfig.from_dict(dict(config.to_dict(), region=region))
        packs.extend(build_packs(tables[region], version, out_dir, cfg, built_at)["packs"])
    index = {"format": PACK_FORMAT, "version": int(version), "built_at": built_at, "packs": packs,
             "regions": sorted(tables)}
    write_json(os.path.join(out_dir, INDEX), index)
    return index
