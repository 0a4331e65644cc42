"""SQL of the layered pack (docs/pack-format.md §9): the overlay schema, the ordered merge of layers,
the layered lookup. Everything here runs on Android's SQLite 3.9: no STRICT, generated columns,
UPSERT, window functions or CTEs.
"""
from __future__ import annotations

from callmark.pack import LABEL_COLS, LOOKUP_SQL, RANGE_COLS

__all__ = ["OVERLAY_SCHEMA", "merge_select", "lookup_sql", "block_sql"]

OVERLAY_SCHEMA = (
    "CREATE TABLE meta (k TEXT PRIMARY KEY NOT NULL, v TEXT NOT NULL)",
    "CREATE TABLE labels (key INTEGER PRIMARY KEY, category INTEGER, confidence INTEGER, "
    "reporters INTEGER, flags INTEGER, last_day INTEGER, dead INTEGER NOT NULL)",
    "CREATE TABLE ranges (start INTEGER NOT NULL, size INTEGER NOT NULL, category INTEGER, "
    "confidence INTEGER, numbers INTEGER, flags INTEGER, last_day INTEGER, dead INTEGER NOT NULL, "
    "PRIMARY KEY (start, size)) WITHOUT ROWID",
    "CREATE TABLE businesses (key INTEGER PRIMARY KEY, name TEXT NOT NULL)",
)
_KEYS = {"labels": ("key",), "ranges": ("start", "size"), "businesses": ("key",)}
_COLS = {"labels": LABEL_COLS, "ranges": RANGE_COLS, "businesses": ("key", "name")}


def _not_shadowed(table: str, higher: list, alias: str = "x") -> list:
    """Conditions: no higher layer holds a row with this row's key (labels decide for businesses)."""
    src = "labels" if table == "businesses" else table
    return [f"NOT EXISTS (SELECT 1 FROM {h}.{src} h WHERE "
            + " AND ".join(f"h.{k} = {alias}.{k}" for k in _KEYS[table]) + ")" for h in higher]


def merge_select(table: str, layers: list, keep_dead: bool) -> str:
    """One ordered SELECT of the effective rows of `table` over `layers` (top first).

    `layers` are (schema, has_dead) pairs. Rows come out in key order: a compound SELECT with ORDER BY
    is run by SQLite as a merge of its arms, each read in index order (no sort, no temp B-tree).
    """
    cols = _COLS[table]
    arms = []
    for i, (schema, has_dead) in enumerate(layers):
        higher = [s for s, _ in layers[:i]]
        conds = _not_shadowed(table, higher)
        sel = ", ".join(f"x.{c}" for c in cols)
        if table != "businesses":
            dead = "x.dead" if has_dead else "0"
            if keep_dead:
                sel += f", {dead}"
            elif has_dead:
                conds.append("x.dead = 0")
        arms.append(f"SELECT {sel} FROM {schema}.{table} x" + (" WHERE " + " AND ".join(conds) if conds else ""))
    order = ", ".join(str(i + 1) for i in range(len(_KEYS[table])))
    return " UNION ALL ".join(arms) + f" ORDER BY {order}"


def block_sql(overlays: list) -> list[str]:
    """One statement per layer, top first (?1, ?2 = the block's key range): (key, category, dead) of
    its label rows; the first layer holding a key decides it (`LayeredReader.block_harmful`)."""
    return ([f"SELECT key, category, dead FROM {s}.labels WHERE key >= ?1 AND key < ?2" for s in overlays]
            + ["SELECT key, category, 0 FROM main.labels WHERE key >= ?1 AND key < ?2"])


def lookup_sql(overlays: list, range_overlays: list | None = None) -> str:
    """The layered lookup statement (?1 = key, ?2 = max range size); `overlays` top first.

    `range_overlays`: the overlays that hold range rows (default all); the others get no range arm
    (most deltas change no range, and each arm costs a B-tree descent per lookup).
    """
    if not overlays:
        return LOOKUP_SQL
    layers = list(overlays) + ["main"]
    rlayers = [s for s in overlays if range_overlays is None or s in range_overlays] + ["main"]
    arms = []
    for i, s in enumerate(layers):
        conds = [f"NOT EXISTS (SELECT 1 FROM {h}.labels h WHERE h.key = ?1)" for h in layers[:i]]
        if s != "main":
            conds.append("dead = 0")
        arms.append("SELECT 0, key, category, confidence, reporters, flags, last_day, CASE WHEN flags & 1 THEN "
                    f"(SELECT name FROM {s}.businesses b WHERE b.key = l.key) END FROM {s}.labels l "
                    "WHERE key = ?1" + "".join(f" AND {c}" for c in conds))
    rarms = []
    for i, s in enumerate(rlayers):
        conds = ["x.start <= ?1", "x.start > ?1 - ?2", "x.start + x.size > ?1"] + _not_shadowed("ranges", rlayers[:i])
        if s != "main":
            conds.append("x.dead = 0")
        rarms.append("SELECT x.size, x.start, x.category, x.confidence, x.numbers, x.flags, x.last_day, NULL "
                     f"FROM {s}.ranges x WHERE " + " AND ".join(conds))
    return (" UNION ALL ".join(arms) + " UNION ALL SELECT * FROM (" + " UNION ALL ".join(rarms)
            + " ORDER BY 1 LIMIT 1) LIMIT 1")
