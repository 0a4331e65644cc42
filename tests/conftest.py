"""Session-wide throw-away services: a real PostgreSQL and a real redis-server, started once.

Locally a missing service skips its tests with the install command; under CI (CI=true, as `.ci/run`
sets it) a missing service fails them, so CI never passes by skipping.
"""
from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(what: str, why: str):
    """Skip (locally) or fail (CI) a test whose service cannot run."""
    msg = f"{what} unavailable: {why}"
    if IN_CI:
        pytest.fail(msg + " (CI=true: services must run here; .ci/run installs them)")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def pg_server():
    """A private PostgreSQL cluster for the session (tools.bench.services.LocalPostgres)."""
    from tools.bench.services import LocalPostgres, ServiceUnavailable
    try:
        import psycopg  # noqa: F401
        pg = LocalPostgres().start()
    except (ImportError, ServiceUnavailable) as e:
        unavailable("PostgreSQL", str(e))
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def redis_server():
    """A private redis-server for the session (tools.bench.services.LocalRedis)."""
    from tools.bench.services import LocalRedis, ServiceUnavailable
    try:
        import redis  # noqa: F401
        srv = LocalRedis().start()
    except (ImportError, ServiceUnavailable) as e:
        unavailable("Redis", str(e))
    yield srv
    srv.stop()


@pytest.fixture
def pg_database(pg_server, request):
    """A fresh, empty database on the session's PostgreSQL (pytest-postgresql's DatabaseJanitor
    creates it and drops it after the test); yields its URL."""
    from pytest_postgresql.janitor import DatabaseJanitor
    name = "t_" + "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[-50:].lower()
    janitor = DatabaseJanitor(user="postgres", host="127.0.0.1", port=pg_server.port,
                              dbname=name, password=None)
    janitor.drop() if _exists(pg_server, name) else None
    janitor.init()
    yield pg_server.url_for(name)
    janitor.drop()


def _exists(pg_server, name: str) -> bool:
    import psycopg
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname=%s", (name,)).fetchone() is not None


@pytest.fixture(scope="session")
def spark():
    """One local[2] SparkSession for the session (the Spark engine's parity tests)."""
    try:
        from trainer.spark_engine import SparkEngineError, spark_session
        session = spark_session("local[2]")
    except (ImportError, SparkEngineError) as e:
        unavailable("Spark", str(e))
    yield session
    session.stop()
