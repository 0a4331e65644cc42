"""Operations: liveness, readiness, Prometheus metrics; `render_docs`, the plain-HTML API page that
`server.api.home` serves at /docs/text."""
from __future__ import annotations

import html
import os

from flask_smorest import Blueprint

from server import metrics
from server.schemas import Message
from server.store import SCHEMA_VERSION
from server.web import Ctx


def make_blueprint(c: Ctx) -> Blueprint:
    blp = Blueprint("ops", __name__, url_prefix="", description="Health, readiness, metrics")

    @blp.route("/healthz", methods=["GET"])
    @blp.response(200, Message)
    def healthz():
        """Liveness: the process answers."""
        return {"status": "ok", "detail": {"pid": os.getpid()}}

    @blp.route("/readyz", methods=["GET"])
    @blp.response(200, Message)
    @blp.alt_response(503, schema=Message, description="Not ready (see detail)")
    def readyz():
        """Readiness: the store is at the current schema and the exports are readable."""
        detail: dict = {}
        ok = True
        try:
            v = c.store.schema_version()
            detail["store_schema"] = v
            ok &= v == SCHEMA_VERSION
        except Exception as e:  # noqa: BLE001 - readiness reports, never raises
            detail["store_error"] = str(e)
            ok = False
        ch = c.exports.channels()
        detail["channels"] = ch
        detail["exports_readable"] = os.access(c.exports.root, os.R_OK)
        ok &= detail["exports_readable"]
        lookups = c.lookups.status() if c.lookups is not None and ok else {}
        detail["lookup"] = lookups  # per channel: entries and the release version they come from
        stable = lookups.get("stable") if isinstance(lookups.get("stable"), dict) else {}
        if "entries" in stable:
            detail["lookup_entries"], detail["lookup_version"] = stable["entries"], stable["version"]
        else:
            meta = c.store.lookup_meta() if ok else {}
            detail["lookup_entries"] = int(meta.get("lookup_count", 0))
            detail["lookup_version"] = meta.get("lookup_version")
        body = {"status": "ready" if ok else "not ready", "detail": detail}
        if not ok:
            return body, 503, {"Retry-After": str(c.config.retry_after_s)}
        return body

    @blp.route("/metrics", methods=["GET"])
    @blp.response(200, description="Prometheus text exposition format")
    def prom():
        """Prometheus metrics (aggregated over gunicorn workers)."""
        return metrics.render()

    return blp


def render_docs(spec: dict) -> str:
    """Render the OpenAPI dict as one static HTML page (no external scripts)."""
    e = html.escape
    out = [f"<!doctype html><meta charset=utf-8><title>{e(spec['info']['title'])}</title>",
           "<style>body{font-family:sans-serif;max-width:60em;margin:auto}code{background:#eee}"
           ".op{border-top:1px solid #ccc;padding:.5em 0}.m{font-weight:bold;width:4em;"
           "display:inline-block}</style>",
           f"<h1>{e(spec['info']['title'])} {e(spec['info']['version'])}</h1>",
           "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. Errors are JSON "
           "<code>{code, status, message, errors}</code>.</p>"]
    for path, ops in sorted(spec.get("paths", {}).items()):
        for method, op in ops.items():
            if method == "parameters":
                continue
            out.append(f"<div class=op><span class=m>{e(method.upper())}</span>"
                       f"<code>{e(path)}</code> {e(op.get('summary', ''))}")
            if op.get("description"):
                out.append(f"<p>{e(op['description'])}</p>")
            if op.get("security"):
                out.append("<p>Auth: " + e(", ".join(k for s in op["security"] for k in s)) + "</p>")
            params = [p for p in op.get("parameters", []) if isinstance(p, dict) and "name" in p]
            if params:
                out.append("<p>Parameters: " + ", ".join(
                    f"<code>{e(p['name'])}</code> ({e(p.get('in', ''))})" for p in params) + "</p>")
            codes = ", ".join(sorted(op.get("responses", {})))
            out.append(f"<p>Responses: {e(codes)}</p></div>")
    return "\n".join(out)
