"""The console in a real headless Chromium (Playwright): the maintainers' jobs end to end.

Uses Debian's `chromium` (CALLMARK_CHROMIUM overrides the path); never downloads a browser. Skipped
when Playwright or Chromium is missing, except under CI (CI=true), where that is a failure.
Screenshots of every page go to test-artefacts/console/ (git-ignored)."""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from tests.server.console_world import ADMIN_KEY, NUMBER, NUMBER_SPELLED, READ_KEY, XSS, build_world, config

# One browser site per module on the console's prepared SQLite world (tests run in order against it);
# the store methods the pages reach run on both backends in the rest of tests/server.
pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]
SHOTS = Path(__file__).resolve().parents[2] / "test-artefacts" / "console"


def _chromium() -> str:
    path = os.environ.get("CALLMARK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "Playwright is not installed (pip install -e '.[dev]')"
    if problem is None and not os.path.exists(path):
        problem = f"no Chromium at {path} (apt-get install -y chromium)"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests must run in CI: {problem}")
        pytest.skip(problem)
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    chromium = _chromium()
    from werkzeug.serving import WSGIRequestHandler, make_server

    from server import create_app

    class Quiet(WSGIRequestHandler):
        def log_request(self, *a, **kw):
            pass

    world = build_world(tmp_path_factory.mktemp("browser"))
    app = create_app(config(world))
    srv = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    SHOTS.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium,
                                    args=["--no-sandbox", "--disable-background-networking"])
        try:
            yield {"url": f"http://127.0.0.1:{srv.server_port}", "browser": browser, "app": app, "world": world}
        finally:
            browser.close()
            srv.shutdown()
            th.join(5)


