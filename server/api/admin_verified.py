"""Admin: verified business numbers (list, set, delete); scope 'appeals'."""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from server.api.admin_common import admin_blueprint
from server.api.appeals import e164_or_422
from server.errors import NotFound
from server.schemas import Message, Verified, VerifiedRequest
from server.web import Ctx, require_json, require_scope


def make_blueprint(c: Ctx) -> Blueprint:
    blp, doc = admin_blueprint("admin_verified", "Verified business numbers (maintainers)")
    s = c.store

    @blp.route("/verified", methods=["GET"])
    @require_scope("appeals")
    @blp.response(200, Verified(many=True))
    @doc
    def list_verified():
        """List verified business numbers."""
        return list(s.iter_verified())

    @blp.route("/verified", methods=["POST"])
    @require_scope("appeals")
    @require_json
    @blp.arguments(VerifiedRequest)
    @blp.response(200, Verified)
    @doc
    def set_verified(req: dict):
        """Mark a number as a verified business (or change its company name)."""
        e164, key = e164_or_422(req["number"], req["region"])
        s.upsert_verified(e164, key, req["company"], g.actor)
        return {"number": e164, "company": req["company"]}

    @blp.route("/verified/<string:number>", methods=["DELETE"])
    @require_scope("appeals")
    @blp.response(200, Message)
    @blp.alt_response(404, schema=None, description="Not a verified number")
    @doc
    def delete_verified(number: str):
        """Remove a verified business number (E.164, e.g. +8695588)."""
        if not s.delete_verified(number, g.actor):
            raise NotFound(f"{number!r} is not a verified number (use the E.164 form)")
        return {"status": "deleted", "detail": {"number": number}}

    return blp
