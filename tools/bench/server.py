"""Benchmark the HTTP server on a real gunicorn on 127.0.0.1.

Measures acknowledged tags per second (batches of 100), manifest and update requests per second,
p50/p99 latencies and the server's resident memory. Ratios are against a baseline measured in the
same run: GET /healthz (the cheapest Flask answer) for request rates.

Example: python -m tools.bench.server --workers 2 --seconds 5 --clients 4
"""
from __future__ import annotations

import hashlib
import http.client
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import click

from tools.local_process import NotReady, ProcessExited, free_port, http_ok, stop_process, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]


class ServerProcess:
    """A `callmark serve` gunicorn subprocess in its own process group (kill() = SIGKILL all)."""

    def __init__(self, data_dir, exports_dir, port: int | None = None, workers: int = 2,
                 threads: int = 1, env: dict | None = None, log_path=None):
        self.port = port or free_port()
        self.env = {**os.environ, "CALLMARK_DATA_DIR": str(data_dir),
                    "CALLMARK_EXPORTS_DIR": str(exports_dir), "PYTHONPATH": str(ROOT),
                    **(env or {})}
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.args = [sys.executable, "-m", "tools.commands.serve", "--port", str(self.port),
                     "--workers", str(workers), "--threads", str(threads)]
        self.log_path = log_path or os.devnull
        self.proc: subprocess.Popen | None = None

    def start(self, wait_s: float = 30) -> "ServerProcess":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{self.port}"
        try:
            wait_until_ready(self.proc, lambda: http_ok(url), timeout_s=wait_s, what="server", interval_s=0.05)
        except ProcessExited as e:
            raise RuntimeError(f"server exited with {e.returncode}; see {self.log_path}") from None
        except NotReady:
            self.kill()
            raise RuntimeError(f"server did not answer /healthz within {wait_s} s") from None
        return self

    def pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-g", str(self.proc.pid)], capture_output=True, text=True)
        return [int(x) for x in out.stdout.split()]

    def memory_mib(self) -> float:
        """Proportional set size of master + workers (shared pages counted once), MiB."""
        total = 0
        for pid in self.pids():
            try:
                for line in open(f"/proc/{pid}/smaps_rollup"):
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def kill(self) -> None:
        """SIGKILL the whole process group (master and workers), no clean shutdown."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if getattr(self, "_log", None):
            self._log.close()

    def stop(self) -> None:
        """SIGTERM the process group (gunicorn shuts down cleanly), SIGKILL it after 15 s."""
        if self.proc:
            stop_process(self.proc, grace_s=15, group=True)
        if getattr(self, "_log", None):
            self._log.close()


def request(conn: http.client.HTTPConnection, method: str, path: str, body=None,
            headers: dict | None = None) -> tuple[int, bytes]:
    h = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=h)
    r = conn.getresponse()
    return r.status, r.read()


def make_exports(root: Path) -> dict:
    """A small exports tree of the documented shape (one pack, a 3-delta chain)."""
    from callmark.exports import ARTEFACTS_DIR, artefact_path, manifest_path
    (root / ARTEFACTS_DIR).mkdir(parents=True, exist_ok=True)
    (root / manifest_path("stable")).parent.mkdir(parents=True, exist_ok=True)

    def art(name, data):
        sha = hashlib.sha256(data).hexdigest()
        rel = artefact_path(sha, name)
        (root / rel).write_bytes(data)
        return {"path": rel, "length": len(data), "sha256": sha}

    st = lambda v: hashlib.sha256(f"state-{v}".encode()).hexdigest()  # noqa: E731
    pack = {"name": "CN-full", "region": "CN", "tier": "full", "version": 4, "entries": 100000,
            "state_hash": st(4), **art("CN-full-v4.pack.zst", os.urandom(200_000))}
    deltas = [{"name": "CN-full", "from_version": v, "to_version": v + 1,
               "from_state_hash": st(v), "to_state_hash": st(v + 1),
               **art(f"d{v}.delta.zst", os.urandom(2000))} for v in (1, 2, 3)]
    signed = {"type": "manifest", "spec_version": "1.0", "version": 4, "channel": "stable",
              "expires": "2099-01-01T00:00:00Z", "min_client_format": 1, "packs": [pack],
              "deltas": deltas, "model": None, "hints": {}}
    (root / manifest_path("stable")).write_text(
        json.dumps({"signed": signed, "signatures": [{"keyid": "00", "sig": "00"}]}))
    return {"state": st}


def _worker(kind: str, port: int, seconds: float, token: str | None, q,
            keepalive: bool = False) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    lat, done, n = [], 0, 0
    hdr = {"Authorization": "Bearer " + token} if token else {}
    st1 = hashlib.sha256(b"state-1").hexdigest()
    end = time.perf_counter() + seconds
    prefix = uuid.uuid4().hex[:8]
    while time.perf_counter() < end:
        if kind == "tags":
            body = {"events": [{"event_id": f"{prefix}-{n}-{i}", "number": f"13{(n * 100 + i) % 10**9:09d}",
                                "category": "fraud", "ts": "2025-11-01T10:00:00Z"}
                               for i in range(100)]}
            n += 1
        elif kind == "update":
            body = {"pack": "CN-full", "pack_version": 1, "state_hash": st1}
        else:
            body = None
        path = {"tags": "/v1/tags", "update": "/v1/update", "manifest": "/v1/manifest",
                "healthz": "/healthz"}[kind]
        t0 = time.perf_counter()
        try:
            status, _ = request(conn, "POST" if body else "GET", path, body, hdr)
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        lat.append(time.perf_counter() - t0)
        if status == 200:
            done += 100 if kind == "tags" else 1
        if not keepalive:                   # sync workers close after each answer anyway
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    q.put((done, lat))


def measure(kind: str, port: int, seconds: float, clients: int, tokens: list[str],
            keepalive: bool = False) -> dict:
    q = mp.Queue()
    procs = [mp.Process(target=_worker, args=(kind, port, seconds,
                                              tokens[i % len(tokens)] if tokens else None, q,
                                              keepalive))
             for i in range(clients)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    done = sum(r[0] for r in results)
    lat = sorted(x for r in results for x in r[1])
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")  # noqa
    return {"kind": kind, "rate": done / seconds, "requests": len(lat), "p50_ms": pct(0.50),
            "p99_ms": pct(0.99), "wall_s": wall}


def cpu_per_request(exports_dir: Path, data_dir: Path, n: int = 300) -> dict[str, float]:
    """In-process CPU milliseconds per request (Flask test client, no HTTP): robust to a busy box."""
    from server import create_app
    app = create_app({"data_dir": str(data_dir), "exports_dir": str(exports_dir),
                      "ratelimit_enabled": True, "daily_cap": 10**9})
    c = app.test_client()
    tok = c.post("/v1/devices", json={"device_id": "cpu-bench-device"}).get_json()["token"]
    hdr = {"Authorization": "Bearer " + tok}
    st1 = hashlib.sha256(b"state-1").hexdigest()
    calls = {
        "healthz": lambda i: c.get("/healthz"),
        "manifest": lambda i: c.get("/v1/manifest"),
        "update": lambda i: c.post("/v1/update", json={"pack": "CN-full", "pack_version": 1,
                                                       "state_hash": st1}),
        "tags": lambda i: c.post("/v1/tags", headers=hdr, json={"events": [
            {"event_id": f"cpu-{i}-{j}", "number": f"13{(i * 100 + j) % 10**9:09d}",
             "category": "fraud", "ts": "2025-11-01T10:00:00Z"} for j in range(100)]}),
    }
    out = {}
    for name, fn in calls.items():
        fn(-1)
        reps = n if name != "tags" else n // 5
        t0 = time.process_time()
        for i in range(reps):
            assert fn(i).status_code == 200
        out[name] = (time.process_time() - t0) / reps * 1000
    return out


@click.command()
@click.option("--workers", default=2, show_default=True, help="gunicorn workers")
@click.option("--threads", default=1, show_default=True, help="threads per worker")
@click.option("--seconds", default=5.0, show_default=True, help="seconds per measurement")
@click.option("--clients", default=4, show_default=True, help="client processes")
@click.option("--synchronous", default="FULL", show_default=True, help="SQLite synchronous")
def main(workers, threads, seconds, clients, synchronous):
    """Benchmark a real gunicorn on 127.0.0.1: tags/s, manifest and update req/s, p99, memory.

    Example: python -m tools.bench.server --workers 2 --seconds 5 --clients 4
    """
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_exports(tmp / "exports")
        env = {"CALLMARK_RATELIMIT_ENABLED": "false", "CALLMARK_DAILY_CAP": "1000000",
               "CALLMARK_SQLITE_SYNCHRONOUS": synchronous}
        srv = ServerProcess(tmp / "var", tmp / "exports", workers=workers, threads=threads,
                            env=env, log_path=tmp / "server.log").start()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            tokens = []
            for i in range(clients):
                st, body = request(conn, "POST", "/v1/devices", {"device_id": f"bench-device-{i}"})
                tokens.append(json.loads(body)["token"])
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            rss0 = srv.memory_mib()
            print(f"server: gunicorn {workers} worker(s) x {threads} thread(s), {clients} client "
                  f"processes, {seconds:.0f} s each, synchronous={synchronous}, cpus={os.cpu_count()}")
            keep = threads > 1                  # gthread workers keep connections alive
            base = measure("healthz", srv.port, seconds, clients, [], keep)
            rows = [base]
            for kind in ("manifest", "update", "tags"):
                rows.append(measure(kind, srv.port, seconds, clients, tokens, keep))
            rss1 = srv.memory_mib()
            print(f"{'what':10} {'rate/s':>10} {'vs healthz':>10} {'p50 ms':>8} {'p99 ms':>8}")
            for r in rows:
                unit = "tags" if r["kind"] == "tags" else "req"
                ratio = r["rate"] / base["rate"] if r["kind"] != "tags" else \
                    (r["rate"] / 100) / base["rate"]
                print(f"{r['kind']:10} {r['rate']:10.0f} {ratio:10.2f} {r['p50_ms']:8.2f} "
                      f"{r['p99_ms']:8.2f}  ({unit}/s)")
            print(f"server memory (PSS, master + workers): {rss0:.0f} MiB idle, {rss1:.0f} MiB after load")
            with open("/proc/loadavg") as fh:
                print(f"load average during the run: {fh.read().split()[0]} on {os.cpu_count()} cpus")
        finally:
            srv.stop()
        cpu = cpu_per_request(tmp / "exports", tmp / "var-cpu")
        print("in-process CPU per request (Flask test client; CPU only, fsync waits excluded):")
        for k, ms in cpu.items():
            per = f"{100 / ms * 1000:8.0f} tags/s/core" if k == "tags" else \
                f"{1000 / ms:8.0f} req/s/core"
            print(f"  {k:10} {ms:7.3f} ms  -> {per}  ({ms / cpu['healthz']:.2f} x healthz)")
        return


if __name__ == "__main__":
    main()
