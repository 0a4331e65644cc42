"""Signed releases: keys, publish, staged rollout, promote, rollback, history and retention.

Layout written under ``exports/`` is pinned in docs/interfaces.md ("Exports"). The keys directory
(default ``./var/keys``) holds demo keys only: in production the ``root-*.pem`` files live on an
offline machine, ``callmark keys rotate`` runs there, and only ``root/<v>.root.json`` and the online
key travel to the publishing host (see docs/security.md).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable, Iterator

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from callmark.manifest import (
    CLIENT_FORMAT, ArtefactEntry, DeltaEntry, Manifest, ModelEntry, PackEntry, Role, Root, canonical_json,
    format_time, keyid_of, public_key_dict, sign_envelope, utcnow, verify_envelope, verify_file,
)
from callmark.manifest_errors import KeyStoreError, ManifestError, ReleaseError

MANIFEST_EXPIRES_DAYS = 7      # days a manifest stays valid (re-sign with `callmark resign` before)
ROOT_EXPIRES_DAYS = 365        # days a root stays valid (renew with `callmark keys rotate --no-online`)
DEFAULT_HINTS = {"min_poll_seconds": 3600, "full_resync_after_deltas": 40}
KEYS_README = """DEMO KEYS - NOT FOR PRODUCTION
root-*.pem are the offline root keys (m-of-n). In production they never touch a networked machine:
generate and rotate them on an offline host, copy only root/<version>.root.json and online-*.pem to
the publishing host. online-*.pem signs channel manifests (short expiry).
"""


# ---------------------------------------------------------------- small helpers
def _sha256_file(path: Path) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def _atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode if mode is not None else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _dump(env: dict) -> bytes:
    return (json.dumps(env, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ReleaseError(f"{what}: {path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReleaseError(f"{what}: {path} is not valid JSON ({e})") from None


@contextlib.contextmanager
def _locked(exports: Path) -> Iterator[None]:
    """One writer at a time per exports dir."""
    exports.mkdir(parents=True, exist_ok=True)
    with open(exports / ".release.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


# ---------------------------------------------------------------- keys
class KeyStore:
    """A keys directory: private keys (*.pem, 0600), and the signed root chain root/<v>.root.json."""

    def __init__(self, keys_dir: str | os.PathLike):
        self.dir = Path(keys_dir)

    def root_versions(self) -> list[int]:
        """Root versions present, ascending."""
        return sorted(int(p.name.split(".")[0]) for p in (self.dir / "root").glob("*.root.json")
                      if p.name.split(".")[0].isdigit())

    def root_env(self, version: int | None = None) -> dict:
        """The signed root metadata (latest by default)."""
        vs = self.root_versions()
        if not vs:
            raise KeyStoreError(f"{self.dir}: no root metadata; run `callmark keys init --dir {self.dir}`")
        return _read_json(self.dir / "root" / f"{version or vs[-1]}.root.json", "root metadata")

    def root(self) -> Root:
        """The latest root, parsed."""
        return Root.from_dict(self.root_env()["signed"])

    def private_keys(self) -> dict[str, Ed25519PrivateKey]:
        """Every private key in the directory (not retired), by keyid."""
        out = {}
        for p in sorted(self.dir.glob("*.pem")):
            try:
                k = serialization.load_pem_private_key(p.read_bytes(), password=None)
            except (ValueError, TypeError) as e:
                raise KeyStoreError(f"{p}: not an unencrypted PEM private key ({e})") from None
            if not isinstance(k, Ed25519PrivateKey):
                raise KeyStoreError(f"{p}: not an Ed25519 key")
            out[keyid_of(k)] = k
        return out

    def role_keys(self, role: str, root: Root | None = None) -> list[Ed25519PrivateKey]:
        """Private keys present for ``role`` of ``root`` (latest by default)."""
        root = root or self.root()
        have = self.private_keys()
        return [have[k] for k in root.roles[role].keyids if k in have]

    def online_key(self) -> Ed25519PrivateKey:
        """The online key that signs manifests."""
        keys = self.role_keys("manifest")
        if not keys:
            raise KeyStoreError(f"{self.dir}: the online (manifest) private key named by the latest root "
                                "is missing; copy online-*.pem here or `callmark keys rotate`")
        return keys[0]

    def write_key(self, role: str, key: Ed25519PrivateKey) -> Path:
        """Store a private key as <role>-<keyid16>.pem with mode 0600."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        p = self.dir / f"{role}-{keyid_of(key)[:16]}.pem"
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        _atomic_write(p, pem, 0o600)
        os.chmod(p, 0o600)
        return p

    def retire(self, keyids: Iterable[str]) -> None:
        """Move private keys out of use (into retired/)."""
        (self.dir / "retired").mkdir(exist_ok=True, mode=0o700)
        for p in self.dir.glob("*.pem"):
            k = serialization.load_pem_private_key(p.read_bytes(), password=None)
            if keyid_of(k) in set(keyids):
                os.replace(p, self.dir / "retired" / p.name)


