"""Handset sync: signed manifest -> verify -> delta chain or full pack -> apply to the layered pack
(base + overlays, callmark.pack_layers: a delta rewrites only an overlay, compaction a new base) ->
state-hash check -> full-pack fallback; then the model (staged rollout, test vectors replayed before use).

Used by tools/handset.py (`Handset.sync`). Only callmark/ and the transport are used here.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callmark.exports import MAX_ROOT_BYTES, root_path
from callmark.manifest import DeltaEntry, Manifest, ModelEntry, PackEntry
from callmark.updater import TrustedState, Updater
from callmark.manifest_errors import ManifestError
from callmark import pack_layers
from callmark.pack import PackError, UpdatePolicy, plan_update
from tools.handset_net import ServerRejected, ServerUnavailable, Transport
from tools.handset_store import (
    HandsetError, HandsetStore, NoTrustedRootError, SyncState, atomic_write,
)

DEFAULT_FULL_RESYNC_AFTER = 40  # deltas applied in a row before a forced full pack
FULL_CHECK_EVERY_S = 7 * 86400  # re-hash every row of the local pack this often (and after a failed or
#                                 interrupted apply); deltas alone only update the hash O(delta)


class ModelCheckError(HandsetError):
    """A downloaded model failed its contract or test vectors; the previous model stays in use."""


@dataclass
class SyncResult:
    """What one sync did."""

    status: str  # up_to_date | delta | full | waiting | offline | failed
    manifest_version: int = 0
    pack: str = ""
    pack_version_before: int = 0
    pack_version: int = 0
    deltas_applied: int = 0
    bytes_downloaded: int = 0  # artefact bytes (packs, deltas, model) transferred in this sync
    bytes_total: int = 0  # all bytes received, metadata included
    pack_bytes_written: int = 0  # bytes of pack files written on the phone (overlays, new bases)
    pack_base_bytes: int = 0  # size of the pack's base file after the sync
    pack_layers: list = field(default_factory=list)  # level each delta wrote: recent | settled | base
    fallback: str = ""  # why a delta path was abandoned for the full pack
    model: str = ""  # none | current | updated | kept-old (...)
    error: str = ""
    next_sync_after: float = 0.0  # epoch seconds
    wait_s: float = 0.0
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def open_trust(store: HandsetStore, transport: Transport, initial_root: Any, tofu: bool) -> TrustedState:
    """The handset's TrustedState; bootstraps from the shipped root (or, with tofu, the server's v1)."""
    if TrustedState.exists(store.trust_dir):
        return TrustedState.open(store.trust_dir)
    if initial_root is None and tofu:
        initial_root = transport.get(root_path(1), MAX_ROOT_BYTES)
        if initial_root is None:
            raise NoTrustedRootError(f"the server publishes no {root_path(1)}; pass --root FILE")
    if initial_root is None:
        raise NoTrustedRootError(f"{store.dir} has no trusted root yet: pass --root FILE (the root.json "
                                "shipped with the app), or --trust-on-first-use")
    if isinstance(initial_root, (str, os.PathLike)) and not Path(initial_root).is_file():
        raise NoTrustedRootError(f"no root file at {initial_root}")
    return TrustedState.bootstrap(initial_root, store.trust_dir)


def pick_pack(m: Manifest, region: str, tier: str) -> PackEntry:
    """The manifest's pack for the phone's region and tier (full as the fallback tier)."""
    cands = [p for p in m.packs if p.region.upper() == region.upper()]
    for want in (tier, "full"):
        for p in cands:
            if p.tier == want:
                return p
    if cands:
        return cands[0]
    raise HandsetError(f"manifest v{m.version} has no pack for region {region!r} "
                       f"(packs: {[p.name for p in m.packs]})")


class PackSync:
    """Brings the local pack to the manifest's state, preferring deltas."""

    def __init__(self, store: HandsetStore, transport: Transport, updater: Updater, state: SyncState,
                 channel: str, now: float | None = None, full_check_every_s: float = FULL_CHECK_EVERY_S):
        self.store, self.t, self.up, self.s, self.channel = store, transport, updater, state, channel
        self.policy = pack_layers.LayerPolicy()  # when a delta goes to which overlay, when to compact
        self.now = time.time() if now is None else now
        self.full_check_every_s = full_check_every_s

    def full_check_due(self) -> bool:
        return self.s.pack_check_due or self.now - self.s.pack_checked_at >= self.full_check_every_s

    def current(self, entry: PackEntry, r: SyncResult | None = None) -> tuple[int, str]:
        """(version, state hash) of the local pack, (0, "") when there is none or it is unusable.

        When a full check is due (schedule, or a failed/interrupted apply) every layer's rows are
        rehashed and compared with HEAD's state hash (`pack_layers.verify`): a mismatch (rows edited
        behind the meta, a torn file) discards the pack, so the full pack is downloaded."""
        path = self.store.pack_path(entry.name)
        legacy = self.store.legacy_pack_path(entry.name)
        try:
            if not pack_layers.is_layered(str(path)) and legacy.is_file():
                pack_layers.adopt_file(str(legacy), str(path), move=True)  # a rename: no copy
            if not pack_layers.is_layered(str(path)):
                return 0, ""
            if self.full_check_due():
                meta = pack_layers.verify(str(path))
                self.s.pack_checked_at, self.s.pack_check_due = self.now, False
            else:
                meta = pack_layers.read_meta(str(path))
            return int(meta["version"]), meta["state_hash"]
        except (PackError, KeyError, ValueError, OSError, sqlite3.DatabaseError) as e:
            pack_layers.remove(str(path))  # unreadable or not what it claims: start again from the full pack
            legacy.unlink(missing_ok=True)
            self.s.pack_check_due = False
            if r is not None:
                r.notes.append(f"local pack discarded ({type(e).__name__}: {str(e)[:160]})")
            return 0, ""

    def run(self, m: Manifest, entry: PackEntry, r: SyncResult) -> None:
        version, state = self.current(entry, r)
        r.pack, r.pack_version_before = entry.name, version
        if state == entry.state_hash:
            r.status, r.pack_version = "up_to_date", version
            return
        chain = self.plan(m, entry, version, state) if version else []
        if chain:
            self.s.pack_check_due = True        # saved now: a kill during the apply leaves it set
            self.store.save_sync(self.s)
            try:
                for d in chain:
                    state = self.apply_one(d, entry, state, r)
                self.up.check_pack_state(entry.name, state)
                r.status, r.pack_version = "delta", entry.version
                self.s.deltas_since_full += len(chain)
                self.s.pack_check_due = False
                return
            except ServerUnavailable:
                raise
            except (PackError, ManifestError, ServerRejected, OSError) as e:
                r.fallback = f"{type(e).__name__}: {e}"
        elif version:
            r.fallback = "no usable delta chain"
        self.full(entry, r)

    def plan(self, m: Manifest, entry: PackEntry, version: int, state: str) -> list[DeltaEntry]:
        """Delta chain from (version, state) to the entry, or [] for the full pack."""
        limit = int(m.hints.get("full_resync_after_deltas") or DEFAULT_FULL_RESYNC_AFTER)
        listed = [d for d in m.deltas if d.name == entry.name]
        chain = self._server_plan(entry, version, state, listed)
        if chain is None:
            policy = UpdatePolicy(max_versions_behind=max(1, limit), max_chain=max(1, min(limit, 30)))
            plan = plan_update(version, entry.version, [d.to_dict() for d in listed], entry.length, policy)
            chain = [DeltaEntry.from_dict(d) for d in plan.deltas] if plan.action == "deltas" else []
        # the chain must start at our exact state and link hash to hash
        at = state
        for d in chain:
            if d.from_state_hash != at:
                return []
            at = d.to_state_hash
        if chain and at != entry.state_hash:
            return []
        if self.s.deltas_since_full + len(chain) > limit:
            return []
        return chain

    def _server_plan(self, entry: PackEntry, version: int, state: str, listed: list) -> list | None:
        """Ask POST /v1/update (advisory): the answer must name deltas the signed manifest lists."""
        if not self.t.is_http:
            return None
        try:
            status, body = self.t.post_json("/v1/update", {"channel": self.channel, "pack": entry.name,
                                                           "pack_version": version, "state_hash": state})
        except (ServerUnavailable, HandsetError):
            return None
        if status != 200 or not isinstance(body, dict):
            return None
        if body.get("status") != "delta":
            return [] if body.get("status") == "full" else None
        by_path = {(d.path, d.sha256): d for d in listed}
        out = []
        for d in body.get("deltas") or []:
            hit = by_path.get((d.get("path"), d.get("sha256"))) if isinstance(d, dict) else None
            if hit is None:
                return None  # not in the signed manifest: ignore the server's advice
            out.append(hit)
        return out

    def _download(self, entry, what: str, r: SyncResult) -> Path:
        dest = self.store.downloads / Path(entry.path).name
        self.up.require_listed(entry)
        _, got = self.t.download(entry, dest, self.store.downloads)
        r.bytes_downloaded += got
        return dest

    def apply_one(self, d: DeltaEntry, entry: PackEntry, state: str, r: SyncResult) -> str:
        self.up.check_delta(d, state)
        blob = self._download(d, "delta", r)
        path = str(self.store.pack_path(entry.name))
        try:
            meta = pack_layers.apply_delta(path, str(blob), expected_state_hash=d.to_state_hash,
                                           expected_sha256=d.sha256, policy=self.policy)
        finally:
            blob.unlink(missing_ok=True)
        r.deltas_applied += 1
        self._count_written(path, meta["layer"], r)
        return meta["state_hash"]

    def _count_written(self, path: str, level: str, r: SyncResult) -> None:
        st = pack_layers.layer_stats(path)
        r.pack_layers.append(level)
        r.pack_bytes_written += st["bytes"][level]
        r.pack_base_bytes = st["bytes"]["base"]

    def full(self, entry: PackEntry, r: SyncResult) -> None:
        wire = self._download(entry, "pack", r)
        path = str(self.store.pack_path(entry.name))
        try:
            meta = pack_layers.install_full(str(wire), path, expected_sha256=entry.sha256,
                                            expected_state_hash=entry.state_hash)
        finally:
            wire.unlink(missing_ok=True)
        self.store.legacy_pack_path(entry.name).unlink(missing_ok=True)
        self.up.check_pack_state(entry.name, meta["state_hash"])
        self._count_written(path, "base", r)
        r.status, r.pack_version = "full", entry.version
        self.s.deltas_since_full = 0
        self.s.pack_checked_at, self.s.pack_check_due = self.now, False   # every row was hashed


