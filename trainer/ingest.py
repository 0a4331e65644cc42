"""Ingest tag events into column arrays: CSV / JSONL files, SQLite stores or any iterable of dicts.

The hot path is column-wise: rows are read in chunks, each column is converted with a per-distinct-
value cache (number keys, category codes, reporter ids are interned to ints) and appended to numpy
arrays. No per-event Python objects survive a chunk (10 M events: 220 MB of columns). Plain CSV
is split in C a block at a time (`_csv_blocks`); numbers and reporter ids of big chunks are interned
through a hashed numpy table (`BytesTable` in trainer/ingest_columns.py), so Python code runs once per new distinct value, not
once per row; see docs/consensus.md, "Speed and memory".

Bad rows are counted per reason with a few samples in a `BadRowReport`; they are never fatal. Only
file-level problems (missing file, missing required columns) raise `IngestError`.
"""
from __future__ import annotations

import contextlib
import csv
import gzip
import io
import sqlite3
import zlib
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice, repeat
from pathlib import Path
from typing import Any, Iterable, Iterator

from callmark import progress, safejson
from callmark.numbers import key_of
from trainer.ingest_columns import CATEGORY_CODES, MS_THRESHOLD, Builder, TagEvents, parse_bool, parse_ts

__all__ = ["REQUIRED", "OPTIONAL", "IngestError", "BadRowReport", "BadRow", "TagEvents", "MS_THRESHOLD",
           "parse_ts", "read_tags", "iter_rows", "sqlite_rows", "read_verified", "Appeal", "read_appeals",
           "read_recycled"]

REQUIRED = ("number", "reporter", "category", "ts")
OPTIONAL = ("company", "note", "ring_s", "talk_s", "answered", "direction", "event_id")
CHUNK_ROWS = 100_000  # rows converted per chunk (bounds the transient Python objects)
CSV_BLOCK_CHARS = 1 << 23  # characters of plain CSV split per block (fast path)
CSV_CHUNK_ROWS = 200_000  # rows per chunk on the fast path (fewer repeats of its distinct values)
MAX_SAMPLES = 100  # bad-row samples kept per report
SAMPLES_PER_REASON = 5  # ... and per reason (so every reason shows its first line numbers)


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
        n = self.counts[reason] = self.counts.get(reason, 0) + 1
        if n <= SAMPLES_PER_REASON and len(self.samples) < MAX_SAMPLES:
            self.samples.append((int(row_no), reason, str(excerpt)[:120]))

    def summary(self) -> str:
        """One line per reason, e.g. 'rows 1000, bad 3: unparseable number 2, bad timestamp 1'."""
        parts = ", ".join(f"{r} {n}" for r, n in sorted(self.counts.items(), key=lambda x: -x[1]))
        return f"rows {self.rows}, good {self.good}, bad {self.bad}" + (f": {parts}" if parts else "")

    def lines(self, reason: str | None = None) -> list[int]:
        """Line numbers of the sampled bad rows (of one reason, or all)."""
        return [s[0] for s in self.samples if reason is None or s[1] == reason]

    def format(self, name: str = "", limit: int = 5) -> str:
        """The one human form of a report, used by every command: the summary line, then one line
        per reason with its count and first line numbers, e.g.
        'tags.jsonl: rows 1000, good 997, bad 3' / '  irregular number: too_short 2 (lines 7, 19)'."""
        head = (f"{name}: " if name else "") + self.summary().split(":")[0]
        out = [head]
        for reason, n in sorted(self.counts.items(), key=lambda x: (-x[1], x[0])):
            where = [s for s in self.samples if s[1] == reason][:limit]
            lines = ", ".join(str(s[0]) for s in where)
            out.append(f"  {reason}: {n}" + (f" (lines {lines}{', …' if n > len(where) else ''})"
                                             if lines else ""))
        return "\n".join(out)

    def merge(self, other: "BadRowReport") -> "BadRowReport":
        """Add another report's rows, counts and samples (in place); returns self."""
        self.rows += other.rows
        for r, n in other.counts.items():
            self.counts[r] = self.counts.get(r, 0) + n
        have = Counter(s[1] for s in self.samples)
        for s in other.samples:
            if have[s[1]] < SAMPLES_PER_REASON and len(self.samples) < MAX_SAMPLES:
                have[s[1]] += 1
                self.samples.append(s)
        return self

    def to_dict(self) -> dict:
        """JSON form (build.json, import reports): rows, good, bad, counts per reason, samples
        [line, reason, excerpt]."""
        return {"rows": self.rows, "good": self.good, "bad": self.bad, "counts": dict(self.counts),
                "samples": [list(s) for s in self.samples]}

    @classmethod
    def from_dict(cls, d: dict) -> "BadRowReport":
        if not isinstance(d, dict) or not isinstance(d.get("rows"), int) or d["rows"] < 0:
            raise IngestError("bad-row report needs a non-negative integer 'rows'")
        counts = {str(k): int(v) for k, v in dict(d.get("counts", {})).items()}
        if sum(counts.values()) > d["rows"]:
            raise IngestError("bad-row report counts exceed its rows")
        return cls(d["rows"], counts, [(int(a), str(b), str(c)) for a, b, c in d.get("samples", [])])


