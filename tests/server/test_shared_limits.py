"""Rate limits shared through a real redis-server: two gunicorn workers together accept exactly
the configured limit (with the per-process default each worker would accept it once more)."""
import http.client

import pytest

from tests.server.conftest import make_exports
from tools.bench.server import ServerProcess, request


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)   # a limiter test, one store
def test_two_workers_share_one_limit_through_redis(tmp_path, redis_server, database_url):
    make_exports(tmp_path / "exports")
    limit, tries = 30, 80
    srv = ServerProcess(tmp_path / "var", tmp_path / "exports", workers=2,
                        env={"CALLMARK_RATELIMIT_STORAGE_URI": redis_server.url,
                             "CALLMARK_DEVICES_LIMIT_IP": f"{limit}/hour"},
                        log_path=tmp_path / "log").start()
    codes, pids = [], set()
    try:
        for i in range(tries):
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            st, _ = request(c, "POST", "/v1/devices", {"device_id": f"limit-device-{i:04d}"})
            codes.append(st)
        workers = len(srv.pids()) - 1
    finally:
        srv.stop()
    assert workers == 2
    assert codes.count(201) == limit, f"accepted {codes.count(201)} of {tries} against {limit}"
    assert codes.count(429) == tries - limit
    assert codes[:limit] == [201] * limit           # the first `limit` pass, then all refused
