"""Admin auth and scopes, appeals workflow with audit, verified businesses, releases, ops."""
import pytest

from server.store import iter_accepted_appeals, iter_verified

ADMIN_ROUTES = [("GET", "/v1/admin/keys"), ("POST", "/v1/admin/keys"),
                ("DELETE", "/v1/admin/keys/abc"), ("GET", "/v1/admin/appeals"),
                ("POST", "/v1/admin/appeals/1/accept"), ("POST", "/v1/admin/appeals/1/reject"),
                ("GET", "/v1/admin/verified"), ("POST", "/v1/admin/verified"),
                ("DELETE", "/v1/admin/verified/+8695588"), ("POST", "/v1/admin/labels"),
                ("POST", "/v1/admin/publish"), ("POST", "/v1/admin/promote"),
                ("POST", "/v1/admin/rollback"), ("GET", "/v1/admin/audit"),
                ("GET", "/v1/admin/history")]


def key_with(client, admin, *scopes):
    r = client.post("/v1/admin/keys", json={"scopes": list(scopes), "label": "t"}, headers=admin)
    assert r.status_code == 201
    return {"X-API-Key": r.get_json()["key"]}


@pytest.mark.parametrize("method,path", ADMIN_ROUTES)
def test_unauthenticated_admin_calls_are_refused(client, method, path):
    for headers in ({}, {"X-API-Key": "cmk_bootadmin_wrong"}, {"X-API-Key": "garbage"},
                    {"Authorization": "Bearer cmk_bootadmin_" + "s" * 32}):
        r = client.open(path, method=method, json={}, headers=headers)
        assert r.status_code == 401, (method, path, headers, r.status_code)
        assert r.get_json()["code"] == 401


def test_wrongly_scoped_keys_are_refused(client, admin):
    read_only = key_with(client, admin, "read")
    for method, path in ADMIN_ROUTES:
        r = client.open(path, method=method, json={}, headers=read_only)
        want_ok = path in ("/v1/admin/audit", "/v1/admin/history")
        assert (r.status_code != 403) == want_ok, (method, path, r.status_code)
    appeals = key_with(client, admin, "appeals")
    assert client.get("/v1/admin/appeals", headers=appeals).status_code == 200
    assert client.get("/v1/admin/keys", headers=appeals).status_code == 403
    assert client.post("/v1/admin/publish", json={}, headers=appeals).status_code == 403


def test_revoked_key_stops_working(client, admin):
    k = key_with(client, admin, "appeals")
    key_id = k["X-API-Key"].split("_")[1]
    assert client.delete(f"/v1/admin/keys/{key_id}", headers=admin).status_code == 200
    assert client.get("/v1/admin/appeals", headers=k).status_code == 401
    assert client.delete(f"/v1/admin/keys/{key_id}", headers=admin).status_code == 404
    listed = client.get("/v1/admin/keys", headers=admin).get_json()
    assert any(x["key_id"] == key_id and x["revoked_at"] for x in listed)


def test_appeal_workflow_feeds_consensus(client, admin, tmp_path):
    body = {"number": "138 0013 8000", "contact": "owner@example.com",
            "evidence": "business licence no. 123", "categories": ["fraud", "telemarketing"]}
    r = client.post("/v1/appeals", json=body)
    assert r.status_code == 201 and r.get_json()["number"] == "+8613800138000"
    aid = r.get_json()["id"]
    other = client.post("/v1/appeals", json={**body, "number": "13900139000"}).get_json()["id"]
    reviewer = key_with(client, admin, "appeals")
    pending = client.get("/v1/admin/appeals", headers=reviewer).get_json()
    assert [a["id"] for a in pending] == [aid, other]
    r = client.post(f"/v1/admin/appeals/{aid}/accept", json={"note": "licence checked"},
                    headers=reviewer)
    assert r.status_code == 200 and r.get_json()["status"] == "accepted"
    assert client.post(f"/v1/admin/appeals/{aid}/reject", json={}, headers=reviewer).status_code == 409
    assert client.post(f"/v1/admin/appeals/{other}/reject", json={}, headers=reviewer).status_code == 200
    assert client.post("/v1/admin/appeals/999/accept", json={}, headers=reviewer).status_code == 404
    rows = list(iter_accepted_appeals(tmp_path / "var"))
    assert [(x["number"], x["categories"], x["accepted"]) for x in rows] == [
        ("+8613800138000", "fraud;telemarketing", 1)]
    audit = client.get("/v1/admin/audit", headers=admin).get_json()["detail"]["entries"]
    acts = [(e["action"], e["target"]) for e in audit]
    assert ("appeal.accept", str(aid)) in acts and ("appeal.reject", str(other)) in acts
    assert any(e["actor"].startswith("key:") for e in audit if e["action"] == "appeal.accept")


