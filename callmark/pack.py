"""Label packs on the phone: SQLite schema, lookup, wire expansion, atomic delta apply, state hash.

The layout is specified in docs/pack-format.md (format 1). A pack file is only ever replaced whole
(copy-on-write into a temp file in the same directory, fsync, os.replace), so a reader never sees a
half-written pack and a crash at any moment leaves the previous pack intact.
"""
from __future__ import annotations

import glob
import hashlib
import heapq
import os
import shutil
import sqlite3
from dataclasses import asdict, dataclass

import numpy as np

from callmark.files import commit_file
from callmark.labels import (  # noqa: F401  (re-exported API)
    FLAG_APPEAL_SUPPRESSED, FLAG_MODEL, FLAG_RANGE, FLAG_VERIFIED,
)
from callmark.pack_codec import (  # noqa: F401  (re-exported API)
    LABEL_COLS, MAX_RANGE_SIZE, RANGE_COLS,
    PackError, PackFormatError, PackIntegrityError, PackStateMismatch, PackTable, hash_hex,
    name_row, rows_hash, table_hash,
)
from callmark.pack_wire import Delta, decode_delta, decode_full, read_header  # noqa: F401

__all__ = [
    "PACK_FORMAT", "SCHEMA", "LOOKUP_SQL", "Label", "PackReader", "PackTable", "Delta", "UpdatePolicy",
    "UpdatePlan", "expand_wire", "apply_delta", "pack_state_hash", "verify_pack", "read_pack_meta",
    "read_pack_table", "write_pack_sqlite", "plan_update", "rows_hash", "table_hash", "hash_hex",
    "name_row", "read_header", "decode_full", "decode_delta", "PackError", "PackFormatError",
    "PackIntegrityError", "PackStateMismatch", "FLAG_VERIFIED", "FLAG_RANGE", "FLAG_MODEL",
    "FLAG_APPEAL_SUPPRESSED", "LABEL_COLS", "RANGE_COLS", "MAX_RANGE_SIZE",
]

PACK_FORMAT = 1  # SQLite schema version (also PRAGMA user_version)
PARAMS_PER_STATEMENT = 500  # bound parameters per IN (...) statement (Android's SQLite allows 999)
_MAX_PARAMS = 999  # SQLITE_MAX_VARIABLE_NUMBER before 3.32 (Android 3.9)

SCHEMA = (
    "CREATE TABLE meta (k TEXT PRIMARY KEY NOT NULL, v TEXT NOT NULL)",
    "CREATE TABLE categories (code INTEGER PRIMARY KEY, key TEXT NOT NULL, zh TEXT NOT NULL, "
    "en TEXT NOT NULL, action TEXT NOT NULL, harmful INTEGER NOT NULL)",
    "CREATE TABLE labels (key INTEGER PRIMARY KEY, category INTEGER NOT NULL, "
    "confidence INTEGER NOT NULL, reporters INTEGER NOT NULL, flags INTEGER NOT NULL, "
    "last_day INTEGER NOT NULL)",
    "CREATE TABLE ranges (start INTEGER NOT NULL, size INTEGER NOT NULL, category INTEGER NOT NULL, "
    "confidence INTEGER NOT NULL, numbers INTEGER NOT NULL, flags INTEGER NOT NULL, "
    "last_day INTEGER NOT NULL, PRIMARY KEY (start, size)) WITHOUT ROWID",
    "CREATE TABLE businesses (key INTEGER PRIMARY KEY, name TEXT NOT NULL)",
)

# One statement: the exact row by its rowid (the business name only for verified rows), else the
# smallest range whose block covers the key. SQLite runs UNION ALL arms left to right and stops at
# LIMIT 1, so the range arm is not even evaluated when the exact row exists.
LOOKUP_SQL = (
    "SELECT 0, key, category, confidence, reporters, flags, last_day, CASE WHEN flags & 1 THEN "
    "(SELECT name FROM businesses b WHERE b.key = l.key) END FROM labels l WHERE key = ?1 "
    "UNION ALL SELECT * FROM (SELECT size, start, category, confidence, numbers, flags, last_day, NULL "
    "FROM ranges WHERE start <= ?1 AND start > ?1 - ?2 AND start + size > ?1 ORDER BY size LIMIT 1) "
    "LIMIT 1"
)

