"""Hostile clients (issue 17): every bad input is a 4xx in the JSON error shape, never a 500."""
from __future__ import annotations

import json
import logging

import pytest

from tests.server.conftest import ADMIN_KEY, register

ADMIN = {"X-API-Key": ADMIN_KEY}


def _post_raw(client, path, body: bytes, headers=None):
    return client.post(path, data=body, headers={"Content-Type": "application/json", **(headers or {})})


def _event(**kw):
    return {"event_id": "e1", "number": "13800138000", "category": "harassment",
            "ts": "2025-11-02T08:00:00Z", **kw}


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,                                   # nesting 100 k deep
    b'{"events": [{"ring_s": ' + b"9" * 5000 + b"}]}",                # a 5,000-digit number
    b'{"events": [{"note": "\\ud800"}]}',                            # a lone surrogate
    b'{"device_id": "dev\\u0000ice-123456", "events": []}',          # a NUL (PostgreSQL text refuses it)
    b'{"events": [{"ring_s": NaN}]}',                                  # not JSON
    b'{"events": [], "x": "\xff"}',                                    # not UTF-8
], ids=["deep", "long-number", "surrogate", "nul", "nan", "not-utf8"])
def test_hostile_json_bodies_are_400_on_every_json_endpoint(client, body):
    dev = register(client)
    for path, hdr in (("/v1/tags", dev), ("/v1/devices", {}), ("/v1/update", {}),
                      ("/v1/appeals", {}), ("/v1/admin/keys", ADMIN)):
        r = _post_raw(client, path, body, hdr)
        assert r.status_code == 400, (path, r.status_code, r.data[:200])
        assert r.get_json()["code"] == 400 and "request body" in r.get_json()["message"]


def test_lone_surrogate_in_device_id_and_note_is_400_and_stores_nothing(client):
    r = _post_raw(client, "/v1/devices", b'{"device_id": "dev\\udc00ice-123456"}')
    assert r.status_code == 400
    dev = register(client)
    body = json.dumps({"events": [_event(note="x")]}).replace('"note": "x"', '"note": "\\ud800"').encode()
    r = _post_raw(client, "/v1/tags", body, dev)
    assert r.status_code == 400
    r = client.post("/v1/tags", json={"events": [_event(note="fine")]}, headers=dev)
    assert r.status_code == 200 and r.get_json()["stored"] == 1     # the queue is not blocked


def test_root_version_of_300_digits_is_404(client):
    r = client.get("/v1/root/" + "9" * 300 + ".root.json")
    assert r.status_code == 404 and r.get_json()["code"] == 404
    for digits in (20, 300):                     # any <int:> in a path: past SQLite INTEGER is a 404
        r = client.post(f"/v1/admin/appeals/{'9' * digits}/accept", json={"note": "x"}, headers=ADMIN)
        assert r.status_code == 404, (digits, r.status_code)


def test_labels_csv_with_huge_field_or_huge_number_is_422(client):
    hdr = {**ADMIN, "Content-Type": "text/csv"}
    head = "number,category,confidence,reporters,published\n"
    for body in (head + "+8613800138000,fraud,0.9,3,1,\"" + "x" * (128 * 1024 + 10) + "\"\n",
                 head + "+8613800138000,fraud,0.9,1e30,1\n",
                 head + "+8613800138000,fraud,nan,3,1\n"):
        r = client.post("/v1/admin/labels?version=7", data=body.encode(), headers=hdr)
        assert r.status_code == 422, (r.status_code, r.data[:300])
    r = client.post("/v1/admin/labels?version=7", data=b"\xff\xfe" + head.encode(), headers=hdr)
    assert r.status_code == 422


def test_a_key_can_only_grant_the_scopes_it_holds(client):
    r = client.post("/v1/admin/keys", json={"scopes": ["keys"], "label": "k"}, headers=ADMIN)
    keys_only = {"X-API-Key": r.get_json()["key"]}
    r = client.post("/v1/admin/keys", json={"scopes": ["admin"], "label": "esc"}, headers=keys_only)
    assert r.status_code == 403 and "admin" in r.get_json()["message"]
    r = client.post("/v1/admin/keys", json={"scopes": ["keys", "read"], "label": "esc"}, headers=keys_only)
    assert r.status_code == 403
    r = client.post("/v1/admin/keys", json={"scopes": ["keys"], "label": "same"}, headers=keys_only)
    assert r.status_code == 201
    admin_id = ADMIN_KEY.split("_")[1]
    assert client.delete(f"/v1/admin/keys/{admin_id}", headers=keys_only).status_code == 403
    assert client.get("/v1/admin/audit", headers=keys_only).status_code == 403


