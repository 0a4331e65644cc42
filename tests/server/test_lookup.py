"""k-anonymous lookup over a LABELS.csv uploaded by the admin publish step."""
import hashlib

from callmark.numbers import lookup_hash
from server.api.lookup import max_prefix

HEADER = "number,category,confidence,reporters,published,key,flags,last_ts,company\n"


def labels_csv(n: int) -> str:
    rows = [f"+86138{i:08d},{'fraud' if i % 3 else 'delivery'},0.9,{10 + i % 5},1,,0,1730000000,"
            for i in range(n)]
    rows.append("+8613999999999,fraud,0.2,2,0,,0,,")            # unpublished: never served
    return HEADER + "\n".join(rows) + "\n"


def upload(client, admin, text, version="v7"):
    return client.post(f"/v1/admin/labels?version={version}", data=text.encode(),
                       headers={**admin, "Content-Type": "text/csv"})


def test_max_prefix_keeps_buckets_at_least_k():
    assert max_prefix(0, 20, 1, 8) == 1
    assert max_prefix(20 * 16 ** 3, 20, 1, 8) == 3
    assert max_prefix(20 * 16 ** 3 - 1, 20, 1, 8) == 2
    assert max_prefix(10 ** 12, 20, 1, 8) == 8


def test_upload_then_lookup_bucket(client, admin):
    r = upload(client, admin, labels_csv(2000))
    assert r.status_code == 200 and r.get_json() == {"version": "v7", "entries": 2000}
    info = client.get("/v1/lookup").get_json()
    assert info["entries"] == 2000 and info["max_prefix"] == 1       # 2000/16^2 < k=20
    target = "+8613800000043"
    h = hashlib.sha256(target.encode()).hexdigest()
    assert h == lookup_hash(target)
    ans = client.get(f"/v1/lookup/{h[:1].upper()}")
    assert ans.status_code == 200
    body = ans.get_json()
    assert body["version"] == "v7" and len(body["labels"]) >= 20
    assert all(lab["hash"].startswith(h[0]) for lab in body["labels"])
    mine = [lab for lab in body["labels"] if lab["hash"] == h]
    assert len(mine) == 1 and mine[0]["category"] == "fraud" and mine[0]["code"] == 1
    unpublished = lookup_hash("+8613999999999")
    assert all(lab["hash"] != unpublished for lab in client.get(
        f"/v1/lookup/{unpublished[0]}").get_json()["labels"])


def test_too_long_or_bad_prefix_refused(client, admin):
    upload(client, admin, labels_csv(400))
    r = client.get("/v1/lookup/ab")
    assert r.status_code == 422 and "at least 20" in r.get_json()["message"]
    assert client.get("/v1/lookup/zz").status_code == 422
    assert client.get("/v1/lookup/a").status_code == 200


def test_bad_csv_changes_nothing(client, admin):
    upload(client, admin, labels_csv(50))
    bad = HEADER + "+8613800000001,notacat,0.9,3,1,,0,,\nnot-a-number,fraud,0.5,3,1,,0,,\n"
    r = upload(client, admin, bad, "v8")
    assert r.status_code == 422
    assert set(r.get_json()["errors"]["csv"]) == {"line 2", "line 3"}
    assert client.get("/v1/lookup").get_json()["version"] == "v7"
    r = upload(client, admin, "a,b\n1,2\n")
    assert r.status_code == 422 and "columns" in r.get_json()["message"]
    r = client.post("/v1/admin/labels", data=b"x", headers={**admin, "Content-Type": "text/plain"})
    assert r.status_code == 415


def test_labels_need_publish_scope(client, admin):
    key = client.post("/v1/admin/keys", json={"scopes": ["appeals"]}, headers=admin).get_json()
    r = upload(client, {"X-API-Key": key["key"]}, labels_csv(5))
    assert r.status_code == 403
    assert upload(client, {}, labels_csv(5)).status_code == 401


def test_admin_labels_refuse_fragments(client, admin):
    text = labels_csv(30) + "+1833,fraud,0.9,21,1,,0,1730000000,\n"
    r = upload(client, admin, text, version="v8")
    assert r.status_code == 422 and "not a dialable number" in str(r.get_json())
    assert client.get("/v1/lookup").get_json()["version"] != "v8"  # nothing was changed