class _Counted(io.RawIOBase):
    """A raw file that reports the bytes read (of the file on disk, compressed or not)."""

    def __init__(self, raw, update):
        self.raw, self.update = raw, update

    def readable(self):
        return True

    def readinto(self, b):
        n = self.raw.readinto(b)
        if n:
            self.update(n)
        return n

    def seekable(self):
        return self.raw.seekable()

    def seek(self, pos, whence=io.SEEK_SET):
        return self.raw.seek(pos, whence)

    def tell(self):
        return self.raw.tell()

    def close(self):
        self.raw.close()
        super().close()


def _open_text(path: Path, update=None):
    """The file as text; `update(n_bytes)` is called as bytes are read from disk (progress)."""
    raw = open(path, "rb", buffering=0)
    if update is not None:
        raw = _Counted(raw, update)
    buffered = io.BufferedReader(raw, 1 << 20)
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(buffered, "rb"), encoding="utf-8", errors="replace", newline="")
    return io.TextIOWrapper(buffered, encoding="utf-8", errors="replace", newline="")


@contextlib.contextmanager
def _reading(path: Path):
    """Errors while reading `path` become one IngestError naming it (truncated or garbage .gz,
    unreadable file, a CSV field over 128 KiB): never blamed on another file, never "Aborted!"."""
    try:
        yield
    except IngestError:
        raise
    except EOFError as exc:
        raise IngestError(f"{path}: truncated compressed file ({exc}); copy it again") from None
    except (OSError, zlib.error, csv.Error, RecursionError) as exc:
        what = "not a gzip file or corrupt" if isinstance(exc, (gzip.BadGzipFile, zlib.error)) else "cannot read"
        raise IngestError(f"{path}: {what} ({type(exc).__name__}: {exc})") from None


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


def _read_csv(path: Path, b: Builder, report: BadRowReport, columns: dict[str, str] | None) -> None:
    with progress.bytes_bar(path.stat().st_size, f"read {path.name}") as update, _open_text(path, update) as f:
        first = f.readline()
        if not first.strip():
            return
        try:
            header = next(csv.reader([first]), None)
        except csv.Error as exc:
            raise IngestError(f"{path}: not a readable CSV file ({exc})") from None
        if header is None:
            return
        header = [h.strip().lstrip("\ufeff").lower() for h in header]
        rename = {v.lower(): k for k, v in (columns or {}).items()}
        header = [rename.get(h, h) for h in header]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise IngestError(f"{path}: missing column(s) {', '.join(missing)}; a tags CSV needs a "
                              f"header with {','.join(REQUIRED)} (found: {','.join(header)})")
        idx = {c: header.index(c) for c in REQUIRED + OPTIONAL if c in header}
        shape = (len(header), max(idx[c] for c in REQUIRED) + 1, max(idx.values()) + 1)
        _csv_blocks(f, b, report, idx, shape)


def _csv_blocks(f, b: Builder, report: BadRowReport, idx: dict[str, int], shape) -> None:
    """Fast path for plain CSV (no quotes): blocks of text split on newlines and commas in C.
    A block with a quote or a bare carriage return hands the rest of the file to the csv module."""
    ncol = shape[0]
    row_no = 1
    carry = ""
    while True:
        more = f.read(CSV_BLOCK_CHARS)
        text = carry + more
        if not text:
            return None
        if more:  # cut at the last newline; the partial line waits for the next block
            end = text.rfind("\n") + 1
            if end == 0:
                carry = text
                continue
            carry, text = text[end:], text[:end]
        else:
            carry = ""
        if '"' in text or "\r" in text.replace("\r\n", "\n"):
            f.seek(0)  # rewind: the csv module reads from this block on (quotes, bare CRs)
            rest = csv.reader(f)
            for _ in range(row_no):
                next(rest, None)
            _csv_rows(rest, b, report, idx, shape, row_no)
            return None
        lines = text.replace("\r\n", "\n").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if not lines:
            continue
        counts = set(map(str.count, lines, repeat(",")))
        if counts == {ncol - 1}:
            flat = ",".join(lines).split(",")
            nos = range(row_no + 1, row_no + 1 + len(lines))
            row_no += len(lines)
            report.rows += len(lines)
            for a in range(0, len(lines), CSV_CHUNK_ROWS):
                z = min(len(lines), a + CSV_CHUNK_ROWS)
                b.add(nos[a:z], {c: flat[a * ncol + i:z * ncol:ncol] for c, i in idx.items()})
        else:
            row_no = _csv_rows(csv.reader(lines), b, report, idx, shape, row_no)


def _csv_rows(reader, b: Builder, report: BadRowReport, idx: dict[str, int], shape,
              row_no: int) -> int:
    """General path: rows from a csv reader, checked one by one; returns the last row number."""
    _, width, full = shape
    while True:
        try:
            rows = list(islice(reader, CHUNK_ROWS))
        except csv.Error as exc:  # e.g. a broken quote: report and skip the rest of this chunk
            report.rows += 1
            report.add(row_no + 1, "unreadable CSV line", exc)
            continue
        if not rows:
            return row_no
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


