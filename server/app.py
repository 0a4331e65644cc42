"""The Flask application factory."""
from __future__ import annotations

import logging
from typing import Any, Mapping

from flask import Flask, request
from flask_limiter import Limiter
from flask_smorest import Api
from werkzeug.routing import IntegerConverter

from server import console, json_input, metrics, ratelimit  # noqa: F401 (registers callmark-memory://)
from server.api import (admin_appeals, admin_audit, admin_keys, admin_labels, admin_releases, admin_verified,
                        appeals, devices, home, lookup, ops, sync, tags)
from server.config import Config
from server.errors import install_retry_after, register_error_handlers
from server.exports import Exports
from server.release_lookup import ReleaseLookups
from server.web import Ctx, client_ip

API_DESCRIPTION = """Sync, tag uploads, lookups, appeals and admin for callmark handsets.
Sync answers carry `min_wait_s` and `jitter_s` (JSON fields, or X-Callmark-Min-Wait /
X-Callmark-Jitter headers on the manifest): wait min_wait_s + uniform(0, jitter_s) seconds before
the next sync. 429 and 503 answers carry Retry-After. See docs/http-api.md."""


class BoundedInt(IntegerConverter):
    """`<int:...>` URL parts fit an SQLite INTEGER (0 .. 2^63-1); larger ones do not match (404)."""

    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(url_map, *args, **kwargs)


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    """Build the app. `config`: a Config, a dict of overrides on top of the environment, or None
    (everything from CALLMARK_* environment variables)."""
    if config is None:
        cfg = Config.from_env()
    elif isinstance(config, Config):
        cfg = config
    else:
        cfg = Config.from_env(**dict(config))
    app = Flask("callmark.server")
    app.config.update(
        API_TITLE="callmark", API_VERSION="1", OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/", OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={"info": {"description": API_DESCRIPTION}},
        MAX_CONTENT_LENGTH=cfg.max_body_bytes, JSON_SORT_KEYS=False,
    )
    json_input.install(app)     # before the blueprints: every JSON body goes through callmark.safejson
    app.url_map.converters["int"] = BoundedInt   # /v1/root/<300 digits>.root.json is a 404, not a 500
    if cfg.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=cfg.trusted_proxies, x_proto=cfg.trusted_proxies)

    store = cfg.open_store()
    store.migrate()
    if cfg.admin_key:
        store.ensure_api_key(cfg.admin_key, ["admin"], "bootstrap (CALLMARK_ADMIN_KEY)")
    store.close()       # no connection may cross a fork (gunicorn preload): reopened lazily

    @app.before_request
    def ignore_unknown_range_units():
        """RFC 9110 14.2: a Range header with a unit other than bytes is ignored (200, full body)."""
        rng = request.environ.get("HTTP_RANGE")
        if rng is not None and not rng.lstrip().lower().startswith("bytes="):
            del request.environ["HTTP_RANGE"]

    install_retry_after(app, cfg.retry_after_s)     # before the Limiter (see its docstring)
    limiter = Limiter(client_ip, app=app, default_limits=[cfg.default_limit_ip],
                      storage_uri=cfg.ratelimit_storage_uri, headers_enabled=True,
                      enabled=cfg.ratelimit_enabled, strategy="fixed-window")
    exports = Exports(cfg.exports_dir)
    c = Ctx(cfg, store, exports, limiter, cfg.secret_bytes(), ReleaseLookups(exports))
    app.extensions["callmark"] = c

    api = Api(app)
    api.spec.components.security_scheme(
        "deviceToken", {"type": "http", "scheme": "bearer",
                        "description": "token from POST /v1/devices"})
    api.spec.components.security_scheme(
        "apiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"})
    for mod in (sync, devices, tags, lookup, appeals, admin_keys, admin_appeals, admin_verified, admin_labels,
                admin_releases, admin_audit, ops):
        blp = mod.make_blueprint(c)
        if mod is ops:
            limiter.exempt(blp)
        api.register_blueprint(blp)
    console.install(app, c)
    home_blp = home.make_blueprint(ops.render_docs)
    limiter.exempt(home_blp)
    app.register_blueprint(home_blp)
    metrics.install(app)
    register_error_handlers(app, cfg.retry_after_s)
    logging.getLogger("callmark.server").info("callmark server ready (data=%s exports=%s)",
                                              cfg.data_dir, cfg.exports_dir)
    return app
