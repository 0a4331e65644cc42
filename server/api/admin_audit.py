"""Admin: the audit log and the exports' release history; scope 'read'."""
from __future__ import annotations

from flask_smorest import Blueprint

from server.api.admin_common import admin_blueprint
from server.schemas import Message, PageQuery
from server.web import Ctx, require_scope


def make_blueprint(c: Ctx) -> Blueprint:
    blp, doc = admin_blueprint("admin_audit", "Audit log and release history (maintainers)")

    @blp.route("/audit", methods=["GET"])
    @require_scope("read")
    @blp.arguments(PageQuery, location="query")
    @blp.response(200, Message)
    @doc
    def audit(q: dict):
        """The audit log, newest first."""
        return {"status": "ok", "detail": {"entries": c.store.list_audit(q["limit"], q["offset"])}}

    @blp.route("/history", methods=["GET"])
    @require_scope("read")
    @blp.response(200, Message)
    @doc
    def history():
        """The exports' release history (publish / promote / rollback), last 100."""
        return {"status": "ok", "detail": {"entries": c.exports.history()}}

    return blp
