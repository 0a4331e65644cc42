"""GET / (an index of the server's entry points) and /docs (Swagger UI from files this server
serves: no CDN, no inline script)."""
import re


def test_index_json_lists_entry_points(client):
    r = client.get("/", headers={"Accept": "application/json"})
    assert r.status_code == 200 and r.is_json
    hrefs = {link["href"] for link in r.get_json()["links"]}
    assert {"/docs", "/openapi.json", "/healthz", "/readyz"} <= hrefs
    assert "/console/" in hrefs  # the maintainer console, since this app has one
    for href in hrefs - {"/v1/manifest?channel=stable"}:  # every link answers (manifest: no exports here)
        assert client.get(href).status_code in ((200, 302, 303) if href == "/console/" else (200,)), href


def test_index_html_for_browsers(client):
    r = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert r.status_code == 200 and r.mimetype == "text/html"
    assert b"href='/docs'" in r.data and b"href='/openapi.json'" in r.data
    assert client.get("/").is_json  # no Accept: JSON


def test_docs_loads_swagger_ui_from_this_server(client):
    r = client.get("/docs")
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = r.data.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts, "no Swagger UI script"
    assert all(body.strip() == "" for _, body in scripts), "inline script"
    srcs = [re.search(r"src='([^']+)'", attrs).group(1) for attrs, _ in scripts]
    links = re.findall(r"href='([^']+)'", page)
    for url in srcs + links:
        assert url.startswith("/"), f"{url} is not served by this server"
        got = client.get(url)
        assert got.status_code == 200 and len(got.data) > 0, url
    bundle = client.get(next(s for s in srcs if "swagger-ui-bundle" in s))
    assert b"SwaggerUIBundle" in bundle.data and len(bundle.data) > 500_000
    init = client.get(next(s for s in srcs if "initializer" in s))
    assert init.mimetype in ("text/javascript", "application/javascript")
    assert b'url: "/openapi.json"' in init.data and b"petstore" not in init.data
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]


def test_docs_static_serves_only_swagger_files(client):
    assert client.get("/docs/static/index.html").status_code == 404
    assert client.get("/docs/static/../app.py").status_code == 404
    assert client.get("/docs/static/swagger-ui.css").status_code == 200


def test_docs_text_is_a_page_without_script(client):
    r = client.get("/docs/text")
    assert r.status_code == 200 and b"/v1/tags" in r.data and b"<script" not in r.data


def test_docs_pages_are_not_in_the_openapi_document(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert "/" not in paths and not any(p.startswith("/docs") for p in paths)
