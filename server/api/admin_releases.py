"""Admin: signed releases over HTTP (publish, promote, rollback); scope 'publish'.

`perform_release` is the one place the server runs a release action (the console uses it too).

They run the publisher (`publisher/`) in-process, signing with the online key from the keys
directory the `callmark` CLI uses (CALLMARK_KEYS_DIR, default <data_dir>/keys; never inside
exports/). The server never imports trainer/.
"""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

import publisher
from callmark.manifest_errors import KeyStoreError, ManifestError
from server.api.admin_common import admin_blueprint
from server.errors import Conflict
from server.schemas import Message, PromoteRequest, PublishRequest, RollbackRequest
from server.web import Ctx, require_json, require_scope


def run_release(action: str, req: dict, exports_dir: str, keys_dir: str):
    """Run one publisher operation for a validated request; returns the new Manifest."""
    if action == "publish":
        return publisher.publish_release(exports_dir, req.get("packs"), req.get("deltas") or [],
                                         req.get("model"), req["channel"], keys_dir,
                                         version=req.get("version"), rollout_percent=req.get("percent"),
                                         note=req.get("note") or "")
    if action == "promote":
        return publisher.promote(exports_dir, keys_dir, req["from_channel"], req["to_channel"],
                                 rollout_percent=req.get("percent"))
    if action == "rollout":
        return publisher.set_rollout(exports_dir, keys_dir, req["channel"], req["percent"])
    if action != "rollback":
        raise ValueError(f"unknown release action {action!r}")
    return publisher.rollback(exports_dir, keys_dir, req["channel"], req.get("to_version"))


def perform_release(c: Ctx, actor: str, action: str, req: dict):
    """Run `action` (publish | promote | rollback | rollout) for a validated request as `actor`,
    auditing success and failure; returns the new Manifest. Raises Conflict with the reason when
    the publisher refuses (no usable keys, a manifest that does not verify, a bad version …)."""
    s, cfg = c.store, c.config
    target = req.get("channel") or req.get("to_channel", "")
    if cfg.keys_inside_exports():   # the default <data_dir>/keys when data_dir is the exports dir
        raise Conflict(f"{action} refused: {cfg.keys_problem()}")
    try:
        m = run_release(action, req, cfg.exports_dir, str(cfg.keys_path))
    except KeyStoreError as e:
        s.audit(actor, f"release.{action}", target, f"failed: {e}"[:300])
        raise Conflict(f"{action} failed: no usable signing keys ({e}); point CALLMARK_KEYS_DIR at "
                       "the keys directory the `callmark` CLI uses (`callmark keys init --dir DIR`)") from None
    except (ManifestError, OSError) as e:
        s.audit(actor, f"release.{action}", target, f"failed: {e}"[:300])
        raise Conflict(f"{action} failed: {type(e).__name__}: {e}") from None
    s.audit(actor, f"release.{action}", m.channel, f"v{m.version} {m.release}")
    return m


def make_blueprint(c: Ctx) -> Blueprint:
    blp, doc = admin_blueprint("admin_releases", "Signed releases: publish, promote, rollback (maintainers)")

    def release(action: str, req: dict) -> dict:
        m = perform_release(c, g.actor, action, req)
        return {"status": "ok", "detail": {
            "action": action, "channel": m.channel, "version": m.version, "release": m.release,
            "packs": {p.name: p.version for p in m.packs}, "deltas": len(m.deltas),
            "model": m.model.sha256[:16] if m.model else None,
            "expires": m.expires.strftime("%Y-%m-%dT%H:%M:%SZ")}}

    for action, schema, summary in (
            ("publish", PublishRequest, "Sign and publish built packs/deltas/model to a channel."),
            ("promote", PromoteRequest, "Promote a channel's release to another channel."),
            ("rollback", RollbackRequest, "Roll a channel back to an earlier release.")):
        def view(req: dict, _action=action):
            return release(_action, req)
        view.__name__ = f"release_{action}"
        view.__doc__ = summary + " Runs the publisher in-process with the server's keys directory."
        view = doc(blp.alt_response(409, schema=None, description="The release was refused (reason given)")(
            blp.response(200, Message)(blp.arguments(schema)(view))))
        blp.route(f"/{action}", methods=["POST"])(require_scope("publish")(require_json(view)))

    return blp
