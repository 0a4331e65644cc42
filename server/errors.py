"""Server exceptions and the one JSON error handler.

Every error answer has the same JSON body: `{"code": 422, "status": "Unprocessable Entity",
"message": "...", "errors": {...field errors, optional}}` (the flask-smorest ErrorSchema shape,
so the OpenAPI document describes it).
"""
from __future__ import annotations

import logging
import sqlite3

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from callmark import safejson
from callmark.safejson import JSONInputError
from server.store_errors import StoreBusy, StoreError

log = logging.getLogger("callmark.server")


class ServerError(Exception):
    """Base class of callmark server errors (carries an HTTP status)."""

    status = 500
    headers: dict[str, str] = {}

    def __init__(self, message: str, errors: dict | None = None, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors
        if headers:
            self.headers = dict(headers)


class ConfigError(ServerError):
    """A configuration value is missing or invalid."""


class BadRequest(ServerError):
    """The request is malformed."""

    status = 400


class Unauthorized(ServerError):
    """Missing or unknown credentials."""

    status = 401
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(ServerError):
    """Credentials are valid but lack the needed scope."""

    status = 403


class NotFound(ServerError):
    """The named resource does not exist."""

    status = 404


class Conflict(ServerError):
    """The resource is in a state that forbids the action."""

    status = 409


class UnsupportedMediaType(ServerError):
    """The request body has the wrong Content-Type."""

    status = 415


class Unprocessable(ServerError):
    """The body parsed but failed validation (field-level errors attached)."""

    status = 422


class NotImplementedYet(ServerError):
    """The feature needs a component that is not available in this deployment."""

    status = 501


class Unavailable(ServerError):
    """A dependency (exports, store) is not ready."""

    status = 503


def error_body(code: int, message: str, errors: dict | None = None) -> dict:
    body = {"code": code, "status": HTTP_STATUS_CODES.get(code, "Error"), "message": message}
    if errors:
        body["errors"] = errors
    return body


def _respond(code: int, message: str, errors=None, headers=None):
    resp = jsonify(error_body(code, message, errors))
    resp.status_code = code
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def install_retry_after(app: Flask, retry_after_s: int) -> None:
    """Retry-After only where the answer means "come back later": 503 says CALLMARK_RETRY_AFTER_S,
    429 keeps the rate limiter's seconds to its window reset; every other answer loses the header
    Flask-Limiter adds. Register before the Limiter: after_request hooks run in reverse order, so
    this one then sees the limiter's headers."""

    @app.after_request
    def retry_after_only_when_meant(resp):
        if resp.status_code == 503:
            resp.headers["Retry-After"] = str(retry_after_s)
        elif resp.status_code == 429:
            resp.headers.setdefault("Retry-After", str(retry_after_s))
        else:
            resp.headers.pop("Retry-After", None)
        return resp


def register_error_handlers(app: Flask, retry_after_s: int) -> None:
    """Install the single JSON error handler for HTTP, server, store and unexpected errors."""

    def on_server_error(e: ServerError):
        headers = dict(e.headers)
        if e.status in (429, 503):
            headers.setdefault("Retry-After", str(retry_after_s))
        return _respond(e.status, e.message, e.errors, headers)

    def on_http(e: HTTPException):
        code = e.code or 500
        message = e.description or HTTP_STATUS_CODES.get(code, "Error")
        errors = None
        data = getattr(e, "data", None)          # webargs/flask-smorest validation details
        if isinstance(data, dict):
            errors = data.get("messages")
            message = data.get("message", "Validation failed" if errors else message)
            if errors:
                message = "Request failed validation: see 'errors' for each field"
        headers = {}
        if e.response is None:
            for k, v in (e.get_headers() or []):
                if k.lower() != "content-type":
                    headers[k] = v
        if code == 429:
            headers.setdefault("Retry-After", str(retry_after_s))
            message = f"Rate limit exceeded ({e.description}); retry after the Retry-After seconds"
        if code == 413:
            message = ("Request body too large; send smaller batches "
                       f"(max {app.config.get('MAX_CONTENT_LENGTH')} bytes)")
        return _respond(code, message, errors, headers)

    def on_store(e: StoreError):
        if isinstance(e, StoreBusy):
            return _respond(503, e.message, None, {"Retry-After": str(retry_after_s)})
        log.error("store error: %s", e)
        return _respond(500, e.message, None)

    def on_sqlite(e: sqlite3.OperationalError):
        if "locked" in str(e) or "busy" in str(e):
            return _respond(503, "Store is busy; retry later", None,
                            {"Retry-After": str(retry_after_s)})
        log.exception("store error")
        return _respond(500, "Internal store error", None)

    def on_json(e: JSONInputError):
        return _respond(400, f"{e}; send a JSON body of at most {safejson.MAX_DEPTH} levels, numbers "
                             f"of at most {safejson.MAX_NUMBER_LEN} characters, valid UTF-8 text", None)

    def on_unexpected(e: Exception):
        if isinstance(e, HTTPException):
            return on_http(e)
        if isinstance(e, TimeoutError):          # the client stopped sending its body (socket timeout)
            return _respond(408, "request body not received in time", None, {"Connection": "close"})
        if type(e).__module__.startswith("gunicorn.http"):   # a malformed chunked body, read lazily
            return _respond(400, f"malformed request body: {e}", None, {"Connection": "close"})
        log.exception("unhandled error")
        return _respond(500, "Internal server error", None)

    app.register_error_handler(JSONInputError, on_json)
    app.register_error_handler(ServerError, on_server_error)
    app.register_error_handler(StoreError, on_store)
    app.register_error_handler(HTTPException, on_http)
    app.register_error_handler(sqlite3.OperationalError, on_sqlite)
    app.register_error_handler(Exception, on_unexpected)
