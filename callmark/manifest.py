"""Release metadata (TUF-style): root and manifest objects, signing, and client-side verification.

The trust chain: offline root keys (m-of-n) sign ``root`` metadata, which names the online key
allowed to sign channel manifests; a manifest lists every artefact with length and SHA-256.
A client keeps a ``TrustedState`` and refreshes it with an ``Updater`` (both in ``callmark/updater.py``,
which imports this module, never the other way round); each attack is rejected with its own
exception (see ``callmark/manifest_errors.py`` and ``docs/security.md``).
Signatures are Ed25519 over the RFC 8785 canonical JSON of the ``signed`` object.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any, Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from callmark.manifest_errors import (  # re-exported: clients catch them from callmark.manifest
    BadSignatureError, ClientTooOldError, EndlessDataError, FreezeError, ManifestError, MetadataFormatError,
    MixAndMatchError, RollbackError, SignatureError, TamperedArtefactError, ThresholdError, UntrustedKeyError,
)

SPEC_VERSION = "1.0"
CLIENT_FORMAT = 1                 # the manifest format this client implements
ROLLOUT_BUCKETS = 10_000          # device buckets; 1 % = 100 buckets

__all__ = [
    "canonical_json", "keyid_of", "public_key_dict", "sign_envelope", "verify_envelope",
    "Role", "Root", "ArtefactEntry", "PackEntry", "DeltaEntry", "ModelEntry", "Manifest",
    "device_bucket", "in_rollout", "snapshot_hash", "envelope_parts",
    "ManifestError", "MetadataFormatError", "SignatureError", "BadSignatureError", "UntrustedKeyError",
    "ThresholdError", "RollbackError", "FreezeError", "MixAndMatchError", "TamperedArtefactError",
    "EndlessDataError", "ClientTooOldError",
]


# ---------------------------------------------------------------- canonical JSON (RFC 8785)
def _number(x: float) -> str:
    """ECMAScript Number::toString, as RFC 8785 requires."""
    if not math.isfinite(x):
        raise MetadataFormatError(f"non-finite number {x!r} cannot be signed")
    if x == 0:
        return "0"
    r = repr(x)
    if "e" not in r:   # fast path: Python's shortest fixed form is ECMAScript's (1e-4 <= |x| < 1e16)
        return r[:-2] if r.endswith(".0") else r
    sign = "-" if x < 0 else ""
    t = Decimal(repr(abs(x))).as_tuple()
    digits = "".join(map(str, t.digits)).rstrip("0") or "0"
    exp = t.exponent + (len(t.digits) - len(digits))
    k, n = len(digits), exp + len(digits)
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mant = digits if k == 1 else digits[0] + "." + digits[1:]
        out = f"{mant}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + out


_quote = encode_basestring   # JSON string with RFC 8785 escapes (short forms, else lowercase \u00xx)


def _canon(obj: Any, out: list[str]) -> None:
    if obj is None or obj is True or obj is False:
        out.append({None: "null", True: "true", False: "false"}[obj])
    elif isinstance(obj, int):
        if abs(obj) > 2**53:
            raise MetadataFormatError(f"integer {obj} is too large for portable JSON")
        out.append(str(obj))
    elif isinstance(obj, float):
        out.append(_number(obj))
    elif isinstance(obj, str):
        out.append(_quote(obj))
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for i, v in enumerate(obj):
            if i:
                out.append(",")
            _canon(v, out)
        out.append("]")
    elif isinstance(obj, dict):
        out.append("{")
        for k in obj:
            if not isinstance(k, str):
                raise MetadataFormatError(f"object key {k!r} is not a string")
        keys = sorted(obj) if all(k.isascii() for k in obj) else \
            sorted(obj, key=lambda s: s.encode("utf-16-be", "surrogatepass"))   # UTF-16 code unit order
        for i, k in enumerate(keys):
            if i:
                out.append(",")
            out.append(_quote(k) + ":")
            _canon(obj[k], out)
        out.append("}")
    else:
        raise MetadataFormatError(f"cannot sign a value of type {type(obj).__name__}")


def canonical_json(obj: Any) -> bytes:
    """RFC 8785 (JCS) canonical UTF-8 bytes of a JSON value: what signatures cover."""
    out: list[str] = []
    _canon(obj, out)
    return "".join(out).encode("utf-8")


# ---------------------------------------------------------------- keys and signatures
def keyid_of(public: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """Key id = SHA-256 of the raw 32-byte Ed25519 public key, hex."""
    if isinstance(public, Ed25519PrivateKey):
        public = public.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_key_dict(key: Ed25519PublicKey | Ed25519PrivateKey) -> dict:
    """The JSON form of a public key as it appears in root metadata."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"keytype": "ed25519", "scheme": "ed25519", "public": raw.hex()}


