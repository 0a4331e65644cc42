"""Column building for the ingest: TagEvents, value interning, time parsing (see trainer/ingest.py).

`Builder` turns chunks of column lists into numpy arrays. Numbers and reporter ids are mapped
through dicts with `map` (C loops), or for big chunks of ASCII strings through `BytesTable`, a
hashed numpy table, so Python code runs once per new distinct value rather than once per row.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import repeat
from typing import Any, Protocol

import numpy as np

from callmark.categories import CATEGORIES
from callmark.numbers import key_of, normalize



class RowReport(Protocol):
    """Where the builder counts rejected rows (trainer.ingest.BadRowReport implements it)."""

    def add(self, row_no: int, reason: str, excerpt: Any = "") -> None: ...

def number_reason(raw, region: str) -> str:
    """The bad-row reason of a number without a key: 'irregular number: <why>' when digits were
    read (a fragment, a bare code, a number outside the plan), else 'unparseable number'."""
    facts = normalize(raw if isinstance(raw, str) else str(raw), region)
    return f"irregular number: {facts.irregular}" if facts.e164 else "unparseable number"


BULK_MIN_ROWS = 4096  # chunks of at least this many strings intern numbers/reporters in numpy
BULK_MAX_NEW_SHARE = 0.75  # ... unless the previous chunk had more new values than this share
MS_THRESHOLD = 10**11  # epoch values above this are taken as milliseconds


@dataclass
class TagEvents:
    """Tag events as parallel numpy columns (one entry per accepted row)."""

    key: np.ndarray  # int64 number key (callmark.numbers)
    reporter: np.ndarray  # int32 index into `reporters`
    category: np.ndarray  # int16 category code (callmark.categories)
    ts: np.ndarray  # int64 epoch seconds UTC
    company: np.ndarray  # int32 index into `companies`, -1 when absent
    # (a column no row had is a read-only constant view: company, ring_s, talk_s, answered,
    # direction)
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


CATEGORY_CODES: dict[str, int] = {}
for _c in CATEGORIES:
    CATEGORY_CODES[_c.key] = _c.code
    CATEGORY_CODES[_c.key.upper()] = _c.code
    CATEGORY_CODES[str(_c.code)] = _c.code
    CATEGORY_CODES[_c.key.replace("_", "-")] = _c.code
    CATEGORY_CODES[_c.en.lower()] = _c.code


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


class Builder:
    """Converts chunks of column lists to arrays, with caches shared across chunks.

    Columns are mapped through dicts with `map` (C loops); Python-level loops run only over the
    new distinct values of a chunk and over rejected rows."""

    def __init__(self, region: str, report: RowReport):
        self.region = region
        self.report = report
        self.num_cache: dict = {}  # raw value -> key; -1 invalid, -2 missing
        self.rep_ids: dict = {}  # raw value -> reporter index; -1 missing
        self.rep_names: list[str] = []
        self.comp_ids: dict[str, int] = {}
        self.parts: list[tuple[np.ndarray, ...]] = []
        self.num_table = BytesTable()  # bulk paths for big chunks of strings
        self.rep_table = BytesTable()
        self.new_share: dict[str, float] = {}  # column -> share of rows of the last chunk that
        # brought a new distinct value

    def _key(self, raw) -> int:
        if raw is None or raw == "":
            return -2
        k = key_of(raw, self.region)
        return -1 if k is None else k

    def _bulk(self, column: str, raw) -> bool:
        """Use the hashed table for this chunk? Not for small chunks, nor while most rows bring a
        new value (e.g. one-off reporters), where plain dicts are cheaper."""
        return (len(raw) >= BULK_MIN_ROWS and type(raw[0]) is str
                and self.new_share.get(column, 0.0) <= BULK_MAX_NEW_SHARE)

    def _numbers(self, raw) -> np.ndarray:
        if self._bulk("number", raw):
            keys = self._numbers_bulk(raw)
            if keys is not None:
                return keys
        cache = self.num_cache
        before = len(cache)
        keys = self._numbers_dict(raw)
        self.new_share["number"] = (len(cache) - before) / max(1, len(raw))
        return keys

    def _numbers_dict(self, raw) -> np.ndarray:
        cache = self.num_cache
        try:
            keys = list(map(cache.get, raw))
        except TypeError:  # unhashable values (JSON lists / objects): no number
            keys = [cache.get(s) if isinstance(s, (str, int, float)) else -1 for s in raw]
        if None in keys:  # new distinct values (first seen order), then one more mapping pass
            try:
                for s in dict.fromkeys(raw):
                    if s not in cache:
                        cache[s] = self._key(s)
                keys = list(map(cache.__getitem__, raw))
            except TypeError:
                keys = [cache.setdefault(s, self._key(s)) if k is None and isinstance(
                    s, (str, int, float)) else -1 if k is None else k for s, k in zip(raw, keys)]
        return np.array(keys, np.int64)

    def _numbers_bulk(self, raw) -> np.ndarray | None:
        """Numbers of a big chunk of strings via the hashed table: Python runs once per new distinct
        value of the whole file. None when not applicable (non-ASCII, long values, collision)."""
        found = self.num_table.lookup(raw)
        if found is None:
            return None
        vals, new_first, commit = found
        self.new_share["number"] = new_first.size / len(raw)
        new_vals = [self._key(raw[i]) for i in new_first.tolist()]
        return commit(np.array(new_vals, np.int64))

    def _reporters_bulk(self, raw) -> np.ndarray | None:
        found = self.rep_table.lookup(raw)
        if found is None:
            return None
        vals, new_first, commit = found
        self.new_share["reporter"] = new_first.size / len(raw)
        ids, names = self.rep_ids, self.rep_names
        new_vals = []
        for i in new_first.tolist():  # first-seen order
            r = raw[i]
            v = ids.get(r)
            if v is None:
                v = -1 if r == "" else len(names)
                ids[r] = v
                if v >= 0:
                    names.append(r)
            new_vals.append(v)
        return commit(np.array(new_vals, np.int64)).astype(np.int32)

    def _reporters(self, raw) -> np.ndarray:
        if self._bulk("reporter", raw):
            reps = self._reporters_bulk(raw)
            if reps is not None:
                return reps
        before = len(self.rep_names)
        reps = self._reporters_dict(raw)
        self.new_share["reporter"] = (len(self.rep_names) - before) / max(1, len(raw))
        return reps

    def _reporters_dict(self, raw) -> np.ndarray:
        ids = self.rep_ids
        try:
            new = [r for r in dict.fromkeys(raw) if r not in ids]
        except TypeError:  # unhashable values: use their text
            raw = [r if isinstance(r, (str, int, float)) or r is None else str(r) for r in raw]
            new = [r for r in dict.fromkeys(raw) if r not in ids]
        names = self.rep_names
        for r in new:
            if r is None or r == "":
                ids[r] = -1
            elif isinstance(r, str):
                ids[r] = len(names)
                names.append(r)
            else:  # 5 and "5" are the same reporter
                text = str(r)
                if text not in ids:
                    ids[text] = len(names)
                    names.append(text)
                ids[r] = ids[text]
        return np.array(list(map(ids.__getitem__, raw)), np.int32)

    def _categories(self, raw) -> np.ndarray:
        try:
            codes = list(map(CATEGORY_CODES.get, raw, repeat(0)))
        except TypeError:
            codes = [0] * len(raw)
        if 0 in codes:  # retry non-string values by their text (JSON numbers)
            for i in [i for i, c in enumerate(codes) if c == 0]:
                v = raw[i]
                if v is not None and not isinstance(v, str):
                    codes[i] = CATEGORY_CODES.get(str(v), 0)
        return np.array(codes, np.int16)

    def add(self, row_nos, cols: dict[str, list]) -> None:
        """Convert one chunk; `row_nos` are the source line numbers of its rows (list or range)."""
        n = len(row_nos)
        if not n:
            return
        bad = np.zeros(n, bool)
        report = self.report

        def reject(where: np.ndarray, reason: str, column: str | None) -> None:
            for i in where.tolist():
                if not bad[i]:
                    bad[i] = True
                    report.add(row_nos[i], reason, cols[column][i] if column else "")

        raw_nums = cols["number"]
        keys = self._numbers(raw_nums)
        if (keys < 0).any():
            reject(np.flatnonzero(keys == -2), "missing number", "number")
            for i in np.flatnonzero(keys == -1).tolist():  # say why: irregular or unreadable
                if not bad[i]:
                    bad[i] = True
                    report.add(row_nos[i], number_reason(raw_nums[i], self.region), raw_nums[i])
        cats = self._categories(cols["category"])
        reject(np.flatnonzero(cats == 0), "unknown category", "category")
        reps = self._reporters(cols["reporter"])
        reject(np.flatnonzero(reps < 0), "missing reporter", None)
        ts = ts_column(cols["ts"])
        reject(np.flatnonzero(ts < 0), "bad timestamp", "ts")

        comp = None  # absent columns stay None until `finish`
        if "company" in cols and any(cols["company"]):
            comp = np.full(n, -1, np.int32)
            comp_ids = self.comp_ids
            for i, c in enumerate(cols["company"]):
                if c:
                    c = str(c).strip()[:100]
                    if c:
                        comp[i] = comp_ids.setdefault(c, len(comp_ids))
        ring = _floats(cols["ring_s"], n) if "ring_s" in cols else None
        talk = _floats(cols["talk_s"], n) if "talk_s" in cols else None
        answered = direction = None
        if "answered" in cols:
            answered = np.fromiter((parse_bool(v) for v in cols["answered"]), np.int8, n)
        if "direction" in cols:
            direction = np.fromiter((0 if v == "in" else 1 if v == "out" else -1
                                     for v in cols["direction"]), np.int8, n)
        arrays = [keys, reps, cats, ts, comp, ring, talk, answered, direction]
        if bad.any():
            ok = ~bad
            arrays = [None if a is None else a[ok] for a in arrays]
        self.parts.append(arrays)

    def finish(self) -> TagEvents:
        """Concatenate the chunks one column at a time (freeing them as it goes); a column that no
        row had becomes a read-only constant view (no memory per event)."""
        parts, self.parts = self.parts, []
        lens = [int(p[0].shape[0]) for p in parts]
        n = sum(lens)
        cols = []
        for j, (dtype, fill) in enumerate(COLUMN_FILL):
            pieces = [p[j] for p in parts]
            if all(x is None for x in pieces):
                cols.append(np.broadcast_to(np.array(fill, dtype), (n,)))
            else:
                cols.append(np.concatenate([np.full(m, fill, dtype) if x is None else x
                                            for x, m in zip(pieces, lens)]))
            for p in parts:
                p[j] = None
            del pieces
        return TagEvents(*cols, reporters=list(self.rep_names), companies=list(self.comp_ids))


# dtype and fill value of each TagEvents column, in field order
COLUMN_FILL = ((np.int64, 0), (np.int32, 0), (np.int16, 0), (np.int64, 0), (np.int32, -1),
               (np.float32, np.nan), (np.float32, np.nan), (np.int8, -1), (np.int8, -1))


class BytesTable:
    """Distinct short ASCII strings seen so far -> an int, found by a 64-bit hash of their bytes
    with numpy; every hit is verified against the stored bytes (a collision disables the table)."""

    WORDS = 4  # values up to 32 bytes

    def __init__(self):
        self.sorted_h = np.zeros(0, np.uint64)  # hashes of rows [0, merged), sorted
        self.sorted_r = np.zeros(0, np.int64)  # their rows
        self.recent: dict[int, int] = {}  # hash -> row for rows added since the last merge
        self.words = np.zeros((1024, self.WORDS), np.uint64)
        self.values = np.zeros(1024, np.int64)
        self.hashes = np.zeros(1024, np.uint64)
        self.n = 0
        self.broken = False

    def _rows(self, uh: np.ndarray) -> np.ndarray:
        """Row of each hash, -1 when unknown (numpy search, then the small recent dict)."""
        rows = np.full(uh.size, -1, np.int64)
        if self.sorted_h.size:
            pos = np.minimum(np.searchsorted(self.sorted_h, uh), self.sorted_h.size - 1)
            hit = self.sorted_h[pos] == uh
            rows[hit] = self.sorted_r[pos[hit]]
        if self.recent:
            miss = np.flatnonzero(rows < 0)
            rows[miss] = np.fromiter(map(self.recent.get, uh[miss].tolist(), repeat(-1)),
                                     np.int64, miss.size)
        return rows

    def _merge(self) -> None:
        """Fold the recent dict into the sorted arrays (amortised: when it outgrows a quarter)."""
        if len(self.recent) <= max(1 << 16, self.sorted_h.size // 4):
            return
        h = self.hashes[:self.n]
        order = np.argsort(h)
        self.sorted_h, self.sorted_r = h[order], order.astype(np.int64)
        self.recent = {}

    def lookup(self, raw):
        """(values or -1 for new, first index of each new distinct value in first-seen order,
        commit(new_values) -> values of all rows); None when not applicable."""
        if self.broken:
            return None
        try:
            arr = np.array(raw, dtype="S")
        except (UnicodeEncodeError, ValueError, TypeError):
            return None
        if arr.ndim != 1 or arr.dtype.itemsize > 8 * self.WORDS:
            return None
        arr = arr.astype(f"S{8 * self.WORDS}")
        n = arr.shape[0]
        words = arr.view(np.uint64).reshape(n, self.WORDS)
        h = words[:, 0].copy()
        for j in range(1, self.WORDS):
            h *= np.uint64(0x9E3779B97F4A7C15)
            h ^= words[:, j]
        _, first, inv = np.unique(h, return_index=True, return_inverse=True)
        inv = inv.ravel()
        if not (words == words[first[inv]]).all():  # two values share a hash in this chunk
            self.broken = True
            return None
        rows = self._rows(h[first])
        known = rows >= 0
        if not (self.words[rows[known]] == words[first[known]]).all():
            self.broken = True
            return None
        new = np.flatnonzero(~known)
        new = new[np.argsort(first[new], kind="stable")]  # first-seen order

        def commit(new_values: np.ndarray) -> np.ndarray:
            m = new.size
            if self.n + m > self.values.size:
                cap = max(2 * self.values.size, self.n + m)
                self.words = np.resize(self.words, (cap, self.WORDS))
                self.values = np.resize(self.values, cap)
                self.hashes = np.resize(self.hashes, cap)
            r = np.arange(self.n, self.n + m)
            self.words[r] = words[first[new]]
            self.values[r] = new_values
            self.hashes[r] = h[first[new]]
            self.recent.update(zip(h[first[new]].tolist(), r.tolist()))
            self.n += m
            self._merge()
            rows[new] = r
            return self.values[rows][inv]
        return None, first[new], commit


def ts_column(values: list) -> np.ndarray:
    """Vectorised parse_ts over a column: -1 where invalid. Fast paths for all-ISO or all-epoch."""
    n = len(values)
    if n and type(values[0]) is str and values[0][:1].isdigit() and "-" not in values[0]:
        try:  # integer epoch strings: one C-level pass
            v = np.array(list(map(int, values)), np.int64)
        except (ValueError, TypeError, OverflowError):
            v = None
        if v is not None and (v >= 0).all():
            return np.where(v > MS_THRESHOLD, v // 1000, v)
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


def parse_bool(v) -> int:
    if v is True or v in ("1", "true", "True", 1):
        return 1
    if v is False or v in ("0", "false", "False", 0):
        return 0
    return -1
