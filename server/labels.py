"""Loading a consensus LABELS.csv into the server's lookup table (docs/interfaces.md, "Labels")."""
from __future__ import annotations

import math
import os
from typing import IO, Iterator

from callmark.categories import by_code, by_key, is_key
from callmark.labels import LabelsFormatError, read_labels
from callmark.numbers import lookup_hash, normalize
from server.errors import Unprocessable
from server.store import Store, open_store

MAX_ERRORS = 20


MAX_INT = 2**53      # integers stored exactly (as SQLite INTEGER and as a float on the way)


def _num(v: str | None, cast, default=None, lo: float = 0, hi: float = MAX_INT):
    """A numeric cell within [lo, hi] (finite), else ValueError naming the value."""
    if v is None or v == "":
        return default
    x = float(v)
    if not (math.isfinite(x) and lo <= x <= hi):
        raise ValueError(f"value {v[:40]!r} is outside [{lo:g}, {hi:g}]")
    return int(x) if cast is int else cast(x)


def parse_labels(fh: IO[str]) -> Iterator[dict]:
    """Rows for `Store.replace_labels` from a LABELS.csv stream (published rows only).

    Raises Unprocessable listing up to 20 bad lines (line number, what was wrong)."""
    rows = read_labels(fh, name="LABELS.csv")
    errors: dict[str, list[str]] = {}
    while True:
        try:
            r = next(rows)
        except StopIteration:
            break
        except LabelsFormatError as e:  # a missing column or a bad published value: stop here
            raise Unprocessable(f"{e}; fix and upload again: nothing was changed",
                                {"csv": {**errors, "file": [str(e)]}}) from None
        if not r["published"]:
            continue
        line = r.line
        try:
            raw = (r.get("number") or "").strip()
            facts = normalize(raw)
            if facts.key is None:  # the one number rule: fragments are never served as labels
                raise ValueError(f"number {raw!r} is not a dialable number ({facts.irregular})")
            e164 = facts.e164
            cat = (r.get("category") or "").strip()
            c = by_key(cat) if is_key(cat) else by_code(int(cat))
            row = {"hash": lookup_hash(e164), "number": e164, "category": c.key, "code": c.code,
                   "confidence": _num(r.get("confidence"), float, 0.0, hi=1.0),
                   "reporters": _num(r.get("reporters"), int, 0),
                   "flags": _num(r.get("flags"), int, 0), "last_ts": _num(r.get("last_ts"), int),
                   "company": (r.get("company") or None)}
        except Exception as e:  # noqa: BLE001 - every bad line is reported, none crashes
            if len(errors) < MAX_ERRORS:
                errors[f"line {line}"] = [str(e)]
            continue
        if not errors:
            yield row
    if errors:
        raise Unprocessable(f"LABELS.csv has bad lines (first {len(errors)} shown); fix and "
                            "upload again: nothing was changed", {"csv": errors})


def load_labels(store: Store, fh: IO[str], version: str, actor: str = "system") -> int:
    """Replace the lookup table from a LABELS.csv stream atomically; returns the row count."""
    return store.replace_labels(parse_labels(fh), version, actor)


def load_labels_file(data_dir: str | os.PathLike, csv_path: str | os.PathLike,
                     version: str) -> int:
    """Library entry point: load `csv_path` into the store under `data_dir`."""
    store = open_store(data_dir, create=True)
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            return load_labels(store, fh, version, "cli")
    finally:
        store.close()
