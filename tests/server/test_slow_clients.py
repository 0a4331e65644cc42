"""A real `callmark serve` (2 workers x 4 threads, the defaults) against hostile connections:
idle and half-sent sockets must not starve /healthz; gunicorn's own errors are JSON; a 10 MB
chunked body is 413 (issue 17)."""
from __future__ import annotations

import http.client
import json
import socket
import time

import pytest

from tests.server.conftest import make_exports
from tools.bench.server import ServerProcess, request


@pytest.fixture
def server(tmp_path):
    make_exports(tmp_path / "exports")
    srv = ServerProcess(tmp_path / "var", tmp_path / "exports", workers=2, threads=4,
                        env={"CALLMARK_HEADER_TIMEOUT_S": "60"},
                        log_path=tmp_path / "log").start()
    yield srv
    srv.stop()


def _probe(port: int) -> float | None:
    """Seconds /healthz took to answer 200, or None past 1 s."""
    t0 = time.monotonic()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
        st, _ = request(c, "GET", "/healthz")
        c.close()
    except OSError:
        return None
    dt = time.monotonic() - t0
    return dt if st == 200 and dt <= 1.0 else None


@pytest.mark.slow
def test_idle_and_half_sent_connections_do_not_starve_healthz(server):
    socks = []
    try:
        for _ in range(50):                                 # idle: connect, send nothing
            socks.append(socket.create_connection(("127.0.0.1", server.port)))
        for i in range(8):                                  # half a request line, then silence
            s = socket.create_connection(("127.0.0.1", server.port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * i)
            socks.append(s)
        answered, probes, end = 0, 0, time.monotonic() + 30
        while time.monotonic() < end:
            probes += 1
            answered += _probe(server.port) is not None
            time.sleep(0.5)
        assert probes >= 20 and answered == probes, f"{answered}/{probes} probes answered within 1 s"
    finally:
        for s in socks:
            s.close()


def test_half_sent_requests_are_closed_after_the_header_timeout(tmp_path):
    make_exports(tmp_path / "exports")
    srv = ServerProcess(tmp_path / "var", tmp_path / "exports", workers=1, threads=1,
                        env={"CALLMARK_HEADER_TIMEOUT_S": "1"}, log_path=tmp_path / "log").start()
    try:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(b"GET /healthz HTT")
        t0 = time.monotonic()
        assert s.recv(100) == b""                          # closed by the server
        assert time.monotonic() - t0 < 5
        assert _probe(srv.port) is not None                 # the only thread was never taken
    finally:
        srv.stop()


def test_gunicorn_errors_are_json_and_chunked_10mb_is_413(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    raw = s.recv(65536)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head
    assert json.loads(body)["code"] == 400

    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    st, body = request(c, "POST", "/v1/devices", {"device_id": "chunk-device-1"})
    tok = json.loads(body)["token"]

    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    s.sendall(b"POST /v1/tags HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Authorization: Bearer " + tok.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * 64 * 1024)
    try:
        s.sendall(b"c\r\n{\"events\": [\r\n")
        for _ in range(160):                                # 10 MiB of chunks
            s.sendall(chunk)
        s.sendall(b"2\r\n]}\r\n0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass                                                # refused before the end: fine
    raw = b""
    try:
        while b"\r\n\r\n" not in raw or len(raw.partition(b"\r\n\r\n")[2]) < 10:
            got = s.recv(65536)
            if not got:
                break
            raw += got
    except ConnectionResetError:
        pass
    assert raw.startswith(b"HTTP/1.1 413"), raw[:200]
