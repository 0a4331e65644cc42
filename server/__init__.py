"""callmark's HTTP server: `create_app(config=None)` builds the Flask app (see docs/http-api.md)."""
from __future__ import annotations


def create_app(config=None):
    """Build the Flask app (lazy import keeps `import server.store` light)."""
    from server.app import create_app as _create_app
    return _create_app(config)


__all__ = ["create_app"]
