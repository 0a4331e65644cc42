"""A small real world for the console tests: signed releases on two channels (one with a model and
its report), a store with tags, a published label, an appeal and a verified business, and API keys
of every scope. Hostile strings sit in every user-supplied field."""
from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import zlib
from pathlib import Path

ADMIN_KEY = "cmk_consoleadmin_" + "a" * 32
READ_KEY = "cmk_consoleread_" + "r" * 32
PUBLISH_KEY = "cmk_consolepub_" + "p" * 32
APPEALS_KEY = "cmk_consoleappeals_" + "q" * 32
XSS = ('<script>alert("xss")</script>', '"><img src=x onerror=alert(1)>')
NUMBER = "+8613800138000"           # the fraud number of tests/tools/handset_helpers.table
NUMBER_SPELLED = "138 0013 8000"    # the same number as a person types it


def png(w: int = 8, h: int = 6) -> bytes:
    """A real (tiny, grey) PNG image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\x80" * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def model_dir(root: Path, auc: float, accepted: bool = True) -> Path:
    """A model directory of the published shape (the .tflite bytes are not run by the console)."""
    d = root / f"model-{auc}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.tflite").write_bytes(os.urandom(2000))
    (d / "contract.json").write_text(json.dumps({"inputs": [], "classes": [1, 2]}))
    (d / "test_vectors.json").write_text("[]")
    pub = {"risk_auc": round(auc - 0.01, 4), "recall_not_in_pack": 0.40}
    (d / "metrics.json").write_text(json.dumps({       # the layout trainer/evaluate.py writes
        "evaluation": {"risk_auc": auc, "recall_not_in_pack": 0.42, "top1_accuracy": 0.8, "events": 1234},
        "evaluation_published": pub,
        "gate": {"accepted": accepted, "reasons": [] if accepted else ["risk_auc_callers regressed"], "margin": 0.02,
                 "compared": {"risk_auc_callers": {"candidate": auc, "published": pub["risk_auc"],
                                                   "difference": 0.01, "low": -0.004, "high": 0.023}}}}))
    plot = png(320, 180)
    plot_name = f"{hashlib.sha256(plot).hexdigest()[:16]}-roc.png"   # content-addressed, as the report names it
    (d / "report.md").write_text(f"# Model report\n\nrisk AUC {auc}\n\n{XSS[0]} {XSS[1]}\n\n![roc]({plot_name})\n")
    (d / "report.html").write_text(f"<!doctype html><title>report</title><img src='{plot_name}' alt='roc'>")
    (d / plot_name).write_bytes(plot)
    return d


def build_world(root: Path) -> dict:
    """Publish stable v1, v2 (with a model) and beta v1 (a better model); fill the store."""
    from publisher import publish_release
    from server.store import Store
    from tests.tools.handset_helpers import Publisher, table
    root = Path(root)
    pub = Publisher(root)
    pub.publish(1)
    pub.publish(2, model_dir=model_dir(root, 0.91))
    from trainer.packs import PackConfig, build_packs
    bdir = root / "packs-beta"
    build_packs(table(3), 3, str(bdir), PackConfig(lite=False, provinces=False))
    publish_release(pub.exports, bdir, [], model_dir(root, 0.93), "beta", pub.keys, note=XSS[0])

    data = root / "var"
    data.mkdir(exist_ok=True)
    store = Store(data / "callmark.sqlite")
    store.migrate()
    keys = {}
    for key, scopes in ((ADMIN_KEY, ["admin"]), (READ_KEY, ["read"]), (PUBLISH_KEY, ["publish"]),
                        (APPEALS_KEY, ["appeals"])):
        store.create_api_key(scopes, f"{scopes[0]} key {XSS[1]}", secret=key)
        keys[scopes[0]] = key
    events = []
    for i in range(12):
        events.append({"event_id": f"e{i}", "number_raw": NUMBER_SPELLED, "number_key": 8613800138000,
                       "e164": NUMBER, "irregular": None, "category": "fraud" if i % 3 else "telemarketing",
                       "ts": f"2026-02-{10 + i // 3:02d}T08:00:00Z", "company": XSS[1], "note": XSS[0],
                       "ring_s": 3.0, "talk_s": 0.0, "answered": 0, "direction": "in"})
    for r in range(3):
        dev = store.register_device(f"dev{r}", f"tok{r}", "android")
        store.insert_tags(dev, events[r::3], daily_cap=50)
    from callmark.numbers import lookup_hash
    store.replace_labels([{"hash": lookup_hash(NUMBER), "number": NUMBER, "category": "fraud", "code": 1,
                           "confidence": 0.97, "reporters": 40, "flags": 8, "last_ts": 1771000000,
                           "company": XSS[1]}], "2", "test")
    appeal = store.create_appeal(NUMBER, 8613800138000, "owner@example.com", f"we are a shop {XSS[0]} {XSS[1]}",
                                 ["fraud"])
    store.upsert_verified("+8695588", 8695588, f"Bank {XSS[1]}", "test")
    store.close()
    return {"root": root, "exports": pub.exports, "keys_dir": pub.keys, "data": data, "keys": keys,
            "appeal": appeal, "publisher": pub}


def config(world: dict, **overrides) -> dict:
    return {"data_dir": str(world["data"]), "exports_dir": str(world["exports"]),
            "keys_dir": str(world["keys_dir"]), "device_secret": "test-secret", **overrides}


def csrf_token(html: str) -> str:
    m = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def login(client, key: str):
    """Log the test client in with `key`; returns the response of the login POST."""
    token = csrf_token(client.get("/console/login").get_data(as_text=True))
    return client.post("/console/login", data={"api_key": key, "csrf_token": token})
