"""Benchmark the serving setup against slow and idle clients: gunicorn's stock gthread worker
(the baseline, measured in the same run) versus callmark's `server.worker.CallmarkWorker`.

For each worker class, 2 workers x 4 threads on 127.0.0.1 (the `callmark serve` defaults):
- `healthz_rate`: GET /healthz per second from 4 keep-alive client processes (cost of collecting
  request heads in the event loop), both servers up, alternating rounds; the ratio of medians;
- under attack (50 idle sockets + 8 that sent half a request line, held for --attack-seconds):
  /healthz probes every 0.5 s, the share answered within 1 s.

Example: python -m tools.bench.slow_clients --seconds 3 --rounds 3 --attack-seconds 30
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from tools.bench.server import ROOT, make_exports, measure, request
from tools.local_process import NotReady, ProcessExited, free_port, wait_until_ready

BASELINE = "gthread"
CANDIDATE = "server.worker.CallmarkWorker"


def _start(worker_class: str, data: Path, exports: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "CALLMARK_DATA_DIR": str(data), "CALLMARK_EXPORTS_DIR": str(exports),
           "CALLMARK_RATELIMIT_ENABLED": "false", "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--worker-class", worker_class,
                             "--workers", "2", "--threads", "4", "--keep-alive", "5", "--timeout", "30",
                             "--bind", f"127.0.0.1:{port}", "--no-control-socket", "server:create_app()"],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_until_ready(proc, lambda: _probe(port, 1.0) is not None, timeout_s=30, what=worker_class,
                         interval_s=0.05)
    except (ProcessExited, NotReady) as e:
        with contextlib.suppress(ProcessLookupError):      # the group may be gone already
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        raise RuntimeError(f"{worker_class}: gunicorn did not answer /healthz ({e})") from None
    return proc, port


def _probe(port: int, limit_s: float) -> float | None:
    t0 = time.monotonic()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=limit_s)
        st, _ = request(c, "GET", "/healthz")
        c.close()
    except OSError:
        return None
    dt = time.monotonic() - t0
    return dt if st == 200 and dt <= limit_s else None


def _attack(port: int, seconds: float) -> dict:
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
    for i in range(8):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * i)
        socks.append(s)
    answered, probes, end = 0, 0, time.monotonic() + seconds
    while time.monotonic() < end:
        probes += 1
        dt = _probe(port, 1.0)
        answered += dt is not None
        time.sleep(0.5)
    for s in socks:
        s.close()
    return {"probes": probes, "answered_within_1s": answered, "share": round(answered / probes, 3)}


@click.command()
@click.option("--seconds", default=3.0, show_default=True, help="seconds of /healthz load per round")
@click.option("--rounds", default=3, show_default=True, help="alternating load rounds (median kept)")
@click.option("--attack-seconds", default=30.0, show_default=True, help="seconds the slow sockets are held")
def main(seconds, rounds, attack_seconds):
    """Stock gthread vs CallmarkWorker: request rate and /healthz under a slow-client attack."""
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        exports = Path(tmp) / "exports"
        make_exports(exports)
        servers = {wc: _start(wc, Path(tmp) / f"var-{wc}", exports) for wc in (BASELINE, CANDIDATE)}
        try:
            rates: dict = {wc: [] for wc in servers}
            for _ in range(rounds):      # alternate, both servers up: a busy box hits both alike
                for wc, (_, port) in servers.items():
                    rates[wc].append(measure("healthz", port, seconds, 4, [], keepalive=True)["rate"])
            for wc, (_, port) in servers.items():
                out[wc] = {"healthz_rate_median": round(statistics.median(rates[wc]), 1),
                           "healthz_rates": [round(r, 1) for r in rates[wc]],
                           "attack": _attack(port, attack_seconds)}
        finally:
            for proc, _ in servers.values():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    out["rate_ratio"] = round(out[CANDIDATE]["healthz_rate_median"] / out[BASELINE]["healthz_rate_median"], 3)
    click.echo(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
