"""The one narrow module over the server's SQLite store (through sqlite-utils).

Durability: WAL journal, `synchronous=FULL` by default (the WAL is fsynced at every commit, so an
acknowledged tag survives a process kill *and* a power cut; NORMAL survives process kills only).
Writers take `BEGIN IMMEDIATE` so concurrent gunicorn workers queue on the lock (busy timeout)
instead of failing half-way. The schema is versioned: `MIGRATIONS` are applied in order inside one
write transaction and recorded in `schema_migrations` and `PRAGMA user_version`.

Other parts of the project read the store only through the module-level functions at the bottom
(`iter_tag_events`, `iter_accepted_appeals`, `iter_verified`, `create_api_key`).
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

import sqlite_utils

from server.store_errors import StoreError

log = logging.getLogger("callmark.server")
DB_NAME = "callmark.sqlite"
ALL_SCOPES = ("admin", "appeals", "publish", "keys", "read")

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "devices, tags, daily counts, api keys, appeals, audit", [
        """CREATE TABLE devices (id INTEGER PRIMARY KEY, device_hash TEXT NOT NULL UNIQUE,
             token_hash TEXT NOT NULL UNIQUE, platform TEXT, created_at INTEGER NOT NULL,
             token_at INTEGER NOT NULL)""",
        """CREATE TABLE tags (id INTEGER PRIMARY KEY, device_id INTEGER NOT NULL REFERENCES devices(id),
             event_id TEXT NOT NULL, number_raw TEXT NOT NULL, number_key INTEGER, e164 TEXT,
             irregular TEXT, category TEXT NOT NULL, ts TEXT NOT NULL, company TEXT, note TEXT,
             ring_s REAL, talk_s REAL, answered INTEGER, direction TEXT,
             received_at INTEGER NOT NULL, over_cap INTEGER NOT NULL DEFAULT 0)""",
        "CREATE UNIQUE INDEX tags_device_event ON tags(device_id, event_id)",
        """CREATE TABLE daily_counts (device_id INTEGER NOT NULL, day TEXT NOT NULL,
             n INTEGER NOT NULL, PRIMARY KEY (device_id, day))""",
        """CREATE TABLE api_keys (id INTEGER PRIMARY KEY, key_id TEXT NOT NULL UNIQUE,
             key_hash TEXT NOT NULL, scopes TEXT NOT NULL, label TEXT, created_at INTEGER NOT NULL,
             revoked_at INTEGER)""",
        """CREATE TABLE appeals (id INTEGER PRIMARY KEY, number TEXT NOT NULL, number_key INTEGER,
             contact TEXT NOT NULL, evidence TEXT NOT NULL, categories TEXT NOT NULL,
             status TEXT NOT NULL DEFAULT 'pending', filed_ts TEXT NOT NULL, decided_ts TEXT,
             decided_by TEXT, decision_note TEXT)""",
        "CREATE INDEX appeals_status ON appeals(status, id)",
        """CREATE TABLE audit (id INTEGER PRIMARY KEY, ts TEXT NOT NULL, actor TEXT NOT NULL,
             action TEXT NOT NULL, target TEXT, detail TEXT)""",
    ]),
    (2, "verified businesses and the lookup table", [
        """CREATE TABLE verified (number TEXT PRIMARY KEY, number_key INTEGER, company TEXT NOT NULL,
             added_ts TEXT NOT NULL, added_by TEXT)""",
        """CREATE TABLE lookup_labels (hash TEXT PRIMARY KEY, number TEXT NOT NULL,
             category TEXT NOT NULL, code INTEGER, confidence REAL, reporters INTEGER,
             flags INTEGER NOT NULL DEFAULT 0, last_ts INTEGER, company TEXT) WITHOUT ROWID""",
        "CREATE TABLE settings (k TEXT PRIMARY KEY, v TEXT)",
    ]),
    (3, "maintainer console: sessions, tags by number", [
        """CREATE TABLE console_sessions (sid_hash TEXT PRIMARY KEY, key_id TEXT NOT NULL,
             created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, ended_at INTEGER,
             ip TEXT) WITHOUT ROWID""",
        "CREATE INDEX console_sessions_key ON console_sessions(key_id)",
        "CREATE INDEX tags_e164 ON tags(e164)",
        "CREATE INDEX appeals_number ON appeals(number)",
    ]),
    (4, "source profile of every tag event (callmark/sources.py; phones upload 'app')", [
        "ALTER TABLE tags ADD COLUMN source TEXT NOT NULL DEFAULT 'app'",
    ]),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

TAG_COLUMNS = ("event_id", "number_raw", "number_key", "e164", "irregular", "category", "ts",
               "company", "note", "ring_s", "talk_s", "answered", "direction", "source")


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_hex(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


class Store:
    """SQLite store; one connection per (process, thread), opened lazily (fork-safe)."""

    def __init__(self, path: str | os.PathLike, synchronous: str = "FULL",
                 busy_timeout_ms: int = 10000, create: bool = True):
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self.busy_timeout_ms = busy_timeout_ms
        if not create and not self.path.exists():
            raise StoreError(f"no store at {self.path}; start the server once "
                             "(callmark serve) or set CALLMARK_DATA_DIR to the right folder")
        self._local = threading.local()

    # -- connections and transactions -------------------------------------------------------
    @property
    def db(self) -> sqlite_utils.Database:
        loc = self._local
        if getattr(loc, "pid", None) != os.getpid():
            loc.db = self._connect()
            loc.pid = os.getpid()
        return loc.db

    def _connect(self) -> sqlite_utils.Database:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout_ms / 1000,
                                   isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open store {self.path}: {e}") from e
        if mode.lower() != "wal":
            raise StoreError(f"store {self.path} refused WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        return sqlite_utils.Database(conn, execute_plugins=False)

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE); commits on success, rolls back on error."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        loc = self._local
        if getattr(loc, "pid", None) == os.getpid():
            loc.db.close()
        loc.pid = None

    # -- schema -----------------------------------------------------------------------------
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self, target: int = SCHEMA_VERSION) -> int:
        """Apply pending migrations up to `target`; returns the resulting schema version."""
        with self.write() as conn:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise StoreError(f"store {self.path} has schema v{current}, newer than this "
                                 f"server (v{SCHEMA_VERSION}); upgrade the server")
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY "
                         "KEY, name TEXT NOT NULL, applied_ts TEXT NOT NULL)")
            for version, name, statements in MIGRATIONS:
                if current < version <= target:
                    for sql in statements:
                        conn.execute(sql)
                    conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                                 (version, name, utc_now_iso()))
                    conn.execute(f"PRAGMA user_version={version}")
                    current = version
        return current

    def check(self) -> str:
        """PRAGMA integrity_check result ('ok' when clean)."""
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    # -- devices ----------------------------------------------------------------------------
    def register_device(self, device_hash: str, token_hash: str, platform: str | None) -> int:
        """Create the device or rotate its token; returns the device row id."""
        now = int(time.time())
        with self.write() as conn:
            row = conn.execute("SELECT id FROM devices WHERE device_hash=?",
                               (device_hash,)).fetchone()
            if row:
                conn.execute("UPDATE devices SET token_hash=?, token_at=?, platform=? WHERE id=?",
                             (token_hash, now, platform, row[0]))
                return row[0]
            cur = conn.execute("INSERT INTO devices (device_hash, token_hash, platform, "
                               "created_at, token_at) VALUES (?, ?, ?, ?, ?)",
                               (device_hash, token_hash, platform, now, now))
            return cur.lastrowid

    def device_for_token(self, token_hash: str, max_age_s: int = 0,
                         now: float | None = None) -> tuple[int, str] | None:
        """(device id, device hash) owning the token, or None (unknown, or issued more than
        `max_age_s` seconds ago when max_age_s > 0: the device re-registers for a new one)."""
        row = self.conn.execute("SELECT id, device_hash, token_at FROM devices WHERE token_hash=?",
                                (token_hash,)).fetchone()
        if row is None or (max_age_s > 0 and row[2] + max_age_s <= (now or time.time())):
            return None
        return row[0], row[1]

    # -- tags -------------------------------------------------------------------------------
    def insert_tags(self, device_id: int, events: list[dict], daily_cap: int,
                    now: float | None = None) -> dict[str, int]:
        """Store a batch idempotently in one transaction; returns counts.

        Duplicates (same device and event_id, earlier or within the batch) are ignored. New events
        beyond the device's `daily_cap` for the event's UTC day (from its `ts`; offline queues
        uploaded later count on the day they happened) are stored with over_cap=1.
        The function returns only after COMMIT, i.e. once the batch is durable."""
        now = time.time() if now is None else now
        today = time.strftime("%Y-%m-%d", time.gmtime(now))
        seen: dict[str, dict] = {}
        for ev in events:
            seen.setdefault(ev["event_id"], ev)
        flagged = 0
        with self.write() as conn:
            ids = list(seen)
            existing: set[str] = set()
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                q = ",".join("?" * len(chunk))
                existing.update(r[0] for r in conn.execute(
                    f"SELECT event_id FROM tags WHERE device_id=? AND event_id IN ({q})",
                    [device_id, *chunk]))
            new = [ev for eid, ev in seen.items() if eid not in existing]
            used: dict[str, int] = {}
            rows = []
            have = {r[1] for r in conn.execute("PRAGMA table_info(tags)")}
            cols = [c for c in TAG_COLUMNS if c in have]  # a store not yet at migration 4: no source
            for ev in new:
                day = str(ev.get("ts") or "")[:10] or today
                if day not in used:
                    row = conn.execute("SELECT n FROM daily_counts WHERE device_id=? AND day=?",
                                       (device_id, day)).fetchone()
                    used[day] = row[0] if row else 0
                over = 1 if used[day] >= daily_cap else 0
                used[day] += 1
                flagged += over
                rows.append((device_id, *[ev.get(c) or "app" if c == "source" else ev.get(c)
                                          for c in cols], int(now), over))
            if rows:
                conn.executemany(
                    f"INSERT INTO tags (device_id, {', '.join(cols)}, received_at, over_cap) "
                    f"VALUES ({','.join('?' * (len(cols) + 3))})", rows)
                conn.executemany("INSERT INTO daily_counts (device_id, day, n) VALUES (?, ?, ?) "
                                 "ON CONFLICT(device_id, day) DO UPDATE SET n=excluded.n",
                                 [(device_id, d, n) for d, n in used.items()])
        stored = len(rows)
        return {"acked": len(events), "stored": stored, "duplicates": len(events) - stored,
                "flagged": flagged, "irregular": sum(1 for ev in new if ev.get("irregular"))}

    def count_tags(self) -> int:
        return self.conn.execute("SELECT count(*) FROM tags").fetchone()[0]

    def iter_tag_events(self, include_flagged: bool = False) -> Iterator[dict]:
        """Tag events in arrival order, in the consensus ingest's row shape."""
        where = "" if include_flagged else "WHERE t.over_cap = 0"
        sql = ("SELECT t.event_id, coalesce(t.e164, t.number_raw) AS number, "
               "'d' || substr(d.device_hash, 1, 24) AS reporter, t.category, t.ts, t.company, "
               "t.note, t.ring_s, t.talk_s, t.answered, t.direction, t.source "
               f"FROM tags t JOIN devices d ON d.id = t.device_id {where} ORDER BY t.id")
        for row in self.db.query(sql):
            if row["answered"] is not None:
                row["answered"] = bool(row["answered"])
            yield row

    # -- api keys ---------------------------------------------------------------------------
    def create_api_key(self, scopes: Iterable[str], label: str = "",
                       secret: str | None = None, actor: str = "system") -> str:
        """Create an API key; returns the key string (shown once; only its hash is stored)."""
        scopes = sorted(set(scopes))
        bad = [s for s in scopes if s not in ALL_SCOPES]
        if bad or not scopes:
            raise StoreError(f"unknown or empty scopes {bad or scopes}; known: {list(ALL_SCOPES)}")
        key = secret or f"cmk_{secrets.token_hex(6)}_{secrets.token_urlsafe(24)}"
        key_id = key_id_of(key)
        with self.write() as conn:
            if conn.execute("SELECT 1 FROM api_keys WHERE key_id=?", (key_id,)).fetchone():
                raise StoreError(f"an API key with id {key_id} already exists")
            conn.execute("INSERT INTO api_keys (key_id, key_hash, scopes, label, created_at) "
                         "VALUES (?, ?, ?, ?, ?)",
                         (key_id, sha256_hex(key), " ".join(scopes), label, int(time.time())))
            self._audit(conn, actor, "key.create", key_id, f"scopes={' '.join(scopes)}")
        return key

    def ensure_api_key(self, key: str, scopes: Iterable[str], label: str) -> list[str]:
        """Make `key` the one active key labelled `label` (the bootstrap key from the environment).

        Other active keys with that label are revoked (rotation: the previous CALLMARK_ADMIN_KEY
        stops working); a key reusing the id of an older one replaces it. Each change is audited
        and logged. Returns the ids revoked or replaced."""
        scopes = sorted(set(scopes))
        key_id, key_hash, now = key_id_of(key), sha256_hex(key), int(time.time())
        changed: list[str] = []
        with self.write() as conn:
            for kid, in conn.execute("SELECT key_id FROM api_keys WHERE label=? AND revoked_at IS NULL "
                                     "AND key_hash<>?", (label, key_hash)).fetchall():
                if kid != key_id:
                    conn.execute("UPDATE api_keys SET revoked_at=? WHERE key_id=?", (now, kid))
                    self._audit(conn, "system", "key.revoke", kid, f"replaced by {label}")
                    changed.append(kid)
            row = conn.execute("SELECT key_hash, revoked_at, scopes FROM api_keys WHERE key_id=?",
                               (key_id,)).fetchone()
            if row is None:
                conn.execute("INSERT INTO api_keys (key_id, key_hash, scopes, label, created_at) "
                             "VALUES (?, ?, ?, ?, ?)", (key_id, key_hash, " ".join(scopes), label, now))
                self._audit(conn, "system", "key.create", key_id, f"scopes={' '.join(scopes)} ({label})")
            elif not hmac.compare_digest(row[0], key_hash) or row[1] is not None or row[2] != " ".join(scopes):
                conn.execute("UPDATE api_keys SET key_hash=?, scopes=?, label=?, created_at=?, revoked_at=NULL "
                             "WHERE key_id=?", (key_hash, " ".join(scopes), label, now, key_id))
                self._audit(conn, "system", "key.replace", key_id, f"scopes={' '.join(scopes)} ({label})")
                changed.append(key_id)
        for kid in changed:
            log.warning("API key %s revoked or replaced by the new %s", kid, label)
        return changed

    def api_key_scopes(self, key: str) -> tuple[str, set[str]] | None:
        """(key id, scopes) of a valid, unrevoked key, else None (constant-time hash compare)."""
        row = self.conn.execute("SELECT key_hash, scopes FROM api_keys WHERE key_id=? AND "
                                "revoked_at IS NULL", (key_id_of(key),)).fetchone()
        if row and hmac.compare_digest(row[0], sha256_hex(key)):
            return key_id_of(key), set(row[1].split())
        return None

    def list_api_keys(self) -> list[dict]:
        return list(self.db.query("SELECT key_id, scopes, label, created_at, revoked_at "
                                  "FROM api_keys ORDER BY id"))

    def revoke_api_key(self, key_id: str, actor: str) -> bool:
        with self.write() as conn:
            n = conn.execute("UPDATE api_keys SET revoked_at=? WHERE key_id=? AND revoked_at "
                             "IS NULL", (int(time.time()), key_id)).rowcount
            if n:
                self._audit(conn, actor, "key.revoke", key_id, "")
        return bool(n)

    # -- appeals and audit -------------------------------------------------------------------
    def _audit(self, conn, actor: str, action: str, target: str, detail: str) -> None:
        conn.execute("INSERT INTO audit (ts, actor, action, target, detail) VALUES (?,?,?,?,?)",
                     (utc_now_iso(), actor, action, target, detail))

    def audit(self, actor: str, action: str, target: str, detail: str = "") -> None:
        with self.write() as conn:
            self._audit(conn, actor, action, target, detail)

    def list_audit(self, limit: int = 100, offset: int = 0) -> list[dict]:
        return list(self.db.query("SELECT * FROM audit ORDER BY id DESC LIMIT ? OFFSET ?",
                                  (limit, offset)))

    def create_appeal(self, number: str, number_key: int | None, contact: str, evidence: str,
                      categories: list[str]) -> int:
        with self.write() as conn:
            cur = conn.execute("INSERT INTO appeals (number, number_key, contact, evidence, "
                               "categories, filed_ts) VALUES (?, ?, ?, ?, ?, ?)",
                               (number, number_key, contact, evidence, ";".join(categories),
                                utc_now_iso()))
            self._audit(conn, "public", "appeal.file", str(cur.lastrowid), number)
            return cur.lastrowid

    def get_appeal(self, appeal_id: int) -> dict | None:
        rows = list(self.db.query("SELECT * FROM appeals WHERE id=?", (appeal_id,)))
        return rows[0] if rows else None

    def list_appeals(self, status: str | None, limit: int = 100, offset: int = 0) -> list[dict]:
        if status:
            return list(self.db.query("SELECT * FROM appeals WHERE status=? ORDER BY id "
                                      "LIMIT ? OFFSET ?", (status, limit, offset)))
        return list(self.db.query("SELECT * FROM appeals ORDER BY id LIMIT ? OFFSET ?",
                                  (limit, offset)))

    def decide_appeal(self, appeal_id: int, accept: bool, actor: str, note: str) -> str | None:
        """Move a pending appeal to accepted/rejected; returns the old status (None = missing)."""
        status = "accepted" if accept else "rejected"
        with self.write() as conn:
            row = conn.execute("SELECT status FROM appeals WHERE id=?", (appeal_id,)).fetchone()
            if row is None or row[0] != "pending":
                return row[0] if row else None
            conn.execute("UPDATE appeals SET status=?, decided_ts=?, decided_by=?, "
                         "decision_note=? WHERE id=?",
                         (status, utc_now_iso(), actor, note, appeal_id))
            self._audit(conn, actor, f"appeal.{status[:-2]}", str(appeal_id), note)
        return "pending"

    def iter_accepted_appeals(self) -> Iterator[dict]:
        """Accepted appeals as appeals.csv rows: number, categories (;-joined), filed_ts, accepted."""
        for row in self.db.query("SELECT number, categories, filed_ts, 1 AS accepted FROM appeals "
                                 "WHERE status='accepted' ORDER BY id"):
            yield row

    # -- verified businesses ------------------------------------------------------------------
    def upsert_verified(self, number: str, number_key: int | None, company: str,
                        actor: str) -> None:
        with self.write() as conn:
            conn.execute("INSERT INTO verified (number, number_key, company, added_ts, added_by) "
                         "VALUES (?, ?, ?, ?, ?) ON CONFLICT(number) DO UPDATE SET "
                         "company=excluded.company, added_ts=excluded.added_ts, "
                         "added_by=excluded.added_by",
                         (number, number_key, company, utc_now_iso(), actor))
            self._audit(conn, actor, "verified.set", number, company)

    def delete_verified(self, number: str, actor: str) -> bool:
        with self.write() as conn:
            n = conn.execute("DELETE FROM verified WHERE number=?", (number,)).rowcount
            if n:
                self._audit(conn, actor, "verified.delete", number, "")
        return bool(n)

    def iter_verified(self) -> Iterator[dict]:
        """Verified businesses as verified.csv rows: number, company."""
        yield from self.db.query("SELECT number, company FROM verified ORDER BY number")

    # -- lookup table ---------------------------------------------------------------------
    def replace_labels(self, rows: Iterable[dict], version: str, actor: str) -> int:
        """Atomically replace the lookup table (rows: hash, number, category, code, confidence,
        reporters, flags, last_ts, company); returns the number of rows."""
        cols = ("hash", "number", "category", "code", "confidence", "reporters", "flags",
                "last_ts", "company")
        n = 0
        with self.write() as conn:
            conn.execute("DELETE FROM lookup_labels")
            sql = (f"INSERT OR REPLACE INTO lookup_labels ({','.join(cols)}) "
                   f"VALUES ({','.join('?' * len(cols))})")
            batch = []
            for r in rows:
                batch.append(tuple(r.get(c) for c in cols))
                if len(batch) >= 5000:
                    conn.executemany(sql, batch)
                    n += len(batch)
                    batch = []
            conn.executemany(sql, batch)
            n += len(batch)
            count = conn.execute("SELECT count(*) FROM lookup_labels").fetchone()[0]
            for k, v in (("lookup_version", version), ("lookup_count", str(count)),
                         ("lookup_ts", utc_now_iso())):
                conn.execute("INSERT OR REPLACE INTO settings (k, v) VALUES (?, ?)", (k, v))
            self._audit(conn, actor, "labels.replace", version, f"rows={count}")
        return count

    def lookup_meta(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.conn.execute(
            "SELECT k, v FROM settings WHERE k LIKE 'lookup_%'")}

    def lookup_prefix(self, prefix: str, limit: int) -> list[dict]:
        """Labels whose hash starts with `prefix` (lower-case hex), at most `limit` + 1 rows."""
        cur = self.conn.execute(
            "SELECT hash, category, code, confidence, reporters, flags, last_ts, company "
            "FROM lookup_labels WHERE hash >= ? AND hash < ? ORDER BY hash LIMIT ?",
            (prefix, prefix + "g", limit + 1))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur]


