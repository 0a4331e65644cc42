"""Ingest tag events into column arrays: CSV / JSONL files, SQLite stores or any iterable of dicts.

The hot path is column-wise: rows are read in chunks, each column is converted with a per-distinct-
string cache (number keys, category codes, reporter ids are interned to ints) and appended to numpy
arrays. No per-event Python objects survive a chunk, so 10 M events fit in a few hundred MB.

Bad rows are counted per reason with a few samples in a `BadRowReport`; they are never fatal. Only
file-level problems (missing file, missing required columns) raise `IngestError`.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import math
import sqlite3
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from callmark.categories import CATEGORIES
from callmark.numbers import key_of

REQUIRED = ("number", "reporter", "category", "ts")
OPTIONAL = ("company", "note", "ring_s", "talk_s", "answered", "direction", "event_id")
CHUNK_ROWS = 100_000  # rows converted per chunk (bounds the transient Python objects)
MAX_SAMPLES = 20  # bad-row samples kept per report
MS_THRESHOLD = 10**11  # epoch values above this are taken as milliseconds


class IngestError(ValueError):
    """A tag source that cannot be read at all (missing file, missing required columns)."""


@dataclass
class BadRowReport:
    """Counts of rejected rows per reason, with a few samples (row number, reason, excerpt)."""

    rows: int = 0  # rows seen (good + bad)
    counts: dict[str, int] = field(default_factory=dict)  # reason -> rows rejected for it
    samples: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def bad(self) -> int:
        return sum(self.counts.values())

    @property
    def good(self) -> int:
        return self.rows - self.bad

    def add(self, row_no: int, reason: str, excerpt: Any = "") -> None:
        """Count one rejected row."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append((int(row_no), reason, str(excerpt)[:120]))

    def summary(self) -> str:
        """One line per reason, e.g. 'rows 1000, bad 3: unparseable number 2, bad timestamp 1'."""
        parts = ", ".join(f"{r} {n}" for r, n in sorted(self.counts.items(), key=lambda x: -x[1]))
        return f"rows {self.rows}, good {self.good}, bad {self.bad}" + (f": {parts}" if parts else "")

    def to_dict(self) -> dict:
        return {"rows": self.rows, "counts": dict(self.counts),
                "samples": [list(s) for s in self.samples]}

    @classmethod
    def from_dict(cls, d: dict) -> "BadRowReport":
        if not isinstance(d, dict) or not isinstance(d.get("rows"), int) or d["rows"] < 0:
            raise IngestError("bad-row report needs a non-negative integer 'rows'")
        counts = {str(k): int(v) for k, v in dict(d.get("counts", {})).items()}
        if sum(counts.values()) > d["rows"]:
            raise IngestError("bad-row report counts exceed its rows")
        return cls(d["rows"], counts, [(int(a), str(b), str(c)) for a, b, c in d.get("samples", [])])


@dataclass
class TagEvents:
    """Tag events as parallel numpy columns (one entry per accepted row)."""

    key: np.ndarray  # int64 number key (callmark.numbers)
    reporter: np.ndarray  # int32 index into `reporters`
    category: np.ndarray  # int16 category code (callmark.categories)
    ts: np.ndarray  # int64 epoch seconds UTC
    company: np.ndarray  # int32 index into `companies`, -1 when absent
    ring_s: np.ndarray  # float32 seconds the phone rang, NaN when unknown
    talk_s: np.ndarray  # float32 seconds talked, NaN when unknown
    answered: np.ndarray  # int8 1/0, -1 unknown
    direction: np.ndarray  # int8 0 in, 1 out, -1 unknown
    reporters: list[str]  # pseudonymous reporter ids, interned
    companies: list[str]  # company names, interned

    def __len__(self) -> int:
        return int(self.key.shape[0])

    def take(self, idx) -> "TagEvents":
        """A subset (boolean mask or index array) sharing the intern tables."""
        return TagEvents(self.key[idx], self.reporter[idx], self.category[idx], self.ts[idx],
                         self.company[idx], self.ring_s[idx], self.talk_s[idx], self.answered[idx],
                         self.direction[idx], self.reporters, self.companies)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.key, self.reporter, self.category, self.ts, self.company,
                                      self.ring_s, self.talk_s, self.answered, self.direction))

    @classmethod
    def from_arrays(cls, key, reporter, category, ts, reporters=None, company=None,
                    companies=None) -> "TagEvents":
        """Build from plain arrays (reporter as ints; category as codes); used by tests and benches."""
        key = np.asarray(key, np.int64)
        n = key.shape[0]
        reporter = np.asarray(reporter, np.int32)
        if reporters is None:
            reporters = [str(i) for i in range(int(reporter.max()) + 1 if n else 0)]
        return cls(key, reporter, np.asarray(category, np.int16), np.asarray(ts, np.int64),
                   np.full(n, -1, np.int32) if company is None else np.asarray(company, np.int32),
                   np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32),
                   np.full(n, -1, np.int8), np.full(n, -1, np.int8), list(reporters),
                   list(companies or []))


