"""Sync: the signed manifest, content-addressed artefacts, root metadata and the update answer."""
from __future__ import annotations

from flask import Response, request, send_file
from flask_smorest import Blueprint

from server.errors import NotFound
from server.exports import decide_update
from server.schemas import ManifestQuery, UpdateRequest, UpdateResponse
from server.web import Ctx, require_json

IMMUTABLE = "public, max-age=31536000, immutable"


def _hint_headers(resp: Response, hints: dict) -> Response:
    resp.headers["X-Callmark-Min-Wait"] = str(hints["min_wait_s"])
    resp.headers["X-Callmark-Jitter"] = str(hints["jitter_s"])
    return resp


def make_blueprint(c: Ctx) -> Blueprint:
    blp = Blueprint("sync", __name__, url_prefix="/v1",
                    description="Manifest, artefacts, root metadata and pack updates")
    cfg = c.config

    @blp.route("/manifest", methods=["GET"])
    @blp.arguments(ManifestQuery, location="query", as_kwargs=True)
    @blp.response(200, description="The channel's signed manifest, byte for byte as published "
                  "(`{signed, signatures}`); sync hints in X-Callmark-Min-Wait / -Jitter headers.")
    @blp.alt_response(304, description="Not modified (If-None-Match matched the ETag)")
    @blp.alt_response(404, schema=None, description="Unknown channel, or no pack for the region")
    def manifest(channel: str, region: str | None):
        """Get a channel's current signed manifest (ETag, short cache)."""
        pm = c.exports.manifest(channel)
        if region:
            regions = {str(p.get("region", "")).upper() for p in pm.signed.get("packs", [])
                       if isinstance(p, dict)}
            if region.upper() not in regions:
                raise NotFound(f"channel {channel!r} has no pack for region {region!r} "
                               f"(regions: {sorted(regions)})")
        resp = Response(pm.raw, mimetype="application/json")
        resp.set_etag(pm.etag)
        resp.headers["Cache-Control"] = f"public, max-age={cfg.manifest_max_age_s}"
        _hint_headers(resp, c.sync_hints(pm.hints))
        return resp.make_conditional(request)

    @blp.route("/artefacts/<string:name>", methods=["GET"])
    @blp.response(200, description="The artefact bytes (application/octet-stream); supports "
                  "If-None-Match (304) and Range (206 / 416); Cache-Control immutable.")
    @blp.alt_response(206, description="Partial content for a Range request")
    @blp.alt_response(304, description="Not modified")
    @blp.alt_response(404, schema=None, description="No such artefact")
    @blp.alt_response(416, schema=None, description="Range not satisfiable")
    def artefact(name: str):
        """Download a content-addressed artefact `<sha256[:16]>-<name>` (resumable)."""
        path = c.exports.artefact_path(name)
        resp = send_file(path, mimetype="application/octet-stream", conditional=True,
                         etag=name.split("-", 1)[0], max_age=31536000)
        resp.headers["Cache-Control"] = IMMUTABLE
        return resp

    @blp.route("/root.json", methods=["GET"])
    @blp.response(200, description="The current root metadata (signed JSON as published)")
    @blp.alt_response(404, schema=None, description="No root published yet")
    def root_current():
        """Get the current root metadata."""
        resp = send_file(c.exports.root_path(None), mimetype="application/json",
                         conditional=True, max_age=cfg.manifest_max_age_s)
        resp.headers["Cache-Control"] = f"public, max-age={cfg.manifest_max_age_s}"
        return resp

    @blp.route("/root/<int:version>.root.json", methods=["GET"])
    @blp.response(200, description="Root metadata version N (for walking root rotations)")
    @blp.alt_response(404, schema=None, description="No such root version")
    def root_version(version: int):
        """Get root metadata version N (immutable once published)."""
        resp = send_file(c.exports.root_path(version), mimetype="application/json",
                         conditional=True, max_age=31536000)
        resp.headers["Cache-Control"] = IMMUTABLE
        return resp

    @blp.route("/update", methods=["POST"])
    @require_json
    @blp.arguments(UpdateRequest)
    @blp.response(200, UpdateResponse)
    @blp.alt_response(404, schema=None, description="Unknown channel or pack")
    def update(req: dict):
        """Tell the server your pack version and state hash; get up_to_date, deltas or the full pack.

        The answer is advisory: verify every file against the signed manifest."""
        pm = c.exports.manifest(req["channel"])
        hints = pm.hints
        max_chain = hints.get("full_resync_after_deltas")
        max_chain = (int(max_chain) if isinstance(max_chain, int) and max_chain > 0
                     else cfg.max_delta_chain)
        ans = decide_update(pm.signed, req.get("pack"), req.get("region"), req["pack_version"],
                            req.get("state_hash") or "", min(max_chain, cfg.max_delta_chain))
        return {**ans, "channel": req["channel"], **c.sync_hints(hints)}

    return blp
