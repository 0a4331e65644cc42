"""Fixtures: a small fake exports tree of the documented shape, an app over temp dirs."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

ADMIN_KEY = "cmk_bootadmin_" + "s" * 32


def _artefact(root: Path, name: str, data: bytes) -> dict:
    sha = hashlib.sha256(data).hexdigest()
    rel = f"artefacts/{sha[:16]}-{name}"
    (root / rel).write_bytes(data)
    return {"path": rel, "length": len(data), "sha256": sha}


def state(v: int) -> str:
    return hashlib.sha256(f"state-{v}".encode()).hexdigest()


def make_exports(root: Path, version: int = 4, channel: str = "stable",
                 delta_from: tuple[int, ...] = (1, 2, 3), hints: dict | None = None) -> dict:
    """Write exports/ with one CN-full pack at `version` and a chain of deltas v->v+1."""
    (root / "artefacts").mkdir(parents=True, exist_ok=True)
    (root / "root").mkdir(exist_ok=True)
    (root / "channels" / channel).mkdir(parents=True, exist_ok=True)
    full = os.urandom(50_000)
    pack = {"name": "CN-full", "region": "CN", "tier": "full", "version": version,
            "entries": 1234, "state_hash": state(version),
            **_artefact(root, f"CN-full-v{version}.pack.zst", full)}
    deltas = []
    for v in delta_from:
        blob = os.urandom(1000)
        deltas.append({"name": "CN-full", "from_version": v, "to_version": v + 1,
                       "from_state_hash": state(v), "to_state_hash": state(v + 1),
                       **_artefact(root, f"CN-full-v{v}-v{v + 1}.delta.zst", blob)})
    signed = {"type": "manifest", "spec_version": "1.0", "version": version, "channel": channel,
              "expires": "2099-01-01T00:00:00Z", "min_client_format": 1, "packs": [pack],
              "deltas": deltas, "model": None, "hints": hints or {}}
    doc = {"signed": signed, "signatures": [{"keyid": "ab" * 32, "sig": "cd" * 64}]}
    raw = json.dumps(doc, indent=1).encode()
    (root / "channels" / channel / "manifest.json").write_bytes(raw)
    (root / "channels" / channel / f"{version}.manifest.json").write_bytes(raw)
    rootdoc = json.dumps({"signed": {"type": "root", "version": 2}, "signatures": []}).encode()
    (root / "root.json").write_bytes(rootdoc)
    (root / "root" / "1.root.json").write_bytes(b'{"signed": {"type": "root", "version": 1}}')
    (root / "root" / "2.root.json").write_bytes(rootdoc)
    with open(root / "history.jsonl", "a") as fh:
        fh.write(json.dumps({"action": "publish", "channel": channel, "version": version}) + "\n")
    return {"raw": raw, "pack": pack, "deltas": deltas, "full": full}


BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS, autouse=True)
def database_url(request, tmp_path, monkeypatch):
    """Every server test runs on both store backends. SQLite: the default file in
    <tmp>/var (CALLMARK_DATABASE_URL unset). PostgreSQL: a fresh database on the session's
    throw-away server, set as CALLMARK_DATABASE_URL so the app, the CLI and the module-level
    readers (iter_tag_events(data_dir), ...) all use it, as a deployment would."""
    if request.param == "sqlite":
        monkeypatch.delenv("CALLMARK_DATABASE_URL", raising=False)
        return str(tmp_path / "var" / "callmark.sqlite")
    url = request.getfixturevalue("pg_database")
    monkeypatch.setenv("CALLMARK_DATABASE_URL", url)
    return url


@pytest.fixture
def exports(tmp_path):
    root = tmp_path / "exports"
    info = make_exports(root)
    info["root"] = root
    return info


@pytest.fixture
def make_app(tmp_path, exports):
    from server import create_app

    def _make(**overrides):
        cfg = {"data_dir": str(tmp_path / "var"), "exports_dir": str(exports["root"]),
               "admin_key": ADMIN_KEY, "device_secret": "test-secret", **overrides}
        return create_app(cfg)
    return _make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def admin():
    return {"X-API-Key": ADMIN_KEY}


def register(client, device_id: str = "device-0001", ip: str = "127.0.0.1") -> dict:
    r = client.post("/v1/devices", json={"device_id": device_id, "platform": "android"},
                    environ_base={"REMOTE_ADDR": ip})
    assert r.status_code == 201, r.get_json()
    return {"Authorization": "Bearer " + r.get_json()["token"]}


@pytest.fixture
def device(client):
    return register(client)


def event(i: int, number: str | None = None, **kw) -> dict:
    return {"event_id": f"ev-{i}", "number": number or f"1381234{i:04d}", "category": "fraud",
            "ts": "2025-11-01T10:00:00Z", **kw}
