"""The human entry points: `GET /` (an index of what this server offers) and `GET /docs` (the
OpenAPI document rendered by Swagger UI).

Swagger UI's files come from the installed `swagger-ui-bundle` package and are served by this
server under `/docs/static/`; the initializer is a served file too (`server/static/`), so the page
loads nothing from a CDN and carries no inline script: its Content-Security-Policy forbids both.
`/docs/text` is the same document as one static HTML page for readers without JavaScript.
These routes are plain Flask (not part of /openapi.json): they describe the API, they are not it.
"""
from __future__ import annotations

import html
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, jsonify, request, send_from_directory, url_for

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
INITIALIZER = "swagger-initializer.js"
# The Swagger UI files the page uses (anything else in the package is not served).
SWAGGER_FILES = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
CONSOLE_PATH = "/console/"


def swagger_ui_dir() -> str | None:
    """Directory of the installed Swagger UI files, or None without `swagger-ui-bundle`."""
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    return swagger_ui_bundle.swagger_ui_path


def index_links() -> list[dict]:
    """What `GET /` lists: the API description, the health checks, metrics and the console when
    this app has one."""
    links = [
        {"rel": "docs", "href": "/docs", "title": "API reference (Swagger UI)"},
        {"rel": "docs-text", "href": "/docs/text", "title": "API reference as plain HTML (no JavaScript)"},
        {"rel": "openapi", "href": "/openapi.json", "title": "OpenAPI 3 document"},
        {"rel": "healthz", "href": "/healthz", "title": "Liveness"},
        {"rel": "readyz", "href": "/readyz", "title": "Readiness (store schema, exports)"},
        {"rel": "metrics", "href": "/metrics", "title": "Prometheus metrics"},
        {"rel": "manifest", "href": "/v1/manifest?channel=stable", "title": "Signed manifest of the stable channel"},
    ]
    rules = {r.rule for r in current_app.url_map.iter_rules()}
    if CONSOLE_PATH in rules or CONSOLE_PATH.rstrip("/") in rules:
        links.insert(0, {"rel": "console", "href": CONSOLE_PATH, "title": "Maintainer console"})
    return links


def make_blueprint(render_text) -> Blueprint:
    """`render_text(spec) -> str` renders the no-JavaScript page (server.api.ops.render_docs)."""
    blp = Blueprint("home", __name__)

    @blp.get("/")
    def index():
        links = index_links()
        best = request.accept_mimetypes.best_match(["application/json", "text/html"], "application/json")
        if best == "text/html" and request.accept_mimetypes["text/html"] > request.accept_mimetypes["application/json"]:
            e = html.escape
            items = "".join(f"<li><a href='{e(l['href'])}'>{e(l['href'])}</a>: {e(l['title'])}</li>" for l in links)
            page = (f"<!doctype html><meta charset=utf-8><title>callmark</title><h1>callmark</h1>"
                    f"<p>Caller-ID label sync server. Everything is versioned under <code>/v1</code>.</p>"
                    f"<ul>{items}</ul>")
            return _secure(Response(page, mimetype="text/html"))
        return jsonify({"service": "callmark", "api": "/v1", "links": links})

    @blp.get("/docs")
    def docs():
        if swagger_ui_dir() is None:  # the package is missing: the plain page still documents the API
            return docs_text()
        page = ("<!doctype html><html lang=en><head><meta charset=utf-8><title>callmark API</title>"
                f"<link rel=stylesheet href='{url_for('home.swagger_static', filename='swagger-ui.css')}'>"
                f"<link rel=icon type=image/png href='{url_for('home.swagger_static', filename='favicon-32x32.png')}'>"
                "</head><body><noscript>This page needs JavaScript; read "
                "<a href='/docs/text'>/docs/text</a> or <a href='/openapi.json'>/openapi.json</a>.</noscript>"
                "<div id=swagger-ui></div>"
                f"<script src='{url_for('home.swagger_static', filename='swagger-ui-bundle.js')}'></script>"
                f"<script src='{url_for('home.initializer')}'></script></body></html>")
        return _secure(Response(page, mimetype="text/html"))

    @blp.get("/docs/text")
    def docs_text():
        spec = current_app.extensions["flask-smorest"]["apis"][""]["ext_obj"].spec.to_dict()
        return _secure(Response(render_text(spec), mimetype="text/html"))

    @blp.get(f"/docs/{INITIALIZER}")
    def initializer():
        return _cached(send_from_directory(STATIC_DIR, INITIALIZER, mimetype="text/javascript"))

    @blp.get("/docs/static/<path:filename>")
    def swagger_static(filename: str):
        root = swagger_ui_dir()
        if root is None or filename not in SWAGGER_FILES:
            abort(404)
        return _cached(send_from_directory(root, filename))

    return blp


def _secure(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def _cached(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "public, max-age=3600"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


__all__ = ["make_blueprint", "index_links", "swagger_ui_dir"]
