"""Signed releases: publish, staged rollout, promote, rollback, re-sign, history and retention (gc).

The exports/ layout it writes is `callmark/exports.py` (docs/interfaces.md, "Exports"); the keys
it signs with live in a keys directory (`publisher/keys.py`). No TensorFlow, and never `server/`:
the CLI and the server's HTTP admin endpoints both call these functions in-process.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable

from callmark import exports as layout
from callmark.exports import channel_versions, channels
from callmark.files import atomic_write, atomic_writer, file_sha256
from callmark.manifest import (
    CLIENT_FORMAT, ArtefactEntry, DeltaEntry, Manifest, ModelEntry, PackEntry, Root, canonical_json,
    format_time, keyid_of, sign_envelope, utcnow, verify_envelope,
)
from callmark.manifest_errors import ManifestError, ReleaseError
from callmark.updater import verify_file
from publisher.keys import KeyStore
from publisher.metadata import MANIFEST_EXPIRES_DAYS, locked, read_json, write_metadata

DEFAULT_HINTS = {"min_poll_seconds": 3600, "full_resync_after_deltas": 40}


# ---------------------------------------------------------------- exports state
def _store_artefact(exports: Path, src: Path, name: str, what: str) -> ArtefactEntry:
    """Copy ``src`` to its content-addressed path (idempotent) and describe it."""
    if not src.is_file():
        raise ReleaseError(f"{what}: file {src} not found")
    sha, length = file_sha256(src)
    rel = layout.artefact_path(sha, name)
    dst = exports / rel
    if dst.exists():
        if file_sha256(dst) != (sha, length):
            raise ReleaseError(f"{rel} exists with different content: exports/ was tampered with; "
                               "run `callmark verify` and remove the file")
    else:
        with open(src, "rb") as fin, atomic_writer(dst) as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    return ArtefactEntry(rel, length, sha, Path(name).name)


def load_manifest(exports: str | os.PathLike, channel: str, version: int | None = None) -> Manifest | None:
    """A channel's manifest (current by default; None if the channel is empty). Not verified."""
    p = Path(exports) / layout.manifest_path(channel, version)
    if not p.is_file():
        if version:
            have = channel_versions(exports, channel)
            raise ReleaseError(f"channel {channel} has no version {version} (have {have})")
        return None
    try:
        return Manifest.from_dict(read_json(p, f"{channel} manifest")["signed"])
    except (ManifestError, KeyError, TypeError) as e:
        raise ReleaseError(f"{p}: unreadable manifest ({e})") from None


def _append_history(exports: Path, rec: dict) -> None:
    with open(exports / layout.HISTORY_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec, sort_keys=True, ensure_ascii=False) + "\n")


def history(exports: str | os.PathLike, channel: str | None = None) -> list[dict]:
    """Every publish / promote / rollback / rollout / resign / gc record, oldest first."""
    p = Path(exports) / layout.HISTORY_FILE
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
    published = layout.root_versions(exports)
    if published and max(published) > store.root_versions()[-1]:
        raise ReleaseError(f"{exports}/{layout.ROOT_DIR} has version {max(published)} but {store.dir} only "
                           f"{store.root_versions()[-1]}: publish with the current keys directory")
    for v in store.root_versions():
        src = store.dir / layout.root_path(v)
        dst = exports / layout.root_path(v)
        if dst.exists():
            if canonical_json(json.loads(dst.read_bytes())) != canonical_json(json.loads(src.read_bytes())):
                raise ReleaseError(f"{dst} differs from {src}: this exports dir was signed with other keys")
        else:
            atomic_write(dst, src.read_bytes())
    write_metadata(exports / layout.ROOT_FILE, latest)
    online = keyid_of(store.online_key())
    for ch in channels(exports):
        if ch == skip:
            continue
        env = read_json(exports / layout.manifest_path(ch), f"{ch} manifest")
        if online not in {s.get("keyid") for s in env.get("signatures", [])}:
            _resign_one(exports, store, ch, now, MANIFEST_EXPIRES_DAYS, "online key rotated")


def _write_manifest(exports: Path, store: KeyStore, m: Manifest, rec: dict) -> Manifest:
    signed = m.to_dict()
    m = Manifest.from_dict(signed)
    m.check_consistency(signed)
    env = sign_envelope(signed, [store.online_key()])
    write_metadata(exports / layout.manifest_path(m.channel, m.version), env)
    write_metadata(exports / layout.manifest_path(m.channel), env)
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
    idx = read_json(pack_dir / "index.json", "pack index")
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


