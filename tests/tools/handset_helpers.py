"""Test helpers for the handset: small label tables, signed releases, a loopback server.

The tests build releases with the project's own libraries (trainer/packs.py, publisher/);
the handset under test only talks to them through exports/ files or HTTP.
"""
from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import numpy as np

from callmark import categories
from callmark.numbers import key_of

DAY = 20500  # epoch day of the evidence (2026-02-15)
FRAUD = "+8613800138000"
TELE = "+8613912345678"
DELIVERY = "+8618612345678"
BANK = "95588"  # verified business
RANGE_START = "+8617012340000"  # a block of 100 labelled harassment
NEW_FRAUD = "+8615011112222"  # appears in version 2
UNKNOWN = "+8613311112222"  # in no pack


def code(key: str) -> int:
    return categories.by_key(key).code


def table(version: int = 1, extra: int = 200, seed: int = 0):
    """A PackTable: a few known numbers plus `extra` random mobile labels; v2 changes a few rows."""
    from trainer.packs import make_table
    rng = np.random.default_rng(seed)
    known = [(FRAUD, "fraud", 0.97, 40, 0), (TELE, "telemarketing", 0.8, 12, 0),
             (DELIVERY, "delivery", 0.9, 20, 0), (BANK, "customer_service", 0.99, 100, 1)]
    if version >= 2:
        known.append((NEW_FRAUD, "fraud", 0.95, 30, 0))
        known[1] = (TELE, "loans", 0.85, 14, 0)  # relabelled
    keys = [key_of(n) for n, *_ in known]
    cats = [code(c) for _, c, *_ in known]
    conf = [c for *_, c, _r, _f in known]
    rep = [r for *_, r, _f in known]
    flags = [f for *_, f in known]
    more = np.unique(86 * 10**11 + 135 * 10**8 + rng.integers(0, 10**8, extra))
    m_cat = rng.choice([code("harassment"), code("telemarketing"), code("fraud")], len(more))
    m_conf = rng.uniform(0.5, 0.99, len(more))
    m_rep = rng.integers(1, 50, len(more))
    keep = len(more) - 5 * (version - 1)  # each version drops a few rows
    keys += more[:keep].tolist()
    cats += m_cat[:keep].tolist()
    conf += m_conf[:keep].tolist()
    rep += m_rep[:keep].tolist()
    flags += [0] * keep
    labels = {"key": keys, "category": cats, "confidence": conf, "reporters": rep, "flags": flags,
              "last_day": [DAY * 86400] * len(keys)}
    start = key_of(RANGE_START)
    ranges = {"start": [start], "size": [100], "category": [code("harassment")], "confidence": [0.8],
              "numbers": [9], "flags": [2], "last_day": [DAY * 86400]}
    return make_table(labels, ranges, {key_of(BANK): "中国工商银行"})


class Publisher:
    """Signed releases into an exports/ tree, with keys made once."""

    def __init__(self, root: Path, channel: str = "stable"):
        from publisher import init_keys
        self.root, self.channel = Path(root), channel
        self.keys = self.root / "keys"
        self.exports = self.root / "exports"
        self.exports.mkdir(parents=True, exist_ok=True)
        init_keys(self.keys, threshold=1, roots=1)
        self.pack_dirs: dict[int, Path] = {}

    @property
    def root_file(self) -> Path:
        return self.keys / "root" / "1.root.json"

    def publish(self, version: int, t=None, model_dir=None, hints: dict | None = None):
        """Build packs of `t` (default table(version)) + a delta from the previous version; publish."""
        from trainer.packs import PackConfig, build_packs, make_deltas
        from publisher import publish_release
        t = t if t is not None else table(version)
        pdir = self.root / f"packs-v{version}"
        build_packs(t, version, str(pdir), PackConfig(lite=False, provinces=False))
        deltas = []
        for v, old in sorted(self.pack_dirs.items()):
            ddir = self.root / f"delta-v{v}-v{version}"
            make_deltas(str(old), str(pdir), str(ddir))
            deltas.append(ddir)
        self.pack_dirs[version] = pdir
        return publish_release(self.exports, pdir, deltas, model_dir, self.channel, self.keys,
                               hints=hints)


@contextlib.contextmanager
def serve(exports: Path, data_dir: Path, **overrides):
    """The real server app (server.create_app) on a loopback port in a thread; yields its URL."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    from server.app import create_app

    class Quiet(WSGIRequestHandler):
        def log_request(self, *a, **kw):
            pass

    cfg = {"exports_dir": str(exports), "data_dir": str(data_dir), "ratelimit_enabled": False,
           "sync_min_wait_s": 3600, "sync_jitter_s": 600, "device_secret": "test-secret", **overrides}
    app = create_app(cfg)
    srv = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()
        th.join(5)


def dead_url() -> str:
    """A loopback URL nobody listens on."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"
