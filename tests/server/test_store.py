"""The store: migrations, durability settings, idempotent inserts, accessors for other parts."""
import sqlite3
import time

import pytest

from server.errors import StoreError
from server.ratelimit import LazyMemoryStorage
from server.store import (MIGRATIONS, SCHEMA_VERSION, Store, create_api_key, iter_accepted_appeals,
                          iter_tag_events, iter_verified, open_store)


def row(i, **kw):
    return {"event_id": f"e{i}", "number_raw": f"1380000{i:04d}", "number_key": 8613800000000 + i,
            "e164": f"+861380000{i:04d}", "irregular": None, "category": "fraud",
            "ts": "2025-11-01T00:00:00Z", **kw}


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "callmark.sqlite")
    s.migrate()
    return s


def test_fresh_store_is_wal_full_and_current(store):
    assert store.schema_version() == SCHEMA_VERSION
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2      # FULL
    names = set(store.db.table_names())
    assert {"devices", "tags", "appeals", "audit", "api_keys", "verified", "lookup_labels",
            "schema_migrations"} <= names
    versions = [r[0] for r in store.conn.execute("SELECT version FROM schema_migrations")]
    assert versions == [m[0] for m in MIGRATIONS]


def test_migrations_step_by_step_keep_data(tmp_path):
    s = Store(tmp_path / "db.sqlite")
    assert s.migrate(target=1) == 1
    assert "verified" not in s.db.table_names()
    dev = s.register_device("h" * 64, "t" * 64, None)
    s.insert_tags(dev, [row(1)], daily_cap=10)
    s.close()
    s2 = Store(tmp_path / "db.sqlite")
    assert s2.migrate() == SCHEMA_VERSION
    assert "verified" in s2.db.table_names() and s2.count_tags() == 1
    assert s2.migrate() == SCHEMA_VERSION          # idempotent


def test_newer_schema_is_refused(store):
    store.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer"):
        store.migrate()


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="CALLMARK_DATA_DIR"):
        Store(tmp_path / "nope" / "x.sqlite", create=False)


def test_insert_is_atomic_and_idempotent(store):
    dev = store.register_device("a" * 64, "b" * 64, "android")
    c = store.insert_tags(dev, [row(1), row(2), row(1)], daily_cap=100)
    assert (c["acked"], c["stored"], c["duplicates"]) == (3, 2, 1)
    with pytest.raises(sqlite3.IntegrityError):          # a bad row rolls the whole batch back
        store.insert_tags(dev, [row(3), row(4, category=None)], daily_cap=100)
    assert store.count_tags() == 2
    assert store.insert_tags(dev, [row(3)], daily_cap=100)["stored"] == 1


def test_daily_cap_counts_per_utc_day_of_the_event(store):
    dev = store.register_device("c" * 64, "d" * 64, None)
    assert store.insert_tags(dev, [row(i) for i in range(5)], 3)["flagged"] == 2
    assert store.insert_tags(dev, [row(9)], 3)["flagged"] == 1          # same day: still over
    nov2 = store.insert_tags(dev, [row(10 + i, ts="2025-11-02T23:59:59Z") for i in range(4)], 3)
    assert nov2["flagged"] == 1                                         # a new day, a new cap
    mixed = [row(20, ts="2025-11-03T01:00:00Z"), row(21, ts="2025-11-01T05:00:00Z")]
    assert store.insert_tags(dev, mixed, 3)["flagged"] == 1


def test_accessors_in_simulator_shapes(tmp_path):
    s = open_store(tmp_path, create=True)
    aid = s.create_appeal("+8613800000001", 8613800000001, "me@example.com", "licence", ["fraud",
                                                                                         "loans"])
    s.create_appeal("+8613800000002", 8613800000002, "x@example.com", "none", ["fraud"])
    assert s.decide_appeal(aid, True, "key:t", "ok") == "pending"
    assert s.decide_appeal(aid, False, "key:t", "again") == "accepted"   # no second decision
    s.upsert_verified("+8695588", None, "ICBC", "key:t")
    s.close()
    assert list(iter_accepted_appeals(tmp_path)) == [
        {"number": "+8613800000001", "categories": "fraud;loans",
         "filed_ts": list(iter_accepted_appeals(tmp_path))[0]["filed_ts"], "accepted": 1}]
    assert list(iter_verified(tmp_path)) == [{"number": "+8695588", "company": "ICBC"}]
    assert list(iter_tag_events(tmp_path)) == []
    s = open_store(tmp_path)
    actions = [r["action"] for r in s.list_audit()]
    assert actions[:2] == ["verified.set", "appeal.accept"]


def test_api_keys_are_hashed(tmp_path):
    key = create_api_key(tmp_path, ["appeals"], "reviewer")
    s = open_store(tmp_path)
    assert s.api_key_scopes(key)[1] == {"appeals"}
    assert s.api_key_scopes(key + "x") is None
    for f in tmp_path.glob("callmark.sqlite*"):
        assert key.encode() not in f.read_bytes()
    kid = s.api_key_scopes(key)[0]
    assert s.revoke_api_key(kid, "test") and s.api_key_scopes(key) is None
    with pytest.raises(StoreError, match="scopes"):
        s.create_api_key(["root"])


def test_lazy_rate_limit_storage_expires_without_timer_thread():
    st = LazyMemoryStorage()
    assert st.incr("k", expiry=0.05) == 1 and st.incr("k", expiry=0.05) == 2
    time.sleep(0.08)
    assert st.get("k") == 0 and st.incr("k", expiry=10) == 1
