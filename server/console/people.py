"""Console: the appeals queue, verified businesses, API keys and the audit log."""
from __future__ import annotations

import time
from datetime import datetime, timezone

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from server.api.appeals import e164_or_422
from server.console import queries as q
from server.console.auth import login_required
from server.console.forms import AuditFilter, DecisionForm, KeyForm, PostForm, VerifiedForm
from server.errors import Unprocessable
from server.store import key_id_of
from server.store_errors import StoreError
from server.web import Ctx


def age(ts: str | None) -> str:
    """'3 d 4 h' since an ISO-8601 UTC time."""
    try:
        then = datetime.strptime(ts or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return "?"
    s = max(0, int(time.time() - then.timestamp()))
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    return f"{d} d {h} h" if d else (f"{h} h {m} min" if h else f"{m} min")


def register(bp: Blueprint, c: Ctx) -> None:
    store = c.store

    @bp.route("/appeals", methods=["GET"])
    @login_required("appeals")
    def appeals():
        queue = q.pending_appeals(store)
        for a in queue:
            a["age"] = age(a["filed_ts"])
            a["summary"] = q.number_summary(store, a["number"], a["number"])
            a["label"] = q.lookup_label_for(store, a["number"])
        decided = q.decided_appeals(store)
        return render_template("console/appeals.html", queue=queue, decided=decided,
                               counts=q.count_appeals(store), form=DecisionForm())

    @bp.route("/appeals/<int:appeal_id>", methods=["POST"])
    @login_required("appeals")
    def decide(appeal_id: int):
        form = DecisionForm()
        if not form.validate():
            flash("Decision refused: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in form.errors.items()),
                  "error")
            return redirect(url_for("console.appeals"))
        if appeal_id >= 2 ** 63:
            abort(404)
        old = store.decide_appeal(appeal_id, form.decision.data == "accept", g.actor, form.reason.data.strip())
        if old is None:
            abort(404)
        if old != "pending":
            flash(f"Appeal {appeal_id} was already {old}.", "error")
        else:
            flash(f"Appeal {appeal_id} {form.decision.data}ed; the next build's consensus reads it.", "ok")
        return redirect(url_for("console.appeals"))

    @bp.route("/verified", methods=["GET", "POST"])
    @login_required("verified")
    def verified():
        form = VerifiedForm()
        status = 200
        if form.validate_on_submit():
            try:
                e164, key = e164_or_422(form.number.data.strip(), (form.region.data or "CN").upper())
                store.upsert_verified(e164, key, form.company.data.strip(), g.actor)
                flash(f"{e164} is now a verified business.", "ok")
                return redirect(url_for("console.verified"))
            except Unprocessable as e:
                flash(e.message, "error")
                status = 400
        elif form.errors:
            status = 400
        return render_template("console/verified.html", rows=list(store.iter_verified()), form=form), status

    @bp.route("/verified/remove", methods=["POST"])
    @login_required("verified")
    def verified_remove():
        number = request.form.get("number", "")
        if PostForm().validate_on_submit():
            if store.delete_verified(number, g.actor):
                flash(f"{number} is no longer a verified business.", "ok")
            else:
                flash(f"{number} was not a verified business.", "error")
        return redirect(url_for("console.verified"))

    @bp.route("/keys", methods=["GET", "POST"])
    @login_required("keys")
    def keys():
        form, created = KeyForm(), None
        if form.validate_on_submit():
            try:
                key = store.create_api_key(form.scopes.data, (form.label.data or "").strip(), actor=g.actor)
                created = {"key": key, "key_id": key_id_of(key), "scopes": sorted(set(form.scopes.data))}
            except StoreError as e:
                flash(e.message, "error")
        rows = store.list_api_keys()
        for r in rows:
            r["created"] = datetime.fromtimestamp(r["created_at"], timezone.utc).strftime("%Y-%m-%d %H:%M")
        return render_template("console/keys.html", rows=rows, form=form, created=created), \
            (400 if form.errors else 200)

    @bp.route("/keys/<key_id>/revoke", methods=["POST"])
    @login_required("keys")
    def revoke(key_id: str):
        if PostForm().validate_on_submit():
            if store.revoke_api_key(key_id, g.actor):
                ended = q.end_key_sessions(store, key_id)
                flash(f"Key {key_id} revoked ({ended} console session(s) ended).", "ok")
            else:
                flash(f"No active key {key_id}.", "error")
        return redirect(url_for("console.keys"))

    @bp.route("/audit", methods=["GET"])
    @login_required("audit")
    def audit():
        form = AuditFilter(request.args)
        rows = q.audit_entries(store, *(((f.data or "").strip()) for f in (form.actor, form.action, form.target))) \
            if form.validate() else []
        return render_template("console/audit.html", rows=rows, form=form)