# The model's `pack_block_harmful` fact: exact labels in the caller's 100-number block (key // BLOCK_SIZE;
# carriers sell SIM cards and PBX trunks in such blocks). One indexed range read on the labels' rowid.
BLOCK_SIZE = 100
BLOCK_SQL = "SELECT key, category FROM labels WHERE key >= ?1 AND key < ?2"


def block_start(key: int) -> int:
    """First key of the 100-number block holding `key` (the key with its last two digits zeroed)."""
    return int(key) - int(key) % BLOCK_SIZE


def others_in_block(key: int, harmful_keys) -> int:
    """The `pack_block_harmful` fact from the harmful-labelled keys of `key`'s block (a set): every
    one but the caller itself. The one definition the phone's readers and the trainer's packs share."""
    return len(harmful_keys) - (key in harmful_keys)


@dataclass(slots=True)
class Label:
    """What a pack says about one number (exact row, or the smallest range that covers it)."""

    key: int
    category: int  # stable category code
    category_key: str | None  # e.g. "fraud" (from the pack's category table)
    action: str | None  # block | warn | label
    confidence: float  # 0..1 in steps of 0.01
    reporters: int  # distinct reporters, bucketed ("at least"); numbers labelled in a range
    flags: int  # 1 verified business, 2 range-derived, 4 model-derived, 8 appeal-suppressed
    last_day: int  # epoch day of the last evidence (0 = unknown)
    source: str  # "exact" or "range"
    range_start: int | None = None
    range_size: int | None = None
    company: str | None = None  # verified business name

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- SQLite files

