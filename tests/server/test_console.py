"""The maintainer console through Flask's test client: login and sessions, scopes, CSRF, headers,
escaping of hostile strings, and each page's job on a real signed release and a filled store."""
from __future__ import annotations

import re

import pytest
from markupsafe import escape
from server.store import SCHEMA_VERSION

from tests.server.console_world import (ADMIN_KEY, APPEALS_KEY, NUMBER, NUMBER_SPELLED, PUBLISH_KEY, READ_KEY,
                                        XSS, build_world, config, csrf_token, login)

PAGES = ["/console/", "/console/numbers?q=" + NUMBER, "/console/health", "/console/releases",
         "/console/releases/stable/2", "/console/model", "/console/model/stable/2", "/console/model/beta/1",
         "/console/appeals", "/console/verified", "/console/keys", "/console/audit"]


# The console's test world is a prepared SQLite store copied per test: these run on SQLite only
# (the store methods they reach run on both backends in the rest of tests/server).
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    pytest.importorskip("flask_wtf")
    return build_world(tmp_path_factory.mktemp("console"))


@pytest.fixture
def app(world, tmp_path):
    import shutil
    from server import create_app
    # each test gets its own copy of the store and exports (release actions change them)
    data, exports = tmp_path / "var", tmp_path / "exports"
    shutil.copytree(world["data"], data)
    shutil.copytree(world["exports"], exports)
    w = dict(world, data=data, exports=exports)
    return create_app(config(w, console_login_limit="5/minute"))


@pytest.fixture
def admin(app):
    c = app.test_client()
    assert login(c, ADMIN_KEY).status_code == 302
    return c


def client_as(app, key):
    c = app.test_client()
    assert login(c, key).status_code == 302
    return c


def text(resp) -> str:
    return resp.get_data(as_text=True)


# ---------------------------------------------------------------------------- login and sessions
def test_pages_need_login(app):
    c = app.test_client()
    for url in PAGES:
        r = c.get(url)
        assert r.status_code == 302 and r.headers["Location"].startswith("/console/login"), url
    r = c.get("/console/appeals")
    assert r.headers["Location"] == "/console/login?next=/console/appeals"  # no bare "?" carried along
    r = c.get("/console/numbers?q=1")
    assert r.headers["Location"] == "/console/login?next=/console/numbers?q%3D1"


def test_login_sets_a_hardened_expiring_cookie(app):
    c = app.test_client()
    r = login(c, ADMIN_KEY)
    assert r.status_code == 302 and r.headers["Location"] == "/console/"
    cookie = r.headers["Set-Cookie"]
    for attr in ("HttpOnly", "SameSite=Strict", "Path=/console", "Expires="):
        assert attr in cookie
    assert "Secure" not in cookie                       # plain http on loopback
    assert ADMIN_KEY not in cookie and "consoleadmin" not in cookie   # only a random session id
    assert c.get("/console/").status_code == 200


