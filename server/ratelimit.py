"""A per-process rate-limit storage for Flask-Limiter without the timer thread.

`limits`' MemoryStorage starts a threading.Timer every ~10 ms under load to expire counters, which
cost ~1.5 ms per request here. This subclass expires lazily (on read, as MemoryStorage.get already
does) and sweeps every SWEEP_EVERY increments. Registered as the `callmark-memory://` scheme.
Like memory://, counters live in one process: with N gunicorn workers a client may get up to N
times a limit; use a shared storage (redis://...) when that matters.
"""
from __future__ import annotations

from limits.storage import MemoryStorage

SWEEP_EVERY = 1000


class LazyMemoryStorage(MemoryStorage):
    """MemoryStorage that expires lazily instead of from a timer thread."""

    STORAGE_SCHEME = ["callmark-memory"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._ops = 0

    def _MemoryStorage__schedule_expiry(self) -> None:   # overrides the name-mangled hook
        self._ops = getattr(self, "_ops", 0) + 1
        if self._ops % SWEEP_EVERY == 0:
            self._MemoryStorage__expire_events()