def _connect(path: str, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        return sqlite3.connect(f"file:{os.path.abspath(path)}?mode=ro&immutable=1", uri=True,
                               check_same_thread=False)
    return sqlite3.connect(path, isolation_level=None)


def write_pack_sqlite(path: str, t: PackTable, meta: dict, cats: list) -> None:
    """Create a new pack file at `path` (must not exist) holding table `t` and `meta`."""
    if os.path.exists(path):
        raise FileExistsError(path)
    con = _connect(path)
    try:
        con.execute("PRAGMA page_size = 4096")
        con.execute("PRAGMA journal_mode = OFF")
        con.execute("PRAGMA synchronous = OFF")
        con.execute("BEGIN")
        for stmt in SCHEMA:
            con.execute(stmt)
        con.executemany("INSERT INTO categories VALUES (?,?,?,?,?,?)",
                        [(c["code"], c["key"], c["zh"], c["en"], c["action"], int(c["harmful"])) for c in cats])
        _insert_columns(con, "labels", [t.labels[c] for c in LABEL_COLS])
        _insert_columns(con, "ranges", [t.ranges[c] for c in RANGE_COLS])
        con.executemany("INSERT INTO businesses VALUES (?,?)", sorted(t.names.items()))
        con.executemany("INSERT INTO meta VALUES (?,?)", [(k, str(v)) for k, v in sorted(meta.items())])
        con.execute(f"PRAGMA user_version = {PACK_FORMAT}")
        con.execute("COMMIT")
    finally:
        con.close()


def _insert_columns(con: sqlite3.Connection, table: str, cols: list, block: int = 1 << 15) -> None:
    """Insert integer columns in row order, many rows per statement (Android's SQLite binds at most
    999 parameters) and a block of rows at a time, so no per-row Python tuples are built."""
    width, n = len(cols), len(cols[0]) if cols else 0
    per = _MAX_PARAMS // width
    one = "(" + ",".join("?" * width) + ")"
    many = f"INSERT INTO {table} VALUES " + ",".join([one] * per)
    full = n // per * per
    step = max(per, block // per * per)
    for s in range(0, full, step):
        e = min(full, s + step)
        con.executemany(many, np.stack([c[s:e] for c in cols], axis=1).reshape(-1, per * width).tolist())
    if full < n:
        con.executemany(f"INSERT INTO {table} VALUES {one}", np.stack([c[full:] for c in cols], axis=1).tolist())


def check_meta(con: sqlite3.Connection) -> dict:
    """The `meta` table of the pack open on `con` (main schema); PackFormatError if not a format-1 pack."""
    try:
        meta = dict(con.execute("SELECT k, v FROM meta"))
    except sqlite3.DatabaseError as exc:
        raise PackFormatError(f"not a callmark pack ({exc}); pass a pack .sqlite file") from None
    if meta.get("format") != str(PACK_FORMAT):
        raise PackFormatError(f"pack format {meta.get('format')!r} is not supported (expected {PACK_FORMAT})")
    return meta


def read_pack_meta(path: str) -> dict:
    """The metadata table of a pack file (format, name, region, tier, version, entries, state_hash …)."""
    _must_exist(path)
    con = _connect(path, readonly=True)
    try:
        return check_meta(con)
    finally:
        con.close()


def read_pack_table(path: str) -> tuple[dict, PackTable]:
    """(meta, whole content) of a pack file."""
    _must_exist(path)
    con = _connect(path, readonly=True)
    try:
        meta = check_meta(con)
        lab = _fetch_array(con, f"SELECT {','.join(LABEL_COLS)} FROM labels ORDER BY key", len(LABEL_COLS))
        rng = _fetch_array(con, f"SELECT {','.join(RANGE_COLS)} FROM ranges ORDER BY start, size",
                           len(RANGE_COLS))
        names = dict(con.execute("SELECT key, name FROM businesses"))
    finally:
        con.close()
    t = PackTable(dict(zip(LABEL_COLS, lab.T)), dict(zip(RANGE_COLS, rng.T)), names)
    return meta, t


def _fetch_array(con, sql: str, width: int) -> np.ndarray:
    cur, parts = con.execute(sql), []
    while True:
        rows = cur.fetchmany(1 << 16)
        if not rows:
            break
        parts.append(np.array(rows, dtype=np.int64))
    return np.concatenate(parts) if parts else np.zeros((0, width), dtype=np.int64)


def pack_state_hash(path: str) -> str:
    """Recompute a pack file's state hash from all its rows (hex)."""
    _, t = read_pack_table(path)
    return hash_hex(table_hash(t))


def verify_pack(path: str) -> dict:
    """Full check of a pack file: SQLite integrity, format, stored vs recomputed state hash and count."""
    _must_exist(path)
    con = _connect(path, readonly=True)
    try:
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise PackIntegrityError(f"{path}: not a readable SQLite file ({exc})") from None
    finally:
        con.close()
    if ok != "ok":
        raise PackIntegrityError(f"{path}: SQLite integrity check failed: {ok}")
    meta, t = read_pack_table(path)
    h = hash_hex(table_hash(t))
    if h != meta.get("state_hash") or str(t.entries) != meta.get("entries"):
        raise PackIntegrityError(f"{path}: rows hash to {h} but the pack says {meta.get('state_hash')}")
    return meta


def _must_exist(path: str):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no pack file at {path}")


# ---------------------------------------------------------------- reading

def harmful_codes(con: sqlite3.Connection) -> frozenset:
    """Category codes the pack's own category table marks harmful."""
    return frozenset(code for code, harmful in con.execute("SELECT code, harmful FROM categories") if harmful)


class PackReader:
    """Open pack for lookups. The file is never modified in place, so it is opened immutable."""

    def __init__(self, path: str):
        _must_exist(path)
        self.path = path
        self._con = _connect(path, readonly=True)
        self.meta = check_meta(self._con)
        self._max_range = int(self.meta.get("max_range_size", MAX_RANGE_SIZE))
        self._cats = {code: (key, action) for code, key, action in
                      self._con.execute("SELECT code, key, action FROM categories")}
        self._harmful = harmful_codes(self._con)
        self._stmt = self._con.cursor()

    def block_harmful(self, key: int) -> int:
        """How many *other* numbers of `key`'s 100-number block (`block_start`) have an exact label
        of a harmful category: the model's `pack_block_harmful` raw fact (docs/feature-contract.md).
        Ranges are not counted (a covering range already labels the call). One indexed range read."""
        lo = block_start(key)
        return others_in_block(key, {k for k, c in self._con.execute(BLOCK_SQL, (lo, lo + BLOCK_SIZE))
                                     if c in self._harmful})

    def lookup(self, key: int) -> Label | None:
        """The label of number key `key`: exact row first, else the smallest covering range."""
        return self._label(key, self._stmt.execute(LOOKUP_SQL, (int(key), self._max_range)).fetchone())

    def _label(self, key: int, row: tuple | None) -> Label | None:
        """A LOOKUP_SQL result row -> Label (None for no row)."""
        if row is None:
            return None
        size, start, cat, conf, rep, flags, day, name = row
        ck, action = self._cats.get(cat, (None, None))
        if size == 0:
            return Label(start, cat, ck, action, conf / 100.0, rep, flags, day, "exact", company=name)
        return Label(int(key), cat, ck, action, conf / 100.0, rep, flags | FLAG_RANGE, day, "range",
                     start, size)

    def lookup_number(self, raw: str, region: str = "CN") -> Label | None:
        """Normalise a raw caller string and look it up (None for irregular input)."""
        from callmark.numbers import key_of
        key = key_of(raw, region)
        return None if key is None else self.lookup(key)

    @property
    def version(self) -> int:
        return int(self.meta["version"])

    @property
    def state_hash(self) -> str:
        return self.meta["state_hash"]

    def close(self):
        self._con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------- atomic replacement

def _temp_path(final: str) -> str:
    d, base = os.path.split(os.path.abspath(final))
    for stale in glob.glob(os.path.join(d, f".{glob.escape(base)}.tmp-*")):
        pid = stale.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            for p in (stale, stale + "-journal"):
                if os.path.exists(p):
                    os.remove(p)
    return os.path.join(d, f".{base}.tmp-{os.getpid()}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _discard(tmp: str):
    for p in (tmp, tmp + "-journal"):
        if os.path.exists(p):
            os.remove(p)


def read_blob(path: str, expected_sha256: str | None) -> bytes:
    """The bytes of a wire blob, checked against `expected_sha256` (PackIntegrityError) when given."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no wire blob at {path}")
    with open(path, "rb") as f:
        data = f.read()
    if expected_sha256 and hashlib.sha256(data).hexdigest() != expected_sha256.lower():
        raise PackIntegrityError(f"{path}: SHA-256 differs from the manifest; download it again")
    return data


def _pack_meta(header: dict, t: PackTable, h: str) -> dict:
    keep = ("name", "region", "tier", "version", "built_at")
    meta = {k: header[k] for k in keep if k in header}
    meta.update(format=PACK_FORMAT, state_hash=h, entries=t.entries, labels=t.n_labels,
                ranges=t.n_ranges, max_range_size=MAX_RANGE_SIZE)
    return meta


def expand_wire(wire_path: str, sqlite_path: str, expected_sha256: str | None = None,
                expected_state_hash: str | None = None) -> dict:
    """Expand a full pack's wire blob into `sqlite_path` atomically; returns the pack meta.

    Raises PackStateMismatch (nothing written) when the content does not hash to the header's or the
    expected state hash.
    """
    header, t, cats = decode_full(read_blob(wire_path, expected_sha256))
    h = hash_hex(table_hash(t))
    for want in (header.get("state_hash"), expected_state_hash):
        if want and want != h:
            raise PackStateMismatch(f"expanded pack hashes to {h}, expected {want}; download the full pack again")
    meta = _pack_meta(header, t, h)
    tmp = _temp_path(sqlite_path)
    try:
        _discard(tmp)
        write_pack_sqlite(tmp, t, meta, cats)
        commit_file(tmp, sqlite_path)
    except BaseException:
        _discard(tmp)
        raise
    return meta


def _fetch(con, sql_head: str, keys: list) -> list:
    out = []
    for s in range(0, len(keys), PARAMS_PER_STATEMENT):
        chunk = keys[s:s + PARAMS_PER_STATEMENT]
        out += con.execute(f"{sql_head} IN ({','.join('?' * len(chunk))})", chunk).fetchall()
    return out


def _apply(con, d: Delta) -> tuple[int, int]:
    """Apply `d` inside `con`; returns (hash change mod 2**256 as (minus, plus), entries change)."""
    up = d.upserts
    changed = sorted(set(d.removals.tolist()) | set(up.labels["key"].tolist()))
    old = np.array(_fetch(con, f"SELECT {','.join(LABEL_COLS)} FROM labels WHERE key", changed),
                   dtype=np.int64).reshape(-1, len(LABEL_COLS))
    present = set(old[:, 0].tolist())
    missing = set(d.removals.tolist()) - present
    if missing:
        raise PackStateMismatch(f"delta removes key {min(missing)} which the pack does not hold")
    old_names = dict(_fetch(con, "SELECT key, name FROM businesses WHERE key", changed))
    rr = d.range_removals
    rkeys = sorted(set(zip(rr["start"].tolist(), rr["size"].tolist()))
                   | set(zip(up.ranges["start"].tolist(), up.ranges["size"].tolist())))
    old_r = []
    for start, size in rkeys:
        old_r += con.execute(f"SELECT {','.join(RANGE_COLS)} FROM ranges WHERE start=? AND size=?",
                             (start, size)).fetchall()
    old_r = np.array(old_r, dtype=np.int64).reshape(-1, len(RANGE_COLS))
    if len(rr["start"]) and len(set(zip(rr["start"].tolist(), rr["size"].tolist()))
                                - set(map(tuple, old_r[:, :2].tolist()))):
        raise PackStateMismatch("delta removes a range which the pack does not hold")
    minus = rows_hash(dict(zip(LABEL_COLS, old.T)), dict(zip(RANGE_COLS, old_r.T)), old_names)
    plus = rows_hash(up.labels, up.ranges, up.names)
    con.executemany("DELETE FROM labels WHERE key = ?", [(k,) for k in d.removals.tolist()])
    con.executemany("DELETE FROM businesses WHERE key = ?", [(k,) for k in old_names])
    con.executemany("INSERT OR REPLACE INTO labels VALUES (?,?,?,?,?,?)",
                    zip(*(up.labels[c].tolist() for c in LABEL_COLS)))
    con.executemany("INSERT INTO businesses VALUES (?,?)", sorted(up.names.items()))
    con.executemany("DELETE FROM ranges WHERE start = ? AND size = ?",
                    zip(rr["start"].tolist(), rr["size"].tolist()))
    con.executemany("INSERT OR REPLACE INTO ranges VALUES (?,?,?,?,?,?,?)",
                    zip(*(up.ranges[c].tolist() for c in RANGE_COLS)))
    new_keys = len(set(up.labels["key"].tolist()) - present)
    new_ranges = len(set(zip(up.ranges["start"].tolist(), up.ranges["size"].tolist()))
                     - set(map(tuple, old_r[:, :2].tolist())))
    delta_entries = new_keys - len(d.removals) + new_ranges - len(rr["start"])
    return (plus - minus), delta_entries


def check_delta_start(meta: dict, header: dict) -> None:
    """Raise PackStateMismatch unless a delta's header starts from this pack's name, version and state
    hash (`meta` as `read_pack_meta` returns it; `header` as `decode_delta` returns it)."""
    if header.get("name") and meta.get("name") and header["name"] != meta["name"]:
        raise PackStateMismatch(f"delta is for pack {header['name']!r}, this pack is {meta['name']!r}")
    if meta.get("state_hash") != header.get("from_state_hash") or \
            str(meta.get("version")) != str(header.get("from_version")):
        raise PackStateMismatch(
            f"pack is version {meta.get('version')} state {meta.get('state_hash')}, the delta starts from "
            f"version {header.get('from_version')} state {header.get('from_state_hash')}; fetch the full pack")


def check_delta_result(header: dict, state_hash: str, entries: int, expected_state_hash: str | None,
                       outcome: str) -> None:
    """Raise PackStateMismatch unless the pack after a delta has the state hash the delta's header and
    the caller (the signed manifest) expect and the entry count the header names. `outcome` says what
    happened to the result ("nothing was written", …) in the message."""
    for want in (header.get("state_hash"), expected_state_hash):
        if want and want != state_hash:
            raise PackStateMismatch(f"pack after the delta hashes to {state_hash}, expected {want}; "
                                    f"{outcome}: fetch the full pack")
    if "entries" in header and int(header["entries"]) != entries:
        raise PackStateMismatch(f"pack after the delta holds {entries} entries, expected "
                                f"{header['entries']}; {outcome}: fetch the full pack")


def apply_delta(pack_path: str, delta_blob_path: str, expected_state_hash: str | None = None,
                expected_sha256: str | None = None) -> dict:
    """Apply a delta blob to a pack file atomically; returns the new pack meta.

    The work happens on a copy in the same directory; the state hash is updated from the changed rows
    only and must equal the delta's target (and `expected_state_hash`, e.g. the manifest's), else the
    copy is discarded and PackStateMismatch is raised: fetch the full pack then.
    """
    header, d = decode_delta(read_blob(delta_blob_path, expected_sha256))
    meta = read_pack_meta(pack_path)
    check_delta_start(meta, header)
    tmp = _temp_path(pack_path)
    try:
        _discard(tmp)
        shutil.copyfile(pack_path, tmp)
        con = _connect(tmp)
        try:
            con.execute("PRAGMA journal_mode = OFF")
            con.execute("PRAGMA synchronous = OFF")
            con.execute("BEGIN")
            change, d_entries = _apply(con, d)
            h = hash_hex(int(meta["state_hash"], 16) + change)
            entries = int(meta["entries"]) + d_entries
            check_delta_result(header, h, entries, expected_state_hash, "the result was discarded")
            n_lab = con.execute("SELECT count(*) FROM ranges").fetchone()[0]  # few rows
            new_meta = dict(meta, version=header["version"], state_hash=h, entries=entries,
                            ranges=n_lab, labels=entries - n_lab)
            if "built_at" in header:
                new_meta["built_at"] = header["built_at"]
            con.executemany("INSERT OR REPLACE INTO meta VALUES (?,?)",
                            [(k, str(v)) for k, v in sorted(new_meta.items())])
            con.execute("COMMIT")
        finally:
            con.close()
        commit_file(tmp, pack_path)
    except BaseException:
        _discard(tmp)
        raise
    return {k: str(v) for k, v in new_meta.items()}


# ---------------------------------------------------------------- update planning

@dataclass
class UpdatePolicy:
    """When a client gets deltas and when the full pack (shared by client and server)."""

    max_versions_behind: int = 30  # versions; further behind -> full pack
    max_chain: int = 10  # deltas applied one after another at most
    max_delta_share: float = 0.5  # deltas' total bytes / full pack bytes above which -> full pack

    @classmethod
    def from_dict(cls, d: dict) -> "UpdatePolicy":
        return cls(**{k: type(getattr(cls, k))(v) for k, v in d.items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class UpdatePlan:
    """What to download: nothing, a chain of deltas, or the full pack."""

    action: str  # "none" | "deltas" | "full"
    deltas: list  # the delta entries to apply in order (manifest dicts)
    bytes: int  # download size
    reason: str


def plan_update(current_version: int | None, target_version: int, deltas: list, full_bytes: int,
                policy: UpdatePolicy | None = None) -> UpdatePlan:
    """Cheapest way from `current_version` to `target_version` under `policy`.

    `deltas` are manifest entries with `from_version`, `to_version` and `length` (or `bytes`).
    """
    policy = policy or UpdatePolicy()
    if current_version is not None and current_version == target_version:
        return UpdatePlan("none", [], 0, "up to date")
    if current_version is None or current_version > target_version:
        return UpdatePlan("full", [], full_bytes, "no usable pack on the device")
    if target_version - current_version > policy.max_versions_behind:
        return UpdatePlan("full", [], full_bytes, f"more than {policy.max_versions_behind} versions behind")
    size = lambda e: int(e.get("length", e.get("bytes", 0)))  # noqa: E731
    heap, best, n = [(0, 0, 0, current_version, [])], {}, 0
    while heap:
        cost, steps, _, v, path = heapq.heappop(heap)
        if v == target_version:
            if cost > policy.max_delta_share * full_bytes:
                return UpdatePlan("full", [], full_bytes, f"deltas ({cost} B) exceed "
                                  f"{policy.max_delta_share:.0%} of the full pack ({full_bytes} B)")
            return UpdatePlan("deltas", path, cost, f"{len(path)} delta(s)")
        if best.get(v, (1 << 62)) <= cost or steps >= policy.max_chain:
            continue
        best[v] = cost
        for e in deltas:
            if int(e["from_version"]) == v and int(e["to_version"]) <= target_version:
                n += 1
                heapq.heappush(heap, (cost + size(e), steps + 1, n, int(e["to_version"]), path + [e]))
    return UpdatePlan("full", [], full_bytes, "no delta chain to the target version")
