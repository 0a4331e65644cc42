"""A real gunicorn on a loopback port: smoke test, and kill -9 during a storm of tag uploads."""
import http.client
import json
import random
import threading
import time

import pytest

from server.store import Store, sha256_hex
from tests.server.conftest import make_exports
from tools.bench.server import ServerProcess, request


def _events(prefix: str, n: int, size: int) -> list[dict]:
    return [{"event_id": f"{prefix}-{n}-{i}", "number": f"1390000{(n * size + i) % 10000:04d}",
             "category": "harassment", "ts": "2025-11-02T08:00:00Z"} for i in range(size)]


def test_real_gunicorn_serves_and_counts(tmp_path):
    make_exports(tmp_path / "exports")
    srv = ServerProcess(tmp_path / "var", tmp_path / "exports", workers=2,
                        log_path=tmp_path / "log").start()
    try:
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        st, body = request(c, "POST", "/v1/devices", {"device_id": "gunicorn-device"})
        assert st == 201
        tok = json.loads(body)["token"]
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        st, body = request(c, "POST", "/v1/tags", {"events": _events("g", 0, 20)},
                           {"Authorization": "Bearer " + tok})
        assert st == 200 and json.loads(body)["stored"] == 20
        for _ in range(4):                      # reach both workers
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            assert request(c, "GET", "/v1/manifest")[0] == 200
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        st, body = request(c, "GET", "/metrics")
        text = body.decode()
        assert st == 200 and 'callmark_tags_total{result="stored"} 20.0' in text
        manifests = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                        if line.startswith("callmark_http_requests_total{endpoint=\"sync.manifest\""))
        assert manifests == 4                   # aggregated across worker processes
    finally:
        srv.stop()


@pytest.mark.slow
def test_kill_9_during_tag_storm_loses_no_acknowledged_tag(tmp_path, database_url):
    """>= 20 rounds: start gunicorn, upload from 4 clients, SIGKILL everything mid-storm; every
    acknowledged (200) event must be in the store, and the store must open clean."""
    make_exports(tmp_path / "exports")
    rounds, acked, tokens = 20, set(), []
    rng = random.Random(7)
    for rnd in range(rounds):
        srv = ServerProcess(tmp_path / "var", tmp_path / "exports", workers=2,
                            env={"CALLMARK_RATELIMIT_ENABLED": "false",
                                 "CALLMARK_DAILY_CAP": "100000000"},
                            log_path=tmp_path / "log").start()
        if not tokens:
            for i in range(4):
                c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
                st, body = request(c, "POST", "/v1/devices", {"device_id": f"storm-device-{i}"})
                tokens.append(json.loads(body)["token"])
        stop = threading.Event()
        lock = threading.Lock()

        def storm(k: int) -> None:
            n = 0
            hdr = {"Authorization": "Bearer " + tokens[k]}
            while not stop.is_set():
                evs = _events(f"r{rnd}c{k}", n, 50)
                n += 1
                try:
                    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
                    st, _ = request(c, "POST", "/v1/tags", {"events": evs}, hdr)
                except (OSError, http.client.HTTPException):
                    return                      # the server is gone
                if st == 200:
                    with lock:
                        acked.update((k, e["event_id"]) for e in evs)

        threads = [threading.Thread(target=storm, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.3, 0.9))
        srv.kill()                              # SIGKILL master and workers mid-write
        stop.set()
        for t in threads:
            t.join(15)
        store = Store(database_url, create=False)          # both backends (autouse fixture)
        assert store.check() == "ok", f"round {rnd}: integrity check failed"
        ids = {r["token_hash"]: r["id"] for r in store.query("SELECT token_hash, id FROM devices")}
        dev = {k: ids[sha256_hex(t)] for k, t in enumerate(tokens)}
        stored = {(k, r["event_id"]) for k in dev for r in store.query(
            "SELECT event_id FROM tags WHERE device_id=?", (dev[k],))}
        store.close()
        lost = acked - stored
        assert not lost, f"round {rnd}: {len(lost)} acknowledged events lost, e.g. {sorted(lost)[:3]}"
    assert len(acked) > 1000, "the storm acknowledged too little to prove anything"


def test_serve_cli_reports_bad_config_without_traceback(tmp_path, monkeypatch):
    from click.testing import CliRunner
    monkeypatch.delenv("CALLMARK_DATA_DIR", raising=False)   # the command sets it: restore after

    from tools.commands.serve import command
    r = CliRunner().invoke(command, ["--port", "0", "--data-dir", str(tmp_path)],
                           env={"CALLMARK_DAILY_CAP": "lots"})
    assert r.exit_code != 0
    assert "CALLMARK_DAILY_CAP must be an integer" in r.output and "Traceback" not in r.output
