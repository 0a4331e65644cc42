"""The one narrow module over the server's store: SQLite by default, PostgreSQL by URL.

Backends (`server/store_backends.py`): `CALLMARK_DATABASE_URL` (or the `url` given to `Store`) is a
file path -> SQLite, or `postgresql://user:pass@host:port/db` -> PostgreSQL (psycopg 3 + a connection
pool). The domain logic below is written once for both.

Durability: an acknowledged write is committed before the caller returns. SQLite runs in WAL mode
with `synchronous=FULL` by default (the WAL is fsynced at every commit: an acknowledged tag survives
a process kill *and* a power cut; NORMAL survives process kills only); writers take `BEGIN
IMMEDIATE` so concurrent gunicorn workers queue on the lock (busy timeout) instead of failing
half-way. PostgreSQL commits with its default `synchronous_commit=on`; one device's uploads are
serialised by a row lock on the device. The schema is versioned: `MIGRATIONS` (one list for both
backends, dialect tokens filled by `store_backends.render`) are applied in order inside one write
transaction and recorded in `schema_migrations` (and SQLite's `PRAGMA user_version`).

Other parts of the project read the store only through the module-level functions at the bottom
(`iter_tag_events`, `iter_accepted_appeals`, `iter_verified`, `create_api_key`).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from server.store_backends import (PostgresBackend, SQLiteBackend, is_postgres_url,
                                   redact, render)
from server.store_errors import StoreError

log = logging.getLogger("callmark.server")
DB_NAME = "callmark.sqlite"
DATABASE_URL_ENV = "CALLMARK_DATABASE_URL"
ALL_SCOPES = ("admin", "appeals", "publish", "keys", "read")

# Dialect tokens ({pk}, {bigint}, {real}, {without_rowid}, {collate_c}): see store_backends.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "devices, tags, daily counts, api keys, appeals, audit", [
        """CREATE TABLE devices (id {pk}, device_hash TEXT NOT NULL UNIQUE,
             token_hash TEXT NOT NULL UNIQUE, platform TEXT, created_at {bigint} NOT NULL,
             token_at {bigint} NOT NULL)""",
        """CREATE TABLE tags (id {pk}, device_id {bigint} NOT NULL REFERENCES devices(id),
             event_id TEXT NOT NULL, number_raw TEXT NOT NULL, number_key {bigint}, e164 TEXT,
             irregular TEXT, category TEXT NOT NULL, ts TEXT NOT NULL, company TEXT, note TEXT,
             ring_s {real}, talk_s {real}, answered INTEGER, direction TEXT,
             received_at {bigint} NOT NULL, over_cap INTEGER NOT NULL DEFAULT 0)""",
        "CREATE UNIQUE INDEX tags_device_event ON tags(device_id, event_id)",
        """CREATE TABLE daily_counts (device_id {bigint} NOT NULL, day TEXT NOT NULL,
             n INTEGER NOT NULL, PRIMARY KEY (device_id, day))""",
        """CREATE TABLE api_keys (id {pk}, key_id TEXT NOT NULL UNIQUE,
             key_hash TEXT NOT NULL, scopes TEXT NOT NULL, label TEXT, created_at {bigint} NOT NULL,
             revoked_at {bigint})""",
        """CREATE TABLE appeals (id {pk}, number TEXT NOT NULL, number_key {bigint},
             contact TEXT NOT NULL, evidence TEXT NOT NULL, categories TEXT NOT NULL,
             status TEXT NOT NULL DEFAULT 'pending', filed_ts TEXT NOT NULL, decided_ts TEXT,
             decided_by TEXT, decision_note TEXT)""",
        "CREATE INDEX appeals_status ON appeals(status, id)",
        """CREATE TABLE audit (id {pk}, ts TEXT NOT NULL, actor TEXT NOT NULL,
             action TEXT NOT NULL, target TEXT, detail TEXT)""",
    ]),
    (2, "verified businesses and the lookup table", [
        """CREATE TABLE verified (number TEXT PRIMARY KEY, number_key {bigint}, company TEXT NOT NULL,
             added_ts TEXT NOT NULL, added_by TEXT)""",
        """CREATE TABLE lookup_labels (hash TEXT {collate_c} PRIMARY KEY, number TEXT NOT NULL,
             category TEXT NOT NULL, code INTEGER, confidence {real}, reporters INTEGER,
             flags INTEGER NOT NULL DEFAULT 0, last_ts {bigint}, company TEXT) {without_rowid}""",
        "CREATE TABLE settings (k TEXT PRIMARY KEY, v TEXT)",
    ]),
    (3, "maintainer console: sessions, tags by number", [
        """CREATE TABLE console_sessions (sid_hash TEXT PRIMARY KEY, key_id TEXT NOT NULL,
             created_at {bigint} NOT NULL, expires_at {bigint} NOT NULL, ended_at {bigint},
             ip TEXT) {without_rowid}""",
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
    """The tag store over one backend. `url`: a SQLite file path (default backend) or a
    `postgresql://` URL. SQLite options: `synchronous`, `busy_timeout_ms`; PostgreSQL: `pool_max`.
    `create=False` refuses a missing SQLite file / an unreachable PostgreSQL with a StoreError."""

    def __init__(self, url: str | os.PathLike, synchronous: str = "FULL",
                 busy_timeout_ms: int = 10000, create: bool = True, pool_max: int = 8):
        if is_postgres_url(url):
            self.backend = PostgresBackend(str(url), pool_max=pool_max, create=create)
        else:
            self.backend = SQLiteBackend(url, synchronous, busy_timeout_ms, create)
        self.dialect = self.backend.dialect
        self.where = self.backend.where          # for messages: the path or the redacted URL
        self.path = getattr(self.backend, "path", None)     # the SQLite file; None on PostgreSQL

    # -- transactions and plain reads ---------------------------------------------------------
    def write(self):
        """One write transaction (a `Tx`: execute/executemany, `?` placeholders); commits when the
        block ends, rolls back on error. Driver errors arrive as StoreBusy/StoreIntegrityError."""
        return self.backend.write()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict]:
        """Rows of a read as dicts (`?` placeholders, the common SQL of both backends)."""
        return self.backend.query(sql, params)

    def table_names(self) -> list[str]:
        return self.backend.table_names()

    def close(self) -> None:
        self.backend.close()

    # -- schema -----------------------------------------------------------------------------
    def schema_version(self) -> int:
        return self.backend.schema_version()

    def migrate(self, target: int = SCHEMA_VERSION) -> int:
        """Apply pending migrations up to `target`; returns the resulting schema version."""
        with self.write() as tx:
            self.backend.lock_migrations(tx)
            current = self.backend.schema_version(tx)
            if current > SCHEMA_VERSION:
                raise StoreError(f"store {self.where} has schema v{current}, newer than this "
                                 f"server (v{SCHEMA_VERSION}); upgrade the server")
            tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY "
                       "KEY, name TEXT NOT NULL, applied_ts TEXT NOT NULL)")
            for version, name, statements in MIGRATIONS:
                if current < version <= target:
                    for sql in statements:
                        tx.execute(render(sql, self.dialect))
                    tx.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                               (version, name, utc_now_iso()))
                    self.backend.set_schema_version(tx, version)
                    current = version
        return current

    def check(self) -> str:
        """'ok' when the store is sound (SQLite: PRAGMA integrity_check; PostgreSQL: reachable)."""
        return self.backend.check()

    # -- devices ----------------------------------------------------------------------------
    def register_device(self, device_hash: str, token_hash: str, platform: str | None) -> int:
        """Create the device or rotate its token; returns the device row id."""
        now = int(time.time())
        with self.write() as tx:        # one atomic upsert: concurrent registrations cannot race
            return tx.execute("INSERT INTO devices (device_hash, token_hash, platform, created_at, "
                              "token_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT(device_hash) DO UPDATE "
                              "SET token_hash=excluded.token_hash, token_at=excluded.token_at, "
                              "platform=excluded.platform RETURNING id",
                              (device_hash, token_hash, platform, now, now)).fetchone()[0]

    def device_for_token(self, token_hash: str, max_age_s: int = 0,
                         now: float | None = None) -> tuple[int, str] | None:
        """(device id, device hash) owning the token, or None (unknown, or issued more than
        `max_age_s` seconds ago when max_age_s > 0: the device re-registers for a new one)."""
        rows = self.query("SELECT id, device_hash, token_at FROM devices WHERE token_hash=?",
                          (token_hash,))
        if not rows or (max_age_s > 0 and rows[0]["token_at"] + max_age_s <= (now or time.time())):
            return None
        return rows[0]["id"], rows[0]["device_hash"]

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
            self.backend.lock_device(conn, device_id)
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
            # a store not yet at migration 4 has no source column (either backend)
            at4 = self.backend.schema_version(conn) >= 4
            cols = [c for c in TAG_COLUMNS if at4 or c != "source"]
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
        return self.query("SELECT count(*) AS n FROM tags")[0]["n"]

    def iter_tag_events(self, include_flagged: bool = False) -> Iterator[dict]:
        """Tag events in arrival order, in the consensus ingest's row shape."""
        where = "" if include_flagged else "WHERE t.over_cap = 0"
        sql = ("SELECT t.event_id, coalesce(t.e164, t.number_raw) AS number, "
               "'d' || substr(d.device_hash, 1, 24) AS reporter, t.category, t.ts, t.company, "
               "t.note, t.ring_s, t.talk_s, t.answered, t.direction, t.source "
               f"FROM tags t JOIN devices d ON d.id = t.device_id {where} ORDER BY t.id")
        for row in self.backend.stream(sql):
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
            self.backend.lock_migrations(conn)      # PostgreSQL: workers bootstrap one at a time
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
        rows = self.query("SELECT key_hash, scopes FROM api_keys WHERE key_id=? AND "
                          "revoked_at IS NULL", (key_id_of(key),))
        if rows and hmac.compare_digest(rows[0]["key_hash"], sha256_hex(key)):
            return key_id_of(key), set(rows[0]["scopes"].split())
        return None

    def list_api_keys(self) -> list[dict]:
        return self.query("SELECT key_id, scopes, label, created_at, revoked_at "
                          "FROM api_keys ORDER BY id")

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
        return self.query("SELECT * FROM audit ORDER BY id DESC LIMIT ? OFFSET ?",
                          (limit, offset))

    def create_appeal(self, number: str, number_key: int | None, contact: str, evidence: str,
                      categories: list[str]) -> int:
        with self.write() as conn:
            aid = conn.execute("INSERT INTO appeals (number, number_key, contact, evidence, "
                               "categories, filed_ts) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                               (number, number_key, contact, evidence, ";".join(categories),
                                utc_now_iso())).fetchone()[0]
            self._audit(conn, "public", "appeal.file", str(aid), number)
            return aid

    def get_appeal(self, appeal_id: int) -> dict | None:
        rows = self.query("SELECT * FROM appeals WHERE id=?", (appeal_id,))
        return rows[0] if rows else None

    def list_appeals(self, status: str | None, limit: int = 100, offset: int = 0) -> list[dict]:
        if status:
            return self.query("SELECT * FROM appeals WHERE status=? ORDER BY id "
                              "LIMIT ? OFFSET ?", (status, limit, offset))
        return self.query("SELECT * FROM appeals ORDER BY id LIMIT ? OFFSET ?", (limit, offset))

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
        for row in self.backend.stream("SELECT number, categories, filed_ts, 1 AS accepted FROM appeals "
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
        yield from self.backend.stream("SELECT number, company FROM verified ORDER BY number")

    # -- lookup table ---------------------------------------------------------------------
    def replace_labels(self, rows: Iterable[dict], version: str, actor: str) -> int:
        """Atomically replace the lookup table (rows: hash, number, category, code, confidence,
        reporters, flags, last_ts, company); returns the number of rows."""
        cols = ("hash", "number", "category", "code", "confidence", "reporters", "flags",
                "last_ts", "company")
        n = 0
        with self.write() as conn:
            conn.execute("DELETE FROM lookup_labels")
            sql = (f"INSERT INTO lookup_labels ({','.join(cols)}) "
                   f"VALUES ({','.join('?' * len(cols))}) ON CONFLICT(hash) DO UPDATE SET "
                   + ", ".join(f"{c}=excluded.{c}" for c in cols[1:]))
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
                conn.execute("INSERT INTO settings (k, v) VALUES (?, ?) "
                             "ON CONFLICT(k) DO UPDATE SET v=excluded.v", (k, v))
            self._audit(conn, actor, "labels.replace", version, f"rows={count}")
        return count

    def lookup_meta(self) -> dict[str, str]:
        return {r["k"]: r["v"] for r in self.query(
            "SELECT k, v FROM settings WHERE k LIKE 'lookup_%'")}

    def lookup_prefix(self, prefix: str, limit: int) -> list[dict]:
        """Labels whose hash starts with `prefix` (lower-case hex), at most `limit` + 1 rows."""
        return self.query(
            "SELECT hash, category, code, confidence, reporters, flags, last_ts, company "
            "FROM lookup_labels WHERE hash >= ? AND hash < ? ORDER BY hash LIMIT ?",
            (prefix, prefix + "g", limit + 1))


def key_id_of(key: str) -> str:
    """Public id of an API key: its `cmk_<id>_` part, else a hash prefix."""
    parts = key.split("_")
    if len(parts) >= 3 and parts[0] == "cmk" and parts[1]:
        return parts[1][:32]
    return "h" + sha256_hex(key)[:12]


def database_url(data_dir: str | os.PathLike, url: str | None = None) -> str:
    """Where the store lives, by the server's rule: `url` if given, else CALLMARK_DATABASE_URL if
    set, else `<data_dir>/callmark.sqlite`. `data_dir` may itself be a postgresql:// URL. A
    database URL is a SQLite file path or `postgresql://user:password@host:port/dbname`."""
    if is_postgres_url(data_dir):
        return str(data_dir)
    url = url if url is not None else os.environ.get(DATABASE_URL_ENV, "")
    if url:
        if "://" in url and not is_postgres_url(url):
            raise StoreError(f"{DATABASE_URL_ENV}={redact(url)}: use a SQLite file path or "
                             "postgresql://user:password@host:port/dbname")
        return url
    return str(Path(data_dir) / DB_NAME)


def store_exists(data_dir: str | os.PathLike) -> bool:
    """True when the store for `data_dir` (see `database_url`) exists: the SQLite file is there,
    or the PostgreSQL database answers and holds the schema."""
    url = database_url(data_dir)
    if not is_postgres_url(url):
        return Path(url).is_file()
    try:
        store = Store(url, create=False, pool_max=1)
    except StoreError:
        return False
    try:
        return store.schema_version() > 0
    finally:
        store.close()


def open_store(data_dir: str | os.PathLike, create: bool = False, migrate: bool = True,
               synchronous: str = "FULL") -> Store:
    """Open (and by default migrate) the store for `data_dir` (see `database_url`)."""
    store = Store(database_url(data_dir), synchronous=synchronous, create=create)
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
