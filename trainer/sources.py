"""The build's one source adapter: every input of a build comes in here.

A build reads four things (docs/consensus.md): tag events, verified businesses, accepted appeals and
reissued (recycled) numbers. Tag events come from any number of inputs: the server's SQLite store
(through its Flask-free module `server.store`: no web stack is loaded; name it `store` or leave
`tags` empty) and files (CSV/JSONL, optionally .gz, e.g. written by `callmark import`). Every event
has a `source` (its source profile, callmark/sources.py; `app` when absent): events are grouped
by source so the build applies each profile's consensus policy, and events from several inputs are
one event when they share `(source, event_id)`. `read_inputs` returns them parsed, with one
bad-row report over every input; the trainer never touches `server/` anywhere else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from callmark.categories import is_key, by_key
from callmark.errors import CallmarkError
from callmark.numbers import key_of
from callmark.sources import PROFILES, SourceProfile, profile
from trainer import ingest
from trainer.ingest_columns import Builder, number_reason, parse_ts

STORE = "store"  # the `--tags` value naming the server store
CHUNK_ROWS = 50_000


class SourceError(CallmarkError):
    """An input of the build is missing or unusable (the message says which and how to fix it)."""


@dataclass
class Sources:
    """Where a build's inputs come from. ``tags`` None or empty: the store under ``data_dir``;
    otherwise a path or a list of paths, where ``store`` names the store."""

    tags: str | list[str] | None = None
    data_dir: str = "var"  # the server store (tags, accepted appeals, verified businesses)
    verified: str | None = None  # verified businesses file (number,company), added to the store's
    appeals: str | None = None  # accepted appeals file (number,categories,filed_ts[,accepted])
    recycled: str | None = None  # reissued numbers file (number,reissued_ts)
    region: str = "CN"  # region raw (non-E.164) numbers are read in

    def inputs(self) -> list[str]:
        t = self.tags
        items = [t] if isinstance(t, str) else list(t or [])
        out = []
        for item in items:
            out.extend(p.strip() for p in str(item).split(",") if p.strip())
        return out or [STORE]


@dataclass
class ListRows:
    """Rows of a pre-aggregated list source (policy `list`): one per number, latest row wins."""

    key: np.ndarray  # int64 number keys, sorted
    category: np.ndarray  # int16 category codes
    votes: np.ndarray  # int64 net votes
    ts: np.ndarray  # int64 epoch seconds of the last activity

    def __len__(self) -> int:
        return int(self.key.shape[0])


@dataclass
class BuildInputs:
    """Everything a build reads: events per source plus the side tables keyed by number key."""

    events: ingest.TagEvents  # every crowd-policy event (all sources), for the model stages
    verified: dict = field(default_factory=dict)  # number key -> company name
    appeals: dict = field(default_factory=dict)  # number key -> [ingest.Appeal]
    recycled: dict = field(default_factory=dict)  # number key -> reissue epoch seconds
    report: dict = field(default_factory=dict)  # one bad-row report over every input (to_dict)
    groups: dict = field(default_factory=dict)  # source name -> TagEvents (crowd policy)
    lists: dict = field(default_factory=dict)  # source name -> ListRows (list policy)
    inputs: list = field(default_factory=list)  # per input: path, rows, bad, events, duplicates

    @property
    def side(self) -> dict:
        """The side tables as the pipeline stages take them."""
        return {"verified": self.verified, "appeals": self.appeals, "recycled": self.recycled}


def store_exists(data_dir: str | Path) -> bool:
    """True when ``data_dir`` holds a server store."""
    from server import store
    return store.store_exists(data_dir)


def _store_rows(data_dir: str) -> Iterator[tuple[int, Any]]:
    from server import store  # the Flask-free store module (tests/test_layering.py checks it)
    if not store_exists(data_dir):
        raise SourceError(f"no store at {data_dir}; pass --data-dir DIR of a server that took tags (the "
                          f"demo's is var/demo/store) or --tags FILE")
    yield from enumerate(store.iter_tag_events(data_dir), 1)


class _Collector:
    """Routes rows to one Builder per crowd source and a table per list source; dedupes
    `(source, event_id)` across every input."""

    def __init__(self, region: str):
        self.region = region
        self.report = ingest.BadRowReport()
        self.builders: dict[str, Builder] = {}
        self.pending: dict[str, tuple[list, list]] = {}
        self.lists: dict[str, dict[int, tuple[int, int, int]]] = {}
        self.seen: set[tuple[str, str]] = set()

    def rows(self, rows: Iterable[tuple[int, Any]], rep: ingest.BadRowReport) -> dict:
        counts: dict[str, int] = {}
        dup = 0
        for line, row in rows:
            rep.rows += 1
            if isinstance(row, ingest.BadRow):
                rep.add(line, row.reason, row.text)
                continue
            if not isinstance(row, dict):
                rep.add(line, "row is not an object", row)
                continue
            name = str(row.get("source") or "app").strip()
            prof = PROFILES.get(name)
            if prof is None:
                rep.add(line, "unknown source profile", name)
                continue
            eid = row.get("event_id")
            if eid not in (None, ""):
                ident = (name, str(eid))
                if ident in self.seen:
                    dup += 1
                    rep.rows -= 1  # a duplicate is not a bad row: it is the same event again
                    continue
                self.seen.add(ident)
            if prof.policy == "list":
                if not self._list_row(prof, line, row, rep):
                    continue
            else:
                nos, chunk = self.pending.setdefault(name, ([], []))
                nos.append(line)
                chunk.append(row)
                if len(chunk) >= CHUNK_ROWS:
                    self._flush(name, rep)
            counts[name] = counts.get(name, 0) + 1
        for name in list(self.pending):
            self._flush(name, rep)
        return {"sources": counts, "duplicates": dup}

    def _list_row(self, prof: SourceProfile, line: int, row: dict, rep) -> bool:
        raw = row.get("number")
        key = key_of(raw, self.region) if raw not in (None, "") else None
        if key is None:
            rep.add(line, "missing number" if raw in (None, "") else number_reason(raw, self.region), raw)
            return False
        cat = str(row.get("category") or prof.default_category or "")
        if not is_key(cat):
            rep.add(line, "unknown category", cat)
            return False
        try:
            votes = int(float(row.get("votes")))
        except (TypeError, ValueError):
            rep.add(line, "bad votes", row.get("votes"))
            return False
        ts = parse_ts(row.get("ts"))
        if ts is None:
            rep.add(line, "bad timestamp", row.get("ts"))
            return False
        table = self.lists.setdefault(prof.name, {})
        if key not in table or table[key][2] <= ts:
            table[key] = (by_key(cat).code, votes, ts)
        return True

    def _flush(self, name: str, rep) -> None:
        nos, chunk = self.pending.pop(name, ([], []))
        if not chunk:
            return
        b = self.builders.get(name)
        if b is None:
            b = self.builders[name] = Builder(self.region, rep)
        b.report = rep  # bad rows are counted against the input being read
        cols = {}
        for c in ingest.REQUIRED + ingest.OPTIONAL:
            col = [d.get(c) for d in chunk]
            if c in ingest.REQUIRED or col.count(None) < len(col):
                cols[c] = col
        b.add(nos, cols)

    def groups(self) -> dict[str, ingest.TagEvents]:
        return {name: b.finish() for name, b in self.builders.items()}

    def list_rows(self) -> dict[str, ListRows]:
        out = {}
        for name, table in self.lists.items():
            keys = np.array(sorted(table), np.int64)
            vals = [table[int(k)] for k in keys]
            out[name] = ListRows(keys, np.array([v[0] for v in vals], np.int16),
                                 np.array([v[1] for v in vals], np.int64),
                                 np.array([v[2] for v in vals], np.int64))
        return out


def concat_events(parts: list[ingest.TagEvents]) -> ingest.TagEvents:
    """One TagEvents of several (reporter and company indices re-based onto joined tables)."""
    parts = [p for p in parts if p is not None]
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return ingest.TagEvents.from_arrays([], [], [], [])
    reporters, companies, reps, comps = [], [], [], []
    for p in parts:
        reps.append(p.reporter + len(reporters))
        comps.append(np.where(p.company >= 0, p.company + len(companies), -1).astype(np.int32))
        reporters.extend(p.reporters)
        companies.extend(p.companies)
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    return ingest.TagEvents(cat("key"), np.concatenate(reps).astype(np.int32), cat("category"),
                            cat("ts"), np.concatenate(comps), cat("ring_s"), cat("talk_s"),
                            cat("answered"), cat("direction"), reporters, companies)


def read_inputs(src: Sources) -> BuildInputs:
    """Read and parse every input named by ``src``.

    Raises SourceError when the store is missing, an input is unreadable, or no usable tag event
    remains."""
    col = _Collector(src.region)
    per_input = []
    verified, appeals = {}, {}
    for item in src.inputs():
        rep = ingest.BadRowReport()
        try:
            if item == STORE:
                got = col.rows(_store_rows(src.data_dir), rep)
                from server import store
                verified.update(ingest.read_verified(store.iter_verified(src.data_dir), src.region)[0])
                for k, lst in ingest.read_appeals(store.iter_accepted_appeals(src.data_dir),
                                                  src.region)[0].items():
                    appeals.setdefault(k, []).extend(lst)
            else:
                got = col.rows(ingest.iter_rows(item), rep)
        except ingest.IngestError as e:
            raise SourceError(f"{e}; pass tag event files (CSV/JSONL) or 'store'") from None
        col.report.merge(rep)
        per_input.append({"input": item, **rep.to_dict(), "events": sum(got["sources"].values()),
                          "sources": got["sources"], "duplicates": got["duplicates"]})
    if src.verified:
        verified.update(ingest.read_verified(src.verified, src.region)[0])
    if src.appeals:
        for k, lst in ingest.read_appeals(src.appeals, src.region)[0].items():
            appeals.setdefault(k, []).extend(lst)
    recycled = ingest.read_recycled(src.recycled, src.region)[0] if src.recycled else {}
    groups, lists = col.groups(), col.list_rows()
    events = concat_events(list(groups.values()))
    if len(events) == 0 and not any(len(v) for v in lists.values()):
        raise SourceError("no usable tag events: " + col.report.summary())
    report = col.report.to_dict()
    report["duplicates"] = sum(p["duplicates"] for p in per_input)
    return BuildInputs(events, verified, appeals, recycled, report, groups, lists, per_input)


def profiles_used(inputs: BuildInputs) -> dict[str, SourceProfile]:
    """The source profiles of the inputs' events, by name."""
    return {n: profile(n) for n in list(inputs.groups) + list(inputs.lists)}


