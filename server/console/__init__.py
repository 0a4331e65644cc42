"""The maintainer console under /console/: server-rendered pages (Jinja, plain forms, no script).

`install(app, c)` wires it into the app: the session cookie (signed with a secret every worker
shares, kept in the data dir), Flask-WTF CSRF checks on every console form, the security headers
(a Content-Security-Policy without inline script or style) and the pages (one module per area:
`auth`, `pages` (home, numbers, health), `releases` (releases, model), `people` (appeals,
verified businesses, keys, audit)). Every page checks the logged-in key on each request.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import Blueprint, Flask, abort, render_template, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect

from server.store_errors import StoreBusy, StoreError
from server.web import Ctx

log = logging.getLogger("callmark.server")

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
                    "Cross-Origin-Opener-Policy": "same-origin"}


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, marked Secure whenever the request came over HTTPS (directly
    or, with CALLMARK_TRUSTED_PROXIES, through a TLS proxy's X-Forwarded-Proto)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure)


def install(app: Flask, c: Ctx) -> Blueprint:
    """Register the console blueprint on `app`; returns it."""
    cfg = c.config
    app.config.update(
        SECRET_KEY=cfg.console_secret_bytes(),
        SESSION_COOKIE_NAME="callmark_console", SESSION_COOKIE_PATH="/console",
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=cfg.console_secure_cookie,
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=cfg.console_session_minutes),
        WTF_CSRF_CHECK_DEFAULT=False,       # the JSON API uses keys, not cookies: only console posts
        WTF_CSRF_TIME_LIMIT=None,           # a token lives as long as its (expiring) session
        WTF_CSRF_SSL_STRICT=True,
    )
    app.session_interface = ConsoleSessionInterface()
    csrf = CSRFProtect(app)
    bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
                   static_folder="static", static_url_path="/static")

    @bp.before_request
    def _csrf():
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            csrf.protect()

    @bp.after_request
    def _headers(resp):
        for k, v in SECURITY_HEADERS.items():
            resp.headers.setdefault(k, v)
        if request.endpoint != "console.static":
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @bp.errorhandler(CSRFError)
    def _csrf_error(e: CSRFError):
        return render_template("console/error.html", code=400, title="Form refused",
                               message=f"{e.description} Reload the page and submit the form again."), 400

    @bp.errorhandler(404)
    def _not_found(e):
        return render_template("console/error.html", code=404, title="Not found",
                               message="No such page, release or file."), 404

    @bp.route("/<path:unknown>", methods=["GET"])
    def _no_such_page(unknown: str):
        """Any other /console/ path: the console's own 404 page, not the JSON API's answer."""
        abort(404)

    @bp.errorhandler(StoreError)
    def _store_error(e: StoreError):
        busy = isinstance(e, StoreBusy)
        if not busy:
            log.error("console: store error: %s", e)
        return render_template("console/error.html", code=503 if busy else 500, title="Store problem",
                               message="The store is busy; try again in a moment." if busy else e.message), \
            (503 if busy else 500)

    @bp.errorhandler(429)
    def _too_many(e):
        return render_template("console/error.html", code=429, title="Too many attempts",
                               message=f"Rate limit exceeded ({e.description}); wait a minute and try "
                                       "again."), 429, {"Retry-After": "60"}

    from server.console import auth, pages, people, releases
    for mod in (auth, pages, releases, people):
        mod.register(bp, c)
    app.register_blueprint(bp)
    return bp
