"""Admin: API keys (list, create, revoke); scope 'keys'."""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from server.api.admin_common import admin_blueprint
from server.errors import NotFound
from server.schemas import KeyCreated, KeyInfo, KeyRequest, Message
from server.store import key_id_of
from server.web import Ctx, check_grant, require_json, require_scope


def make_blueprint(c: Ctx) -> Blueprint:
    blp, doc = admin_blueprint("admin_keys", "API keys with scopes (maintainers)")
    s = c.store

    @blp.route("/keys", methods=["GET"])
    @require_scope("keys")
    @blp.response(200, KeyInfo(many=True))
    @doc
    def list_keys():
        """List API keys (ids and scopes; secrets are never stored)."""
        return s.list_api_keys()

    @blp.route("/keys", methods=["POST"])
    @require_scope("keys")
    @require_json
    @blp.arguments(KeyRequest)
    @blp.response(201, KeyCreated)
    @blp.alt_response(403, schema=None, description="A scope the calling key does not hold")
    @doc
    def create_key(req: dict):
        """Create an API key with the given scopes; the key is shown only in this answer."""
        check_grant(g.scopes, set(req["scopes"]), "create")
        key = s.create_api_key(req["scopes"], req["label"], actor=g.actor)
        return {"key": key, "key_id": key_id_of(key), "scopes": sorted(set(req["scopes"]))}

    @blp.route("/keys/<string:key_id>", methods=["DELETE"])
    @require_scope("keys")
    @blp.response(200, Message)
    @blp.alt_response(404, schema=None, description="No such active key")
    @doc
    def revoke_key(key_id: str):
        """Revoke an API key by id."""
        target = next((k for k in s.list_api_keys() if k["key_id"] == key_id and k["revoked_at"] is None), None)
        if target is not None:
            check_grant(g.scopes, set(target["scopes"].split()), "revoke")
        if not s.revoke_api_key(key_id, g.actor):
            raise NotFound(f"no active API key with id {key_id!r}")
        return {"status": "revoked", "detail": {"key_id": key_id}}

    return blp
