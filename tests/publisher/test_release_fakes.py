"""Small fake pack / delta / model directories of the shapes pinned in docs/interfaces.md.

Release code treats artefacts as opaque files (length + SHA-256), so random bytes suffice.
No tests here; helpers only.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def _write(path: Path, data: bytes) -> tuple[int, str]:
    path.write_bytes(data)
    return len(data), hashlib.sha256(data).hexdigest()


def fake_pack_dir(root: Path, version: int, names=("CN-full",), tag: str = "") -> Path:
    """A pack dir with index.json; state hashes depend on version/tag so releases differ."""
    d = Path(root) / f"packs-v{version}{tag}"
    d.mkdir(parents=True)
    packs = []
    for name in names:
        wire = f"{name}-v{version}.pack.zst"
        n, sha = _write(d / wire, os.urandom(2000 + version))
        (d / f"{name}.sqlite").write_bytes(os.urandom(500))
        packs.append({"name": name, "region": "CN", "tier": name.split("-")[-1], "sqlite": f"{name}.sqlite",
                      "sqlite_bytes": 500, "wire": wire, "wire_bytes": n, "wire_sha256": sha,
                      "entries": 100 + version,
                      "state_hash": hashlib.sha256(f"{name}:{version}{tag}".encode()).hexdigest()})
    (d / "index.json").write_text(json.dumps({"format": 1, "version": version,
                                              "built_at": "2025-01-01T00:00:00Z", "packs": packs}))
    return d


def fake_delta_dir(root: Path, from_pack: Path, to_pack: Path) -> Path:
    """A delta dir between two fake pack dirs (state hashes copied from their index.json)."""
    a = json.loads((from_pack / "index.json").read_text())
    b = json.loads((to_pack / "index.json").read_text())
    d = Path(root) / f"delta-{a['version']}-{b['version']}-{to_pack.name}"
    d.mkdir(parents=True)
    deltas = []
    for pa, pb in zip(a["packs"], b["packs"]):
        f = f"{pa['name']}-{a['version']}-{b['version']}.delta.zst"
        n, sha = _write(d / f, os.urandom(300))
        deltas.append({"name": pa["name"], "file": f, "bytes": n, "sha256": sha, "upserts": 3, "removals": 1,
                       "from_state_hash": pa["state_hash"], "to_state_hash": pb["state_hash"]})
    (d / "index.json").write_text(json.dumps({"format": 1, "from_version": a["version"],
                                              "to_version": b["version"], "deltas": deltas}))
    return d


def fake_model_dir(root: Path, tag: str) -> Path:
    """A model dir: model.tflite (random bytes), contract, test vectors, metrics, report."""
    d = Path(root) / f"model-{tag}"
    d.mkdir(parents=True)
    (d / "model.tflite").write_bytes(os.urandom(4000))
    (d / "contract.json").write_text(json.dumps({"inputs": [{"name": "digits", "dtype": "int8", "shape": [1, 16],
                                                            "unit": "digit"}], "outputs": ["risk"],
                                                 "classes": [0, 1, 2], "tag": tag}))
    (d / "test_vectors.json").write_text(json.dumps([{"inputs": {"digits": "13800000000"},
                                                      "expected": {"risk": 0.125}}]))
    (d / "metrics.json").write_text(json.dumps({"auc": 0.9}))
    (d / "report.md").write_text(f"# model {tag}\n")
    return d


class World:
    """A keys dir (2-of-3 roots) and an exports dir with beta v1 and v2 published."""

    def __init__(self, tmp: Path, channel: str = "beta"):
        import publisher as R
        self.tmp, self.keys, self.ex, self.channel = Path(tmp), Path(tmp) / "keys", Path(tmp) / "exports", channel
        R.init_keys(self.keys, threshold=2, roots=3)
        self.p1 = fake_pack_dir(self.tmp, 1)
        self.ma = fake_model_dir(self.tmp, "a")
        self.m1 = R.publish_release(self.ex, self.p1, [], self.ma, channel, self.keys)
        self.p2 = fake_pack_dir(self.tmp, 2)
        self.d12 = fake_delta_dir(self.tmp, self.p1, self.p2)
        self.mb = fake_model_dir(self.tmp, "b")
        self.m2 = R.publish_release(self.ex, self.p2, [self.d12], self.mb, channel, self.keys)

    def client(self, state_dir: Path | None = None, now=None, channel: str | None = None):
        """A fresh client trusting root v1 (as shipped in the app)."""
        from callmark.manifest import utcnow
        from callmark.updater import DirFetcher, TrustedState, Updater
        st = TrustedState.bootstrap(self.ex / "root" / "1.root.json", state_dir)
        return Updater(st, DirFetcher(self.ex), channel or self.channel, now=now or utcnow)

    def manifest_env(self, channel: str | None = None, version: int | None = None) -> dict:
        d = self.ex / "channels" / (channel or self.channel)
        return json.loads((d / (f"{version}.manifest.json" if version else "manifest.json")).read_text())

    def serve(self, env: dict, channel: str | None = None) -> None:
        """Make the 'server' hand out ``env`` as the channel's current manifest."""
        (self.ex / "channels" / (channel or self.channel) / "manifest.json").write_text(json.dumps(env))
