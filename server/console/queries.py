"""The console's reads and writes on the store: login sessions, a number's evidence, the audit filter.

Kept out of `server/store.py` (the store's public surface stays the API's); every function takes
the `Store` and uses its connection and write transactions, so the same durability rules hold.
"""
from __future__ import annotations

import time

from callmark.numbers import lookup_hash
from server.store import Store, sha256_hex

MAX_EVIDENCE_ROWS = 200   # tag rows listed on a number's page (newest first)


def _rows(store: Store, sql: str, params: tuple = ()) -> list[dict]:
    """Rows of a read as dicts (plain SQL common to SQLite and PostgreSQL, `?` placeholders)."""
    query = getattr(store, "query", None)
    return query(sql, params) if query else list(store.db.query(sql, params))


def _one(store: Store, sql: str, params: tuple = ()):
    rows = _rows(store, sql, params)
    return next(iter(rows[0].values())) if rows else None


# -- login sessions ------------------------------------------------------------------------------
def create_session(store: Store, sid: str, key_id: str, lifetime_s: int, ip: str) -> None:
    """Record a console session (only the SHA-256 of its random id is kept)."""
    now = int(time.time())
    with store.write() as conn:
        conn.execute("DELETE FROM console_sessions WHERE expires_at < ?", (now - 86400,))
        conn.execute("INSERT INTO console_sessions (sid_hash, key_id, created_at, expires_at, ip) "
                     "VALUES (?, ?, ?, ?, ?)", (sha256_hex(sid), key_id, now, now + lifetime_s, ip))


def session_key(store: Store, sid: str) -> tuple[str, set[str], int] | None:
    """(key id, scopes, expires_at) of a live session whose API key is still unrevoked, else None.
    Checked on every console request: revoking a key ends its sessions at once."""
    rows = _rows(store,
                 "SELECT s.key_id, k.scopes, s.expires_at FROM console_sessions s "
                 "JOIN api_keys k ON k.key_id = s.key_id AND k.revoked_at IS NULL "
                 "WHERE s.sid_hash = ? AND s.ended_at IS NULL AND s.expires_at > ?",
                 (sha256_hex(sid), int(time.time())))
    return (rows[0]["key_id"], set(rows[0]["scopes"].split()), rows[0]["expires_at"]) if rows else None


def end_session(store: Store, sid: str) -> None:
    with store.write() as conn:
        conn.execute("UPDATE console_sessions SET ended_at=? WHERE sid_hash=? AND ended_at IS NULL",
                     (int(time.time()), sha256_hex(sid)))


def end_key_sessions(store: Store, key_id: str) -> int:
    """End every open session of `key_id` (on revoke); returns how many."""
    n = _one(store, "SELECT count(*) AS n FROM console_sessions WHERE key_id=? AND ended_at IS NULL", (key_id,))
    with store.write() as conn:
        conn.execute("UPDATE console_sessions SET ended_at=? WHERE key_id=? AND ended_at IS NULL",
                     (int(time.time()), key_id))
    return int(n or 0)


def key_row(store: Store, key_id: str) -> dict | None:
    rows = _rows(store, "SELECT key_id, scopes, label, created_at, revoked_at FROM api_keys WHERE key_id=?",
                 (key_id,))
    return rows[0] if rows else None


# -- a number's evidence -------------------------------------------------------------------------
def number_tags(store: Store, e164: str | None, raw: str, limit: int = MAX_EVIDENCE_ROWS) -> list[dict]:
    """Newest tag rows about the number (its E.164 form, or the raw string for irregular input)."""
    col, val = ("e164", e164) if e164 else ("number_raw", raw)
    return _rows(store,
        "SELECT t.ts, t.category, t.company, t.note, t.over_cap, t.ring_s, t.talk_s, t.answered, "
        "t.direction, 'd' || substr(d.device_hash, 1, 12) AS reporter "
        f"FROM tags t JOIN devices d ON d.id = t.device_id WHERE t.{col} = ? "
        "ORDER BY t.ts DESC, t.id DESC LIMIT ?", (val, limit))