def test_bootstrap_key_rotation_revokes_the_old_key(make_app, caplog):
    c = make_app().test_client()
    assert c.get("/v1/admin/keys", headers=ADMIN).status_code == 200
    new_key = "cmk_bootadmin2_" + "t" * 32
    with caplog.at_level(logging.WARNING, logger="callmark.server"):
        c = make_app(admin_key=new_key).test_client()
    assert c.get("/v1/admin/keys", headers=ADMIN).status_code == 401
    assert c.get("/v1/admin/keys", headers={"X-API-Key": new_key}).status_code == 200
    assert any("bootadmin" in r.getMessage() and "revoked" in r.getMessage() for r in caplog.records)
    same_id = "cmk_bootadmin2_" + "u" * 32                         # a new secret under the same id
    c = make_app(admin_key=same_id).test_client()
    assert c.get("/v1/admin/keys", headers={"X-API-Key": new_key}).status_code == 401
    r = c.get("/v1/admin/keys", headers={"X-API-Key": same_id})
    assert r.status_code == 200
    active = [k for k in r.get_json() if k["revoked_at"] is None]
    assert [k["key_id"] for k in active] == ["bootadmin2"]
    audit = c.get("/v1/admin/audit", headers={"X-API-Key": same_id}).get_json()
    actions = {(a["action"], a["target"]) for a in audit["detail"]["entries"]}
    assert ("key.revoke", "bootadmin") in actions and ("key.replace", "bootadmin2") in actions


def test_retry_after_only_on_429_and_503_from_config(make_app, monkeypatch):
    from server.store import Store
    from server.store_errors import StoreBusy
    c = make_app(retry_after_s=30).test_client()
    dev = register(c)
    r = c.get("/v1/manifest")
    assert r.status_code == 200 and "Retry-After" not in r.headers
    r = c.post("/v1/tags", json={"events": [_event()]}, headers=dev)
    assert r.status_code == 200 and "Retry-After" not in r.headers

    def busy(*a, **k):
        raise StoreBusy("store is busy")
    monkeypatch.setattr(Store, "insert_tags", busy)
    monkeypatch.setattr(Store, "register_device", busy)
    r = c.post("/v1/tags", json={"events": [_event(event_id="e2")]}, headers=dev)
    assert r.status_code == 503 and r.headers["Retry-After"] == "30"
    r = c.post("/v1/devices", json={"device_id": "another-device-1"})
    assert r.status_code == 503 and r.headers["Retry-After"] == "30"


def test_device_tokens_expire_and_reregistering_rotates(make_app):
    import time
    c = make_app(device_token_ttl_s=3600).test_client()
    r = c.post("/v1/devices", json={"device_id": "ttl-device-0001"})
    tok = r.get_json()["token"]
    hdr = {"Authorization": "Bearer " + tok}
    assert c.post("/v1/tags", json={"events": [_event()]}, headers=hdr).status_code == 200
    app = c.application
    store = app.extensions["callmark"].store
    with store.write() as conn:
        conn.execute("UPDATE devices SET token_at=?", (int(time.time()) - 3601,))
    r = c.post("/v1/tags", json={"events": [_event(event_id="e2")]}, headers=hdr)
    assert r.status_code == 401 and "expired" in r.get_json()["message"]
    r = c.post("/v1/devices", json={"device_id": "ttl-device-0001"})
    new = {"Authorization": "Bearer " + r.get_json()["token"]}
    assert c.post("/v1/tags", json={"events": [_event(event_id="e2")]}, headers=new).status_code == 200
    assert c.post("/v1/tags", json={"events": [_event(event_id="e3")]}, headers=hdr).status_code == 401


def test_range_with_an_unknown_unit_is_ignored(client, exports):
    path = exports["pack"]["path"].split("/", 1)[1]
    r = client.get(f"/v1/artefacts/{path}", headers={"Range": "pages=0-10"})
    assert r.status_code == 200 and r.data == exports["full"]
    r = client.get(f"/v1/artefacts/{path}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.data == exports["full"][10:20]