def _make_root(version: int, root_keys: list, threshold: int, online: Ed25519PrivateKey,
               expires: datetime) -> Root:
    keys = {keyid_of(k): public_key_dict(k) for k in [*root_keys, online]}
    return Root(version, expires, keys, {
        "root": Role(tuple(sorted(keyid_of(k) for k in root_keys)), threshold),
        "manifest": Role((keyid_of(online),), 1)})


def init_keys(keys_dir: str | os.PathLike, threshold: int = 2, roots: int = 3,
              expires_days: int = ROOT_EXPIRES_DAYS, force: bool = False, now: datetime | None = None) -> Root:
    """Create ``roots`` root keys (``threshold`` must sign), one online key, and root v1."""
    if not 1 <= threshold <= roots:
        raise KeyStoreError(f"threshold {threshold} must be within 1..roots ({roots})")
    store = KeyStore(keys_dir)
    if store.root_versions() and not force:
        raise KeyStoreError(f"{store.dir} already holds keys; use `callmark keys rotate` (or --force to replace)")
    if force:   # remove only what init writes, never a whole directory passed by mistake
        for p in [*store.dir.glob("*.pem"), *store.dir.glob("retired/*.pem"), *store.dir.glob("root/*.root.json")]:
            p.unlink()
    rkeys = [Ed25519PrivateKey.generate() for _ in range(roots)]
    online = Ed25519PrivateKey.generate()
    for k in rkeys:
        store.write_key("root", k)
    store.write_key("online", online)
    (store.dir / "README.txt").write_text(KEYS_README)
    expires = (now or utcnow()).replace(microsecond=0) + timedelta(days=expires_days)
    root = _make_root(1, rkeys, threshold, online, expires)
    _atomic_write(store.dir / "root" / "1.root.json", _dump(sign_envelope(root.to_dict(), rkeys)))
    return root


def rotate_keys(keys_dir: str | os.PathLike, online: bool = True, root: bool = False,
                threshold: int | None = None, roots: int | None = None,
                expires_days: int = ROOT_EXPIRES_DAYS, now: datetime | None = None) -> Root:
    """Write root v+1: new online key and/or new root keys, signed by the old and the new root keys.

    With neither ``online`` nor ``root`` it only renews the root's expiry. Clients follow the
    chain root/<v>.root.json, so no app reinstall is needed.
    """
    store = KeyStore(keys_dir)
    old = store.root()
    old_keys = store.role_keys("root", old)
    if len(old_keys) < old.roles["root"].threshold:
        raise KeyStoreError(f"{store.dir}: only {len(old_keys)} of the {old.roles['root'].threshold} root "
                            "private keys needed to sign a new root are here")
    new_roots, retired = old_keys, []
    if root:
        new_roots = [Ed25519PrivateKey.generate() for _ in range(roots or len(old.roles["root"].keyids))]
        for k in new_roots:
            store.write_key("root", k)
        retired += [keyid_of(k) for k in old_keys]
    thr = threshold or min(old.roles["root"].threshold, len(new_roots))
    if not 1 <= thr <= len(new_roots):
        raise KeyStoreError(f"threshold {thr} must be within 1..{len(new_roots)}")
    on = store.online_key()
    if online:
        retired.append(keyid_of(on))
        on = Ed25519PrivateKey.generate()
        store.write_key("online", on)
    new = _make_root(old.version + 1, new_roots, thr, on,
                     (now or utcnow()).replace(microsecond=0) + timedelta(days=expires_days))
    env = sign_envelope(new.to_dict(), [*old_keys, *new_roots])
    verify_envelope(env, old, "root", "new root")   # sanity: the chain step a client will check
    verify_envelope(env, new, "root", "new root")
    _atomic_write(store.dir / "root" / f"{new.version}.root.json", _dump(env))
    store.retire(retired)
    return new


