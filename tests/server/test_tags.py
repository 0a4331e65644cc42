"""Devices and tag uploads: idempotency, caps, error codes, rate limits, privacy."""
import pytest

from callmark.numbers import normalize

from server.store import iter_tag_events, open_store
from tests.server.conftest import event, register


def post(client, headers, events, **kw):
    return client.post("/v1/tags", json={"events": events, **kw}, headers=headers)


def test_upload_is_idempotent_and_readable_by_consensus(client, device, tmp_path):
    evs = [event(i, ring_s=3.5, answered=True, direction="in", company="ACME")
           for i in range(10)]
    r = post(client, device, evs)
    assert r.status_code == 200
    ack = r.get_json()
    assert (ack["acked"], ack["stored"], ack["duplicates"]) == (10, 10, 0)
    assert ack["min_wait_s"] > 0
    again = post(client, device, evs + evs[:3]).get_json()   # retry plus in-batch duplicates
    assert (again["acked"], again["stored"], again["duplicates"]) == (13, 0, 13)
    rows = list(iter_tag_events(tmp_path / "var"))
    assert len(rows) == 10
    r0 = rows[0]
    assert r0["number"] == "+8613812340000" and r0["category"] == "fraud"
    assert r0["ts"] == "2025-11-01T10:00:00Z" and r0["answered"] is True and r0["ring_s"] == 3.5
    assert r0["reporter"].startswith("d") and r0["direction"] == "in" and r0["company"] == "ACME"
    assert {"number", "reporter", "category", "ts", "company", "note", "ring_s", "talk_s",
            "answered", "direction"} <= set(r0)


def test_same_event_id_from_two_devices_are_two_events(client, tmp_path):
    a, b = register(client, "device-aaaa"), register(client, "device-bbbb")
    assert post(client, a, [event(1)]).get_json()["stored"] == 1
    assert post(client, b, [event(1)]).get_json()["stored"] == 1
    reporters = {r["reporter"] for r in iter_tag_events(tmp_path / "var")}
    assert len(reporters) == 2


def test_irregular_numbers_are_kept_as_evidence(client, device, tmp_path):
    ack = post(client, device, [event(1, number="12"), event(2, number="+86 000")]).get_json()
    assert ack["stored"] == 2 and ack["irregular"] == 2
    rows = list(iter_tag_events(tmp_path / "var"))
    expected = [normalize(n).e164 or n for n in ("12", "+86 000")]   # raw when no E.164 at all
    assert [r["number"] for r in rows] == expected
    assert rows[1]["number"] == "+86 000"


def test_daily_cap_flags_but_acknowledges(make_app, tmp_path):
    c = make_app(daily_cap=5).test_client()
    h = register(c)
    ack = post(c, h, [event(i) for i in range(8)]).get_json()
    assert ack["acked"] == 8 and ack["flagged"] == 3
    assert post(c, h, [event(100)]).get_json()["flagged"] == 1
    assert post(c, h, [event(101, ts="2025-11-02T09:00:00Z")]).get_json()["flagged"] == 0
    assert len(list(iter_tag_events(tmp_path / "var"))) == 6
    assert len(list(iter_tag_events(tmp_path / "var", include_flagged=True))) == 10


def test_auth_and_content_errors(client, device):
    assert post(client, {}, [event(1)]).status_code == 401
    assert post(client, {"Authorization": "Bearer nope"}, [event(1)]).status_code == 401
    r = client.post("/v1/tags", data="number=1", headers=device,
                    content_type="application/x-www-form-urlencoded")
    assert r.status_code == 415
    r = client.post("/v1/tags", data="{not json", headers=device, content_type="application/json")
    assert r.status_code == 400 and r.get_json()["code"] == 400
    big = [event(i, note="x" * 500) for i in range(3000)]
    r = post(client, device, big)
    assert r.status_code == 413 and "smaller" in r.get_json()["message"]


def test_validation_errors_name_event_and_field(client, device, tmp_path):
    evs = [event(0), event(1, category="spam?"), event(2, ts="2999-01-01T00:00:00Z"),
           {"event_id": "x", "category": "fraud", "ts": "2025-11-01T10:00:00Z"}]
    r = post(client, device, evs)
    assert r.status_code == 422
    errs = r.get_json()["errors"]["json"]["events"]
    assert set(errs) == {"1", "2", "3"}
    assert "category" in errs["1"] and "ts" in errs["2"] and "number" in errs["3"]
    assert list(iter_tag_events(tmp_path / "var")) == []           # all or nothing
    assert post(client, device, [event(i) for i in range(501)]).status_code == 422
    assert post(client, device, []).status_code == 422


def test_unknown_event_fields_ignored_unknown_top_level_refused(client, device):
    assert post(client, device, [event(1, future_field=1)]).status_code == 200
    assert post(client, device, [event(2)], extra=1).status_code == 422


def test_device_ids_only_stored_as_hmac(client, tmp_path):
    register(client, "my-secret-install-id-42")
    for f in (tmp_path / "var").glob("callmark.sqlite*"):
        assert b"my-secret-install-id-42" not in f.read_bytes()
    s = open_store(tmp_path / "var")                # either backend
    assert all("my-secret-install-id-42" not in str(r) for r in s.query("SELECT * FROM devices"))
    s.close()


def test_reregistration_rotates_token_keeps_reporter(client):
    r1 = client.post("/v1/devices", json={"device_id": "device-rot1"}).get_json()
    r2 = client.post("/v1/devices", json={"device_id": "device-rot1"}).get_json()
    assert r1["reporter"] == r2["reporter"] and r1["token"] != r2["token"]
    assert post(client, {"Authorization": "Bearer " + r1["token"]}, [event(1)]).status_code == 401
    assert post(client, {"Authorization": "Bearer " + r2["token"]}, [event(1)]).status_code == 200


def test_rate_limit_per_device(make_app):
    c = make_app(tags_limit_device="3/minute").test_client()
    h = register(c)
    codes = [post(c, h, [event(i)]).status_code for i in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    r = post(c, h, [event(9)])
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert r.get_json()["code"] == 429
    other = register(c, "device-other")                  # another device is not affected
    assert post(c, other, [event(1)]).status_code == 200


def test_rate_limit_per_ip(make_app):
    c = make_app(tags_limit_ip="4/minute", devices_limit_ip="3/minute").test_client()
    heads = [register(c, f"device-ip-{i}") for i in range(3)]
    r = c.post("/v1/devices", json={"device_id": "device-ip-x"})
    assert r.status_code == 429 and "Retry-After" in r.headers
    codes = [post(c, heads[i % 3], [event(i)]).status_code for i in range(6)]
    assert codes == [200] * 4 + [429] * 2
    other_ip = c.post("/v1/tags", json={"events": [event(50)]},
                      headers=heads[0], environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other_ip.status_code == 200


@pytest.mark.parametrize("body", [{"device_id": "short"}, {"device_id": 12345678},
                                  {"platform": "x"}])
def test_device_registration_validation(client, body):
    assert client.post("/v1/devices", json=body).status_code == 422
