"""Admin: API keys, appeal decisions, verified businesses, lookup labels, releases, audit log.

Every endpoint needs an X-API-Key with the named scope ('admin' implies all)."""
from __future__ import annotations

import io
import shlex
import subprocess

from flask import g, request
from flask_smorest import Blueprint

from server.api.appeals import e164_or_422
from server.errors import Conflict, NotFound, NotImplementedYet, UnsupportedMediaType, Unprocessable
from server.labels import load_labels
from server.schemas import (Appeal, AppealListQuery, Decision, KeyCreated, KeyInfo, KeyRequest,
                            LabelsLoaded, Message, PageQuery, PromoteRequest, PublishRequest,
                            RollbackRequest, Verified, VerifiedRequest)
from server.store import key_id_of
from server.web import ADMIN_AUTH, Ctx, require_json, require_scope

MAX_LABELS_BYTES = 1 << 30     # bytes accepted for a LABELS.csv upload


def make_blueprint(c: Ctx) -> Blueprint:
    blp = Blueprint("admin", __name__, url_prefix="/v1/admin",
                    description="Maintainer endpoints (X-API-Key with scopes)")
    s = c.store

    def doc(fn):
        fn = blp.alt_response(401, schema=None, description="Missing or unknown API key")(fn)
        fn = blp.alt_response(403, schema=None, description="API key lacks the scope")(fn)
        return blp.doc(security=ADMIN_AUTH)(fn)

    # -- API keys -------------------------------------------------------------------------
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
    @doc
    def create_key(req: dict):
        """Create an API key with the given scopes; the key is shown only in this answer."""
        key = s.create_api_key(req["scopes"], req["label"], actor=g.actor)
        return {"key": key, "key_id": key_id_of(key), "scopes": sorted(set(req["scopes"]))}

    @blp.route("/keys/<string:key_id>", methods=["DELETE"])
    @require_scope("keys")
    @blp.response(200, Message)
    @blp.alt_response(404, schema=None, description="No such active key")
    @doc
    def revoke_key(key_id: str):
        """Revoke an API key by id."""
        if not s.revoke_api_key(key_id, g.actor):
            raise NotFound(f"no active API key with id {key_id!r}")
        return {"status": "revoked", "detail": {"key_id": key_id}}

    # -- appeals --------------------------------------------------------------------------
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

    @blp.route("/appeals/<int:appeal_id>/accept", methods=["POST"])
    @require_scope("appeals")
    @require_json
    @blp.arguments(Decision)
    @blp.response(200, Appeal)
    @blp.alt_response(404, schema=None, description="No such appeal")
    @blp.alt_response(409, schema=None, description="Already decided")
    @doc
    def accept(req: dict, appeal_id: int):
        """Accept a pending appeal (the consensus then suppresses the disputed labels)."""
        return decide(appeal_id, True, req["note"])

    @blp.route("/appeals/<int:appeal_id>/reject", methods=["POST"])
    @require_scope("appeals")
    @require_json
    @blp.arguments(Decision)
    @blp.response(200, Appeal)
    @blp.alt_response(404, schema=None, description="No such appeal")
    @blp.alt_response(409, schema=None, description="Already decided")
    @doc
    def reject(req: dict, appeal_id: int):
        """Reject a pending appeal."""
        return decide(appeal_id, False, req["note"])

    # -- verified businesses ------------------------------------------------------------------
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

    # -- lookup labels ---------------------------------------------------------------------
    @blp.route("/labels", methods=["POST"])
    @require_scope("publish")
    @blp.doc(requestBody={"required": True, "content": {"text/csv": {"schema": {
        "type": "string", "description": "LABELS.csv as written by the consensus"}}}})
    @blp.doc(parameters=[{"in": "query", "name": "version", "schema": {"type": "string"},
                          "description": "label set version, e.g. the pack version"}])
    @blp.response(200, LabelsLoaded)
    @blp.alt_response(415, schema=None, description="Body is not text/csv")
    @doc
    def upload_labels():
        """Replace the lookup table from a LABELS.csv body (published rows only), atomically."""
        if request.mimetype != "text/csv":
            raise UnsupportedMediaType("send LABELS.csv with 'Content-Type: text/csv'")
        request.max_content_length = MAX_LABELS_BYTES
        version = request.args.get("version", "")[:64] or "unversioned"
        text = io.TextIOWrapper(request.stream, encoding="utf-8", errors="strict", newline="")
        try:
            n = load_labels(s, text, version, g.actor)
        except UnicodeDecodeError:
            raise Unprocessable("LABELS.csv must be UTF-8") from None
        return {"version": version, "entries": n}

    # -- releases ---------------------------------------------------------------------------
    def release(action: str, req: dict) -> dict:
        """Run the release CLI (`callmark publish|promote|rollback`) in a subprocess: the server
        never imports trainer/, and the signing keys stay with that command (CALLMARK_KEYS)."""
        cmd = c.config.release_command
        if not cmd:
            raise NotImplementedYet(
                f"{action} over HTTP is not enabled on this server: set CALLMARK_RELEASE_COMMAND "
                f"(e.g. 'callmark') so the server runs the release CLI, or run "
                f"`callmark {action}` on the release host")
        argv = [*shlex.split(cmd), action, *release_args(action, req, c.config.exports_dir)]
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise NotImplementedYet(f"cannot run the release command {argv[0]!r}: {e}") from None
        s.audit(g.actor, f"release.{action}", req.get("channel") or req.get("to_channel", ""),
                f"rc={p.returncode} {p.stdout.strip()[-200:]}")
        if p.returncode != 0:
            raise Conflict(f"{action} failed: {(p.stderr or p.stdout).strip()[-800:]}")
        return {"status": "ok", "detail": {"action": action, "output": p.stdout.strip()[-2000:]}}

    for action, schema, summary in (
            ("publish", PublishRequest, "Sign and publish built packs/deltas/model to a channel."),
            ("promote", PromoteRequest, "Promote a channel's release to another channel."),
            ("rollback", RollbackRequest, "Roll a channel back to an earlier release.")):
        def view(req: dict, _action=action):
            return release(_action, req)
        view.__name__ = f"release_{action}"
        view.__doc__ = summary + " Runs CALLMARK_RELEASE_COMMAND; 501 when it is not set."
        view = doc(blp.alt_response(501, schema=None, description="Not enabled here")(
            blp.alt_response(409, schema=None, description="The release command failed")(
                blp.response(200, Message)(blp.arguments(schema)(view)))))
        blp.route(f"/{action}", methods=["POST"])(require_scope("publish")(require_json(view)))

    # -- audit and history -------------------------------------------------------------------
    @blp.route("/audit", methods=["GET"])
    @require_scope("read")
    @blp.arguments(PageQuery, location="query")
    @blp.response(200, Message)
    @doc
    def audit(q: dict):
        """The audit log, newest first."""
        return {"status": "ok", "detail": {"entries": s.list_audit(q["limit"], q["offset"])}}

    @blp.route("/history", methods=["GET"])
    @require_scope("read")
    @blp.response(200, Message)
    @doc
    def history():
        """The exports' release history (publish / promote / rollback), last 100."""
        return {"status": "ok", "detail": {"entries": c.exports.history()}}

    return blp


def release_args(action: str, req: dict, exports_dir: str) -> list[str]:
    """Command-line arguments of `callmark <action>` for a validated request."""
    args = ["--exports", exports_dir]
    if action == "publish":
        args += ["--channel", req["channel"]]
        for opt, key in (("--packs", "packs"), ("--model", "model"), ("--version", "version"),
                         ("--percent", "percent"), ("--note", "note")):
            if req.get(key) not in (None, ""):
                args += [opt, str(req[key])]
        for d in req.get("deltas") or []:
            args += ["--delta", d]
    elif action == "promote":
        args += ["--from", req["from_channel"], "--to", req["to_channel"]]
        if req.get("percent") is not None:
            args += ["--percent", str(req["percent"])]
    else:
        args += ["--channel", req["channel"]]
        if req.get("to_version"):
            args += ["--to-version", str(req["to_version"])]
    return args
