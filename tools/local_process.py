"""Local server subprocesses for the demo, benchmarks and tests: pick a free loopback port, wait
until the started process answers, stop it.

    proc = subprocess.Popen([...serve..., "--port", str(port)])
    try:
        wait_until_ready(proc, lambda: http_ok(f"http://127.0.0.1:{port}"), timeout_s=60,
                         what="callmark serve")
    except (ProcessExited, NotReady):
        stop_process(proc, grace_s=10)
        raise
    ...
    stop_process(proc, grace_s=10)

Callers turn `ProcessExited` / `NotReady` into their own message (a click error naming the log,
an assertion with the server's stderr, ...).
"""
from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from typing import Callable
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"


class ProcessExited(RuntimeError):
    """The process exited before it was ready (`returncode` holds its exit status)."""

    def __init__(self, what: str, returncode: int):
        super().__init__(f"{what} exited with code {returncode} before it was ready")
        self.what = what
        self.returncode = returncode


class NotReady(RuntimeError):
    """The process was still running but not ready when the timeout passed."""

    def __init__(self, what: str, timeout_s: float):
        super().__init__(f"{what} was not ready within {timeout_s:g} s")
        self.what = what
        self.timeout_s = timeout_s


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on `host` that is free now (the OS picks it; another process may take it before
    the caller binds it, so start the server right away)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def http_ok(url: str, path: str = "/healthz", *, timeout_s: float = 1.0) -> bool:
    """True when GET `url` + `path` answers HTTP 200 within `timeout_s` seconds (per socket
    operation). Connection errors, timeouts and malformed answers give False; any other status too.
    Plain http.client, so proxy settings in the environment never apply to loopback probes."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"http_ok needs an http://host[:port] URL, got {url!r}")
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout_s)
    try:
        conn.request("GET", parts.path.rstrip("/") + path)
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def wait_until_ready(proc: subprocess.Popen, probe: Callable[[], bool], *, timeout_s: float,
                     what: str, interval_s: float = 0.1) -> None:
    """Call `probe()` every `interval_s` seconds until it returns True, while `proc` runs.

    `probe` takes no arguments; an OSError it raises (refused connection, socket timeout,
    requests.RequestException) counts as not ready, any other exception propagates. `what` names
    the process in the error messages. The process is left running on every outcome (stop it with
    `stop_process`).

    Raises ProcessExited when `proc` exits first (with its return code), NotReady when
    `timeout_s` seconds (monotonic clock) pass without a True probe.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        code = proc.poll()
        if code is not None:
            raise ProcessExited(what, code)
        try:
            if probe():
                return
        except OSError:
            pass
        left = deadline - time.monotonic()
        if left <= 0:
            raise NotReady(what, timeout_s)
        time.sleep(min(interval_s, left))


def stop_process(proc: subprocess.Popen, grace_s: float, *, group: bool = False) -> int:
    """Stop `proc`: SIGTERM, wait up to `grace_s` seconds, then SIGKILL and wait for it to go.

    `group=True` signals the whole process group (for a process started with
    `start_new_session=True`, e.g. gunicorn with its workers). A process that already exited is
    only reaped. Returns its return code (negative: the signal that ended it).
    """
    if proc.poll() is not None:
        return proc.returncode
    _signal(proc, signal.SIGTERM, group)
    try:
        return proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        _signal(proc, signal.SIGKILL, group)
        return proc.wait()


def _signal(proc: subprocess.Popen, sig: int, group: bool) -> None:
    if not group:
        proc.send_signal(sig)
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:  # the group is gone already (the leader is reaped on wait)
        pass
