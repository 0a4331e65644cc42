"""Errors of the store (SQLite or PostgreSQL), free of Flask: `import server.store` loads no web stack.

`server/errors.py` maps them to HTTP answers (StoreBusy -> 503 with Retry-After, any other
StoreError -> 500); library callers (the trainer's source adapter, the CLI) catch them directly.
"""
from __future__ import annotations

from callmark.errors import CallmarkError


class StoreError(CallmarkError):
    """The store cannot be opened or migrated, or refused a value (the message says which)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class StoreBusy(StoreError):
    """The store stayed locked past the busy timeout; retry later."""


class StoreIntegrityError(StoreError):
    """The database refused a row (a NOT NULL or UNIQUE constraint); the transaction rolled back."""
