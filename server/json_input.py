"""Request bodies are decoded by `callmark.safejson` only (depth, size, number-length and surrogate
limits): a Flask JSON provider for `request.get_json()` and a webargs parser for flask-smorest's
`@blp.arguments`. Body size is Flask's MAX_CONTENT_LENGTH (413, checked while reading); a refused body raises `JSONInputError`, which `server.errors` answers with 400."""
from __future__ import annotations

from typing import Any

from flask.json.provider import DefaultJSONProvider
from flask_smorest import Blueprint
from werkzeug.exceptions import RequestEntityTooLarge
from flask_smorest.arguments import FlaskParser
from webargs import core
from webargs.flaskparser import is_json_request

from callmark import safejson


def body_bytes(req) -> bytes:
    """The request body, 413 when over max_content_length, chunked bodies included.

    Werkzeug stops reading a chunked body (no Content-Length) exactly at the limit and returns
    the truncated bytes, which would then fail as bad JSON (400): one more byte says "too large"."""
    data = req.get_data(cache=True)
    limit = req.max_content_length
    if limit is not None and req.content_length is None and len(data) >= limit:
        if req.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
    return data


class SafeJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with `loads` going through callmark.safejson (dumps unchanged)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return safejson.loads(s, "request body")


class SafeFlaskParser(FlaskParser):
    """flask-smorest's argument parser, reading JSON bodies through callmark.safejson."""

    def _raw_load_json(self, req) -> Any:
        if not is_json_request(req):
            return core.missing
        data = body_bytes(req)
        if not data:
            return core.missing          # webargs' own rule: an empty body is "missing"
        return safejson.loads(data, "request body")


def install(app) -> None:
    """Use the safe decoder for this app's request.get_json() and every Blueprint's arguments.

    Call before the blueprints are built (flask-smorest binds the parser at decoration time)."""
    app.json = SafeJSONProvider(app)
    Blueprint.ARGUMENTS_PARSER = SafeFlaskParser()


__all__ = ["SafeJSONProvider", "SafeFlaskParser", "install"]
