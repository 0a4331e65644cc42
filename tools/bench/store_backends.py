"""Acknowledged tags per second: SQLite vs PostgreSQL behind the same real gunicorn, same run.

Each round starts `callmark serve` (gunicorn, real HTTP on 127.0.0.1) on a fresh store of each
backend and lets `--clients` processes upload 100-event batches for `--seconds`; a tag counts when
its batch got a 200 (committed before the answer: SQLite WAL synchronous=FULL, PostgreSQL
synchronous_commit=on with fsync). Rounds alternate the backends so background load hits both
alike; the table gives the median of the rounds and the ratio PostgreSQL / SQLite. PostgreSQL is a
throw-away local cluster (tools.bench.services.LocalPostgres) on the same machine.

Example: python -m tools.bench.store_backends --rounds 3 --seconds 5 --clients 4
"""
from __future__ import annotations

import http.client
import json
import os
import statistics
import tempfile
from pathlib import Path

import click

from tools.bench.server import ServerProcess, make_exports, measure, request
from tools.bench.services import LocalPostgres


def _round(tmp: Path, name: str, url: str | None, workers: int, threads: int, seconds: float,
           clients: int) -> dict:
    env = {"CALLMARK_RATELIMIT_ENABLED": "false", "CALLMARK_DAILY_CAP": "100000000",
           "CALLMARK_DATABASE_URL": url or ""}
    tmp.mkdir(parents=True, exist_ok=True)
    srv = ServerProcess(tmp / f"var-{name}", tmp.parent / "exports", workers=workers, threads=threads,
                        env=env, log_path=tmp / "server.log").start()
    try:
        tokens = []
        for i in range(clients):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            _, body = request(conn, "POST", "/v1/devices", {"device_id": f"bench-{name}-{i}"})
            tokens.append(json.loads(body)["token"])
        return measure("tags", srv.port, seconds, clients, tokens, keepalive=threads > 1)
    finally:
        srv.stop()


@click.command()
@click.option("--rounds", default=3, show_default=True, help="alternating rounds per backend")
@click.option("--seconds", default=5.0, show_default=True, help="upload seconds per round")
@click.option("--clients", default=4, show_default=True, help="client processes")
@click.option("--workers", default=2, show_default=True, help="gunicorn workers")
@click.option("--threads", default=1, show_default=True, help="threads per worker")
def main(rounds, seconds, clients, workers, threads):
    """Acknowledged tags/s on SQLite and PostgreSQL, same machine, same run.

    Example: python -m tools.bench.store_backends --rounds 3 --seconds 5 --clients 4
    """
    results: dict[str, list[dict]] = {"sqlite": [], "postgresql": []}
    with tempfile.TemporaryDirectory() as tmp, LocalPostgres() as pg:
        tmp = Path(tmp)
        make_exports(tmp / "exports")
        for r in range(rounds):
            for name in ("sqlite", "postgresql"):
                url = pg.create_database(f"bench{r}") if name == "postgresql" else None
                results[name].append(_round(tmp / f"r{r}", name, url, workers, threads, seconds,
                                            clients))
                print(f"round {r + 1} {name:10} {results[name][-1]['rate']:8.0f} tags/s", flush=True)
    print(f"\ngunicorn {workers} worker(s) x {threads} thread(s), {clients} clients x 100-event "
          f"batches, {seconds:.0f} s x {rounds} rounds, cpus={os.cpu_count()}")
    print(f"{'backend':10} {'acked tags/s':>12} {'p50 ms':>8} {'p99 ms':>8}")
    med = {}
    for name, rows in results.items():
        med[name] = statistics.median(x["rate"] for x in rows)
        print(f"{name:10} {med[name]:12.0f} {statistics.median(x['p50_ms'] for x in rows):8.1f} "
              f"{statistics.median(x['p99_ms'] for x in rows):8.1f}")
    print(f"ratio postgresql / sqlite: {med['postgresql'] / med['sqlite']:.2f}")
    with open("/proc/loadavg") as fh:
        print(f"load average at the end: {fh.read().split()[0]} on {os.cpu_count()} cpus")


if __name__ == "__main__":
    main()