def key_id_of(key: str) -> str:
    """Public id of an API key: its `cmk_<id>_` part, else a hash prefix."""
    parts = key.split("_")
    if len(parts) >= 3 and parts[0] == "cmk" and parts[1]:
        return parts[1][:32]
    return "h" + sha256_hex(key)[:12]


def open_store(data_dir: str | os.PathLike, create: bool = False, migrate: bool = True,
               synchronous: str = "FULL") -> Store:
    """Open (and by default migrate) the store in `data_dir`."""
    store = Store(Path(data_dir) / DB_NAME, synchronous=synchronous, create=create)
    if migrate:
        store.migrate()
    return store


def _stream(data_dir: str | os.PathLike, method: str, *args) -> Iterator[dict]:
    """Yield from Store.<method>(*args) on the store under `data_dir`, closing it afterwards."""
    store = open_store(data_dir)
    try:
        yield from getattr(store, method)(*args)
    finally:
        store.close()


def iter_tag_events(data_dir: str | os.PathLike, include_flagged: bool = False) -> Iterator[dict]:
    """Stream uploaded tag events (number, reporter, category, ts, company, note, ring_s, talk_s,
    answered, direction, plus event_id and source, the source profile) for the consensus ingest. `number` is E.164 when the
    number normalised, else the raw string as uploaded (irregular numbers are evidence too).
    Events past a reporter's daily cap are left out unless include_flagged."""
    yield from _stream(data_dir, "iter_tag_events", include_flagged)


def iter_accepted_appeals(data_dir: str | os.PathLike) -> Iterator[dict]:
    """Accepted appeals in appeals.csv's shape: number, categories (;-joined), filed_ts, accepted."""
    yield from _stream(data_dir, "iter_accepted_appeals")


def iter_verified(data_dir: str | os.PathLike) -> Iterator[dict]:
    """Verified businesses in verified.csv's shape: number (E.164), company."""
    yield from _stream(data_dir, "iter_verified")


def create_api_key(data_dir: str | os.PathLike, scopes: Iterable[str] = ("admin",),
                   label: str = "") -> str:
    """Create an API key in the store under `data_dir` (creating the store if needed)."""
    store = open_store(data_dir, create=True)
    try:
        return store.create_api_key(scopes, label)
    finally:
        store.close()
