"""Console login with an API key, the session check on every request, scopes, logout.

The cookie (signed, HttpOnly, SameSite=Strict, Secure over TLS, expiring) holds only a random
session id; the store keeps its hash with the key id and an expiry. Every console request looks the
session up joined with the key, so logging out, expiry and revoking the key all end it at once.
"""
from __future__ import annotations

import functools
import secrets
from typing import Callable

from flask import (Blueprint, flash, g, redirect, render_template, request, session, url_for)

from server.console import queries as q
from server.console.forms import LoginForm, PostForm
from server.web import Ctx, client_ip, ctx

# what each console area needs; 'admin' opens everything (as in the API)
AREAS = {
    "releases": ("publish",), "model": ("publish", "read"), "appeals": ("appeals",),
    "verified": ("appeals",), "numbers": ("read", "appeals", "publish"),
    "health": ("read", "appeals", "publish"), "keys": ("admin",), "audit": ("admin",),
}


def may(area: str, scopes: set[str] | None = None) -> bool:
    """True when `scopes` (default: the logged-in key's) open the console area `area`."""
    scopes = g.get("scopes", set()) if scopes is None else scopes
    return "admin" in scopes or any(s in scopes for s in AREAS[area])


def login_required(area: str | None = None) -> Callable:
    """Check the session (and its key) on every request; 403 page when the key lacks the area's
    scope. Sets g.key_id, g.scopes, g.actor ('console:key:<id>')."""
    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            sid = session.get("sid")
            found = q.session_key(ctx().store, sid) if isinstance(sid, str) else None
            if found is None:
                if sid:
                    session.clear()
                    flash("Your session ended (logged out, expired, or its API key was revoked). "
                          "Log in again.", "error")
                back = request.full_path if request.query_string else request.path  # no bare "?"
                return redirect(url_for("console.login", next=back if request.method == "GET" else None))
            g.key_id, g.scopes, _ = found
            g.actor = "console:key:" + g.key_id
            if area and not may(area):
                need = " or ".join(("admin",) + AREAS[area])
                return render_template("console/error.html", code=403, title="Not allowed",
                                       message=f"This page needs an API key with the '{need}' scope; "
                                               f"yours has: {', '.join(sorted(g.scopes))}."), 403
            return fn(*a, **kw)
        return wrapper
    return deco


def _safe_next(target: str | None) -> str:
    """Only redirect to a console path after login (never to another site)."""
    if target and target.startswith("/console/") and not target.startswith("//") and "\\" not in target:
        return target.rstrip("?")
    return url_for("console.home")


def register(bp: Blueprint, c: Ctx) -> None:
    store, cfg = c.store, c.config

    @bp.route("/login", methods=["GET", "POST"])
    @c.limiter.limit(cfg.console_login_limit, methods=["POST"], key_func=client_ip)
    def login():
        form = LoginForm()
        if form.validate_on_submit():
            key = form.api_key.data.strip()
            found = store.api_key_scopes(key)
            if found is None:
                store.audit("console:" + client_ip(), "console.login_failed", "", "unknown or revoked key")
                flash("Unknown or revoked API key.", "error")
                return render_template("console/login.html", form=form), 401
            key_id, scopes = found
            sid = secrets.token_urlsafe(32)
            session.clear()                     # no fixation: a fresh cookie at every login
            session.permanent = True
            session["sid"] = sid
            q.create_session(store, sid, key_id, cfg.console_session_minutes * 60, client_ip())
            store.audit("console:key:" + key_id, "console.login", key_id, f"ip={client_ip()}")
            return redirect(_safe_next(request.args.get("next")))
        return render_template("console/login.html", form=form), (400 if form.errors else 200)

    @bp.route("/logout", methods=["POST"])
    @login_required()
    def logout():
        if PostForm().validate_on_submit():
            q.end_session(store, session["sid"])
            store.audit(g.actor, "console.logout", g.key_id, "")
        session.clear()
        flash("Logged out.", "ok")
        return redirect(url_for("console.login"))

    @bp.app_context_processor
    def _inject():
        return {"may": may, "post_form": PostForm}
