"""Throw-away PostgreSQL and Redis servers on free loopback ports, for tests and benchmarks.

`LocalPostgres` runs the installed server binaries (`initdb`, `pg_ctl`; found through
CALLMARK_PG_BIN, `pg_config --bindir` or /usr/lib/postgresql/<newest>/bin) on a temporary data
directory. initdb refuses to run as root, so under root every PostgreSQL command runs as the
`postgres` system user (`runuser -u postgres`), which Debian's package creates. `LocalRedis` runs
`redis-server` without persistence. Both stop their server and delete their files on `stop()`.

    with LocalPostgres() as pg:
        url = pg.create_database("t1")      # postgresql://postgres@127.0.0.1:<port>/t1
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from tools.local_process import NotReady, ProcessExited, free_port, stop_process, wait_until_ready

__all__ = ["LocalPostgres", "LocalRedis", "ServiceUnavailable", "free_port", "postgres_bin_dir"]


class ServiceUnavailable(RuntimeError):
    """The server binaries are missing or the server did not start (the message says how to fix)."""


def postgres_bin_dir() -> Path | None:
    """The directory holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    env = os.environ.get("CALLMARK_PG_BIN")
    if env:
        return Path(env) if (Path(env) / "initdb").exists() else None
    if shutil.which("initdb") and shutil.which("pg_ctl"):
        return Path(shutil.which("initdb")).parent
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(cands[-1]).parent if cands else None


class LocalPostgres:
    """A private PostgreSQL cluster (trust auth on 127.0.0.1, fsync on, C locale)."""

    def __init__(self, port: int | None = None, settings: dict[str, str] | None = None):
        self.bin = postgres_bin_dir()
        if self.bin is None:
            raise ServiceUnavailable("PostgreSQL server binaries not found: apt-get install -y "
                                     "postgresql (or set CALLMARK_PG_BIN to the bin directory)")
        self.port = port or free_port()
        self.settings = {"max_connections": "200", "shared_buffers": "128MB", **(settings or {})}
        self.root: Path | None = None
        self.as_user = os.geteuid() == 0

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_user:
            if not shutil.which("runuser"):
                raise ServiceUnavailable("running as root needs runuser (util-linux) to start "
                                         "PostgreSQL as the postgres user")
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if r.returncode:
            raise ServiceUnavailable(f"{' '.join(args[:2])} failed ({r.returncode}): "
                                     f"{(r.stderr or r.stdout).strip()[-800:]}")

    def start(self) -> "LocalPostgres":
        self.root = Path(tempfile.mkdtemp(prefix="callmark-pg-"))
        if self.as_user:
            shutil.chown(self.root, "postgres", "postgres")
        data = self.root / "data"
        self._run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-locale", "--no-sync")
        opts = " ".join([f"-p {self.port}", "-c listen_addresses=127.0.0.1",
                         f"-k {self.root}"] + [f"-c {k}={v}" for k, v in self.settings.items()])
        self._run("pg_ctl", "start", "-D", str(data), "-w", "-t", "60", "-o", opts,
                  "-l", str(self.root / "server.log"))
        return self

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` (dropping an old one); returns its URL."""
        import psycopg
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            self._run("pg_ctl", "stop", "-D", str(self.root / "data"), "-m", "fast", "-w")
        except (ServiceUnavailable, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> "LocalPostgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LocalRedis:
    """A private redis-server on a free loopback port, no persistence."""

    def __init__(self, port: int | None = None):
        self.exe = shutil.which("redis-server")
        if self.exe is None:
            raise ServiceUnavailable("redis-server not found: apt-get install -y redis-server")
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "LocalRedis":
        self.proc = subprocess.Popen([self.exe, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--daemonize", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until_ready(self.proc, self._pong, timeout_s=15, what="redis-server", interval_s=0.05)
        except ProcessExited:
            raise ServiceUnavailable(f"redis-server exited: {self.proc.stderr.read()[-500:]!r}") from None
        except NotReady:
            self.stop()
            raise ServiceUnavailable("redis-server did not answer PING within 15 s") from None
        return self

    def _pong(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace_s=10)
            self.proc = None

    def __enter__(self) -> "LocalRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
