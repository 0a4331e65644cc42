"""Request helpers shared by the blueprints: the app context, auth, content-type checks, limits."""
from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Callable

from flask import current_app, g, request
from flask_limiter import Limiter

from server.config import Config
from server.errors import Forbidden, Unauthorized, UnsupportedMediaType
from server.exports import Exports
from server.store import ALL_SCOPES, Store, sha256_hex

DEVICE_AUTH = [{"deviceToken": []}]
ADMIN_AUTH = [{"apiKey": []}]


@dataclass
class Ctx:
    """Everything a request handler needs, hung on app.extensions['callmark']."""

    config: Config
    store: Store
    exports: Exports
    limiter: Limiter
    device_secret: bytes
    lookups: Any = None  # server.release_lookup.ReleaseLookups: per-channel tables from releases

    def device_hash(self, device_id: str) -> str:
        return hmac.new(self.device_secret, device_id.encode(), hashlib.sha256).hexdigest()

    def sync_hints(self, hints: dict | None = None) -> dict[str, int]:
        hints = hints or {}
        wait = hints.get("min_poll_seconds")
        wait = int(wait) if isinstance(wait, (int, float)) and wait > 0 else 0
        return {"min_wait_s": max(self.config.sync_min_wait_s, wait),
                "jitter_s": self.config.sync_jitter_s}


def ctx() -> Ctx:
    return current_app.extensions["callmark"]


def client_ip() -> str:
    return request.remote_addr or "unknown"


def bearer() -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    return None


def device_key() -> str:
    """Rate-limit key of the calling device: its token's hash (no store read), else its IP."""
    tok = bearer()
    return "tok:" + sha256_hex(tok)[:24] if tok else "ip:" + client_ip()


def require_json(fn: Callable) -> Callable:
    """415 unless the body is application/json; 413 when Content-Length exceeds the limit."""
    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any):
        if request.mimetype != "application/json":
            raise UnsupportedMediaType(
                f"send the body as JSON with 'Content-Type: application/json' "
                f"(got {request.mimetype or 'no content type'!r})")
        return fn(*a, **kw)
    return wrapper


def require_device(fn: Callable) -> Callable:
    """401 unless a valid device bearer token is given; sets g.device_id, g.device_hash."""
    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any):
        tok = bearer()
        if not tok:
            raise Unauthorized("missing device token: register with POST /v1/devices and send "
                               "'Authorization: Bearer <token>'")
        row = ctx().store.device_for_token(sha256_hex(tok), ctx().config.device_token_ttl_s)
        if row is None:
            raise Unauthorized("unknown, replaced or expired device token: register again with "
                               "POST /v1/devices (the same device_id keeps its reporter)")
        g.device_id, g.device_hash = row
        return fn(*a, **kw)
    return wrapper


def grantable(held: set[str]) -> set[str]:
    """The scopes a key holding `held` may give to (or take from) another key: only what it holds
    itself; 'admin' holds every scope. The one rule for key creation and revocation."""
    return set(ALL_SCOPES) if "admin" in held else set(held)


def check_grant(held: set[str], wanted: set[str], action: str) -> None:
    """Forbidden (403) unless every scope in `wanted` is grantable by a key holding `held`."""
    over = sorted(set(wanted) - grantable(held))
    if over:
        raise Forbidden(f"cannot {action} a key with scope(s) {', '.join(over)}: a key may only "
                        f"grant the scopes it holds ({', '.join(sorted(held))})")


def require_scope(scope: str) -> Callable:
    """401 without a valid X-API-Key, 403 when the key lacks `scope` (the 'admin' scope has all)."""
    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*a: Any, **kw: Any):
            key = request.headers.get("X-API-Key", "").strip()
            if not key:
                raise Unauthorized("missing API key: send it in the X-API-Key header",
                                   headers={"WWW-Authenticate": "ApiKey"})
            found = ctx().store.api_key_scopes(key)
            if found is None:
                raise Unauthorized("unknown or revoked API key",
                                   headers={"WWW-Authenticate": "ApiKey"})
            key_id, scopes = found
            if scope not in scopes and "admin" not in scopes:
                raise Forbidden(f"this API key lacks the '{scope}' scope "
                                f"(it has: {', '.join(sorted(scopes))})")
            g.actor, g.scopes = "key:" + key_id, scopes
            return fn(*a, **kw)
        return wrapper
    return deco