def test_appeal_validation(client):
    ok = {"number": "13800138000", "contact": "a@b.c", "evidence": "x", "categories": ["fraud"]}
    r = client.post("/v1/appeals", json={**ok, "number": "abc"})
    assert r.status_code == 422 and "number" in r.get_json()["errors"]["json"]
    r = client.post("/v1/appeals", json={**ok, "categories": ["bogus"]})
    assert r.status_code == 422
    assert client.post("/v1/appeals", data="x", content_type="text/plain").status_code == 415


def test_verified_businesses(client, admin, tmp_path):
    r = client.post("/v1/admin/verified", json={"number": "95588", "company": "ICBC"},
                    headers=admin)
    assert r.status_code == 200
    e164 = r.get_json()["number"]
    assert list(iter_verified(tmp_path / "var")) == [{"number": e164, "company": "ICBC"}]
    assert client.delete(f"/v1/admin/verified/{e164}", headers=admin).status_code == 200
    assert client.delete(f"/v1/admin/verified/{e164}", headers=admin).status_code == 404
    assert list(iter_verified(tmp_path / "var")) == []


def test_release_endpoints_without_keys_say_how_to_fix(client, admin):
    r = client.post("/v1/admin/promote", json={"from_channel": "beta", "to_channel": "stable"},
                    headers=admin)
    assert r.status_code == 409 and "CALLMARK_KEYS_DIR" in r.get_json()["message"]
    hist = client.get("/v1/admin/history", headers=admin).get_json()["detail"]["entries"]
    assert hist and hist[-1]["action"] == "publish"


def test_ops_endpoints(client, exports):
    assert client.get("/healthz").status_code == 200
    r = client.get("/readyz")
    assert r.status_code == 200 and r.get_json()["detail"]["channels"] == ["stable"]
    client.get("/v1/manifest")
    m = client.get("/metrics")
    assert m.status_code == 200 and b"callmark_http_requests_total" in m.data


def test_readyz_fails_without_exports(make_app, tmp_path):
    c = make_app(exports_dir=str(tmp_path / "missing")).test_client()
    r = c.get("/readyz")
    assert r.status_code == 503 and "Retry-After" in r.headers


def test_bad_config_is_a_clear_error(make_app):
    from server.errors import ConfigError
    with pytest.raises(ConfigError, match="sqlite_synchronous"):
        make_app(sqlite_synchronous="OFF")
    with pytest.raises(ConfigError, match="unknown|unexpected"):
        make_app(no_such_option=1)


def test_release_endpoints_publish_in_process(make_app, admin, tmp_path):
    """publish / promote / rollback over HTTP sign with the keys dir the CLI uses, in-process."""
    import publisher
    from callmark.updater import verify_exports
    from tests.publisher.test_release_fakes import fake_pack_dir
    keys, ex = tmp_path / "keys", tmp_path / "ex2"
    publisher.init_keys(keys, threshold=1, roots=1)
    c = make_app(exports_dir=str(ex), keys_dir=str(keys)).test_client()
    p1, p2 = fake_pack_dir(tmp_path, 1), fake_pack_dir(tmp_path, 2)
    for packs in (p1, p2):
        r = c.post("/v1/admin/publish", json={"channel": "beta", "packs": str(packs)}, headers=admin)
        assert r.status_code == 200, r.get_json()
    assert r.get_json()["detail"]["version"] == 2 and r.get_json()["detail"]["packs"] == {"CN-full": 2}
    r = c.post("/v1/admin/promote", json={"from_channel": "beta", "to_channel": "stable", "percent": 10},
               headers=admin)
    assert r.status_code == 200 and r.get_json()["detail"]["channel"] == "stable"
    r = c.post("/v1/admin/rollback", json={"channel": "beta"}, headers=admin)
    assert r.status_code == 200 and r.get_json()["detail"]["packs"] == {"CN-full": 1}
    r = c.post("/v1/admin/rollback", json={"channel": "stable", "to_version": 3}, headers=admin)
    assert r.status_code == 409 and "rollback failed" in r.get_json()["message"]
    rep = verify_exports(ex, keys / "root" / "1.root.json")
    assert rep.ok and rep.channels == {"beta": 3, "stable": 1}, rep.problems
    assert [h["action"] for h in publisher.history(ex)] == ["publish", "publish", "promote", "rollback"]
    audit = c.get("/v1/admin/audit", headers=admin).get_json()["detail"]["entries"]
    assert [e["action"] for e in audit[:4]] == ["release.rollback", "release.rollback", "release.promote",
                                                "release.publish"]
    assert c.get("/v1/manifest?channel=beta").status_code == 200


def test_keys_dir_inside_exports_is_refused(make_app, exports):
    from server.errors import ConfigError
    with pytest.raises(ConfigError, match="CALLMARK_KEYS_DIR"):
        make_app(keys_dir=str(exports["root"] / "keys"))