_CAT_CODES: dict[str, int] = {}
for _c in CATEGORIES:
    _CAT_CODES[_c.key] = _c.code
    _CAT_CODES[_c.key.upper()] = _c.code
    _CAT_CODES[str(_c.code)] = _c.code
    _CAT_CODES[_c.key.replace("_", "-")] = _c.code
    _CAT_CODES[_c.en.lower()] = _c.code


def parse_ts(value) -> int | None:
    """Epoch seconds from ISO-8601 (naive = UTC) or epoch seconds/milliseconds; None if invalid."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        v = float(value)
    else:
        s = str(value).strip()
        if not s:
            return None
        if s[0].isdigit() and ("-" not in s and ":" not in s):
            try:
                v = float(s)
            except ValueError:
                return None
        else:
            try:
                d = datetime.fromisoformat(s)
            except ValueError:
                return None
            if d.tzinfo is None:
                d = d.replace(tzinfo=timezone.utc)
            return int(d.timestamp())
    if not math.isfinite(v) or v < 0:
        return None
    if v > MS_THRESHOLD:
        v /= 1000.0
    return int(v)


class _Builder:
    """Converts chunks of column lists to arrays, with caches shared across chunks."""

    def __init__(self, region: str, report: BadRowReport):
        self.region = region
        self.report = report
        self.num_cache: dict[str, int] = {}  # raw string -> key, -1 when invalid
        self.rep_ids: dict[str, int] = {}
        self.comp_ids: dict[str, int] = {}
        self.parts: list[tuple[np.ndarray, ...]] = []

    def _key(self, raw) -> int:
        k = key_of(raw, self.region)
        return -1 if k is None else k

    def add(self, row_nos: list[int], cols: dict[str, list]) -> None:
        n = len(row_nos)
        if not n:
            return
        bad = np.zeros(n, bool)
        report = self.report

        def reject(i: int, reason: str, excerpt) -> None:
            if not bad[i]:
                bad[i] = True
                report.add(row_nos[i], reason, excerpt)

        # numbers: cached per distinct raw string
        cache = self.num_cache
        raw_nums = cols["number"]
        keys = np.empty(n, np.int64)
        for i, s in enumerate(raw_nums):
            k = cache.get(s)
            if k is None:
                if s is None or s == "":
                    k = -2
                else:
                    k = cache[s] = self._key(s)
            keys[i] = k
        for i in np.flatnonzero(keys < 0):
            reject(i, "missing number" if keys[i] == -2 else "unparseable number", raw_nums[i])

        cats = np.fromiter((_CAT_CODES.get(c, 0) if isinstance(c, str) else
                            _CAT_CODES.get(str(c), 0) for c in cols["category"]), np.int16, n)
        for i in np.flatnonzero(cats == 0):
            reject(i, "unknown category", cols["category"][i])

        rep_ids = self.rep_ids
        reps = np.empty(n, np.int32)
        for i, r in enumerate(cols["reporter"]):
            if r is None or r == "":
                reps[i] = -1
            else:
                reps[i] = rep_ids.setdefault(r if isinstance(r, str) else str(r), len(rep_ids))
        for i in np.flatnonzero(reps < 0):
            reject(i, "missing reporter", "")

        ts = _ts_column(cols["ts"])
        for i in np.flatnonzero(ts < 0):
            reject(i, "bad timestamp", cols["ts"][i])

        comp = np.full(n, -1, np.int32)
        if "company" in cols:
            comp_ids = self.comp_ids
            for i, c in enumerate(cols["company"]):
                if c:
                    c = str(c).strip()[:100]
                    if c:
                        comp[i] = comp_ids.setdefault(c, len(comp_ids))
        ring = _floats(cols.get("ring_s"), n)
        talk = _floats(cols.get("talk_s"), n)
        answered = np.full(n, -1, np.int8)
        if "answered" in cols:
            answered = np.fromiter((_bool(v) for v in cols["answered"]), np.int8, n)
        direction = np.full(n, -1, np.int8)
        if "direction" in cols:
            direction = np.fromiter((0 if v == "in" else 1 if v == "out" else -1
                                     for v in cols["direction"]), np.int8, n)
        ok = ~bad
        self.parts.append(tuple(a[ok] for a in (keys, reps, cats, ts, comp, ring, talk, answered,
                                                  direction)))

    def finish(self) -> TagEvents:
        dtypes = (np.int64, np.int32, np.int16, np.int64, np.int32, np.float32, np.float32, np.int8,
                  np.int8)
        if self.parts:
            cols = [np.concatenate([p[j] for p in self.parts]) for j in range(len(dtypes))]
        else:
            cols = [np.empty(0, d) for d in dtypes]
        self.parts = []
        return TagEvents(*cols, reporters=list(self.rep_ids), companies=list(self.comp_ids))


def _ts_column(values: list) -> np.ndarray:
    """Vectorised parse_ts over a column: -1 where invalid. Fast paths for all-ISO or all-epoch."""
    n = len(values)
    if n and all(type(v) is str for v in values):
        arr = np.array(values)
        if arr.dtype.kind == "U":
            has_dash = np.char.find(arr, "-") > 0
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # numpy warns about (but applies) UTC offsets
                    if has_dash.all():
                        return arr.astype("datetime64[s]").astype(np.int64)
                    if not has_dash.any():
                        v = arr.astype(np.float64)
                        if np.isfinite(v).all() and (v >= 0).all():
                            v = np.where(v > MS_THRESHOLD, v / 1000.0, v)
                            return v.astype(np.int64)
            except (ValueError, TypeError, OverflowError):
                pass
    out = np.empty(n, np.int64)
    for i, v in enumerate(values):
        t = parse_ts(v)
        out[i] = -1 if t is None else t
    return out


def _floats(values, n: int) -> np.ndarray:
    out = np.full(n, np.nan, np.float32)
    if values is None:
        return out
    for i, v in enumerate(values):
        if v is None or v == "":
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            pass
    return out


def _bool(v) -> int:
    if v is True or v in ("1", "true", "True", 1):
        return 1
    if v is False or v in ("0", "false", "False", 0):
        return 0
    return -1


def _open_text(path: Path):
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


def _kind(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".gz",):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".db", ".sqlite", ".sqlite3")):
        return "sqlite"
    return "csv"


def _read_csv(path: Path, b: _Builder, report: BadRowReport, columns: dict[str, str] | None) -> None:
    with _open_text(path) as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise IngestError(f"{path}: not a readable CSV file ({exc})") from None
        header = [h.strip().lstrip("\ufeff").lower() for h in header]
        rename = {v.lower(): k for k, v in (columns or {}).items()}
        header = [rename.get(h, h) for h in header]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise IngestError(f"{path}: missing column(s) {', '.join(missing)}; a tags CSV needs a "
                              f"header with {','.join(REQUIRED)} (found: {','.join(header)})")
        idx = {c: header.index(c) for c in REQUIRED + OPTIONAL if c in header}
        width = max(idx[c] for c in REQUIRED) + 1
        full = max(idx.values()) + 1
        row_no = 1
        while True:
            try:
                rows = list(islice(reader, CHUNK_ROWS))
            except csv.Error as exc:  # e.g. NUL byte: report and skip the rest of this chunk
                report.rows += 1
                report.add(row_no + 1, "unreadable CSV line", exc)
                continue
            if not rows:
                break
            lens = np.fromiter(map(len, rows), np.int64, len(rows))
            if (lens >= full).all():  # fast path: every row complete
                nos = list(range(row_no + 1, row_no + 1 + len(rows)))
                row_no += len(rows)
                report.rows += len(rows)
                b.add(nos, {c: [r[i] for r in rows] for c, i in idx.items()})
                continue
            good, nos = [], []
            for r in rows:
                row_no += 1
                if len(r) < width:
                    if not r or (len(r) == 1 and not r[0].strip()):
                        continue  # blank line
                    report.rows += 1
                    report.add(row_no, "too few columns", ",".join(r))
                    continue
                if len(r) < full:
                    r = r + [""] * (full - len(r))
                good.append(r)
                nos.append(row_no)
            report.rows += len(good)
            b.add(nos, {c: [r[i] for r in good] for c, i in idx.items()})


def _dict_chunks(rows: Iterable[Any], b: _Builder, report: BadRowReport, first_row: int = 1,
                 columns: dict[str, str] | None = None) -> None:
    it = iter(rows)
    row_no = first_row - 1
    fields = REQUIRED + OPTIONAL
    rename = columns or {}
    while True:
        chunk = list(islice(it, CHUNK_ROWS))
        if not chunk:
            break
        good, nos = [], []
        for d in chunk:
            row_no += 1
            report.rows += 1
            if isinstance(d, dict):
                good.append(d)
                nos.append(row_no)
            elif isinstance(d, _Bad):
                report.add(row_no, d.reason, d.text)
            else:
                report.add(row_no, "row is not an object", d)
        cols = {c: [d.get(rename.get(c, c)) for d in good] for c in fields}
        for c in OPTIONAL:
            if all(v is None for v in cols[c]):
                del cols[c]
        b.add(nos, cols)


@dataclass
class _Bad:
    reason: str
    text: str


def _jsonl_rows(path: Path) -> Iterator[Any]:
    """Parsed JSONL objects; unparseable lines come back as `_Bad` markers (blank lines skipped)."""
    with _open_text(path) as f:
        while True:
            lines = list(islice(f, 20_000))
            if not lines:
                return
            lines = [ln for ln in lines if ln.strip()]
            try:  # one C-level parse per block; fall back line by line on any error
                yield from json.loads("[" + ",".join(lines) + "]")
                continue
            except ValueError:
                pass
            for ln in lines:
                try:
                    yield json.loads(ln)
                except ValueError:
                    yield _Bad("invalid JSON", ln.strip())


def sqlite_rows(path: str | Path, table: str | None = None) -> Iterator[dict]:
    """Rows of the tag table of an SQLite store as dicts (the table with the tag columns if not named)."""
    con = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        if table is None:
            names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for name in names:
                cols = {r[1].lower() for r in con.execute(f'PRAGMA table_info("{name}")')}
                if set(REQUIRED) <= cols:
                    table = name
                    break
            if table is None:
                raise IngestError(f"{path}: no table with columns {','.join(REQUIRED)} "
                                  f"(tables: {', '.join(names) or 'none'})")
        cur = con.execute(f'SELECT * FROM "{table}"')
        names = [d[0].lower() for d in cur.description]
        while True:
            batch = cur.fetchmany(CHUNK_ROWS)
            if not batch:
                break
            for r in batch:
                yield dict(zip(names, r))
    except sqlite3.DatabaseError as exc:
        raise IngestError(f"{path}: cannot read SQLite store ({exc})") from None
    finally:
        con.close()


def read_tags(source, region: str = "CN", columns: dict[str, str] | None = None
              ) -> tuple[TagEvents, BadRowReport]:
    """Read tag events from a path (CSV/JSONL, optionally .gz, or an SQLite store) or an iterable of
    dict rows; returns (TagEvents, BadRowReport). `columns` maps our field names to the source's."""
    report = BadRowReport()
    b = _Builder(region, report)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise IngestError(f"{path}: no such file; pass a tags CSV/JSONL file or SQLite store")
        kind = _kind(path)
        if kind == "csv":
            _read_csv(path, b, report, columns)
        elif kind == "jsonl":
            _dict_chunks(_jsonl_rows(path), b, report, columns=columns)
        else:
            _dict_chunks(sqlite_rows(path), b, report, columns=columns)
    else:
        _dict_chunks(source, b, report, columns=columns)
    return b.finish(), report