def sign_envelope(signed: dict, keys: Iterable[Ed25519PrivateKey]) -> dict:
    """Wrap ``signed`` into ``{"signed", "signatures"}``, one Ed25519 signature per key."""
    data = canonical_json(signed)
    sigs = {keyid_of(k): k.sign(data).hex() for k in keys}
    return {"signed": signed, "signatures": [{"keyid": k, "sig": s} for k, s in sorted(sigs.items())]}


def envelope_parts(env: Any, what: str) -> tuple[dict, list[dict]]:
    if not isinstance(env, dict) or not isinstance(env.get("signed"), dict) \
            or not isinstance(env.get("signatures"), list):
        raise MetadataFormatError(f"{what}: expected {{'signed': {{...}}, 'signatures': [...]}}")
    for s in env["signatures"]:
        if not isinstance(s, dict) or not isinstance(s.get("keyid"), str) or not isinstance(s.get("sig"), str):
            raise MetadataFormatError(f"{what}: each signature needs string 'keyid' and 'sig'")
    return env["signed"], env["signatures"]


def verify_envelope(env: dict, root: "Root", role: str, what: str = "metadata") -> None:
    """Check that ``role``'s threshold of distinct trusted keys in ``root`` signed ``env``."""
    signed, sigs = envelope_parts(env, what)
    r = root.roles[role]
    data = canonical_json(signed)
    valid: set[str] = set()
    bad: list[str] = []
    for s in sigs:
        kid = s["keyid"]
        if kid not in r.keyids or kid in valid:
            continue  # unknown key, or a duplicate signature by one key: never counts twice
        try:
            pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(root.keys[kid]["public"]))
            pub.verify(bytes.fromhex(s["sig"]), data)
            valid.add(kid)
        except (InvalidSignature, ValueError):
            bad.append(kid)
    if len(valid) >= r.threshold:
        return
    if bad:
        raise BadSignatureError(f"{what}: signature by trusted key {bad[0][:12]}… does not match "
                                "the content (modified after signing)")
    if not valid:
        raise UntrustedKeyError(f"{what}: not signed by any key root v{root.version} trusts for "
                                f"role '{role}' (signed by {[s['keyid'][:12] for s in sigs]})")
    raise ThresholdError(f"{what}: {len(valid)} of {r.threshold} required '{role}' signatures")


# ---------------------------------------------------------------- field helpers
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _req(d: Any, key: str, typ: type | tuple, where: str) -> Any:
    if not isinstance(d, dict):
        raise MetadataFormatError(f"{where}: expected an object")
    if key not in d:
        raise MetadataFormatError(f"{where}: missing field '{key}'")
    v = d[key]
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        want = getattr(typ, "__name__", typ)
        raise MetadataFormatError(f"{where}: field '{key}' should be {want}, got {v!r:.60}")
    return v


def _typed_version(d: dict, kind: str) -> int:
    """Check that metadata `d` is of type `kind` and return its version (>= 1)."""
    if _req(d, "type", str, kind) != kind:
        raise MetadataFormatError(f"{kind}: type is {d['type']!r}, expected '{kind}'")
    version = _req(d, "version", int, kind)
    if version < 1:
        raise MetadataFormatError(f"{kind}: version must be >= 1")
    return version


def _sha(d: dict, key: str, where: str) -> str:
    v = _req(d, key, str, where)
    if not _HEX64.match(v):
        raise MetadataFormatError(f"{where}: '{key}' is not a lowercase hex SHA-256")
    return v


def _nonneg(d: dict, key: str, where: str) -> int:
    v = _req(d, key, int, where)
    if v < 0:
        raise MetadataFormatError(f"{where}: '{key}' must be >= 0")
    return v


