"""`callmark import`: real report streams (FTC complaints, PhoneBlock list, any CSV/JSONL) -> events.

`import_events(kind, path, out, region=..., ...) -> ImportResult` reads one source file and writes a
tag-events JSONL file whose every line carries `source` (the source profile, callmark/sources.py)
and a stable `event_id`, so that the same report imported twice (from overlapping daily files) is
one event: `(source, event_id)` is the identity. Numbers are written as E.164 (or the CN short form);
a row whose number is not dialable (callmark/numbers.py: fragments, bare codes, out of plan) is an
irregular fact: counted by reason with its line number in the BadRowReport, never written.

Kinds:
- `ftc-dnc`: the FTC Do-Not-Call complaint CSV as published (`Company_Phone_Number` plus a date:
  `Created_Date`, `Violation_Date` or the mirror's `snapshot_date_utc`; `Subject` maps to a category
  when present). One complaint per row, each by a distinct one-off complainant.
- `phoneblock`: a PhoneBlock blocklist dump (`phone`, `votes` net votes, `lastActivity` epoch ms).
- `csv` / `jsonl`: any file, with a column mapping (`number=caller,category=kind,ts=time,reporter=user`),
  a fixed category and a reporter prefix where the source has none, and a profile.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from callmark.categories import is_key
from callmark.files import atomic_writer
from callmark.numbers import format_key, key_of, normalize
from callmark.sources import PROFILES, profile
from trainer.ingest import BadRowReport, IngestError, iter_rows
from trainer.column_map import parse_column_map
from trainer.ingest_columns import parse_ts

KINDS = ("ftc-dnc", "phoneblock", "csv", "jsonl")
FIELDS = ("number", "category", "ts", "reporter", "event_id", "company", "note", "votes")

# FTC complaint subjects (as published) -> category keys; anything else is telemarketing
FTC_SUBJECTS = {
    "reducing your debt": "loans", "debt": "debt_collection", "medical": "healthcare",
    "prescriptions": "healthcare", "vacation": "travel", "timeshare": "travel",
    "imposter": "fraud", "impersonat": "fraud", "computer & technical support": "fraud",
    "lotteries": "fraud", "prizes": "fraud", "home security": "telemarketing",
    "dropped call": "one_ring", "no message": "one_ring", "home improvement": "telemarketing",
    "energy": "telemarketing", "warranties": "telemarketing",
}
FTC_NUMBER = ("company_phone_number", "phone_number", "number")
FTC_DATE = ("created_date", "violation_date", "snapshot_date_utc", "date")


class SourceImportError(IngestError):
    """A source file that cannot be imported (wrong kind, missing columns, bad mapping)."""


@dataclass
class ImportResult:
    """What one import wrote: counts, the bad-row report and where."""

    kind: str
    source: str
    path: str
    out: str
    events: int
    duplicates: int
    report: BadRowReport
    seconds: float

    def to_dict(self) -> dict:
        return {"kind": self.kind, "source": self.source, "path": self.path, "out": self.out,
                "events": self.events, "duplicates": self.duplicates,
                "bad_rows": self.report.to_dict(), "seconds": round(self.seconds, 2)}


def parse_map(items) -> dict[str, str]:
    """`number=caller,category=kind` (or several such items) -> {our field: source column};
    SourceImportError for an unknown field or a part that is not FIELD=COLUMN (trainer.column_map)."""
    return parse_column_map(items, FIELDS, error=SourceImportError, option="--map", example="number=caller")


def _ftc_category(subject: str) -> str:
    s = (subject or "").lower()
    for needle, cat in FTC_SUBJECTS.items():
        if needle in s:
            return cat
    return "telemarketing"


def _pick(header: list[str], names: tuple[str, ...]) -> str | None:
    low = {h.strip().lstrip("\ufeff").lower(): h for h in header}
    return next((low[n] for n in names if n in low), None)


def _event_id(source: str, parts: tuple, seen: Counter) -> str:
    """Stable id from the row's content plus its occurrence count: the k-th identical complaint of a
    day in two overlapping files gets the same id in both (so they dedupe), two identical
    complaints in one file stay two events."""
    base = "\x1f".join(str(p) for p in parts)
    seen[base] += 1
    digest = hashlib.blake2b(f"{base}\x1f{seen[base]}".encode(), digest_size=10).hexdigest()
    return f"{source}:{digest}"


def _rows(kind: str, path: Path) -> Iterator[tuple[int, object]]:
    if kind in ("ftc-dnc", "phoneblock", "csv") and path.name.lower().rstrip(".gz").endswith(
            (".jsonl", ".ndjson")):
        raise SourceImportError(f"{path}: kind {kind} reads CSV; use kind jsonl for a JSONL file")
    yield from iter_rows(path, "jsonl" if kind == "jsonl" else "csv")


def _number(raw, region: str, report: BadRowReport, line: int) -> str | None:
    key = key_of(raw, region)  # the cached fast path; the facts only for the rows it refuses
    if key is None:
        facts = normalize(raw, region)
        reason = "missing number" if facts.irregular == "empty" else \
            f"irregular number: {facts.irregular}"
        report.add(line, reason, raw)
        return None
    return format_key(key)


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def convert(kind: str, path, region: str = "US", columns: dict[str, str] | None = None,
            category: str | None = None, reporter_prefix: str | None = None,
            source: str | None = None, report: BadRowReport | None = None) -> Iterator[dict]:
    """Event dicts (the tags.jsonl shape plus `source`, optional `votes`) of one source file; bad
    rows go to `report` with their line numbers. Raises SourceImportError for file-level problems."""
    if kind not in KINDS:
        raise SourceImportError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    path = Path(path)
    if not path.is_file():
        raise SourceImportError(f"{path}: no such file")
    src = profile(source or (kind if kind in PROFILES else None))
    if category is not None and not is_key(category):
        raise SourceImportError(f"--category {category!r} is not a category key (see callmark/categories.py)")
    report = report if report is not None else BadRowReport()
    columns = dict(columns or {})
    seen: Counter = Counter()
    header_cols: dict[str, str] | None = None
    for line, row in _rows(kind, path):
        report.rows += 1
        if not isinstance(row, dict):
            report.add(line, getattr(row, "reason", "row is not an object"), getattr(row, "text", row))
            continue
        if header_cols is None:
            header_cols = _columns(kind, list(row), columns, category, reporter_prefix, path)
        get = {f: row.get(c) for f, c in header_cols.items()}
        number = _number(get.get("number"), region, report, line)
        if number is None:
            continue
        cat = category or (_ftc_category(get.get("subject") or "") if kind == "ftc-dnc" else None) \
            or (str(get.get("category") or "").strip() or src.default_category)
        if not cat or not is_key(cat):
            report.add(line, "unknown category", get.get("category"))
            continue
        raw_ts = get.get("ts")
        if kind == "ftc-dnc" and isinstance(raw_ts, str) and raw_ts.startswith("backfill_to_"):
            raw_ts = raw_ts[len("backfill_to_"):]  # the mirror's first block: complaints up to then
        ts = parse_ts(raw_ts)
        if ts is None:
            report.add(line, "bad timestamp", raw_ts)
            continue
        ev = {"source": src.name, "number": number, "category": cat, "ts": _iso(ts)}
        if kind == "phoneblock" or get.get("votes") not in (None, ""):
            try:
                votes = int(float(get.get("votes")))
            except (TypeError, ValueError):
                report.add(line, "bad votes", get.get("votes"))
                continue
            if votes <= 0:
                report.add(line, "no net votes", get.get("votes"))
                continue
            ev["votes"] = votes
        eid = str(get.get("event_id") or "").strip()
        ev["event_id"] = f"{src.name}:{eid}" if eid else _event_id(
            src.name, (number, ev["ts"], cat) if kind != "phoneblock" else (number,), seen)
        if kind == "phoneblock":
            ev["reporter"] = "phoneblock"
        elif get.get("reporter") not in (None, ""):
            ev["reporter"] = f"{reporter_prefix or ''}{get['reporter']}"
        else:  # one-off reporters: each row its own person, named after the event
            ev["reporter"] = f"{reporter_prefix or src.name + ':'}{ev['event_id'].split(':', 1)[1]}"
        for f in ("company", "note"):
            if get.get(f):
                ev[f] = str(get[f])[:200]
        yield ev


def _columns(kind: str, header: list[str], columns: dict, category, reporter_prefix,
             path: Path) -> dict[str, str]:
    if kind == "ftc-dnc":
        num, day = _pick(header, FTC_NUMBER), _pick(header, FTC_DATE)
        if not num or not day:
            raise SourceImportError(f"{path}: not an FTC complaint file: need a number column "
                               f"({'/'.join(FTC_NUMBER)}) and a date ({'/'.join(FTC_DATE)}); "
                               f"found {', '.join(header)}")
        out = {"number": num, "ts": day}
        subj = _pick(header, ("subject",))
        if subj:
            out["subject"] = subj
        return dict(out, **columns)
    if kind == "phoneblock":
        out = {"number": _pick(header, ("phone", "number")), "votes": _pick(header, ("votes",)),
               "ts": _pick(header, ("lastactivity", "last_activity", "ts"))}
        if not all(out.values()):
            raise SourceImportError(f"{path}: not a PhoneBlock list: need columns phone,votes,lastActivity; "
                               f"found {', '.join(header)}")
        return dict(out, **columns)
    out = {f: _pick(header, (f,)) for f in FIELDS}
    out = {f: c for f, c in out.items() if c}
    for f, c in columns.items():
        if c not in header:
            raise SourceImportError(f"{path}: --map {f}={c}: no column {c!r} (columns: {', '.join(header)})")
        out[f] = c
    need = [f for f in ("number", "ts") if f not in out]
    if "category" not in out and category is None:
        need.append("category (or --category)")
    if "reporter" not in out and reporter_prefix is None:
        need.append("reporter (or --reporter-prefix)")
    if need:
        raise SourceImportError(f"{path}: no column for {', '.join(need)}; map them with --map "
                           f"FIELD=COLUMN (columns: {', '.join(header)})")
    return out


def import_events(kind: str, path, out, region: str = "US", columns: dict[str, str] | None = None,
                  category: str | None = None, reporter_prefix: str | None = None,
                  source: str | None = None) -> ImportResult:
    """Convert `path` and write the events JSONL to `out` atomically (duplicates of
    `(source, event_id)` within the file are written once)."""
    t0 = time.perf_counter()
    report = BadRowReport()
    ids: set[str] = set()
    n = dup = 0
    src_name = profile(source or (kind if kind in PROFILES else None)).name
    with atomic_writer(out, "w") as f:
        for ev in convert(kind, path, region, columns, category, reporter_prefix, source, report):
            if ev["event_id"] in ids:
                dup += 1
                continue
            ids.add(ev["event_id"])
            f.write(json.dumps(ev, ensure_ascii=False, separators=(",", ":")) + "\n")
            n += 1
    return ImportResult(kind, src_name, str(path), str(out), n, dup, report,
                        time.perf_counter() - t0)


__all__ = ["KINDS", "SourceImportError", "ImportResult", "convert", "import_events", "parse_map"]
