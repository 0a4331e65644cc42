"""The keys directory: offline root keys (m-of-n), the online manifest key, the root chain.

The directory (``CALLMARK_KEYS_DIR``, default ``./var/keys``; never inside exports/) holds demo keys
only: in production the ``root-*.pem`` files live on an offline machine, ``callmark keys rotate`` runs
there, and only ``root/<v>.root.json`` and the online key travel to the publishing host
(docs/security.md). Root metadata follows TUF 5.3 (each new root signed by the old and new root keys).
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from callmark import exports as layout
from callmark.files import atomic_write
from callmark.manifest import Role, Root, keyid_of, public_key_dict, sign_envelope, utcnow, verify_envelope
from callmark.manifest_errors import KeyStoreError
from publisher.metadata import ROOT_EXPIRES_DAYS, read_json, write_metadata

KEYS_README = """DEMO KEYS - NOT FOR PRODUCTION
root-*.pem are the offline root keys (m-of-n). In production they never touch a networked machine:
generate and rotate them on an offline host, copy only root/<version>.root.json and online-*.pem to
the publishing host. online-*.pem signs channel manifests (short expiry).
"""


class KeyStore:
    """A keys directory: private keys (*.pem, 0600), and the signed root chain root/<v>.root.json."""

    def __init__(self, keys_dir: str | os.PathLike):
        self.dir = Path(keys_dir)

    def root_versions(self) -> list[int]:
        """Root versions present, ascending."""
        return layout.root_versions(self.dir)

    def root_env(self, version: int | None = None) -> dict:
        """The signed root metadata (latest by default)."""
        vs = self.root_versions()
        if not vs:
            raise KeyStoreError(f"{self.dir}: no root metadata; run `callmark keys init --dir {self.dir}`")
        return read_json(self.dir / layout.root_path(version or vs[-1]), "root metadata")

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
        atomic_write(p, pem, perms=0o600)
        return p

    def retire(self, keyids: Iterable[str]) -> None:
        """Move private keys out of use (into retired/)."""
        (self.dir / "retired").mkdir(exist_ok=True, mode=0o700)
        for p in self.dir.glob("*.pem"):
            k = serialization.load_pem_private_key(p.read_bytes(), password=None)
            if keyid_of(k) in set(keyids):
                os.replace(p, self.dir / "retired" / p.name)


def make_root(version: int, root_keys: list, threshold: int, online: Ed25519PrivateKey,
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
        for p in [*store.dir.glob("*.pem"), *store.dir.glob("retired/*.pem"), *store.dir.glob(f"{layout.ROOT_DIR}/*.root.json")]:
            p.unlink()
    rkeys = [Ed25519PrivateKey.generate() for _ in range(roots)]
    online = Ed25519PrivateKey.generate()
    for k in rkeys:
        store.write_key("root", k)
    store.write_key("online", online)
    (store.dir / "README.txt").write_text(KEYS_README)
    expires = (now or utcnow()).replace(microsecond=0) + timedelta(days=expires_days)
    root = make_root(1, rkeys, threshold, online, expires)
    write_metadata(store.dir / layout.root_path(1), sign_envelope(root.to_dict(), rkeys))
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
    new = make_root(old.version + 1, new_roots, thr, on,
                     (now or utcnow()).replace(microsecond=0) + timedelta(days=expires_days))
    env = sign_envelope(new.to_dict(), [*old_keys, *new_roots])
    verify_envelope(env, old, "root", "new root")   # sanity: the chain step a client will check
    verify_envelope(env, new, "root", "new root")
    write_metadata(store.dir / layout.root_path(new.version), env)
    store.retire(retired)
    return new
