"""tools.local_process against real subprocesses: a tiny HTTP server that comes up late, a process
that exits first, one that never answers, and one that ignores SIGTERM."""
from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from tools.local_process import (NotReady, ProcessExited, free_port, http_ok, stop_process,
                                 wait_until_ready)

# argv: port, seconds to wait before listening. /healthz answers 200, every other path 503.
LATE_SERVER = """
import http.server, sys, time
time.sleep(float(sys.argv[2]))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def spawn(code: str, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], **kw)


def test_free_port_is_bindable():
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_ready_once_the_server_answers():
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    assert not http_ok(url)                       # nothing listens yet: refused, not an error
    proc = spawn(LATE_SERVER, str(port), "0.5")
    try:
        t0 = time.monotonic()
        wait_until_ready(proc, lambda: http_ok(url), timeout_s=30, what="late server", interval_s=0.05)
        assert time.monotonic() - t0 >= 0.4       # it did wait for the late listener
        assert http_ok(url) and not http_ok(url, "/other")
    finally:
        code = stop_process(proc, grace_s=5)
    assert proc.poll() is not None and code == proc.returncode


def test_process_that_exits_first_reports_its_return_code():
    proc = spawn("import sys, time; time.sleep(0.2); sys.exit(3)")
    probes = []
    with pytest.raises(ProcessExited, match=r"toy exited with code 3") as exc:
        wait_until_ready(proc, lambda: probes.append(1) or False, timeout_s=30, what="toy",
                         interval_s=0.02)
    assert exc.value.returncode == 3 and isinstance(exc.value, RuntimeError)
    assert len(probes) >= 2                        # probed while it ran, stopped when it exited


def test_timeout_while_running_and_connection_errors_count_as_not_ready():
    proc = spawn("import time; time.sleep(60)")
    calls = []

    def refused() -> bool:
        calls.append(1)
        raise ConnectionRefusedError("nothing listens")
    try:
        t0 = time.monotonic()
        with pytest.raises(NotReady, match=r"sleeper was not ready within 0.5 s"):
            wait_until_ready(proc, refused, timeout_s=0.5, what="sleeper", interval_s=0.05)
        assert 0.5 <= time.monotonic() - t0 < 5
        assert len(calls) >= 3 and proc.poll() is None   # still running: the caller stops it
    finally:
        stop_process(proc, grace_s=5)


def test_other_probe_errors_propagate():
    proc = spawn("import time; time.sleep(60)")
    try:
        with pytest.raises(ZeroDivisionError):
            wait_until_ready(proc, lambda: 1 / 0, timeout_s=5, what="x")
    finally:
        stop_process(proc, grace_s=5)


def test_stop_kills_a_process_that_ignores_sigterm():
    proc = spawn("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                 "print('ready', flush=True); time.sleep(60)", stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    assert stop_process(proc, grace_s=0.5) == -9
    assert 0.5 <= time.monotonic() - t0 < 10
    proc.stdout.close()
    assert stop_process(proc, grace_s=0.5) == -9  # already stopped: only reports its code


def test_stop_group_ends_the_children_too():
    proc = spawn("import subprocess, sys, time; "
                 "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
                 "print(c.pid, flush=True); time.sleep(60)",
                 stdout=subprocess.PIPE, text=True, start_new_session=True)
    child = int(proc.stdout.readline())
    assert stop_process(proc, grace_s=5, group=True) == -15
    proc.stdout.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent that does not reap counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_http_ok_rejects_a_non_http_url():
    with pytest.raises(ValueError, match="http://host"):
        http_ok("127.0.0.1:8080")
