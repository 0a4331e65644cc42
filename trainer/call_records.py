"""Per-call records in: the one schema the teacher and the student read (docs/feature-contract.md,
"Call records"), from CSV or Parquet, with a column mapping for an operator's own export.

| column | meaning | values |
|---|---|---|
| `caller` | the remote number (the one being scored) | any form `callmark.numbers` reads |
| `callee` | the subscriber's pseudonymous id (the handset) | any string; hashed ids are fine |
| `start` | when the call started | ISO-8601 (`2026-03-01T16:00:30Z`; no zone = UTC) or epoch seconds |
| `ring_s` | seconds of ringing (optional, default 0) | number >= 0 |
| `talk_s` | seconds of talk | number >= 0 |
| `answered` | the call was answered | 1/0, true/false, yes/no |
| `direction` | seen from the subscriber | `in` / `out` (also incoming/outgoing, mt/mo) |
| `presentation` | the number as presented (optional, default `caller`) | string |
| `verification` | network caller verification (optional, default `none`) | passed / failed / none |

The simulator's `calls.csv` is this schema with `callee` spelled `callee_hash` (accepted as an alias).
Any other column is ignored. `mapping` maps schema names to the file's column names, e.g.
`{"caller": "other_party", "start": "begin_time"}` (CLI: `--calls-map caller=other_party,start=begin_time`).
"""
from __future__ import annotations

import csv
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np

from callmark.labels import FALSE_WORDS, TRUE_WORDS
from trainer.column_map import parse_column_map


class FeatureInputError(ValueError):
    """A calls / feature table that cannot be read (missing columns, bad values)."""