__all__ = ["STORE", "SourceError", "Sources", "ListRows", "BuildInputs", "store_exists",
           "concat_events", "read_inputs", "profiles_used", "export_events"]


EXPORT_COLUMNS = ("event_id", "number", "reporter", "category", "ts", "company", "note", "ring_s",
                  "talk_s", "answered", "direction")


def export_events(data_dir: str | Path, out_dir: str | Path, include_flagged: bool = False,
                  batch_rows: int = 200_000) -> dict:
    """Write the store's tag events to `out_dir` as Parquet partitioned by UTC day
    (`out_dir/day=YYYY-MM-DD/part-<n>-<uuid>.parquet`, Hive-style: Spark, DuckDB, Athena and
    pyarrow read it as one table with a `day` column). Columns: EXPORT_COLUMNS (strings, `ring_s`/
    `talk_s` doubles, `answered` bool). Streams in batches of `batch_rows` (constant memory).
    Returns {"events": n, "days": d, "out": path}. Raises SourceError without a store."""
    import uuid

    import pyarrow as pa
    import pyarrow.dataset as ds

    from server import store
    if not store_exists(data_dir):
        raise SourceError(f"no store at {data_dir}; set CALLMARK_DATABASE_URL or --data-dir")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([(c, pa.string()) for c in EXPORT_COLUMNS[:7]]
                       + [("ring_s", pa.float64()), ("talk_s", pa.float64()),
                          ("answered", pa.bool_()), ("direction", pa.string()), ("day", pa.string())])
    run_id, n, days, part = uuid.uuid4().hex[:8], 0, set(), 0
    batch: list[dict] = []

    def flush():
        nonlocal part
        cols = {c: [r.get(c) for r in batch] for c in EXPORT_COLUMNS}
        cols["ts"] = [None if v is None else str(v) for v in cols["ts"]]
        cols["day"] = [str(t or "")[:10] or "unknown" for t in cols["ts"]]
        days.update(cols["day"])
        table = pa.table(cols, schema=schema)
        ds.write_dataset(table, out, format="parquet", partitioning=["day"],
                         partitioning_flavor="hive", existing_data_behavior="overwrite_or_ignore",
                         basename_template=f"part-{run_id}-{part}-{{i}}.parquet")
        part += 1
        batch.clear()

    for row in store.iter_tag_events(data_dir, include_flagged=include_flagged):
        batch.append(row)
        n += 1
        if len(batch) >= batch_rows:
            flush()
    if batch:
        flush()
    return {"events": n, "days": len(days), "out": str(out)}
