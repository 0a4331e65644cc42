"""The server over a real signed release (publisher/ writes exports/; the server only
reads files): served manifest verifies from the root, update answers match the manifest."""
import hashlib
import json

import pytest

from server import create_app


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    pytest.importorskip("publisher")
    from tests.tools.handset_helpers import Publisher
    root = tmp_path_factory.mktemp("release")
    pub = Publisher(root)
    for v in (1, 2, 3):
        pub.publish(v)
    return pub


def test_real_release_served_and_verifiable(published, tmp_path):
    from callmark.manifest import Root, verify_envelope
    app = create_app({"data_dir": str(tmp_path / "var"), "exports_dir": str(published.exports)})
    c = app.test_client()
    r = c.get("/v1/manifest?channel=stable&region=CN")
    assert r.status_code == 200
    assert r.data == (published.exports / "channels/stable/manifest.json").read_bytes()
    env = json.loads(r.data)
    root_env = c.get("/v1/root/1.root.json").get_json()
    verify_envelope(env, Root.from_dict(root_env["signed"]), "manifest")   # raises if tampered
    signed = env["signed"]
    pack = signed["packs"][0]
    assert int(r.headers["X-Callmark-Min-Wait"]) >= signed["hints"].get("min_poll_seconds", 0)

    blob = c.get("/v1/" + pack["path"]).data
    assert len(blob) == pack["length"] and hashlib.sha256(blob).hexdigest() == pack["sha256"]

    up = c.post("/v1/update", json={"pack": pack["name"], "pack_version": pack["version"],
                                    "state_hash": pack["state_hash"]}).get_json()
    assert up["status"] == "up_to_date"
    old = [d for d in signed["deltas"] if d["name"] == pack["name"] and d["from_version"] == 1][0]
    up = c.post("/v1/update", json={"pack": pack["name"], "pack_version": 1,
                                    "state_hash": old["from_state_hash"]}).get_json()
    assert up["status"] == "delta" and len(up["deltas"]) == 1
    d = up["deltas"][0]
    assert (d["path"], d["sha256"], d["to_state_hash"]) == (old["path"], old["sha256"],
                                                            pack["state_hash"])
    assert hashlib.sha256(c.get(d["url"]).data).hexdigest() == d["sha256"]
    up = c.post("/v1/update", json={"pack": pack["name"], "pack_version": 1,
                                    "state_hash": "00" * 32}).get_json()
    assert up["status"] == "full" and up["full"]["sha256"] == pack["sha256"]