def _check_pack_versions_go_forward(prev: Manifest, pack_dir: Path) -> None:
    """ReleaseError, before anything is written, when a pack of `pack_dir` is older than the channel's
    pack of the same name (phones would go back in time: a delta cannot apply, a full download would
    replace newer labels), or has the same version with other content (two different packs would carry
    one version)."""
    idx = read_json(pack_dir / "index.json", "pack index")
    live = {p.name: p for p in prev.packs}
    try:
        version = int(idx["version"])
        for p in idx["packs"]:
            old = live.get(p["name"])
            if old is None:
                continue
            if version < old.version:
                raise ReleaseError(f"pack {p['name']} v{version} is older than {prev.channel}'s v{old.version}: "
                                   f"publish a newer build, or `callmark rollback` to go back to an older release")
            if version == old.version and p["wire_sha256"] != old.sha256:
                raise ReleaseError(f"pack {p['name']} v{version} differs from the v{old.version} {prev.channel} "
                                   f"already serves: a version names one pack; build a new version")
    except (KeyError, TypeError, ValueError) as e:
        raise ReleaseError(f"{pack_dir}/index.json: pack entry lacks or mistypes {e}") from None


def _delta_entries(exports: Path, delta_dirs: Iterable, packs: list[PackEntry]) -> list[DeltaEntry]:
    by_name = {p.name: p for p in packs}
    out = []
    for dd in map(Path, delta_dirs or ()):
        idx = read_json(dd / "index.json", "delta index")
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


def _keep_other_regions(prev: Manifest, packs: list[PackEntry], deltas: list[DeltaEntry]
                        ) -> tuple[list[PackEntry], list[DeltaEntry]]:
    """Add the previous manifest's packs and deltas of regions the new packs do not cover."""
    regions = {p.region.upper() for p in packs}
    names = {p.name for p in packs}
    kept = [p for p in prev.packs if p.region.upper() not in regions and p.name not in names]
    kept_names = {p.name for p in kept}
    return (list(packs) + kept,
            list(deltas) + [d for d in prev.deltas if d.name in kept_names])


def _model_entry(exports: Path, model_dir: Path) -> ModelEntry:
    for need in ("model.tflite", "contract.json", "test_vectors.json"):
        if not (model_dir / need).is_file():
            raise ReleaseError(f"model dir {model_dir} lacks {need}")
    contract = read_json(model_dir / "contract.json", "model contract")
    vectors = read_json(model_dir / "test_vectors.json", "model test vectors")
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
                    hints: dict | None = None, note: str = "", replace_regions: bool = False) -> Manifest:
    """Publish packs (+ deltas, + model) to ``channel`` as a new signed manifest version.

    The packs of ``pack_dir`` add or replace their regions; the channel's packs (and deltas) of
    every other region stay (``replace_regions=True`` drops them): publishing a DE build never
    takes the US packs away from US phones.
    ``model_dir=None`` keeps the channel's current model, ``pack_dir=None`` its packs. A new model goes to ``rollout_percent``
    (default 100) of devices, the rest keep the previous model; the same model keeps its rollout.
    """
    exports, store, now = Path(exports_dir), KeyStore(keys_dir), (now or utcnow()).replace(microsecond=0)
    with locked(exports):
        _sync_root(exports, store, now, skip=channel)
        prev = _verified(exports, store, channel) if load_manifest(exports, channel) else None
        if pack_dir is not None:
            if prev is not None:
                _check_pack_versions_go_forward(prev, Path(pack_dir))
            packs = _pack_entries(exports, Path(pack_dir))
            deltas = _delta_entries(exports, delta_dirs, packs)
            if prev is not None and not replace_regions:
                packs, deltas = _keep_other_regions(prev, packs, deltas)
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
    p = exports / layout.manifest_path(channel, version)
    if version and not p.is_file():
        have = channel_versions(exports, channel)
        raise ReleaseError(f"channel {channel} has no version {version} (have {have})")
    env = read_json(p, f"{channel} manifest")
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
    with locked(exports):
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
    with locked(exports):
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
    with locked(exports):
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
    with locked(exports):
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
    with locked(exports):
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
        art = exports / layout.ARTEFACTS_DIR
        for p in sorted(art.glob("*")) if art.is_dir() else []:
            rel = f"{layout.ARTEFACTS_DIR}/{p.name}"
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
    with locked(exports):
        _sync_root(exports, KeyStore(keys_dir), now or utcnow())
