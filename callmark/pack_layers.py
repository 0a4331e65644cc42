"""The pack on the phone: an immutable base plus overlays of the changes since (ADR 0006).

A *layered pack* is a directory (docs/pack-format.md §9):

    HEAD                    JSON pointer naming the current generation's files and the pack's meta
    base-<g>.sqlite         a plain format-1 pack (callmark.pack), written whole at expand/compaction
    settled-<g>.sqlite      overlay: changes since the base, merged from `recent` every few deltas
    recent-<g>.sqlite       overlay: changes since `settled`, rewritten by every delta
    LOCK                    held (flock) by the one writer

Every file is written whole under a new generation number and never modified; a change is committed
by replacing HEAD (temp file, fsync, rename, fsync of the directory), and files HEAD no longer names
are deleted afterwards. A crash therefore leaves the old HEAD with its files or the new one with its
files, never a mix; readers open the files HEAD names with `immutable=1` and keep their snapshot.

Overlay rows are upserts (`dead = 0`, the whole row) and tombstones (`dead = 1`); the newest layer
holding a key (or a range's (start, size)) wins. A delta is merged into `recent`; when `recent` would
pass `LayerPolicy.recent_share` of the base's rows it is merged into `settled` instead, and when
`settled` would pass `settled_share`, everything is compacted into a new base. The state hash is the
multiset hash of the *effective* rows, so a delta updates it from the changed rows only.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import urllib.parse
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np

from callmark.files import commit_file, fsync_dir
from callmark.pack import (
    BLOCK_SIZE, LABEL_COLS, MAX_RANGE_SIZE, PACK_FORMAT, RANGE_COLS, SCHEMA, Label, PackError,
    PackFormatError, PackIntegrityError, PackReader, PackStateMismatch, PackTable, PARAMS_PER_STATEMENT,
    block_start, check_delta_result, check_delta_start, check_meta, decode_delta, expand_wire, harmful_codes,
    hash_hex, others_in_block, read_blob, rows_hash, table_hash,
)
from callmark.pack_layer_sql import OVERLAY_SCHEMA, block_sql, lookup_sql, merge_select

__all__ = [
    "LAYOUT_FORMAT", "HEAD_NAME", "LayerPolicy", "LayeredReader", "is_layered", "read_head", "read_meta",
    "install_full", "adopt_file", "apply_delta", "compact", "read_table", "state_hash", "verify",
    "layer_stats", "remove", "OVERLAY_SCHEMA", "lookup_sql", "merge_select",
]

LAYOUT_FORMAT = 1
HEAD_NAME = "HEAD"
LEVELS = ("base", "settled", "recent")  # bottom to top
_FILE_RE = re.compile(r"^(base|settled|recent)-(\d{6,})\.sqlite(-journal)?$")

@dataclass
class LayerPolicy:
    """When a delta goes to `recent`, to `settled`, or compacts into a new base (shares of base rows).

    Defaults from tools/bench/packs.py: 30 daily 1 % deltas write ~8 % of the base per delta on
    average with one compaction about every 25 days (docs/benchmarks.md).
    """

    recent_share: float = 0.05
    settled_share: float = 0.25

    def target(self, base_rows: int, settled_rows: int, recent_rows: int, delta_rows: int) -> str:
        """The level the merged rows are written to: "recent", "settled" or "base"."""
        base_rows = max(1, base_rows)
        if settled_rows + recent_rows + delta_rows > self.settled_share * base_rows:
            return "base"
        if recent_rows + delta_rows > self.recent_share * base_rows:
            return "settled"
        return "recent"

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- HEAD and files

def is_layered(path: str) -> bool:
    """True when `path` is a layered pack directory (it holds a HEAD)."""
    return os.path.isfile(os.path.join(path, HEAD_NAME))


def read_head(pack_dir: str) -> dict:
    """The HEAD of a layered pack: {layout, generation, files: {level: file}, rows, bytes, meta}."""
    p = os.path.join(pack_dir, HEAD_NAME)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"no layered pack at {pack_dir} (no {HEAD_NAME}); install a full pack first")
    try:
        with open(p, encoding="utf-8") as f:
            head = json.load(f)
    except (OSError, ValueError) as exc:
        raise PackIntegrityError(f"{p}: unreadable ({exc}); install the full pack again") from None
    if not isinstance(head, dict) or head.get("layout") != LAYOUT_FORMAT or "base" not in head.get("files", {}):
        raise PackFormatError(f"{p}: not a layout-{LAYOUT_FORMAT} pack HEAD; install the full pack again")
    return head


def read_meta(pack_dir: str) -> dict:
    """The effective meta of a layered pack (version, state_hash, entries … as strings)."""
    return dict(read_head(pack_dir)["meta"])


def _write_head(pack_dir: str, head: dict) -> None:
    tmp = os.path.join(pack_dir, f".{HEAD_NAME}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(head, f, indent=1, sort_keys=True)
    commit_file(tmp, os.path.join(pack_dir, HEAD_NAME))


def _gc(pack_dir: str, head: dict | None) -> None:
    """Delete layer files (and temp files) HEAD does not name."""
    keep = set((head or {}).get("files", {}).values())
    for f in os.listdir(pack_dir):
        m = _FILE_RE.match(f)
        if (m and f not in keep) or (f.startswith(".") and ".tmp-" in f):
            try:
                os.remove(os.path.join(pack_dir, f))
            except FileNotFoundError:
                pass


@contextmanager
def _writer_lock(pack_dir: str):
    os.makedirs(pack_dir, exist_ok=True)
    fd = os.open(os.path.join(pack_dir, "LOCK"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            import fcntl
            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - non-POSIX
            pass
        yield
    finally:
        os.close(fd)


def _file_name(level: str, gen: int) -> str:
    return f"{level}-{gen:06d}.sqlite"


def _uri(path: str, readonly: bool = True) -> str:
    u = "file:" + urllib.parse.quote(os.path.abspath(path))
    return u + "?mode=ro&immutable=1" if readonly else u


def _open_layers(pack_dir: str, head: dict) -> tuple[sqlite3.Connection, list]:
    """Read-only connection: main = base, `settled`/`recent` attached. Returns (con, overlay schemas)."""
    files = head["files"]
    con = sqlite3.connect(_uri(os.path.join(pack_dir, files["base"])), uri=True, check_same_thread=False)
    over = []
    try:
        for level in ("settled", "recent"):
            if level in files:
                con.execute(f"ATTACH DATABASE ? AS {level}", (_uri(os.path.join(pack_dir, files[level])),))
                over.append(level)
    except sqlite3.Error:
        con.close()
        raise
    return con, over


def _open_snapshot(pack_dir: str) -> tuple[dict, sqlite3.Connection, list]:
    """(head, con, overlays) of one consistent generation (retries when a writer just swapped it)."""
    last = None
    for _ in range(20):
        head = read_head(pack_dir)
        try:
            con, over = _open_layers(pack_dir, head)
            con.execute("SELECT count(*) FROM main.meta").fetchone()
            for s in over:
                con.execute(f"SELECT count(*) FROM {s}.meta").fetchone()
            return head, con, over
        except sqlite3.Error as exc:  # a file was collected between reading HEAD and opening it
            last = exc
            if head == read_head(pack_dir):
                break
    raise PackIntegrityError(f"{pack_dir}: the files HEAD names cannot be opened ({last}); "
                             "install the full pack again")


# ---------------------------------------------------------------- reading

class LayeredReader(PackReader):
    """Lookups on a layered pack: the overlays, then the base, in one statement (one indexed read each).

    Opens the generation HEAD names (immutable); a later apply or compaction does not disturb it.
    Reopen (e.g. `Handset` after a sync) to see the new state.
    """

    def __init__(self, pack_dir: str):  # noqa: D107 - PackReader's interface
        self.path = pack_dir
        self.head, self._con, over = _open_snapshot(pack_dir)
        check_meta(self._con)  # the base must be a format-1 pack
        self.meta = dict(self.head["meta"])
        self._max_range = int(self.meta.get("max_range_size", MAX_RANGE_SIZE))
        self._cats = {code: (key, action) for code, key, action in
                      self._con.execute("SELECT code, key, action FROM categories")}
        self._harmful = harmful_codes(self._con)
        with_ranges = [s for s in over if self._con.execute(f"SELECT EXISTS (SELECT 1 FROM {s}.ranges)").fetchone()[0]]
        self._sql = lookup_sql(list(reversed(over)), with_ranges)
        self._block_sql = block_sql(list(reversed(over)))
        self._stmt = self._con.cursor()

    def block_harmful(self, key: int) -> int:
        """As PackReader.block_harmful, over base + overlays (the top layer's row of a key wins; a dead
        row removes it). One indexed range read per layer."""
        lo, rows = block_start(key), {}
        for sql in self._block_sql:
            for k, c, dead in self._con.execute(sql, (lo, lo + BLOCK_SIZE)):
                rows.setdefault(k, (c, dead))
        return others_in_block(key, {k for k, (c, dead) in rows.items() if not dead and c in self._harmful})

    def lookup(self, key: int) -> Label | None:
        """As PackReader.lookup, over base + overlays."""
        return self._label(key, self._stmt.execute(self._sql, (int(key), self._max_range)).fetchone())


def read_table(pack_dir: str) -> tuple[dict, PackTable]:
    """(effective meta, effective content) of a layered pack (loads every row: for checks and tests)."""
    head, con, over = _open_snapshot(pack_dir)
    try:
        layers = [(s, True) for s in reversed(over)] + [("main", False)]
        lab = con.execute(merge_select("labels", layers, keep_dead=False)).fetchall()
        rng = con.execute(merge_select("ranges", layers, keep_dead=False)).fetchall()
        names = dict(con.execute(merge_select("businesses", layers, keep_dead=False)))
    finally:
        con.close()
    lab = np.array(lab, dtype=np.int64).reshape(-1, len(LABEL_COLS))
    rng = np.array(rng, dtype=np.int64).reshape(-1, len(RANGE_COLS))
    return dict(head["meta"]), PackTable(dict(zip(LABEL_COLS, lab.T)), dict(zip(RANGE_COLS, rng.T)), names)


def state_hash(pack_dir: str) -> str:
    """Recompute a layered pack's state hash from its effective rows (hex)."""
    return hash_hex(table_hash(read_table(pack_dir)[1]))