def clean_partials(store: HandsetStore, m: Manifest) -> list[str]:
    """After a successful sync: delete `.part` downloads that are empty or of artefacts the manifest
    no longer lists (an interrupted download of an older release). Returns the names removed."""
    listed = {Path(e.path).name for e in [*m.packs, *m.deltas]}
    if m.model is not None:
        listed.add(Path(m.model.path).name)
    gone = []
    for part in store.downloads.glob("*.part"):
        try:
            if part.stat().st_size == 0 or part.name[: -len(".part")] not in listed:
                part.unlink()
                gone.append(part.name)
        except OSError:
            pass
    return gone


def sync_model(store: HandsetStore, t: Transport, up: Updater, s: SyncState, device_id: str,
               r: SyncResult) -> bool:
    """Install the model this device should run (rollout bucket); returns True when it changed."""
    m = up.manifest
    me: ModelEntry | None = m.model_for_device(device_id)
    if me is None:
        r.model = "none"
        return False
    final = store.model_dir(me.sha256)
    if s.model_sha256 == me.sha256 and (final / "model.tflite").is_file():
        r.model = "current"
        return False
    tmp = final.with_name(final.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    up.require_listed(me)
    _, got = t.download(me, tmp / "model.tflite", store.downloads)
    r.bytes_downloaded += got
    atomic_write(tmp / "contract.json", json.dumps(me.contract).encode())
    if me.test_vectors is not None:
        atomic_write(tmp / "test_vectors.json", json.dumps(me.test_vectors).encode())
    try:
        from callmark.model import ModelRunner, replay_test_vectors
        if me.test_vectors is not None:
            atol = me.contract.get("test_vector_atol")
            replay_test_vectors(tmp, **({"atol": float(atol)} if isinstance(atol, (int, float)) else {}))
        else:
            ModelRunner(tmp)
    except ImportError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelCheckError(f"cannot run models here ({e})") from None
    except Exception as e:  # contract, LiteRT or vector mismatch: keep the old model
        shutil.rmtree(tmp, ignore_errors=True)
        r.model = f"kept-old ({type(e).__name__}: {str(e)[:120]})"
        return False
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    old = s.model_sha256
    s.model_sha256 = me.sha256
    if old and old != me.sha256:
        shutil.rmtree(store.model_dir(old), ignore_errors=True)
    r.model = "updated"
    return True
