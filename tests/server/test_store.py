"""The store on both backends (the autouse `database_url` fixture): migrations, durability
settings, idempotent inserts, accessors for other parts."""
import threading
import time

import pytest

from server.errors import StoreError
from server.ratelimit import LazyMemoryStorage
from server.store import (MIGRATIONS, SCHEMA_VERSION, Store, create_api_key, database_url,
                          iter_accepted_appeals, iter_tag_events, iter_verified, open_store)
from server.store_errors import StoreIntegrityError


def row(i, **kw):
    return {"event_id": f"e{i}", "number_raw": f"1380000{i:04d}", "number_key": 8613800000000 + i,
            "e164": f"+861380000{i:04d}", "irregular": None, "category": "fraud",
            "ts": "2025-11-01T00:00:00Z", **kw}


@pytest.fixture
def store(database_url):
    s = Store(database_url)
    s.migrate()
    yield s
    s.close()


def test_fresh_store_is_durable_and_current(store):
    assert store.schema_version() == SCHEMA_VERSION
    if store.dialect == "sqlite":
        conn = store.backend.db.conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2      # FULL
    else:
        settings = {r["name"]: r["setting"] for r in store.query(
            "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit')")}
        assert settings == {"fsync": "on", "synchronous_commit": "on"}
    names = set(store.table_names())
    assert {"devices", "tags", "appeals", "audit", "api_keys", "verified", "lookup_labels",
            "schema_migrations"} <= names
    versions = [r["version"] for r in store.query("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [m[0] for m in MIGRATIONS]


def test_migrations_step_by_step_keep_data(database_url):
    s = Store(database_url)
    assert s.migrate(target=1) == 1
    assert "verified" not in s.table_names()
    dev = s.register_device("h" * 64, "t" * 64, None)
    s.insert_tags(dev, [row(1)], daily_cap=10)
    s.close()
    s2 = Store(database_url)
    assert s2.migrate() == SCHEMA_VERSION
    assert "verified" in s2.table_names() and s2.count_tags() == 1
    assert s2.migrate() == SCHEMA_VERSION          # idempotent
    s2.close()


def test_concurrent_migrations_apply_once(database_url):
    stores = [Store(database_url) for _ in range(4)]
    errors = []

    def go(s):
        try:
            s.migrate()
        except Exception as e:          # noqa: BLE001 (collected and asserted below)
            errors.append(e)
    threads = [threading.Thread(target=go, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    rows = stores[0].query("SELECT version FROM schema_migrations ORDER BY 1")
    assert [r["version"] for r in rows] == [m[0] for m in MIGRATIONS]
    for s in stores:
        s.close()


def test_newer_schema_is_refused(store):
    with store.write() as tx:
        if store.dialect == "sqlite":
            tx.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
        else:
            tx.execute("INSERT INTO schema_migrations VALUES (?, 'from the future', 'now')",
                       (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer"):
        store.migrate()


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="CALLMARK_DATA_DIR"):
        Store(tmp_path / "nope" / "x.sqlite", create=False)
    with pytest.raises(StoreError, match="CALLMARK_DATABASE_URL"):
        Store("postgresql://nobody@127.0.0.1:1/none", create=False)
    with pytest.raises(StoreError, match="postgresql://"):
        database_url(tmp_path, "mysql://x@y/z")


def test_insert_is_atomic_and_idempotent(store):
    dev = store.register_device("a" * 64, "b" * 64, "android")
    c = store.insert_tags(dev, [row(1), row(2), row(1)], daily_cap=100)
    assert (c["acked"], c["stored"], c["duplicates"]) == (3, 2, 1)
    with pytest.raises(StoreIntegrityError):             # a bad row rolls the whole batch back
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
    s.close()


def test_concurrent_uploads_of_one_device_store_once_and_respect_the_cap(database_url):
    """8 threads (each its own connection) send overlapping batches for one device at once."""
    stores = [Store(database_url) for _ in range(8)]
    stores[0].migrate()
    dev = stores[0].register_device("e" * 64, "f" * 64, None)
    results, errors = [], []

    def go(k):
        try:
            results.append(stores[k].insert_tags(dev, [row(i) for i in range(k, k + 20)], 15))
        except Exception as e:          # noqa: BLE001 (asserted below)
            errors.append(e)
    threads = [threading.Thread(target=go, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sum(r["stored"] for r in results) == stores[0].count_tags() == 27     # ids 0..26
    assert sum(r["flagged"] for r in results) == 27 - 15
    assert len(list(stores[0].iter_tag_events())) == 15
    for st in stores:
        st.close()


def test_api_keys_are_hashed(tmp_path):
    key = create_api_key(tmp_path, ["appeals"], "reviewer")
    s = open_store(tmp_path)
    assert s.api_key_scopes(key)[1] == {"appeals"}
    assert s.api_key_scopes(key + "x") is None
    assert all(key not in str(r) for r in s.query("SELECT * FROM api_keys"))
    kid = s.api_key_scopes(key)[0]
    assert s.revoke_api_key(kid, "test") and s.api_key_scopes(key) is None
    with pytest.raises(StoreError, match="scopes"):
        s.create_api_key(["root"])
    s.close()


def test_lazy_rate_limit_storage_expires_without_timer_thread():
    st = LazyMemoryStorage()
    assert st.incr("k", expiry=0.05) == 1 and st.incr("k", expiry=0.05) == 2
    time.sleep(0.08)
    assert st.get("k") == 0 and st.incr("k", expiry=10) == 1


def test_sqlite_waits_for_the_wal_switch_when_workers_open_a_new_store_together(tmp_path, database_url):
    """Switching a new file into WAL answers 'database is locked' at once (no busy handler) while
    another connection does the same: opening retries until the busy timeout, other errors pass."""
    import sqlite3

    from server.store_backends import SQLiteBackend
    if not database_url.endswith(".sqlite"):
        pytest.skip("SQLite only")

    class Flaky:
        def __init__(self, failures, error="database is locked"):
            self.failures, self.error, self.calls = failures, error, 0

        def execute(self, sql):
            self.calls += 1
            if self.calls <= self.failures:
                raise sqlite3.OperationalError(self.error)
            return sqlite3.connect(":memory:").execute("SELECT 'wal'")

    backend = SQLiteBackend(tmp_path / "s.sqlite", busy_timeout_ms=2000)
    conn = Flaky(3)
    assert backend._enter_wal(conn) == "wal" and conn.calls == 4
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        backend._enter_wal(Flaky(1, "disk I/O error"))
    quick = SQLiteBackend(tmp_path / "s.sqlite", busy_timeout_ms=50)
    t0 = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        quick._enter_wal(Flaky(10**6))
    assert 0.05 <= time.monotonic() - t0 < 1.0
