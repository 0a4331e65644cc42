"""Request bodies are decoded by `callmark.safejson` only (depth, size, number-length and surrogate
limits): a Flask JSON provider for `request.get_json()` and a webargs parser for flask-smorest's
`@blp.arguments`. Body size is Flask's MAX_CONTENT_LENGTH (413, checked while reading); a refused body raises `JSONInputError`, which `server.errors` answers with 400."""
from __future__ import annotations

from typing import Any

from flask.json.provider import DefaultJSONProvider
from flask_smorest import Blueprint
from flask_smorest.arguments import FlaskParser
from webargs import core
from webargs.flaskparser import is_json_request

from callmark import safejson


class SafeJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with `loads` going through callmark.safejson (dumps unchanged)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return safejson.loads(s, "request body")


class SafeFlaskParser(FlaskParser):
    """flask-smorest's argument parser, reading JSON bodies through callmark.safejson."""

    def _raw_load_json(self, req) -> Any:
        if not is_json_request(req):
            return core.missing
        data = req.get_data(cache=True)
        if not data:
            return core.missing          # webargs' own rule: an empty body is "missing"
        return safejson.loads(data, "request body")


def install(app) -> None:
    """Use the safe decoder for this app's request.get_json() and every Blueprint's arguments.

    Call before the blueprints are built (flask-smorest binds the parser at decoration time)."""
    app.json = SafeJSONProvider(app)
    Blueprint.ARGUMENTS_PARSER = SafeFlaskParser()


__all__ = ["SafeJSONProvider", "SafeFlaskParser", "install"]