def parse_ts(values) -> np.ndarray:
    """ISO-8601 UTC strings (`2026-03-01T16:00:30Z`) -> epoch seconds (float64)."""
    try:
        if all(len(v) == 20 and v[-1] == "Z" for v in values):
            return np.asarray([v[:19] for v in values], dtype="datetime64[s]").astype(np.int64).astype(np.float64)
        out = np.empty(len(values), dtype=np.float64)
        for i, v in enumerate(values):
            t = datetime.fromisoformat(v)
            out[i] = (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()
        return out
    except ValueError as exc:
        raise FeatureInputError(f"bad call start time ({exc}); expected ISO-8601 like 2026-03-01T16:00:30Z") from None


def _float_col(values, name: str) -> np.ndarray:
    try:
        return np.asarray([float(v) if v != "" else 0.0 for v in values], dtype=np.float64)
    except ValueError as exc:
        raise FeatureInputError(f"column {name!r} must be numeric: {exc}") from None


SCHEMA = ("caller", "callee", "start", "ring_s", "talk_s", "answered", "direction", "presentation", "verification")
REQUIRED = ("caller", "callee", "start", "talk_s", "answered", "direction")
ALIASES = {"callee": ("callee_hash",)}
CANONICAL_HEADER = ("caller", "callee_hash", "start", "ring_s", "talk_s", "answered", "direction",
                    "presentation", "verification")  # the simulator's calls.csv (what features read)
_DIRECTION = {"in": True, "incoming": True, "mt": True, "inbound": True, "terminating": True,
              "out": False, "outgoing": False, "mo": False, "outbound": False, "originating": False}
_VERIFICATION = {"passed": "passed", "pass": "passed", "verified": "passed", "failed": "failed", "fail": "failed",
                 "none": "none", "": "none", "not_verified": "none", "unverified": "none"}


def parse_mapping(text: str | None) -> dict[str, str]:
    """`caller=other_party,start=begin_time` -> {"caller": "other_party", ...}; FeatureInputError for an
    unknown schema name or a part that is not NAME=COLUMN (trainer.column_map)."""
    return parse_column_map(text, SCHEMA, error=FeatureInputError, option="--calls-map",
                            example="caller=other_party")


def _resolve(header: list[str], mapping: dict[str, str], path) -> dict[str, str | None]:
    """Schema name -> the file's column (None for an absent optional one); raises on missing ones."""
    cols: dict[str, str | None] = {}
    missing = []
    for name in SCHEMA:
        if name in mapping:
            if mapping[name] not in header:
                missing.append(f"{name} (mapped to {mapping[name]!r})")
            cols[name] = mapping[name]
            continue
        found = next((c for c in (name, *ALIASES.get(name, ())) if c in header), None)
        if found is None and name in REQUIRED:
            missing.append(name)
        cols[name] = found
    if missing:
        raise FeatureInputError(
            f"{path} lacks columns {', '.join(missing)} of the call-record schema; the file has columns "
            f"{', '.join(header[:30])}. "
            "Map your export's names onto the schema (docs/feature-contract.md, 'Call records'), e.g. "
            "--calls-map caller=other_party,callee=subscriber_id,start=begin_time")
    return cols


def _start(values, path) -> np.ndarray:
    vals = ["" if v is None else str(v) for v in values]
    if any(v == "" for v in vals):
        raise FeatureInputError(f"{path}: a call record has no start time")
    try:
        return np.asarray([float(v) for v in vals], dtype=np.float64)  # epoch seconds
    except ValueError:
        return parse_ts(vals)


def _normalise(raw: dict[str, list], n: int, path) -> dict[str, np.ndarray]:
    def text(name, default=""):
        v = raw.get(name)
        return ["" if x is None else str(x).strip() for x in v] if v is not None else [default] * n

    caller = text("caller")
    direction = [d.lower() for d in text("direction")]
    bad = next((d for d in direction if d not in _DIRECTION), None)
    if bad is not None:
        raise FeatureInputError(f"{path}: direction {bad!r} is not in/out (or incoming/outgoing, mt/mo)")
    answered = [a.lower() for a in text("answered")]
    bad = next((a for a in answered if a not in TRUE_WORDS and a not in FALSE_WORDS), None)
    if bad is not None:
        raise FeatureInputError(f"{path}: answered {bad!r} is not 1/0, true/false or yes/no")
    verification = [v.lower() for v in text("verification", "none")]
    bad = next((v for v in verification if v not in _VERIFICATION), None)
    if bad is not None:
        raise FeatureInputError(f"{path}: verification {bad!r} is not passed, failed or none")
    presentation = text("presentation") if raw.get("presentation") is not None else caller
    ring = _float_col(text("ring_s", "0"), "ring_s")
    talk = _float_col(text("talk_s"), "talk_s")
    if (ring < 0).any() or (talk < 0).any():
        raise FeatureInputError(f"{path}: ring_s and talk_s must be >= 0 seconds")
    return {"caller": np.asarray(caller, dtype=object), "callee": np.asarray(text("callee"), dtype=object),
            "start": _start(raw["start"], path), "ring_s": ring, "talk_s": talk,
            "answered": np.asarray([a in TRUE_WORDS for a in answered], dtype=bool),
            "inbound": np.asarray([_DIRECTION[d] for d in direction], dtype=bool),
            "presentation": np.asarray(presentation, dtype=object),
            "verification": np.asarray([_VERIFICATION[v] for v in verification], dtype=object)}


def iter_records(path, mapping: dict[str, str] | None = None, chunk_rows: int = 250_000) -> Iterator[dict]:
    """Stream call records as dicts of column arrays (`start` epoch seconds, `answered` and `inbound`
    bool), from CSV (`.csv`, `.csv.gz`) or Parquet (`.parquet`, `.pq`). Raises FeatureInputError
    naming the missing columns or the bad value."""
    path = Path(path)
    mapping = mapping or {}
    if not path.is_file():
        raise FeatureInputError(f"call records file {path} not found; generate one with `callmark simulate --out DIR`")
    if path.suffix.lower() in (".parquet", ".pq"):
        yield from _iter_parquet(path, mapping, chunk_rows)
    else:
        yield from _iter_csv(path, mapping, chunk_rows)


def _iter_csv(path: Path, mapping, chunk_rows):
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise FeatureInputError(f"{path} is empty")
        cols = _resolve(header, mapping, path)
        idx = {name: header.index(col) for name, col in cols.items() if col is not None}
        while True:
            rows = []
            for row in reader:
                rows.append(row)
                if len(rows) >= chunk_rows:
                    break
            if not rows:
                return
            try:
                raw = {name: [r[j] for r in rows] for name, j in idx.items()}
            except IndexError:
                raise FeatureInputError(f"{path}: a row has fewer than {len(header)} fields") from None
            yield _normalise(raw, len(rows), path)
            if len(rows) < chunk_rows:
                return


def _iter_parquet(path: Path, mapping, chunk_rows):
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is in the train extra
        raise FeatureInputError("reading Parquet needs pyarrow: pip install 'callmark[train]'") from None
    try:
        f = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for non-Parquet files
        raise FeatureInputError(f"{path} is not a readable Parquet file: {exc}") from None
    cols = _resolve(list(f.schema_arrow.names), mapping, path)
    wanted = {name: col for name, col in cols.items() if col is not None}
    for batch in f.iter_batches(batch_size=chunk_rows, columns=sorted(set(wanted.values()))):
        d = batch.to_pydict()
        raw = {}
        for name, col in wanted.items():
            v = d[col]
            if name == "start" and v and hasattr(v[0], "timestamp"):  # timestamp column
                v = [x.timestamp() if x.tzinfo else x.replace(tzinfo=timezone.utc).timestamp()
                     for x in v]
            raw[name] = v
        yield _normalise(raw, batch.num_rows, path)


def write_canonical_csv(src, dst, mapping: dict[str, str] | None = None, chunk_rows: int = 250_000) -> dict:
    """Convert call records into the canonical calls.csv (`CANONICAL_HEADER`), sorted by start time as
    the simulator writes it (the student replays calls in time order). Returns {"rows": n}."""
    import time as _time

    chunks = list(iter_records(src, mapping, chunk_rows))
    if not chunks:
        raise FeatureInputError(f"{src} holds no call records")
    cat = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    order = np.argsort(cat["start"], kind="stable")
    tmp = Path(str(dst) + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CANONICAL_HEADER)
        for i in order:
            w.writerow([cat["caller"][i], cat["callee"][i],
                        _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime(float(cat["start"][i]))),
                        f"{cat['ring_s'][i]:g}", f"{cat['talk_s'][i]:g}", int(cat["answered"][i]),
                        "in" if cat["inbound"][i] else "out", cat["presentation"][i], cat["verification"][i]])
    os.replace(tmp, dst)
    return {"rows": int(len(order))}


def is_canonical(path, mapping: dict[str, str] | None = None) -> bool:
    """True when `path` is already a canonical calls.csv (read directly, no conversion needed)."""
    p = Path(path)
    if mapping or p.suffix.lower() in (".parquet", ".pq", ".gz"):
        return False
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), None)
    except OSError:
        return False
    return header is not None and all(c in header for c in CANONICAL_HEADER)