def test_cookie_is_secure_over_tls_and_behind_a_tls_proxy(world, tmp_path):
    from server import create_app
    app = create_app(config(world, data_dir=str(tmp_path / "v1"), trusted_proxies=1))
    c = app.test_client()
    tok = csrf_token(text(c.get("/console/login", base_url="https://console.example")))
    r = c.post("/console/login", data={"api_key": "nope", "csrf_token": tok}, base_url="https://console.example")
    assert "Secure" in r.headers.get("Set-Cookie", "Secure")
    c2 = app.test_client()
    r = c2.get("/console/login", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in r.headers["Set-Cookie"]


def test_wrong_key_refused_and_logins_rate_limited(app):
    c = app.test_client()
    codes = [login(c, "cmk_wrong_" + "x" * 30).status_code for _ in range(6)]
    assert codes[:5] == [401] * 5 and codes[5] == 429
    assert login(c, ADMIN_KEY).status_code == 429        # the limit holds for good keys too


def test_logout_ends_the_session_server_side(app):
    c = client_as(app, ADMIN_KEY)
    stolen = c.get_cookie("callmark_console", path="/console").value
    tok = csrf_token(text(c.get("/console/")))
    assert c.post("/console/logout", data={"csrf_token": tok}).status_code == 302
    thief = app.test_client()
    thief.set_cookie("callmark_console", stolen, path="/console")
    r = thief.get("/console/")
    assert r.status_code == 302 and "/console/login" in r.headers["Location"]


def test_revoking_a_key_ends_its_sessions_at_once(app):
    reader = client_as(app, READ_KEY)
    assert reader.get("/console/health").status_code == 200
    r = app.test_client().delete("/v1/admin/keys/consoleread", headers={"X-API-Key": ADMIN_KEY})
    assert r.status_code == 200
    r = reader.get("/console/health")
    assert r.status_code == 302 and "/console/login" in r.headers["Location"]


def test_sessions_expire(app, monkeypatch):
    import time as _time
    from server.console import queries
    c = client_as(app, ADMIN_KEY)
    later = _time.time() + 481 * 60
    monkeypatch.setattr(queries.time, "time", lambda: later)
    assert c.get("/console/").status_code == 302


def test_open_redirect_refused(app):
    c = app.test_client()
    tok = csrf_token(text(c.get("/console/login")))
    r = c.post("/console/login?next=//evil.example/x", data={"api_key": ADMIN_KEY, "csrf_token": tok})
    assert r.headers["Location"] == "/console/"


# ---------------------------------------------------------------------------- scopes
@pytest.mark.parametrize("key,allowed,denied", [
    (READ_KEY, ["/console/numbers", "/console/health", "/console/model"],
     ["/console/releases", "/console/releases/stable/2", "/console/appeals", "/console/keys", "/console/audit"]),
    (APPEALS_KEY, ["/console/appeals", "/console/verified", "/console/numbers"],
     ["/console/releases", "/console/model", "/console/keys", "/console/audit"]),
    (PUBLISH_KEY, ["/console/releases", "/console/releases/stable/2", "/console/model/stable/2"],
     ["/console/appeals", "/console/keys", "/console/audit", "/console/verified"]),
])
def test_each_page_checks_the_keys_scope(app, key, allowed, denied):
    c = client_as(app, key)
    for url in allowed:
        assert c.get(url).status_code == 200, url
    for url in denied:
        r = c.get(url)
        assert r.status_code == 403 and "scope" in text(r), url
    # nav shows only what the key may open
    nav = re.search(r"<nav>(.*?)</nav>", text(c.get("/console/")), re.S).group(1)
    assert ("/console/releases" in nav) == (key == PUBLISH_KEY)


def test_release_actions_need_publish(app):
    c = client_as(app, READ_KEY)
    tok = csrf_token(text(c.get("/console/health")))
    r = c.post("/console/releases/action", data={"csrf_token": tok, "action": "promote", "channel": "stable",
                                                 "from_channel": "beta", "confirm": "yes", "acknowledge": "y"})
    assert r.status_code == 403
    assert _version(app, "stable") == 2 and len(_history(app)) == 3


# ---------------------------------------------------------------------------- CSRF, headers, escaping
def test_every_form_post_without_csrf_is_refused(admin, app):
    posts = [("/console/logout", {}), ("/console/appeals/1", {"decision": "accept", "reason": "ok"}),
             ("/console/verified", {"number": "95599", "company": "x"}),
             ("/console/verified/remove", {"number": "+8695588"}),
             ("/console/keys", {"scopes": "read"}), ("/console/keys/consoleread/revoke", {}),
             ("/console/releases/action", {"action": "promote", "channel": "stable", "from_channel": "beta",
                                           "confirm": "yes", "acknowledge": "y"})]
    for url, data in posts:
        r = admin.post(url, data=data)
        assert r.status_code == 400 and "CSRF" in text(r), url
        r = admin.post(url, data={**data, "csrf_token": "forged." + "x" * 40})
        assert r.status_code == 400, url
    s = app.extensions["callmark"].store
    assert s.get_appeal(1)["status"] == "pending"
    assert any(k["key_id"] == "consoleread" and not k["revoked_at"] for k in s.list_api_keys())
    assert admin.get("/console/").status_code == 200      # still logged in


def test_security_headers_and_no_inline_script_or_style(admin):
    for url in PAGES:
        r = admin.get(url)
        assert r.status_code == 200, url
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "unsafe-inline" not in csp and "script-src" not in csp
        assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Cache-Control"] == "no-store"
        body = text(r)
        assert "<script" not in body.lower(), url
        assert not re.search(r"<[^>]+\sstyle=", body), url
        assert not re.search(r"<[^>]+\son[a-z]+=", body), url


def test_hostile_strings_render_as_text_on_every_page(admin):
    seen = {x: 0 for x in XSS}
    for url in PAGES:
        body = text(admin.get(url))
        for x in XSS:
            assert x not in body, (url, x)
            seen[x] += str(escape(x)) in body
    assert all(seen.values()), seen          # the strings are shown (escaped), not dropped


# ---------------------------------------------------------------------------- the pages' jobs
def test_number_page_any_spelling(admin):
    for spelling in (NUMBER_SPELLED, "+86 138-0013-8000", "008613800138000"):
        body = text(admin.get("/console/numbers", query_string={"q": spelling}))
        assert f'<h2 id="number">{NUMBER}</h2>' in body, spelling
    assert "Fraud" in body and "0.970" in body and "appeal_suppressed" in body
    assert "12 from 3 reporters" in body
    assert "<svg" in body and "fraud" in body and "2026-02-10" in body and "2026-02-13" in body
    assert "prefix <code>" in body and "pending" in body      # bucket, the appeal
    r = admin.get("/console/numbers", query_string={"q": "not a number"})
    assert r.status_code == 200 and "irregular" in text(r)


def test_accepting_an_appeal_lands_in_the_audit_log_and_the_next_consensus(admin, app):
    page = text(admin.get("/console/appeals"))
    assert f'id="appeal-1"' in page and "waiting" in page and "12 tags from 3 reporters" in page
    tok = csrf_token(page)
    r = admin.post("/console/appeals/1", data={"csrf_token": tok, "decision": "accept", "reason": ""})
    assert r.status_code == 302 and app.extensions["callmark"].store.get_appeal(1)["status"] == "pending"
    r = admin.post("/console/appeals/1", data={"csrf_token": tok, "decision": "accept", "reason": "shop verified"})
    assert r.status_code == 302
    s = app.extensions["callmark"].store
    assert s.get_appeal(1)["status"] == "accepted"
    assert [a["number"] for a in s.iter_accepted_appeals()] == [NUMBER]
    audit = text(admin.get("/console/audit", query_string={"action": "appeal."}))
    assert "appeal.accept" in audit and "shop verified" in audit and "console:key:consoleadmin" in audit
    assert "key.create" not in audit                    # the filter works
    r = admin.post("/console/appeals/1", data={"csrf_token": tok, "decision": "reject", "reason": "again"})
    assert "already accepted" in text(admin.get("/console/appeals"))


def _history(app):
    import publisher
    return publisher.history(app.extensions["callmark"].config.exports_dir)


def _version(app, channel):
    import publisher
    return publisher.load_manifest(app.extensions["callmark"].config.exports_dir, channel).version


def test_promote_needs_confirmation_then_changes_the_version(admin, app):
    tok = csrf_token(text(admin.get("/console/releases")))
    data = {"csrf_token": tok, "action": "promote", "channel": "stable", "from_channel": "beta"}
    r = admin.post("/console/releases/action", data=data)
    assert r.status_code == 200 and "Confirm" in text(r) and "Promote beta v1" in text(r)
    assert _version(app, "stable") == 2                                 # nothing happened yet
    r = admin.post("/console/releases/action", data={**data, "confirm": "yes"})   # box not ticked
    assert _version(app, "stable") == 2
    r = admin.post("/console/releases/action", data={**data, "confirm": "yes", "acknowledge": "y"})
    assert r.status_code == 302 and _version(app, "stable") == 3
    page = text(admin.get("/console/releases"))
    assert "stable is now v3" in page and ">v3</a>" in page and "from beta v1" in page
    assert "release.promote" in text(admin.get("/console/audit"))


def test_rollout_and_rollback(admin, app):
    tok = csrf_token(text(admin.get("/console/releases")))
    base = {"csrf_token": tok, "confirm": "yes", "acknowledge": "y"}
    admin.post("/console/releases/action", data={**base, "action": "rollout", "channel": "stable", "percent": "25"})
    import publisher
    m = publisher.load_manifest(app.extensions["callmark"].config.exports_dir, "stable")
    assert m.version == 3 and m.model.rollout_percent == 25
    admin.post("/console/releases/action", data={**base, "action": "rollback", "channel": "stable",
                                                 "to_version": "1"})
    m = publisher.load_manifest(app.extensions["callmark"].config.exports_dir, "stable")
    assert m.version == 4 and m.model is None
    r = admin.post("/console/releases/action", data={**base, "action": "rollout", "channel": "stable",
                                                     "percent": "150"}, follow_redirects=True)
    assert "refused" in text(r) and _version(app, "stable") == 4
    r = admin.post("/console/releases/action", data={**base, "action": "promote", "channel": "../keys",
                                                     "from_channel": "beta"}, follow_redirects=True)
    assert "is not a channel name" in text(r)
    r = admin.post("/console/releases/action", data={**base, "action": "rollback", "channel": "stable",
                                                     "to_version": "9"}, follow_redirects=True)
    assert "rollback failed" in text(r) and _version(app, "stable") == 4


def test_release_failure_is_reported_not_crashed(admin, app, tmp_path):
    import shutil
    shutil.rmtree(app.extensions["callmark"].config.keys_path)
    tok = csrf_token(text(admin.get("/console/releases")))
    r = admin.post("/console/releases/action", data={"csrf_token": tok, "action": "rollout", "channel": "stable",
                                                     "percent": "10", "confirm": "yes", "acknowledge": "y"},
                   follow_redirects=True)
    assert r.status_code == 200 and "no usable signing keys" in text(r)


def test_model_page_shows_verdict_comparison_and_plots(admin):
    body = text(admin.get("/console/model/beta/1"))
    assert 'id="gate" class="verdict accepted"' in body
    assert "0.9300" in body and "0.9100" in body and "stable now (v2)" in body    # beta vs stable
    assert "+0.0100 [-0.0040, +0.0230]" in body  # the difference with its caller-resampled interval
    imgs = re.findall(r'<img src="(/console/artefact/[0-9a-f]{16}-roc\.png)"', body)
    assert imgs
    r = admin.get(imgs[0])
    assert r.status_code == 200 and r.mimetype == "image/png" and r.data.startswith(b"\x89PNG")
    assert ">roc.png</figcaption>" in body
    html_link = re.search(r'<a href="(/console/artefact/[0-9a-f]{16}-report\.html)"', body).group(1)
    r = admin.get(html_link)
    assert r.mimetype == "text/html" and "sandbox" in r.headers["Content-Security-Policy"]
    assert admin.get(html_link.rsplit("/", 1)[0] + "/" + imgs[0].rsplit("/", 1)[1]).status_code == 200
    assert admin.get("/console/artefact/0123456789abcdef-nothing.png").status_code == 404
    assert admin.get("/console/artefact/..%2Fkeys.png").status_code == 404


def test_verified_and_keys_pages(admin, app):
    tok = csrf_token(text(admin.get("/console/verified")))
    r = admin.post("/console/verified", data={"csrf_token": tok, "number": "95599", "company": "Agri Bank"})
    assert r.status_code == 302 and "+8695599" in text(admin.get("/console/verified"))
    r = admin.post("/console/verified", data={"csrf_token": tok, "number": "call me", "company": "x"})
    assert r.status_code == 400 and "cannot read" in text(r)
    r = admin.post("/console/verified/remove", data={"csrf_token": tok, "number": "+8695599"},
                   follow_redirects=True)
    assert "+8695599 is no longer a verified business" in text(r)
    assert [v["number"] for v in app.extensions["callmark"].store.iter_verified()] == ["+8695588"]

    r = admin.post("/console/keys", data={"csrf_token": tok, "label": "ci", "scopes": ["read", "appeals"]})
    key = re.search(r'<code id="new-key">([^<]+)</code>', text(r)).group(1)
    assert app.extensions["callmark"].store.api_key_scopes(key)[1] == {"read", "appeals"}
    r = admin.post("/console/keys", data={"csrf_token": tok, "label": "none"})
    assert r.status_code == 400 and "pick at least one scope" in text(r)


def test_health_page(admin):
    admin.get("/v1/lookup")
    body = text(admin.get("/console/health"))
    assert f"schema</th><td>v{SCHEMA_VERSION}" in body and 'id="lookup-entries">1 entries' in body
    assert "stable: 2 versions" in body and "beta: 1 version," in body and "requests" in body
    assert 'id="active-keys">4<' in body


def test_health_rates_from_two_samples(monkeypatch):
    from server.console import pages
    now = [1000.0]
    counts = {"requests": 100.0, "tags_stored": 0.0}
    monkeypatch.setattr(pages.time, "time", lambda: now[0])
    monkeypatch.setattr(pages.metrics, "totals", lambda: dict(counts))
    monkeypatch.setattr(pages, "_samples", pages.deque(maxlen=256))
    assert pages.rates()["window_s"] is None
    now[0], counts["requests"], counts["tags_stored"] = 1060.0, 400.0, 120.0
    r = pages.rates()
    assert r["window_s"] == 60 and r["per_minute"] == {"requests": 300.0, "tags_stored": 120.0}
    now[0] = 1060.0 + 3600                    # long after: the last sample still serves as the base
    assert pages.rates()["window_s"] == 3600


def test_unknown_console_paths_get_the_consoles_page_and_the_api_keeps_json(app):
    c = app.test_client()
    login(c, ADMIN_KEY)
    for url in ("/console/model/stable", "/console/nope", "/console/model/stable/99"):
        r = c.get(url)
        assert r.status_code == 404 and r.content_type.startswith("text/html"), url
        assert "No such page, release or file." in text(r)
    r = c.get("/v1/nope")
    assert r.status_code == 404 and r.is_json
