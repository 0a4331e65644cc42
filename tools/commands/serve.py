"""`callmark serve`: run the HTTP server under gunicorn (loopback by default)."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click


def gunicorn_options(host: str, port: int, workers: int, threads: int, access_log: bool,
                     timeout: int) -> dict:
    """The gunicorn settings `callmark serve` uses."""
    opts = {"bind": f"{host}:{port}", "workers": workers, "timeout": timeout,
            "graceful_timeout": 10, "keepalive": 5, "preload_app": True, "proc_name": "callmark-server",
            # gthread that collects request heads in its event loop (server/worker.py): idle and
            # half-sent connections hold no thread; CALLMARK_HEADER_TIMEOUT_S / _IO_TIMEOUT_S bound them
            "worker_class": "server.worker.CallmarkWorker", "threads": threads,
            "accesslog": "-" if access_log else None, "errorlog": "-", "loglevel": "info",
            # side-by-side servers must not fight over one $HOME/.gunicorn/gunicorn.ctl
            "control_socket_disable": True}
    return opts


def run(host: str = "127.0.0.1", port: int = 8080, workers: int = 2, threads: int = 4,
        access_log: bool = False, timeout: int = 30) -> None:
    """Prepare the store and the metrics directory, then run gunicorn in this process."""
    from gunicorn.app.base import BaseApplication

    from server.config import Config
    cfg = Config.from_env()
    store = cfg.open_store()
    store.migrate()                          # once, before forking
    store.close()                            # no connection crosses the fork
    mp = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR",
                                    str(Path(cfg.data_dir) / f"prometheus-{port}")))
    shutil.rmtree(mp, ignore_errors=True)
    mp.mkdir(parents=True, exist_ok=True)

    def child_exit(server, worker):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)

    class App(BaseApplication):
        def load_config(self):
            for k, v in gunicorn_options(host, port, workers, threads, access_log,
                                         timeout).items():
                if v is not None and k in self.cfg.settings:
                    self.cfg.set(k, v)
            self.cfg.set("child_exit", child_exit)

        def load(self):
            from server import create_app
            return create_app()

    App().run()


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; keep the loopback default behind a reverse proxy.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64),
              help="gunicorn worker processes.")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64),
              help="Threads per worker (server.worker.CallmarkWorker, a gthread worker whose threads only "
                   "see complete request heads).")
@click.option("--data-dir", envvar="CALLMARK_DATA_DIR", default=None,
              help="Store folder (env CALLMARK_DATA_DIR, default ./var).")
@click.option("--exports-dir", envvar="CALLMARK_EXPORTS_DIR", default=None,
              help="Published artefacts (env CALLMARK_EXPORTS_DIR, default ./exports).")
@click.option("--access-log/--no-access-log", default=False, help="Log every request.")
def command(host, port, workers, threads, data_dir, exports_dir, access_log):
    """Run the callmark HTTP server (sync, tags, lookup, appeals, admin) under gunicorn.

    All other settings come from CALLMARK_* environment variables (see docs/http-api.md).

    Set CALLMARK_ADMIN_KEY to bootstrap an admin API key. GET / lists /docs, /openapi.json and the health checks.

    Example: callmark serve --port 8080 --workers 2
    """
    if data_dir:
        os.environ["CALLMARK_DATA_DIR"] = data_dir
    if exports_dir:
        os.environ["CALLMARK_EXPORTS_DIR"] = exports_dir
    from server.errors import ServerError
    try:
        run(host, port, workers, threads, access_log)
    except ServerError as e:
        raise click.ClickException(str(e)) from None


if __name__ == "__main__":
    sys.exit(command())