def _relpath(d: dict, where: str) -> str:
    p = _req(d, "path", str, where)
    if p.startswith("/") or "\\" in p or ".." in p.split("/") or not p:
        raise MetadataFormatError(f"{where}: path {p!r} must be relative inside exports/")
    return p


def format_time(t: datetime) -> str:
    """ISO-8601 UTC with a Z, seconds precision."""
    return t.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: Any, where: str = "time") -> datetime:
    """Parse the ISO-8601 UTC form :func:`format_time` writes."""
    try:
        return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except (TypeError, ValueError):
        raise MetadataFormatError(f"{where}: {s!r} is not an ISO time like 2025-01-31T12:00:00Z") from None


def utcnow() -> datetime:
    """Current time, UTC."""
    return datetime.now(timezone.utc)


# ---------------------------------------------------------------- root
@dataclass(frozen=True)
class Role:
    """Which keys may sign a role, and how many must."""
    keyids: tuple[str, ...]
    threshold: int

    def to_dict(self) -> dict:
        return {"keyids": list(self.keyids), "threshold": self.threshold}


@dataclass(frozen=True)
class Root:
    """Root metadata: the trusted keys and the roles (``root``, ``manifest``) they sign for."""
    version: int
    expires: datetime
    keys: dict[str, dict]          # keyid -> {"keytype", "scheme", "public" (hex)}
    roles: dict[str, Role]
    spec_version: str = SPEC_VERSION

    @classmethod
    def from_dict(cls, d: dict) -> "Root":
        w = "root"
        version = _typed_version(d, w)
        keys = _req(d, "keys", dict, w)
        for kid, k in keys.items():
            if _req(k, "keytype", str, f"root key {kid[:12]}") != "ed25519":
                raise MetadataFormatError(f"root key {kid[:12]}: only ed25519 keys are supported")
            try:
                pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(_req(k, "public", str, w)))
            except ValueError:
                raise MetadataFormatError(f"root key {kid[:12]}: 'public' is not a 32-byte hex key") from None
            if keyid_of(pub) != kid:
                raise MetadataFormatError(f"root key {kid[:12]}: keyid is not the SHA-256 of the key")
        roles = {}
        for name, rd in _req(d, "roles", dict, w).items():
            kids = tuple(_req(rd, "keyids", list, f"root role {name}"))
            thr = _req(rd, "threshold", int, f"root role {name}")
            if any(k not in keys for k in kids):
                raise MetadataFormatError(f"root role {name}: lists a keyid with no key")
            if not 1 <= thr <= len(set(kids)):
                raise MetadataFormatError(f"root role {name}: threshold {thr} not in 1..{len(set(kids))}")
            roles[name] = Role(kids, thr)
        for need in ("root", "manifest"):
            if need not in roles:
                raise MetadataFormatError(f"root: missing role '{need}'")
        return cls(version, parse_time(_req(d, "expires", str, w), "root.expires"), dict(keys), roles,
                   _req(d, "spec_version", str, w))

    def to_dict(self) -> dict:
        return {"type": "root", "spec_version": self.spec_version, "version": self.version,
                "expires": format_time(self.expires), "keys": self.keys,
                "roles": {n: r.to_dict() for n, r in sorted(self.roles.items())}}


# ---------------------------------------------------------------- manifest
@dataclass(frozen=True)
class ArtefactEntry:
    """One file under exports/: where it is, how long, and its SHA-256."""
    path: str
    length: int
    sha256: str
    name: str = ""

    @classmethod
    def from_dict(cls, d: dict, where: str = "file") -> "ArtefactEntry":
        return cls(_relpath(d, where), _nonneg(d, "length", where), _sha(d, "sha256", where), d.get("name", ""))

    def to_dict(self) -> dict:
        out = {"path": self.path, "length": self.length, "sha256": self.sha256}
        if self.name:
            out["name"] = self.name
        return out