# ---------------------------------------------------------------- exports state
def _artefact_name(sha: str, name: str) -> str:
    return f"artefacts/{sha[:16]}-{re.sub(r'[^A-Za-z0-9._-]', '_', Path(name).name)}"


def _store_artefact(exports: Path, src: Path, name: str, what: str) -> ArtefactEntry:
    """Copy ``src`` to its content-addressed path (idempotent) and describe it."""
    if not src.is_file():
        raise ReleaseError(f"{what}: file {src} not found")
    sha, length = _sha256_file(src)
    rel = _artefact_name(sha, name)
    dst = exports / rel
    if dst.exists():
        if _sha256_file(dst) != (sha, length):
            raise ReleaseError(f"{rel} exists with different content: exports/ was tampered with; "
                               "run `callmark verify` and remove the file")
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    return ArtefactEntry(rel, length, sha, Path(name).name)


def channel_versions(exports: str | os.PathLike, channel: str) -> list[int]:
    """Manifest versions published in a channel, ascending."""
    d = Path(exports) / "channels" / channel
    return sorted(int(m.group(1)) for p in d.glob("*.manifest.json")
                  if (m := re.match(r"^(\d+)\.manifest\.json$", p.name)))


def load_manifest(exports: str | os.PathLike, channel: str, version: int | None = None) -> Manifest | None:
    """A channel's manifest (current by default; None if the channel is empty). Not verified."""
    d = Path(exports) / "channels" / channel
    p = d / (f"{version}.manifest.json" if version else "manifest.json")
    if not p.is_file():
        if version:
            have = channel_versions(exports, channel)
            raise ReleaseError(f"channel {channel} has no version {version} (have {have})")
        return None
    try:
        return Manifest.from_dict(_read_json(p, f"{channel} manifest")["signed"])
    except (ManifestError, KeyError, TypeError) as e:
        raise ReleaseError(f"{p}: unreadable manifest ({e})") from None


def channels(exports: str | os.PathLike) -> list[str]:
    """Channels that have a current manifest."""
    d = Path(exports) / "channels"
    return sorted(p.parent.name for p in d.glob("*/manifest.json")) if d.is_dir() else []