def verify(pack_dir: str) -> dict:
    """Full check: every file's SQLite integrity, overlay metas agree with HEAD, recomputed state hash
    and entry count equal HEAD's. Returns the effective meta; raises PackIntegrityError."""
    head, con, over = _open_snapshot(pack_dir)
    try:
        for s in ["main"] + over:
            ok = con.execute(f"PRAGMA {s}.integrity_check").fetchone()[0]
            if ok != "ok":
                raise PackIntegrityError(f"{pack_dir}: {s} layer fails the SQLite integrity check: {ok}")
        if over:
            top = dict(con.execute(f"SELECT k, v FROM {over[-1]}.meta"))
            if top.get("state_hash") != head["meta"].get("state_hash"):
                raise PackIntegrityError(f"{pack_dir}: top overlay and HEAD disagree on the state hash")
    except sqlite3.DatabaseError as exc:
        raise PackIntegrityError(f"{pack_dir}: a layer is not a readable SQLite file ({exc})") from None
    finally:
        con.close()
    meta, t = read_table(pack_dir)
    h = hash_hex(table_hash(t))
    if h != meta.get("state_hash") or str(t.entries) != str(meta.get("entries")):
        raise PackIntegrityError(f"{pack_dir}: rows hash to {h} ({t.entries} entries) but HEAD says "
                                 f"{meta.get('state_hash')} ({meta.get('entries')})")
    return meta