@dataclass(frozen=True)
class PackEntry(ArtefactEntry):
    """A full label pack (its download/wire form) with the pack state hash it expands to."""
    region: str = ""
    tier: str = ""
    version: int = 0
    entries: int = 0
    state_hash: str = ""

    @classmethod
    def from_dict(cls, d: dict, where: str = "pack") -> "PackEntry":
        w = f"{where} {d.get('name', '?') if isinstance(d, dict) else '?'}"
        return cls(_relpath(d, w), _nonneg(d, "length", w), _sha(d, "sha256", w), _req(d, "name", str, w),
                   _req(d, "region", str, w), _req(d, "tier", str, w), _nonneg(d, "version", w),
                   _nonneg(d, "entries", w), _sha(d, "state_hash", w))

    def to_dict(self) -> dict:
        return {"name": self.name, "region": self.region, "tier": self.tier, "version": self.version,
                "entries": self.entries, "state_hash": self.state_hash, **ArtefactEntry.to_dict(self)}


@dataclass(frozen=True)
class DeltaEntry(ArtefactEntry):
    """A delta between two pack states; the client checks both ends against its pack."""
    from_version: int = 0
    to_version: int = 0
    from_state_hash: str = ""
    to_state_hash: str = ""

    @classmethod
    def from_dict(cls, d: dict, where: str = "delta") -> "DeltaEntry":
        w = f"{where} {d.get('name', '?') if isinstance(d, dict) else '?'}"
        e = cls(_relpath(d, w), _nonneg(d, "length", w), _sha(d, "sha256", w), _req(d, "name", str, w),
                _nonneg(d, "from_version", w), _nonneg(d, "to_version", w), _sha(d, "from_state_hash", w),
                _sha(d, "to_state_hash", w))
        if e.from_version >= e.to_version:
            raise MetadataFormatError(f"{w}: from_version {e.from_version} must be < to_version {e.to_version}")
        return e

    def to_dict(self) -> dict:
        return {"name": self.name, "from_version": self.from_version, "to_version": self.to_version,
                "from_state_hash": self.from_state_hash, "to_state_hash": self.to_state_hash,
                **ArtefactEntry.to_dict(self)}


@dataclass(frozen=True)
class ModelEntry(ArtefactEntry):
    """The on-device model (.tflite) with its feature contract, test vectors and staged rollout."""
    contract: dict = field(default_factory=dict)
    test_vectors: Any = None
    rollout_percent: float = 100.0    # percent of devices (0..100) that take this model
    rollout_salt: str = ""            # bucket salt; devices outside the rollout use `fallback`
    files: tuple[ArtefactEntry, ...] = ()   # contract.json, metrics.json, report.md, ...
    fallback: "ModelEntry | None" = None

    @classmethod
    def from_dict(cls, d: dict, where: str = "model") -> "ModelEntry":
        pct = _req(d, "rollout_percent", (int, float), where)
        if isinstance(pct, bool) or not 0 <= pct <= 100:
            raise MetadataFormatError(f"{where}: rollout_percent must be within 0..100")
        fb = d.get("fallback")
        return cls(_relpath(d, where), _nonneg(d, "length", where), _sha(d, "sha256", where), d.get("name", ""),
                   _req(d, "contract", dict, where), d.get("test_vectors"), pct,
                   d.get("rollout_salt", "") or "",
                   tuple(ArtefactEntry.from_dict(f, f"{where} file") for f in d.get("files", [])),
                   cls.from_dict(fb, f"{where}.fallback") if fb else None)

    def to_dict(self) -> dict:
        return {**ArtefactEntry.to_dict(self), "contract": self.contract, "test_vectors": self.test_vectors,
                "rollout_percent": self.rollout_percent, "rollout_salt": self.rollout_salt,
                "files": [f.to_dict() for f in self.files],
                "fallback": self.fallback.to_dict() if self.fallback else None}

    def artefacts(self) -> list[ArtefactEntry]:
        """This model's files and its fallback's."""
        out: list[ArtefactEntry] = [self, *self.files]
        return out + (self.fallback.artefacts() if self.fallback else [])


def snapshot_hash(packs: list, deltas: list, model: Any) -> str:
    """SHA-256 binding the whole artefact list of one release (the TUF snapshot, in one field)."""
    return hashlib.sha256(canonical_json({"packs": packs, "deltas": deltas, "model": model})).hexdigest()


