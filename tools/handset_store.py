"""The reference handset's state directory: config, sync state, user lists, tag queue, call history.

Layout (docs/handset.md):
```
<state>/handset.json      HandsetConfig (device id, server, channel, region, device token)
<state>/sync.json         SyncState (last seen versions, next sync time, failures, hints)
<state>/trust/            TrustedState: root.json + channels/<channel>.json (verified manifests)
<state>/packs/<name>/     the current pack: base + overlays + HEAD (callmark.pack_layers; files written
                          whole, HEAD swapped atomically)
<state>/models/<sha16>/   model.tflite + contract.json + test_vectors.json; sync.json names the current one
<state>/downloads/        resumable *.part downloads
<state>/state.db          SQLite: lists (contacts/allow/block), tags (the offline queue), calls (history)
```
Only this module touches the files; every write is atomic (temp file + os.replace, or one SQLite
transaction), so a handset killed at any moment restarts from a consistent state.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterator

from callmark import safejson
from callmark.errors import CallmarkError
from callmark.files import atomic_write  # noqa: F401  (re-exported for the sync module)

LIST_KINDS = ("contact", "allow", "block")
CONFIG_FORMAT = 1

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS lists (key INTEGER NOT NULL, kind TEXT NOT NULL, raw TEXT NOT NULL, "
    "name TEXT, added REAL NOT NULL, PRIMARY KEY (key, kind))",
    "CREATE TABLE IF NOT EXISTS tags (event_id TEXT PRIMARY KEY, body TEXT NOT NULL, "
    "created REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, "
    "acked REAL, rejected TEXT)",
    "CREATE INDEX IF NOT EXISTS tags_pending ON tags (acked, rejected, created)",
    "CREATE TABLE IF NOT EXISTS calls (callee TEXT NOT NULL, t REAL NOT NULL, key INTEGER, "
    "unknown INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS calls_t ON calls (callee, t)",
    "CREATE TABLE IF NOT EXISTS seen (callee TEXT NOT NULL, key INTEGER NOT NULL, calls INTEGER NOT NULL, "
    "answered INTEGER NOT NULL, last_talk_s REAL NOT NULL, last_t REAL NOT NULL, PRIMARY KEY (callee, key))",
)


class HandsetError(CallmarkError):
    """The handset cannot do what was asked (bad state dir, bad input)."""


class HandsetStateError(HandsetError):
    """The state directory is missing, from another format, or was given inconsistent settings."""


class NoTrustedRootError(HandsetStateError):
    """The handset has no root of trust yet: pass the root.json shipped with the app."""


def _from_dict(cls, d: dict, what: str):
    if not isinstance(d, dict):
        raise HandsetStateError(f"{what}: expected a JSON object")
    names = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in d.items() if k in names})
    except TypeError as e:
        raise HandsetStateError(f"{what}: {e}") from None


@dataclass
class HandsetConfig:
    """Who this handset is and where it syncs from (handset.json)."""

    device_id: str  # app install id (random); the server only stores its HMAC
    server_url: str = ""  # e.g. http://127.0.0.1:8080, or an exports/ directory (a CDN mirror)
    channel: str = "stable"
    region: str = "CN"  # the phone's region: which pack, how numbers are read
    pack_tier: str = "full"  # full | lite | province
    token: str = ""  # device bearer token from POST /v1/devices
    reporter: str = ""  # pseudonymous reporter id the server assigned
    format: int = CONFIG_FORMAT

    @classmethod
    def from_dict(cls, d: dict) -> "HandsetConfig":
        c = _from_dict(cls, d, "handset.json")
        if c.format != CONFIG_FORMAT:
            raise HandsetStateError(f"handset.json format {c.format} is not {CONFIG_FORMAT}; "
                                    "start a fresh state directory")
        if not isinstance(c.device_id, str) or len(c.device_id) < 8:
            raise HandsetStateError("handset.json: device_id must be a string of >= 8 characters")
        return c

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SyncState:
    """What the last syncs left behind (sync.json). Times are epoch seconds."""

    manifest_version: int = 0  # last accepted manifest version of the channel
    pack_name: str = ""
    pack_version: int = 0  # 0 = no pack yet
    pack_state_hash: str = ""
    model_sha256: str = ""  # current model (models/<sha[:16]>/), "" = none
    last_attempt: float = 0.0
    last_success: float = 0.0
    next_sync_after: float = 0.0  # do not sync before this (server hint + jitter, or backoff)
    failures: int = 0  # consecutive failed syncs (drives the backoff)
    last_error: str = ""
    manifest_etag: str = ""
    hints: dict = field(default_factory=dict)  # last server hints: min_wait_s, jitter_s
    deltas_since_full: int = 0
    pack_checked_at: float = 0.0  # last full state-hash check of the local pack (all rows rehashed)
    pack_check_due: bool = False  # an apply failed or was interrupted: check the pack at the next sync
    history: list = field(default_factory=list)  # last few sync results (dicts)

    @classmethod
    def from_dict(cls, d: dict) -> "SyncState":
        return _from_dict(cls, d, "sync.json")

    def to_dict(self) -> dict:
        return asdict(self)


class HandsetStore:
    """Files and tables of one handset state directory."""

    def __init__(self, state_dir: str | os.PathLike):
        self.dir = Path(state_dir)
        if self.dir.exists() and not self.dir.is_dir():
            raise HandsetStateError(f"{self.dir} is a file; pass a directory for the handset state")
        self.dir.mkdir(parents=True, exist_ok=True)
        for sub in ("trust", "packs", "models", "downloads"):
            (self.dir / sub).mkdir(exist_ok=True)
        self._db: sqlite3.Connection | None = None

    # ------------------------------------------------------------ paths
    @property
    def trust_dir(self) -> Path:
        return self.dir / "trust"

    @property
    def downloads(self) -> Path:
        return self.dir / "downloads"

    def pack_path(self, name: str) -> Path:
        """The layered pack directory of pack `name` (callmark.pack_layers)."""
        return self.dir / "packs" / name

    def legacy_pack_path(self, name: str) -> Path:
        """Where handsets before the layered pack kept a single pack file (adopted as the base)."""
        return self.dir / "packs" / f"{name}.sqlite"

    def model_dir(self, sha256: str) -> Path:
        return self.dir / "models" / sha256[:16]

    # ------------------------------------------------------------ JSON files
    def _read_json(self, name: str) -> dict | None:
        p = self.dir / name
        if not p.is_file():
            return None
        try:
            return safejson.load_path(p)
        except (OSError, ValueError) as e:
            raise HandsetStateError(f"{p}: unreadable ({e}); remove it to start over") from None

    def load_config(self) -> HandsetConfig | None:
        d = self._read_json("handset.json")
        return None if d is None else HandsetConfig.from_dict(d)

    def save_config(self, c: HandsetConfig) -> None:
        atomic_write(self.dir / "handset.json", json.dumps(c.to_dict(), indent=1).encode(), 0o600)

    def load_sync(self) -> SyncState:
        d = self._read_json("sync.json")
        return SyncState() if d is None else SyncState.from_dict(d)

    def save_sync(self, s: SyncState) -> None:
        s.history = s.history[-10:]
        atomic_write(self.dir / "sync.json", json.dumps(s.to_dict(), indent=1).encode())

    # ------------------------------------------------------------ SQLite
    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            con = sqlite3.connect(self.dir / "state.db", isolation_level=None, timeout=10.0,
                                  check_same_thread=False)
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")
            for stmt in _SCHEMA:
                con.execute(stmt)
            self._db = con
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # lists
    def list_add(self, kind: str, key: int, raw: str, name: str | None = None) -> None:
        if kind not in LIST_KINDS:
            raise HandsetError(f"list must be one of {LIST_KINDS}, got {kind!r}")
        with self.db:
            self.db.execute("BEGIN")
            if kind in ("allow", "block"):  # allow and block exclude each other
                self.db.execute("DELETE FROM lists WHERE key = ? AND kind IN ('allow', 'block')", (key,))
            self.db.execute("INSERT OR REPLACE INTO lists VALUES (?,?,?,?,?)", (key, kind, raw, name, time.time()))

    def list_remove(self, kind: str, key: int) -> bool:
        cur = self.db.execute("DELETE FROM lists WHERE key = ? AND kind = ?", (key, kind))
        return cur.rowcount > 0

    def lists(self) -> dict[int, str]:
        """key -> strongest list it is on (block beats allow beats contact)."""
        rank = {"contact": 0, "allow": 1, "block": 2}
        out: dict[int, str] = {}
        for key, kind in self.db.execute("SELECT key, kind FROM lists"):
            if key not in out or rank[kind] > rank[out[key]]:
                out[key] = kind
        return out

    def list_rows(self) -> list[dict]:
        return [dict(zip(("key", "kind", "raw", "name"), r))
                for r in self.db.execute("SELECT key, kind, raw, name FROM lists ORDER BY kind, key")]

    # tag queue
    def enqueue_tag(self, body: dict) -> str:
        """Queue one tag event (durably); returns its event id."""
        eid = body.setdefault("event_id", uuid.uuid4().hex)
        self.db.execute("INSERT OR IGNORE INTO tags (event_id, body, created) VALUES (?,?,?)",
                        (eid, json.dumps(body, ensure_ascii=False, sort_keys=True), time.time()))
        return eid

    def pending_tags(self, limit: int) -> list[dict]:
        rows = self.db.execute("SELECT body FROM tags WHERE acked IS NULL AND rejected IS NULL "
                               "ORDER BY created, event_id LIMIT ?", (int(limit),)).fetchall()
        return [json.loads(b) for (b,) in rows]

    def mark_acked(self, event_ids: list[str]) -> None:
        now = time.time()
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("UPDATE tags SET acked = ?, attempts = attempts + 1, last_error = NULL "
                                "WHERE event_id = ?", [(now, e) for e in event_ids])

    def mark_failed(self, event_ids: list[str], error: str) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("UPDATE tags SET attempts = attempts + 1, last_error = ? WHERE event_id = ?",
                                [(error[:300], e) for e in event_ids])

    def mark_rejected(self, event_id: str, why: str) -> None:
        self.db.execute("UPDATE tags SET rejected = ?, attempts = attempts + 1 WHERE event_id = ?",
                        (why[:300], event_id))

    def tag_counts(self) -> dict:
        q = ("SELECT sum(acked IS NULL AND rejected IS NULL), sum(acked IS NOT NULL), "
             "sum(rejected IS NOT NULL) FROM tags")
        pending, acked, rejected = self.db.execute(q).fetchone()
        return {"pending": pending or 0, "acked": acked or 0, "rejected": rejected or 0}

    # call history
    def save_calls(self, rows: list[tuple]) -> None:
        """Append (callee, t, key, unknown) rows."""
        if rows:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany("INSERT INTO calls VALUES (?,?,?,?)", rows)

    def recent_calls(self, since: float) -> Iterator[tuple]:
        yield from self.db.execute("SELECT callee, t, key, unknown FROM calls WHERE t >= ? ORDER BY t",
                                   (since,))

    def prune_calls(self, before: float) -> None:
        self.db.execute("DELETE FROM calls WHERE t < ?", (before,))

    def load_seen(self) -> dict[tuple, list]:
        """(callee, key) -> [calls, answered, last_talk_s, last_t]: the phone's history with a number."""
        return {(cl, k): [c, a, s, t] for cl, k, c, a, s, t in self.db.execute("SELECT * FROM seen")}

    def save_seen(self, rows: dict[tuple, list]) -> None:
        if rows:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany("INSERT OR REPLACE INTO seen VALUES (?,?,?,?,?,?)",
                                    [(*ck, *v) for ck, v in rows.items()])