def number_summary(store: Store, e164: str | None, raw: str) -> dict:
    """Counts over every tag of the number: tags, distinct reporters, flagged (over the daily cap),
    per category, and per UTC day and category (for the evidence chart)."""
    col, val = ("e164", e164) if e164 else ("number_raw", raw)
    head = _rows(store, f"SELECT count(*) AS n, count(DISTINCT device_id) AS r, coalesce(sum(over_cap), 0) AS f "
                        f"FROM tags WHERE {col} = ?", (val,))[0]
    tags, reporters, flagged = int(head["n"]), int(head["r"]), int(head["f"])
    per_cat = {r["category"]: int(r["n"]) for r in _rows(
        store, f"SELECT category, count(*) AS n FROM tags WHERE {col} = ? GROUP BY category ORDER BY n DESC",
        (val,))}
    per_day = [(r["day"], r["category"], int(r["n"])) for r in _rows(
        store, f"SELECT substr(ts, 1, 10) AS day, category, count(*) AS n FROM tags WHERE {col} = ? "
               "GROUP BY substr(ts, 1, 10), category ORDER BY day", (val,))]
    return {"tags": tags, "reporters": reporters, "flagged": flagged, "per_category": per_cat,
            "per_day": per_day}


def number_appeals(store: Store, e164: str) -> list[dict]:
    return _rows(store, "SELECT * FROM appeals WHERE number = ? ORDER BY id DESC", (e164,))


def verified_company(store: Store, e164: str) -> dict | None:
    rows = _rows(store, "SELECT number, company, added_ts, added_by FROM verified WHERE number=?", (e164,))
    return rows[0] if rows else None


def lookup_label(store: Store, number_hash: str) -> dict | None:
    rows = _rows(store, "SELECT * FROM lookup_labels WHERE hash = ?", (number_hash,))
    return rows[0] if rows else None


def bucket_size(store: Store, prefix: str) -> int:
    return int(_one(store, "SELECT count(*) AS n FROM lookup_labels WHERE hash >= ? AND hash < ?",
                    (prefix, prefix + "g")) or 0)


# -- appeals queue, audit, health --------------------------------------------------------------
def pending_appeals(store: Store, limit: int = 200) -> list[dict]:
    """Pending appeals, oldest first (the queue order)."""
    return store.list_appeals("pending", limit, 0)


def decided_appeals(store: Store, limit: int = 20) -> list[dict]:
    """The latest decided appeals, newest decision first."""
    return _rows(store, "SELECT * FROM appeals WHERE status != 'pending' ORDER BY decided_ts DESC, id DESC "
                        "LIMIT ?", (limit,))


def count_appeals(store: Store) -> dict[str, int]:
    return {r["status"]: int(r["n"]) for r in _rows(store, "SELECT status, count(*) AS n FROM appeals GROUP BY status")}


def audit_entries(store: Store, actor: str = "", action: str = "", target: str = "",
                  limit: int = 200) -> list[dict]:
    """Audit rows newest first; `actor`/`target` match exactly or as a prefix, `action` as a prefix
    (e.g. 'appeal.' or 'release.promote')."""
    where, args = [], []
    for col, val in (("actor", actor), ("action", action), ("target", target)):
        if val:
            where.append(f"{col} LIKE ? ESCAPE '\\'")
            args.append(val.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    sql = "SELECT * FROM audit" + (" WHERE " + " AND ".join(where) if where else "")
    return _rows(store, sql + " ORDER BY id DESC LIMIT ?", (*args, limit))


def store_health(store: Store) -> dict:
    """Schema version, file size and row counts (exact counts of the small tables, tags by max id)."""
    path = getattr(store, "path", None)            # SQLite: the file; other backends have none
    size = path.stat().st_size if path is not None and path.exists() else 0
    wal = path.with_name(path.name + "-wal") if path is not None else None
    return {"schema": store.schema_version(), "path": str(path or getattr(store, "where", "")), "bytes": size,
            "wal_bytes": wal.stat().st_size if wal is not None and wal.exists() else 0,
            "tags": int(_one(store, "SELECT coalesce(max(id), 0) AS n FROM tags") or 0),
            "devices": int(_one(store, "SELECT count(*) AS n FROM devices") or 0),
            "appeals": count_appeals(store),
            "verified": int(_one(store, "SELECT count(*) AS n FROM verified") or 0),
            "active_keys": int(_one(store, "SELECT count(*) AS n FROM api_keys WHERE revoked_at IS NULL") or 0),
            "lookup": store.lookup_meta()}


def lookup_label_for(store: Store, e164: str) -> dict | None:
    """The published label of an E.164 number from the lookup table."""
    return lookup_label(store, lookup_hash(e164)) if e164.startswith("+") and e164.isascii() else None