class Console:
    """One browser session (its own cookies) that fails on any script dialog or page error."""

    def __init__(self, site, name: str):
        self.base, self.name = site["url"], name
        self.context = site["browser"].new_context(viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("dialog", lambda d: (self.problems.append(f"dialog: {d.message}"), d.dismiss()))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("response", lambda r: r.status >= 400 and r.request.resource_type != "document"
                     and self.problems.append(f"{r.status} for {r.url}"))   # styles, plots, icon
        self.page.on("console", lambda m: m.type == "error" and "Content Security Policy" in m.text
                     and self.problems.append(f"CSP: {m.text}"))

    def go(self, path: str):
        resp = self.page.goto(self.base + path)
        return resp

    def shot(self, label: str):
        self.page.screenshot(path=str(SHOTS / f"{self.name}-{label}.png"), full_page=True)

    def login(self, key: str):
        self.go("/console/login")
        self.shot("login")
        self.page.fill("#api_key", key)
        self.page.click("button:has-text('Log in')")
        assert "Log in" not in self.page.title(), self.page.content()[:500]

    def assert_clean(self):
        """No script ran (no dialogs, no page errors, the hostile <img> never became an element), no
        resource was refused by the CSP and every style sheet, plot and icon loaded."""
        assert self.page.locator("img[src='x']").count() == 0
        assert not self.problems, self.problems

    def close(self):
        self.context.close()


@pytest.fixture
def admin(site):
    con = Console(site, "admin")
    con.login(ADMIN_KEY)
    yield con
    con.assert_clean()
    con.close()


def test_find_a_number(admin):
    admin.shot("home")
    admin.page.fill("input[name=q]", NUMBER_SPELLED)
    admin.page.click("button:has-text('Search')")
    assert admin.page.inner_text("#number") == NUMBER
    assert "Fraud" in admin.page.inner_text("#label")
    assert admin.page.locator("svg.chart rect").count() >= 4
    body = admin.page.inner_text("main")
    for x in XSS:                         # the hostile note and company show as text
        assert x in body
    admin.shot("number")


def test_accept_an_appeal_and_see_it_in_the_audit_log(admin):
    admin.go("/console/appeals")
    card = admin.page.locator("#appeal-1")
    assert XSS[0] in card.inner_text()
    admin.shot("appeals")
    card.locator("textarea[name=reason]").fill("owner proved it is a shop")
    card.locator("button[value=accept]").click()
    assert "Appeal 1 accepted" in admin.page.inner_text("main")
    admin.go("/console/audit")
    admin.page.fill("input[name=action]", "appeal.")
    admin.page.click("button:has-text('Filter')")
    rows = admin.page.inner_text("#audit")
    assert "appeal.accept" in rows and "owner proved it is a shop" in rows
    admin.shot("audit")


def test_promote_a_channel_and_see_the_version_change(admin):
    admin.go("/console/releases")
    row = admin.page.locator("tr[data-channel=stable]")
    assert row.locator("td.version").inner_text() == "v2"
    admin.shot("releases")
    row.locator("select[name=from_channel]").select_option("beta")
    row.locator("button:has-text('Promote')").click()
    assert "Promote beta v1" in admin.page.inner_text("#summary")
    admin.shot("confirm")
    admin.page.check("input[name=acknowledge]")
    admin.page.click("#do-confirm")
    assert "stable is now v3" in admin.page.inner_text("main")
    assert admin.page.locator("tr[data-channel=stable] td.version").inner_text() == "v3"
    admin.page.click("tr[data-channel=stable] td.version a")
    assert "stable v3" in admin.page.inner_text("h1")
    admin.shot("release")


def test_open_a_model_report_with_its_plots(admin):
    admin.go("/console/model")
    admin.shot("models")
    admin.page.click("a:has-text('v1')")
    assert admin.page.inner_text("#gate") == "accepted"
    img = admin.page.locator(".plots img").first
    img.wait_for()
    assert admin.page.evaluate("i => i.complete && i.naturalWidth > 0", img.element_handle())
    assert XSS[0] in admin.page.inner_text("pre.report")
    admin.shot("model")


def test_every_other_page_renders_hostile_strings_as_text(admin):
    for path, label in (("/console/verified", "verified"), ("/console/keys", "keys"),
                        ("/console/health", "health"), ("/console/releases/beta/1", "release-beta")):
        resp = admin.go(path)
        assert resp.status == 200 and resp.headers["content-security-policy"].startswith("default-src 'none'")
        admin.shot(label)
    admin.go("/console/verified")
    assert XSS[1] in admin.page.inner_text("#verified")
    admin.go("/console/keys")
    assert XSS[1] in admin.page.inner_text("#keys")


def test_form_post_without_csrf_token_is_refused(admin):
    r = admin.page.request.post(admin.base + "/console/keys", form={"label": "x", "scopes": "admin"})
    assert r.status == 400 and "CSRF" in r.text()


def test_revoke_a_key_and_see_its_next_request_refused(site, admin):
    reader = Console(site, "reader")
    reader.login(READ_KEY)
    reader.go("/console/health")
    assert "Health" in reader.page.inner_text("h1")
    resp = reader.go("/console/releases")         # no admin/publish scope: no release pages
    assert resp.status == 403 and "publish" in reader.page.inner_text("main")
    reader.shot("forbidden")
    api = reader.page.request.get(site["url"] + "/v1/admin/audit", headers={"X-API-Key": READ_KEY})
    assert api.status == 200

    admin.go("/console/keys")
    admin.page.locator("tr[data-key=consoleread] button:has-text('Revoke')").click()
    assert "Key consoleread revoked" in admin.page.inner_text("main")

    reader.go("/console/health")                   # the session ended with the key
    assert "/console/login" in reader.page.url and "session ended" in reader.page.inner_text("main")
    reader.shot("after-revoke")
    api = reader.page.request.get(site["url"] + "/v1/admin/audit", headers={"X-API-Key": READ_KEY})
    assert api.status == 401
    reader.assert_clean()
    reader.close()


def test_logout(site):
    con = Console(site, "logout")
    con.login(ADMIN_KEY)
    con.page.click("button:has-text('Log out')")
    assert "Logged out" in con.page.inner_text("main")
    con.go("/console/keys")
    assert "/console/login" in con.page.url
    con.assert_clean()
    con.close()
