"""Admin: appeal decisions (list, accept, reject); scope 'appeals'."""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from server.api.admin_common import admin_blueprint
from server.errors import Conflict, NotFound
from server.schemas import Appeal, AppealListQuery, Decision
from server.web import Ctx, require_json, require_scope


def make_blueprint(c: Ctx) -> Blueprint:
    blp, doc = admin_blueprint("admin_appeals", "Appeal decisions (maintainers)")
    s = c.store

    @blp.route("/appeals", methods=["GET"])
    @require_scope("appeals")
    @blp.arguments(AppealListQuery, location="query")
    @blp.response(200, Appeal(many=True))
    @doc
    def list_appeals(q: dict):
        """List appeals (default: pending), oldest first."""
        status = None if q["status"] == "all" else q["status"]
        return s.list_appeals(status, q["limit"], q["offset"])

    def decide(appeal_id: int, accept: bool, note: str) -> dict:
        if appeal_id >= 2**63:
            raise NotFound(f"no appeal {appeal_id}")
        old = s.decide_appeal(appeal_id, accept, g.actor, note)
        if old is None:
            raise NotFound(f"no appeal {appeal_id}")
        if old != "pending":
            raise Conflict(f"appeal {appeal_id} was already {old}")
        return s.get_appeal(appeal_id)

    for verb, accept, summary in (
            ("accept", True, "Accept a pending appeal (the consensus then suppresses the disputed labels)."),
            ("reject", False, "Reject a pending appeal.")):
        def view(req: dict, appeal_id: int, _accept=accept):
            return decide(appeal_id, _accept, req["note"])
        view.__name__, view.__doc__ = verb, summary
        view = doc(blp.alt_response(409, schema=None, description="Already decided")(
            blp.alt_response(404, schema=None, description="No such appeal")(
                blp.response(200, Appeal)(blp.arguments(Decision)(view)))))
        blp.route(f"/appeals/<int:appeal_id>/{verb}", methods=["POST"])(
            require_scope("appeals")(require_json(view)))

    return blp