# --- side files: verified businesses, appeals, recycled numbers ------------------------------------

def _side_rows(source, need: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise IngestError(f"{path}: no such file")
        if _kind(path) == "jsonl":
            for i, d in enumerate(_jsonl_rows(path), 1):
                yield i, d if isinstance(d, dict) else {}
            return
        with _open_text(path) as f:
            reader = csv.DictReader(f)
            fields = [h.strip().lower() for h in (reader.fieldnames or [])]
            missing = [c for c in need if c not in fields]
            if missing:
                raise IngestError(f"{path}: missing column(s) {', '.join(missing)}; "
                                  f"expected header {','.join(need)}")
            for i, d in enumerate(reader, 2):
                yield i, {k.strip().lower(): v for k, v in d.items() if k}
    else:
        for i, d in enumerate(source, 1):
            yield i, d if isinstance(d, dict) else {}


def read_verified(source, region: str = "CN") -> tuple[dict[int, str], BadRowReport]:
    """Verified businesses: number key -> company name (file columns number,company)."""
    out, rep = {}, BadRowReport()
    for i, d in _side_rows(source, ("number", "company")):
        rep.rows += 1
        k = key_of(d.get("number"), region)
        if k is None:
            rep.add(i, "unparseable number", d.get("number"))
            continue
        out[k] = (d.get("company") or "").strip()
    return out, rep


@dataclass(frozen=True)
class Appeal:
    """An accepted appeal: `codes` are suppressed for evidence older than `filed_ts`."""

    codes: frozenset[int]  # category codes appealed
    filed_ts: int  # epoch seconds


def read_appeals(source, region: str = "CN") -> tuple[dict[int, list[Appeal]], BadRowReport]:
    """Accepted appeals per number key (columns number,categories,filed_ts,accepted); rejected
    appeals (accepted 0/false) are skipped without counting as bad rows."""
    out: dict[int, list[Appeal]] = {}
    rep = BadRowReport()
    for i, d in _side_rows(source, ("number", "categories", "filed_ts")):
        rep.rows += 1
        k = key_of(d.get("number"), region)
        if k is None:
            rep.add(i, "unparseable number", d.get("number"))
            continue
        ts = parse_ts(d.get("filed_ts"))
        if ts is None:
            rep.add(i, "bad timestamp", d.get("filed_ts"))
            continue
        acc = d.get("accepted", 1)
        if _bool(acc) == 0:
            continue
        cats = d.get("categories") or ""
        cats = cats if isinstance(cats, (list, tuple)) else str(cats).split(";")
        codes = {_CAT_CODES.get(str(c).strip(), 0) for c in cats if str(c).strip()}
        if not codes or 0 in codes:
            rep.add(i, "unknown category", d.get("categories"))
            continue
        out.setdefault(k, []).append(Appeal(frozenset(codes), ts))
    return out, rep


def read_recycled(source, region: str = "CN") -> tuple[dict[int, int], BadRowReport]:
    """Reissue times per number key (columns number,reissued_ts); the latest reissue wins."""
    out: dict[int, int] = {}
    rep = BadRowReport()
    for i, d in _side_rows(source, ("number", "reissued_ts")):
        rep.rows += 1
        k = key_of(d.get("number"), region)
        if k is None:
            rep.add(i, "unparseable number", d.get("number"))
            continue
        ts = parse_ts(d.get("reissued_ts"))
        if ts is None:
            rep.add(i, "bad timestamp", d.get("reissued_ts"))
            continue
        out[k] = max(ts, out.get(k, ts))
    return out, rep
