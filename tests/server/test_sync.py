"""Sync endpoints over a fake exports tree: manifest, artefacts, root, update decisions."""
import hashlib

from tests.server.conftest import make_exports, state


def test_manifest_served_byte_for_byte_with_etag_and_cache(client, exports):
    r = client.get("/v1/manifest?channel=stable&region=CN")
    assert r.status_code == 200
    assert r.data == exports["raw"]                      # signed bytes untouched
    assert r.headers["Content-Type"].startswith("application/json")
    etag = r.headers["ETag"]
    assert "max-age=60" in r.headers["Cache-Control"]
    assert int(r.headers["X-Callmark-Min-Wait"]) == 3600
    assert int(r.headers["X-Callmark-Jitter"]) == 3600
    r2 = client.get("/v1/manifest?channel=stable", headers={"If-None-Match": etag})
    assert r2.status_code == 304 and r2.data == b""


def test_manifest_picks_up_republish_and_hints(client, exports):
    first = client.get("/v1/manifest").headers["ETag"]
    make_exports(exports["root"], version=5, delta_from=(4,), hints={"min_poll_seconds": 90000})
    r = client.get("/v1/manifest")
    assert r.headers["ETag"] != first
    assert r.get_json()["signed"]["version"] == 5
    assert r.headers["X-Callmark-Min-Wait"] == "90000"   # the manifest may ask for longer waits


def test_manifest_errors(client):
    assert client.get("/v1/manifest?channel=nightly").status_code == 404
    assert client.get("/v1/manifest?channel=../../etc").status_code == 404
    r = client.get("/v1/manifest?region=DE")
    assert r.status_code == 404 and "region" in r.get_json()["message"]
    assert client.get("/v1/manifest?region=Germany").status_code == 422


def test_artefact_etag_range_immutable(client, exports):
    url = "/v1/" + exports["pack"]["path"]
    r = client.get(url)
    assert r.status_code == 200 and r.data == exports["full"]
    assert hashlib.sha256(r.data).hexdigest() == exports["pack"]["sha256"]
    assert "immutable" in r.headers["Cache-Control"]
    assert r.headers["Accept-Ranges"] == "bytes"
    assert client.get(url, headers={"If-None-Match": r.headers["ETag"]}).status_code == 304
    part = client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == exports["full"][100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(exports['full'])}"
    tail = client.get(url, headers={"Range": "bytes=49000-"})        # resume a download
    assert tail.status_code == 206 and tail.data == exports["full"][49000:]
    bad = client.get(url, headers={"Range": "bytes=999999-"})
    assert bad.status_code == 416 and bad.get_json()["code"] == 416
    assert client.head(url).headers["Content-Length"] == str(len(exports["full"]))


def test_artefact_names_are_checked(client):
    assert client.get("/v1/artefacts/0123456789abcdef-missing.zst").status_code == 404
    assert client.get("/v1/artefacts/..%2Fchannels%2Fstable%2Fmanifest.json").status_code == 404
    assert client.get("/v1/artefacts/not-hex").status_code == 404


def test_root_chain(client):
    assert client.get("/v1/root.json").get_json()["signed"]["version"] == 2
    r = client.get("/v1/root/1.root.json")
    assert r.status_code == 200 and r.get_json()["signed"]["version"] == 1
    assert "immutable" in r.headers["Cache-Control"]
    assert client.get("/v1/root/9.root.json").status_code == 404


def upd(client, **body):
    r = client.post("/v1/update", json={"channel": "stable", "pack": "CN-full", **body})
    assert r.status_code == 200, r.get_json()
    ans = r.get_json()
    assert ans["min_wait_s"] == 3600 and ans["jitter_s"] == 3600
    return ans


def test_update_decisions(client, exports):
    assert upd(client, pack_version=4, state_hash=state(4))["status"] == "up_to_date"
    one = upd(client, pack_version=3, state_hash=state(3))
    assert one["status"] == "delta" and [d["from_version"] for d in one["deltas"]] == [3]
    chain = upd(client, pack_version=1, state_hash=state(1).upper())
    assert chain["status"] == "delta"
    assert [(d["from_version"], d["to_version"]) for d in chain["deltas"]] == [(1, 2), (2, 3), (3, 4)]
    assert chain["deltas"][0]["url"] == "/v1/" + chain["deltas"][0]["path"]
    assert client.get(chain["deltas"][0]["url"]).status_code == 200
    for body, why in (({"pack_version": 0}, "no pack"),
                      ({"pack_version": 2, "state_hash": "ab" * 32}, "no delta starts"),
                      ({"pack_version": 4, "state_hash": "ab" * 32}, "state hash unknown"),
                      ({"pack_version": 9, "state_hash": state(9)}, "ahead")):
        ans = upd(client, **body)
        assert ans["status"] == "full" and why in ans["reason"], (body, ans)
        assert ans["full"]["sha256"] == exports["pack"]["sha256"]


def test_update_too_far_behind_gets_full(make_app):
    c = make_app(max_delta_chain=2).test_client()
    assert upd(c, pack_version=2, state_hash=state(2))["status"] == "delta"
    ans = upd(c, pack_version=1, state_hash=state(1))
    assert ans["status"] == "full" and "behind" in ans["reason"]


def test_update_by_region_and_errors(client):
    assert client.post("/v1/update", json={"region": "CN", "pack_version": 4,
                                           "state_hash": state(4)}).get_json()["status"] == "up_to_date"
    r = client.post("/v1/update", json={"pack_version": 1})
    assert r.status_code == 422 and "pack" in str(r.get_json()["errors"])
    assert client.post("/v1/update", json={"pack": "XX", "pack_version": 1}).status_code == 404
    assert client.post("/v1/update", data="pack=1").status_code == 415
    r = client.post("/v1/update", json={"pack": "CN-full", "pack_version": -1, "state_hash": "zz"})
    assert set(r.get_json()["errors"]["json"]) == {"pack_version", "state_hash"}