def _dict_chunks(rows: Iterable[Any], b: Builder, report: BadRowReport, first_row: int = 1,
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
            elif isinstance(d, BadRow):
                report.add(row_no, d.reason, d.text)
            else:
                report.add(row_no, "row is not an object", d)
        cols = {}
        for c in fields:  # C-level loops: map over the rows, count the missing values
            col = list(map(dict.get, good, repeat(rename.get(c, c))))
            if c in REQUIRED or col.count(None) < len(col):
                cols[c] = col
        b.add(nos, cols)


@dataclass
class BadRow:
    """A row that could not be read at all (e.g. invalid JSON): the reason and its text."""

    reason: str
    text: str




def iter_rows(path: str | Path, kind: str | None = None) -> Iterator[tuple[int, Any]]:
    """(line number, row) of a CSV (header row = line 1), JSONL (.gz too) or SQLite file; a row is
    a dict (CSV keys as in the header) or a BadRow. Raises IngestError for a missing file."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    kind = kind or _kind(path)
    if kind == "sqlite":
        yield from enumerate(sqlite_rows(path), 1)
        return
    with _open_text(path) as f:
        if kind == "jsonl":
            for i, ln in enumerate(f, 1):
                if not ln.strip():
                    continue
                try:
                    yield i, safejson.loads(ln, "line")
                except safejson.JSONInputError as exc:
                    yield i, BadRow("invalid JSON", f"{exc.reason}: {ln.strip()[:160]}")
            return
        reader = csv.reader(f)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise IngestError(f"{path}: not a readable CSV file ({exc})") from None
        if header is None:
            return
        header = [h.strip().lstrip("\ufeff") for h in header]
        line = 1
        while True:
            try:
                r = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line += 1
                yield line, BadRow("unreadable CSV line", str(exc))
                continue
            line = reader.line_num
            if not r or (len(r) == 1 and not r[0].strip()):
                continue
            if len(r) != len(header):
                yield line, BadRow("wrong number of columns", ",".join(r))
                continue
            yield line, dict(zip(header, r))


def _jsonl_rows(path: Path) -> Iterator[Any]:
    """Parsed JSONL objects; unparseable lines come back as `BadRow` markers (blank lines skipped)."""
    with progress.bytes_bar(path.stat().st_size, f"read {path.name}") as update, _open_text(path, update) as f:
        while True:
            lines = list(islice(f, 20_000))
            if not lines:
                return
            lines = [ln for ln in lines if ln.strip()]
            try:  # one C-level parse per block (callmark.safejson limits); line by line on any error
                yield from safejson.loads("[" + ",".join(lines) + "]", str(path), max_bytes=1 << 40,
                                          max_depth=safejson.MAX_DEPTH + 1)
                continue
            except ValueError:
                pass
            for ln in lines:
                try:
                    yield safejson.loads(ln, "line")
                except safejson.JSONInputError as exc:
                    yield BadRow("invalid JSON", f"{exc.reason}: {ln.strip()[:160]}")


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
    b = Builder(region, report)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise IngestError(f"{path}: no such file; pass a tags CSV/JSONL file or SQLite store")
        kind = _kind(path)
        with _reading(path):
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
        with _reading(path):
            yield from _side_file_rows(path, need)
    else:
        for i, d in enumerate(source, 1):
            yield i, d if isinstance(d, dict) else {}


def _side_file_rows(path: Path, need: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
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


def _key_and_ts(i: int, d: dict, ts_column: str, region: str, rep: BadRowReport) -> tuple[int, int] | None:
    """(number key, epoch seconds) of a side-file row, or None after recording why it is bad."""
    k = key_of(d.get("number"), region)
    if k is None:
        rep.add(i, "unparseable number", d.get("number"))
        return None
    ts = parse_ts(d.get(ts_column))
    if ts is None:
        rep.add(i, "bad timestamp", d.get(ts_column))
        return None
    return k, ts


def read_appeals(source, region: str = "CN") -> tuple[dict[int, list[Appeal]], BadRowReport]:
    """Accepted appeals per number key (columns number,categories,filed_ts,accepted); rejected
    appeals (accepted 0/false) are skipped without counting as bad rows."""
    out: dict[int, list[Appeal]] = {}
    rep = BadRowReport()
    for i, d in _side_rows(source, ("number", "categories", "filed_ts")):
        rep.rows += 1
        keyed = _key_and_ts(i, d, "filed_ts", region, rep)
        if keyed is None:
            continue
        k, ts = keyed
        acc = d.get("accepted", 1)
        if parse_bool(acc) == 0:
            continue
        cats = d.get("categories") or ""
        cats = cats if isinstance(cats, (list, tuple)) else str(cats).split(";")
        codes = {CATEGORY_CODES.get(str(c).strip(), 0) for c in cats if str(c).strip()}
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
        keyed = _key_and_ts(i, d, "reissued_ts", region, rep)
        if keyed is None:
            continue
        k, ts = keyed
        out[k] = max(ts, out.get(k, ts))
    return out, rep