def _append_history(exports: Path, rec: dict) -> None:
    with open(exports / "history.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(rec, sort_keys=True, ensure_ascii=False) + "\n")


def history(exports: str | os.PathLike, channel: str | None = None) -> list[dict]:
    """Every publish / promote / rollback / rollout / resign / gc record, oldest first."""
    p = Path(exports) / "history.jsonl"
    if not p.is_file():
        return []
    out = []
    for n, line in enumerate(p.read_text("utf-8").splitlines(), 1):
        if line.strip():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise ReleaseError(f"{p} line {n} is not JSON; fix or delete that line") from None
            if channel is None or rec.get("channel") == channel:
                out.append(rec)
    return out


def _sync_root(exports: Path, store: KeyStore, now: datetime, skip: str | None = None) -> None:
    """Copy the root chain into exports/; re-sign channels still signed by a retired online key."""
    latest = store.root_env()
    published = [int(p.name.split(".")[0]) for p in (exports / "root").glob("*.root.json")
                 if p.name.split(".")[0].isdigit()]
    if published and max(published) > store.root_versions()[-1]:
        raise ReleaseError(f"{exports}/root has version {max(published)} but {store.dir} only "
                           f"{store.root_versions()[-1]}: publish with the current keys directory")
    for v in store.root_versions():
        src = store.dir / "root" / f"{v}.root.json"
        dst = exports / "root" / f"{v}.root.json"
        if dst.exists():
            if canonical_json(json.loads(dst.read_bytes())) != canonical_json(json.loads(src.read_bytes())):
                raise ReleaseError(f"{dst} differs from {src}: this exports dir was signed with other keys")
        else:
            _atomic_write(dst, src.read_bytes())
    _atomic_write(exports / "root.json", _dump(latest))
    online = keyid_of(store.online_key())
    for ch in channels(exports):
        if ch == skip:
            continue
        env = _read_json(exports / "channels" / ch / "manifest.json", f"{ch} manifest")
        if online not in {s.get("keyid") for s in env.get("signatures", [])}:
            _resign_one(exports, store, ch, now, MANIFEST_EXPIRES_DAYS, "online key rotated")


def _write_manifest(exports: Path, store: KeyStore, m: Manifest, rec: dict) -> Manifest:
    signed = m.to_dict()
    m = Manifest.from_dict(signed)
    m.check_consistency(signed)
    env = sign_envelope(signed, [store.online_key()])
    d = exports / "channels" / m.channel
    _atomic_write(d / f"{m.version}.manifest.json", _dump(env))
    _atomic_write(d / "manifest.json", _dump(env))
    _append_history(exports, {"ts": m.created, "channel": m.channel, "version": m.version,
                              "release": m.release, "snapshot": m.snapshot,
                              "packs": {p.name: p.version for p in m.packs},
                              "model": m.model.sha256[:16] if m.model else None,
                              "rollout_percent": m.model.rollout_percent if m.model else None, **rec})
    return m


def _next_version(exports: Path, channel: str, version: int | None) -> int:
    have = channel_versions(exports, channel)
    top = have[-1] if have else 0
    if version is None:
        return top + 1
    if version <= top:
        raise ReleaseError(f"version {version} is not above {channel}'s current version {top}: "
                           "versions only go up (omit --version to take the next)")
    return version


def _new_manifest(exports: Path, channel: str, base: Manifest | None, now: datetime, expires_days: float,
                  version: int | None = None, **changes) -> Manifest:
    v = _next_version(exports, channel, version)
    fields = dict(packs=(), deltas=(), model=None, hints=dict(DEFAULT_HINTS), min_client_format=CLIENT_FORMAT)
    if base is not None:
        fields.update(packs=base.packs, deltas=base.deltas, model=base.model, hints=base.hints,
                      min_client_format=base.min_client_format)
    fields.update(changes)
    return Manifest(version=v, channel=channel, expires=now + timedelta(days=expires_days),
                    created=format_time(now), release=f"{channel}-{v}", snapshot="", **fields)


def _with_rollout(new: ModelEntry | None, prev: ModelEntry | None, percent: float | None) -> ModelEntry | None:
    """Rollout fields for ``new`` replacing ``prev``: same model keeps its rollout unless told."""
    if new is None:
        return None
    if not 0 <= (percent if percent is not None else 100) <= 100:
        raise ReleaseError(f"rollout percent {percent} must be within 0..100")
    if prev is not None and prev.sha256 == new.sha256:
        return replace(new, rollout_percent=prev.rollout_percent if percent is None else percent,
                       rollout_salt=prev.rollout_salt or prev.sha256, fallback=prev.fallback)
    fb = replace(prev, fallback=None) if prev is not None else None
    return replace(new, rollout_percent=100 if percent is None else percent, rollout_salt=new.sha256, fallback=fb)


# ---------------------------------------------------------------- inputs
def _pack_entries(exports: Path, pack_dir: Path) -> list[PackEntry]:
    idx = _read_json(pack_dir / "index.json", "pack index")
    if idx.get("format") != 1 or not isinstance(idx.get("packs"), list):
        raise ReleaseError(f"{pack_dir}/index.json: expected format 1 with a 'packs' list")
    out = []
    for p in idx["packs"]:
        try:
            name, wire = p["name"], p["wire"]
            a = _store_artefact(exports, pack_dir / wire, wire, f"pack {name}")
            if (a.sha256, a.length) != (p["wire_sha256"], p["wire_bytes"]):
                raise ReleaseError(f"pack {name}: {wire} has {a.length} bytes sha {a.sha256[:12]}…, index.json "
                                   f"says {p['wire_bytes']} bytes sha {p['wire_sha256'][:12]}…; "
                                   "rebuild the pack")
            out.append(PackEntry(a.path, a.length, a.sha256, name, p["region"], p["tier"], int(idx["version"]),
                                 int(p["entries"]), p["state_hash"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ReleaseError(f"{pack_dir}/index.json: pack entry lacks or mistypes {e}") from None
    return out


def _delta_entries(exports: Path, delta_dirs: Iterable, packs: list[PackEntry]) -> list[DeltaEntry]:
    by_name = {p.name: p for p in packs}
    out = []
    for dd in map(Path, delta_dirs or ()):
        idx = _read_json(dd / "index.json", "delta index")
        try:
            for x in idx["deltas"]:
                a = _store_artefact(exports, dd / x["file"], x["file"], f"delta {x['name']}")
                if (a.sha256, a.length) != (x["sha256"], x["bytes"]):
                    raise ReleaseError(f"delta {x['name']} in {dd}: file does not match index.json (bytes/sha256)")
                e = DeltaEntry(a.path, a.length, a.sha256, x["name"], int(idx["from_version"]),
                               int(idx["to_version"]), x["from_state_hash"], x["to_state_hash"])
                p = by_name.get(e.name)
                if p is None or (p.version, p.state_hash) != (e.to_version, e.to_state_hash):
                    have = f"v{p.version} {p.state_hash[:12]}…" if p else "missing"
                    raise ReleaseError(f"delta {e.name} in {dd} ends at v{e.to_version} state "
                                       f"{e.to_state_hash[:12]}… but this release's pack is {have}: "
                                       "deltas must be built against the pack being published")
                out.append(e)
        except (KeyError, TypeError, ValueError) as e:
            raise ReleaseError(f"{dd}/index.json: delta entry lacks or mistypes {e}") from None
    return out


def _model_entry(exports: Path, model_dir: Path) -> ModelEntry:
    for need in ("model.tflite", "contract.json", "test_vectors.json"):
        if not (model_dir / need).is_file():
            raise ReleaseError(f"model dir {model_dir} lacks {need}")
    contract = _read_json(model_dir / "contract.json", "model contract")
    vectors = _read_json(model_dir / "test_vectors.json", "model test vectors")
    if not isinstance(contract, dict):
        raise ReleaseError(f"{model_dir}/contract.json must be a JSON object")
    main = _store_artefact(exports, model_dir / "model.tflite", "model.tflite", "model")
    files = tuple(_store_artefact(exports, p, p.name, "model file") for p in sorted(model_dir.iterdir())
                  if p.is_file() and p.name != "model.tflite" and not p.name.startswith("."))
    return ModelEntry(main.path, main.length, main.sha256, "model.tflite", contract, vectors, 100, main.sha256,
                      files)


# ---------------------------------------------------------------- operations
def publish_release(exports_dir, pack_dir, delta_dirs, model_dir, channel: str, keys_dir,
                    version: int | None = None, expires_days: float = MANIFEST_EXPIRES_DAYS,
                    rollout_percent: float | None = None, now: datetime | None = None,
                    hints: dict | None = None, note: str = "") -> Manifest:
    """Publish packs (+ deltas, + model) to ``channel`` as a new signed manifest version.

    ``model_dir=None`` keeps the channel's current model, ``pack_dir=None`` its packs. A new model goes to ``rollout_percent``
    (default 100) of devices, the rest keep the previous model; the same model keeps its rollout.
    """
    exports, store, now = Path(exports_dir), KeyStore(keys_dir), (now or utcnow()).replace(microsecond=0)
    with _locked(exports):
        _sync_root(exports, store, now, skip=channel)
        prev = _verified(exports, store, channel) if load_manifest(exports, channel) else None
        if pack_dir is not None:
            packs = _pack_entries(exports, Path(pack_dir))
            deltas = _delta_entries(exports, delta_dirs, packs)
        elif prev is not None and not delta_dirs:
            packs, deltas = list(prev.packs), list(prev.deltas)
        else:
            raise ReleaseError(f"channel {channel} has no packs yet (or deltas were given without packs): "
                               "pass the pack directory")
        if model_dir is not None:
            model = _with_rollout(_model_entry(exports, Path(model_dir)), prev and prev.model, rollout_percent)
        else:
            model = _with_rollout(prev.model, prev.model, rollout_percent) if prev and prev.model else None
        m = _new_manifest(exports, channel, prev, now, expires_days, version, packs=tuple(packs),
                          deltas=tuple(deltas), model=model, **({"hints": hints} if hints else {}))
        return _write_manifest(exports, store, m, {"action": "publish", "note": note})


def _verified(exports: Path, store: KeyStore, channel: str, version: int | None = None) -> Manifest:
    """A channel manifest we are about to build on, checked like a client would (any root of the chain
    may have signed it: it can predate a key rotation), with every artefact present and intact."""
    p = exports / "channels" / channel / (f"{version}.manifest.json" if version else "manifest.json")
    if version and not p.is_file():
        have = channel_versions(exports, channel)
        raise ReleaseError(f"channel {channel} has no version {version} (have {have})")
    env = _read_json(p, f"{channel} manifest")
    try:
        err: ManifestError | None = None
        for v in reversed(store.root_versions()):
            try:
                verify_envelope(env, Root.from_dict(store.root_env(v)["signed"]), "manifest", str(p))
                err = None
                break
            except ManifestError as e:
                err = err or e
        if err:
            raise err
        m = Manifest.from_dict(env["signed"])
        m.check_consistency(env["signed"])
        for a in m.artefacts():
            verify_file(a, exports / a.path)
    except ManifestError as e:
        raise ReleaseError(f"channel {channel} {f'v{version}' if version else 'manifest'} does not verify, "
                           f"refusing to build on it: {e}") from None
    return m


def promote(exports_dir, keys_dir, from_channel: str = "beta", to_channel: str = "stable",
            rollout_percent: float | None = None, expires_days: float = MANIFEST_EXPIRES_DAYS,
            now: datetime | None = None) -> Manifest:
    """Publish ``from_channel``'s current release as the next version of ``to_channel``."""
    exports, store, now = Path(exports_dir), KeyStore(keys_dir), (now or utcnow()).replace(microsecond=0)
    with _locked(exports):
        _sync_root(exports, store, now)
        src = _verified(exports, store, from_channel)
        dst = load_manifest(exports, to_channel)
        model = _with_rollout(src.model, dst and dst.model, rollout_percent)
        m = _new_manifest(exports, to_channel, src, now, expires_days, model=model)
        return _write_manifest(exports, store, m, {"action": "promote", "from_channel": from_channel,
                                                   "from_version": src.version})


def set_rollout(exports_dir, keys_dir, channel: str, percent: float,
                expires_days: float = MANIFEST_EXPIRES_DAYS, now: datetime | None = None) -> Manifest:
    """New version of ``channel`` whose model goes to ``percent`` % of devices (0 halts it)."""
    exports, store, now = Path(exports_dir), KeyStore(keys_dir), (now or utcnow()).replace(microsecond=0)
    with _locked(exports):
        _sync_root(exports, store, now)
        cur = _verified(exports, store, channel)
        if cur.model is None:
            raise ReleaseError(f"channel {channel} v{cur.version} has no model to roll out")
        m = _new_manifest(exports, channel, cur, now, expires_days,
                          model=_with_rollout(cur.model, cur.model, percent))
        return _write_manifest(exports, store, m, {"action": "rollout"})


def rollback(exports_dir, keys_dir, channel: str, to_version: int | None = None,
             expires_days: float = MANIFEST_EXPIRES_DAYS, now: datetime | None = None) -> Manifest:
    """Publish a new, higher version of ``channel`` pointing at an older release's artefacts.

    ``to_version`` defaults to the newest earlier version whose artefacts differ from the current.
    """
    exports, store, now = Path(exports_dir), KeyStore(keys_dir), (now or utcnow()).replace(microsecond=0)
    with _locked(exports):
        _sync_root(exports, store, now)
        cur = load_manifest(exports, channel)
        if cur is None:
            raise ReleaseError(f"channel {channel} has nothing published; nothing to roll back")
        if to_version is None:
            older = [v for v in channel_versions(exports, channel) if v < cur.version]
            to_version = next((v for v in reversed(older)
                               if load_manifest(exports, channel, v).snapshot != cur.snapshot), None)
            if to_version is None:
                raise ReleaseError(f"channel {channel} has no earlier release that differs from v{cur.version}")
        if to_version >= cur.version:
            raise ReleaseError(f"can only roll back to a version below the current v{cur.version}")
        try:
            target = _verified(exports, store, channel, to_version)
        except ReleaseError as e:
            raise ReleaseError(f"cannot roll back to v{to_version}: {e} (artefacts collected by gc?)") from None
        m = _new_manifest(exports, channel, target, now, expires_days)
        return _write_manifest(exports, store, m, {"action": "rollback", "to_version": to_version})


def _resign_one(exports: Path, store: KeyStore, channel: str, now: datetime, expires_days: float,
                note: str) -> Manifest:
    cur = _verified(exports, store, channel)
    m = _new_manifest(exports, channel, cur, now, expires_days)
    return _write_manifest(exports, store, m, {"action": "resign", "note": note})


def resign(exports_dir, keys_dir, channels_: Iterable[str] | None = None,
           expires_days: float = MANIFEST_EXPIRES_DAYS, now: datetime | None = None) -> list[Manifest]:
    """Re-sign channels' current releases as new versions with a fresh expiry (run daily)."""
    exports, store, now = Path(exports_dir), KeyStore(keys_dir), (now or utcnow()).replace(microsecond=0)
    with _locked(exports):
        _sync_root(exports, store, now)
        return [_resign_one(exports, store, ch, now, expires_days, "refresh expiry")
                for ch in (list(channels_) if channels_ else channels(exports))]


def collect_garbage(exports_dir, window_versions: int = 5, window_days: float = 14.0, dry_run: bool = False,
                    now: datetime | None = None) -> dict:
    """Delete artefacts no manifest in the delta window references; never a live one.

    Kept: everything the current manifest of each channel references, and everything referenced
    by a channel's last ``window_versions`` versions or by versions created in the last ``window_days``.
    """
    exports, now = Path(exports_dir), now or utcnow()
    with _locked(exports):
        live: set[str] = set()
        for ch in channels(exports):
            cur = load_manifest(exports, ch)
            live.update(a.path for a in cur.artefacts())
            for v in channel_versions(exports, ch):
                m = load_manifest(exports, ch, v)
                recent = window_days > 0 and m.created >= format_time(now - timedelta(days=window_days))
                if v > cur.version - window_versions or recent:
                    live.update(a.path for a in m.artefacts())
        deleted, freed = [], 0
        for p in sorted((exports / "artefacts").glob("*")) if (exports / "artefacts").is_dir() else []:
            rel = f"artefacts/{p.name}"
            if p.is_file() and rel not in live and not p.name.endswith(".tmp"):
                deleted.append(rel)
                freed += p.stat().st_size
                if not dry_run:
                    p.unlink()
        if not dry_run and deleted:
            _append_history(exports, {"ts": format_time(now), "action": "gc", "deleted": len(deleted),
                                      "bytes_freed": freed})
        return {"kept": len(live), "deleted": deleted, "bytes_freed": freed, "dry_run": dry_run}


def sync_keys(exports_dir, keys_dir, now: datetime | None = None) -> None:
    """Publish the keys dir's root chain to exports/ and re-sign channels signed by a retired key."""
    exports = Path(exports_dir)
    with _locked(exports):
        _sync_root(exports, KeyStore(keys_dir), now or utcnow())