@dataclass(frozen=True)
class Manifest:
    """A channel's signed release: every artefact, a monotonic version and a short expiry."""
    version: int
    channel: str
    expires: datetime
    packs: tuple[PackEntry, ...]
    deltas: tuple[DeltaEntry, ...]
    model: ModelEntry | None
    min_client_format: int = CLIENT_FORMAT
    created: str = ""
    release: str = ""               # human release id, e.g. "beta-12" (informational)
    hints: dict = field(default_factory=dict)   # server hints: min_poll_seconds, full_resync_after_deltas
    snapshot: str = ""
    spec_version: str = SPEC_VERSION

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        w = "manifest"
        version = _typed_version(d, w)
        packs = tuple(PackEntry.from_dict(p) for p in _req(d, "packs", list, w))
        if len({p.name for p in packs}) != len(packs):
            raise MetadataFormatError("manifest: two packs share a name")
        deltas = tuple(DeltaEntry.from_dict(x) for x in _req(d, "deltas", list, w))
        model = d.get("model")
        if not isinstance(d.get("hints", {}), dict):
            raise MetadataFormatError("manifest: 'hints' should be an object")
        return cls(version, _req(d, "channel", str, w), parse_time(_req(d, "expires", str, w), "manifest.expires"),
                   packs, deltas, ModelEntry.from_dict(model) if model is not None else None,
                   _req(d, "min_client_format", int, w), d.get("created", ""), d.get("release", ""),
                   d.get("hints") or {}, _sha(d, "snapshot", w), _req(d, "spec_version", str, w))

    def to_dict(self) -> dict:
        packs = [p.to_dict() for p in self.packs]
        deltas = [x.to_dict() for x in self.deltas]
        model = self.model.to_dict() if self.model else None
        return {"type": "manifest", "spec_version": self.spec_version, "version": self.version,
                "channel": self.channel, "release": self.release, "created": self.created,
                "expires": format_time(self.expires), "min_client_format": self.min_client_format,
                "packs": packs, "deltas": deltas, "model": model, "hints": self.hints,
                "snapshot": self.snapshot or snapshot_hash(packs, deltas, model)}

    def artefacts(self) -> list[ArtefactEntry]:
        """Every file this manifest references (packs, deltas, model files and fallback)."""
        return [*self.packs, *self.deltas, *(self.model.artefacts() if self.model else [])]

    def pack(self, name: str) -> PackEntry:
        """The pack entry called ``name``."""
        for p in self.packs:
            if p.name == name:
                return p
        raise KeyError(f"manifest v{self.version} has no pack {name!r}; it has {[p.name for p in self.packs]}")

    def check_consistency(self, signed: dict | None = None) -> None:
        """Raise MixAndMatchError unless the artefact list is one release's (snapshot, delta ends).

        ``signed`` is the raw signed dict the manifest was parsed from (so unknown extra fields
        count towards the snapshot too); without it the parsed object is used.
        """
        d = signed if signed is not None else self.to_dict()
        if snapshot_hash(d.get("packs"), d.get("deltas"), d.get("model")) != self.snapshot:
            raise MixAndMatchError(f"manifest v{self.version}: snapshot hash does not match its artefact list")
        packs = {p.name: p for p in self.packs}
        for x in self.deltas:
            p = packs.get(x.name)
            if p is None:
                raise MixAndMatchError(f"manifest v{self.version}: delta {x.name} has no pack of that name")
            if x.to_version != p.version or x.to_state_hash != p.state_hash:
                raise MixAndMatchError(
                    f"manifest v{self.version}: delta {x.name} v{x.from_version}->v{x.to_version} ends at "
                    f"state {x.to_state_hash[:12]}… but the pack is v{p.version} state {p.state_hash[:12]}…")

    def model_for_device(self, device_id: str) -> ModelEntry | None:
        """The model this device should run: the new one if in the rollout, else the fallback."""
        m = self.model
        if m is None or in_rollout(device_id, m.rollout_percent, m.rollout_salt or m.sha256):
            return m
        return m.fallback


# ---------------------------------------------------------------- staged rollout
def device_bucket(device_id: str, salt: str) -> int:
    """Stable bucket in [0, 10000) for a device: the same on client and server for one salt."""
    h = hashlib.sha256(f"{salt}\x00{device_id}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") % ROLLOUT_BUCKETS


def in_rollout(device_id: str, percent: float, salt: str) -> bool:
    """True when the device falls inside the first ``percent`` % of buckets."""
    return device_bucket(device_id, salt) < round(percent * ROLLOUT_BUCKETS / 100)