def layer_stats(pack_dir: str) -> dict:
    """Rows and bytes per level, and the generation (for status output and benchmarks)."""
    head = read_head(pack_dir)
    return {"generation": head["generation"], "rows": dict(head["rows"]), "bytes": dict(head["bytes"]),
            "base_version": head.get("base_version")}


# ---------------------------------------------------------------- writing

def _head_for(gen: int, files: dict, rows: dict, pack_dir: str, meta: dict, base_version) -> dict:
    return {"layout": LAYOUT_FORMAT, "generation": gen, "files": files, "rows": rows,
            "bytes": {lv: os.path.getsize(os.path.join(pack_dir, f)) for lv, f in files.items()},
            "base_version": str(base_version), "meta": {k: str(v) for k, v in sorted(meta.items())}}


def _commit_base(pack_dir: str, base_file: str, gen: int) -> dict:
    meta = _base_meta(os.path.join(pack_dir, base_file))
    rows = {"base": int(meta["entries"])}
    head = _head_for(gen, {"base": base_file}, rows, pack_dir, meta, meta["version"])
    _write_head(pack_dir, head)
    _gc(pack_dir, head)
    return head


def _base_meta(path: str) -> dict:
    con = sqlite3.connect(_uri(path), uri=True)
    try:
        return check_meta(con)
    finally:
        con.close()


