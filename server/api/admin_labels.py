"""Admin: the lookup table, replaced from a LABELS.csv upload; scope 'publish'."""
from __future__ import annotations

import io

from flask import g, request
from flask_smorest import Blueprint

from server.api.admin_common import admin_blueprint
from server.errors import UnsupportedMediaType, Unprocessable
from server.labels import load_labels
from server.schemas import LabelsLoaded
from server.web import Ctx, require_scope

MAX_LABELS_BYTES = 1 << 30     # bytes accepted for a LABELS.csv upload


def make_blueprint(c: Ctx) -> Blueprint:
    blp, doc = admin_blueprint("admin_labels", "Lookup labels (maintainers)")
    s = c.store

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

    return blp