def _next_gen(pack_dir: str) -> int:
    try:
        return int(read_head(pack_dir)["generation"]) + 1
    except (FileNotFoundError, PackError, KeyError, ValueError):
        gens = [int(m.group(2)) for m in map(_FILE_RE.match, os.listdir(pack_dir)) if m]
        return max(gens, default=0) + 1


def install_full(wire_path: str, pack_dir: str, expected_sha256: str | None = None,
                 expected_state_hash: str | None = None) -> dict:
    """Expand a full pack's wire blob into a new base (no overlays) and commit it; returns the meta.

    Nothing changes when the blob's SHA-256 or state hash is wrong (PackIntegrityError,
    PackStateMismatch). Creates `pack_dir` when missing.
    """
    with _writer_lock(pack_dir):
        gen = _next_gen(pack_dir)
        _gc(pack_dir, _try_head(pack_dir))
        name = _file_name("base", gen)
        expand_wire(wire_path, os.path.join(pack_dir, name), expected_sha256, expected_state_hash)
        return dict(_commit_base(pack_dir, name, gen)["meta"])


def adopt_file(sqlite_path: str, pack_dir: str, move: bool = False) -> dict:
    """Make a plain pack file the base of a layered pack (moved when `move`, else copied)."""
    import shutil
    _base_meta(sqlite_path)  # must be a pack
    with _writer_lock(pack_dir):
        gen = _next_gen(pack_dir)
        name = _file_name("base", gen)
        dest = os.path.join(pack_dir, name)
        if move:
            os.replace(sqlite_path, dest)
        else:
            shutil.copyfile(sqlite_path, dest)
        fd = os.open(dest, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return dict(_commit_base(pack_dir, name, gen)["meta"])


def _try_head(pack_dir: str) -> dict | None:
    try:
        return read_head(pack_dir)
    except (FileNotFoundError, PackError):
        return None


def _old_rows(con, over: list, d) -> tuple[np.ndarray, np.ndarray, dict]:
    """Effective rows (labels, ranges, names) of every key / range the delta touches."""
    layers = list(reversed(over)) + ["main"]
    keys = sorted(set(d.removals.tolist()) | set(d.upserts.labels["key"].tolist()))
    found: dict[int, tuple] = {}
    names: dict[int, str] = {}
    for s in layers:
        dead = "l.dead" if s != "main" else "0"
        todo = [k for k in keys if k not in found]
        for c in range(0, len(todo), PARAMS_PER_STATEMENT):
            chunk = todo[c:c + PARAMS_PER_STATEMENT]
            for row in con.execute(
                    f"SELECT {', '.join('l.' + x for x in LABEL_COLS)}, {dead}, b.name FROM {s}.labels l "
                    f"LEFT JOIN {s}.businesses b ON b.key = l.key WHERE l.key IN ({','.join('?' * len(chunk))})",
                    chunk):
                found[row[0]] = None if row[6] else row[:6]
                if row[7] is not None and not row[6]:
                    names[row[0]] = row[7]
    lab = np.array([r for r in found.values() if r is not None], dtype=np.int64).reshape(-1, len(LABEL_COLS))
    rr = d.range_removals
    rkeys = sorted(set(zip(rr["start"].tolist(), rr["size"].tolist()))
                   | set(zip(d.upserts.ranges["start"].tolist(), d.upserts.ranges["size"].tolist())))
    rfound: dict[tuple, tuple] = {}
    for s in layers:
        dead = "dead" if s != "main" else "0"
        for rk in rkeys:
            if rk in rfound:
                continue
            row = con.execute(f"SELECT {', '.join(RANGE_COLS)}, {dead} FROM {s}.ranges WHERE start = ? AND size = ?",
                              rk).fetchone()
            if row is not None:
                rfound[rk] = None if row[7] else row[:7]
    rng = np.array([r for r in rfound.values() if r is not None], dtype=np.int64).reshape(-1, len(RANGE_COLS))
    return lab, rng, names


def _load_delta(con, d) -> None:
    """The delta as temp tables labels / ranges / businesses (in memory) of the writer connection."""
    for stmt in OVERLAY_SCHEMA[1:]:
        con.execute(stmt.replace("CREATE TABLE ", "CREATE TEMP TABLE "))
    up = d.upserts
    n = len(LABEL_COLS)
    con.executemany(f"INSERT INTO temp.labels VALUES ({','.join('?' * (n + 1))})",
                    [(*r, 0) for r in zip(*(up.labels[c].tolist() for c in LABEL_COLS))]
                    + [(k, None, None, None, None, None, 1) for k in d.removals.tolist()])
    m = len(RANGE_COLS)
    rr = d.range_removals
    con.executemany(f"INSERT INTO temp.ranges VALUES ({','.join('?' * (m + 1))})",
                    [(*r, 0) for r in zip(*(up.ranges[c].tolist() for c in RANGE_COLS))]
                    + [(s, z, None, None, None, None, None, 1)
                       for s, z in zip(rr["start"].tolist(), rr["size"].tolist())])
    con.executemany("INSERT INTO temp.businesses VALUES (?,?)", sorted(up.names.items()))


def _write_level(pack_dir: str, level: str, gen: int, head: dict, d, meta: dict) -> tuple[str, int]:
    """Write `level` of generation `gen` = delta ⊕ the levels above it ⊕ itself; returns (file, rows)."""
    files = head["files"]
    inputs = {"recent": ["recent"], "settled": ["recent", "settled"], "base": ["recent", "settled", "base"]}[level]
    name = _file_name(level, gen)
    path = os.path.join(pack_dir, name)
    for p in (path, path + "-journal"):
        if os.path.exists(p):
            os.remove(p)
    con = sqlite3.connect(_uri(path, readonly=False), isolation_level=None, uri=True)
    try:
        con.execute("PRAGMA page_size = 4096")
        con.execute("PRAGMA journal_mode = OFF")
        con.execute("PRAGMA synchronous = OFF")
        con.execute("PRAGMA temp_store = MEMORY")
        layers = [("temp", True)]
        for lv in inputs:
            if lv in files:
                con.execute(f"ATTACH DATABASE ? AS old_{lv}", (_uri(os.path.join(pack_dir, files[lv])),))
                layers.append((f"old_{lv}", lv != "base"))
        con.execute("BEGIN")
        _load_delta(con, d)
        is_base = level == "base"
        for stmt in (SCHEMA if is_base else OVERLAY_SCHEMA):
            con.execute(stmt.replace("CREATE TABLE ", "CREATE TABLE main."))
        if is_base:
            con.execute("INSERT INTO main.categories SELECT * FROM old_base.categories ORDER BY code")
        for table in ("labels", "ranges", "businesses"):
            con.execute(f"INSERT INTO main.{table} " + merge_select(table, layers, keep_dead=not is_base))
        rows = con.execute("SELECT (SELECT count(*) FROM main.labels) + (SELECT count(*) FROM main.ranges)"
                           ).fetchone()[0]
        own = dict(meta, layer=level, format=PACK_FORMAT)
        if is_base:
            own.pop("layer")
            own.update(labels=con.execute("SELECT count(*) FROM main.labels").fetchone()[0],
                       ranges=con.execute("SELECT count(*) FROM main.ranges").fetchone()[0])
        con.executemany("INSERT INTO main.meta VALUES (?,?)", [(k, str(v)) for k, v in sorted(own.items())])
        con.execute(f"PRAGMA main.user_version = {PACK_FORMAT}")
        con.execute("COMMIT")
    finally:
        con.close()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return name, rows


def apply_delta(pack_dir: str, delta_blob_path: str, expected_state_hash: str | None = None,
                expected_sha256: str | None = None, policy: LayerPolicy | None = None) -> dict:
    """Apply a delta blob to a layered pack; returns the new effective meta (plus `layer`, the level
    written: recent | settled | base).

    The old effective rows of the changed keys are read from the layers (O(delta)), the state hash is
    updated from them and must equal the delta's target (and `expected_state_hash`), else nothing is
    written and PackStateMismatch is raised: fetch the full pack then. Only the level the policy picks
    is rewritten; HEAD then names it (atomic), and superseded files are deleted.
    """
    policy = policy or LayerPolicy()
    header, d = decode_delta(read_blob(delta_blob_path, expected_sha256))
    with _writer_lock(pack_dir):
        head, con, over = _open_snapshot(pack_dir)
        try:
            meta = head["meta"]
            check_delta_start(meta, header)
            old_lab, old_rng, old_names = _old_rows(con, over, d)
        finally:
            con.close()
        present = set(old_lab[:, 0].tolist())
        missing = set(d.removals.tolist()) - present
        if missing:
            raise PackStateMismatch(f"delta removes key {min(missing)} which the pack does not hold")
        rr = d.range_removals
        old_blocks = set(map(tuple, old_rng[:, :2].tolist()))
        if set(zip(rr["start"].tolist(), rr["size"].tolist())) - old_blocks:
            raise PackStateMismatch("delta removes a range which the pack does not hold")
        up = d.upserts
        minus = rows_hash(dict(zip(LABEL_COLS, old_lab.T)), dict(zip(RANGE_COLS, old_rng.T)), old_names)
        h = hash_hex(int(meta["state_hash"], 16) + rows_hash(up.labels, up.ranges, up.names) - minus)
        new_lab = len(set(up.labels["key"].tolist()) - present) - len(d.removals)
        new_rng = len(set(zip(up.ranges["start"].tolist(), up.ranges["size"].tolist())) - old_blocks) - len(rr["start"])
        entries = int(meta["entries"]) + new_lab + new_rng
        check_delta_result(header, h, entries, expected_state_hash, "nothing was written")
        ranges = int(meta.get("ranges", 0)) + new_rng
        new_meta = dict(meta, version=header["version"], state_hash=h, entries=entries, ranges=ranges,
                        labels=entries - ranges)
        if "built_at" in header:
            new_meta["built_at"] = header["built_at"]
        rows = head["rows"]
        level = policy.target(rows["base"], rows.get("settled", 0), rows.get("recent", 0), d.changed)
        gen = int(head["generation"]) + 1
        _gc(pack_dir, head)  # leftovers of a killed writer
        name, n = _write_level(pack_dir, level, gen, head, d, new_meta)
        files = {"base": head["files"]["base"], **{lv: f for lv, f in head["files"].items()
                                                   if LEVELS.index(lv) < LEVELS.index(level)}}
        files[level] = name
        new_rows = {lv: rows[lv] for lv in files if lv != level}
        new_rows[level] = n
        base_version = new_meta["version"] if level == "base" else head.get("base_version")
        new_head = _head_for(gen, files, new_rows, pack_dir, new_meta, base_version)
        _write_head(pack_dir, new_head)
        _gc(pack_dir, new_head)
    return dict(new_head["meta"], layer=level)


def compact(pack_dir: str) -> dict:
    """Merge the overlays into a new base now (same state); returns the HEAD. No-op without overlays."""
    from callmark.pack_wire import Delta
    with _writer_lock(pack_dir):
        head = read_head(pack_dir)
        if set(head["files"]) == {"base"}:
            return head
        gen = int(head["generation"]) + 1
        _gc(pack_dir, head)
        meta = dict(head["meta"])
        name, n = _write_level(pack_dir, "base", gen, head, Delta(), meta)
        new_head = _head_for(gen, {"base": name}, {"base": n}, pack_dir, meta, meta["version"])
        _write_head(pack_dir, new_head)
        _gc(pack_dir, new_head)
        return new_head


def remove(pack_dir: str) -> None:
    """Delete a layered pack directory's files (HEAD first, so a crash leaves no half pack)."""
    with _writer_lock(pack_dir):
        p = os.path.join(pack_dir, HEAD_NAME)
        if os.path.exists(p):
            os.remove(p)
            fsync_dir(pack_dir)
        _gc(pack_dir, None)
