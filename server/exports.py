"""Read-only view of the published exports tree (docs/interfaces.md, "Exports").

The server never re-signs or rewrites anything here: manifests are served byte for byte as
published, artefacts are immutable content-addressed files. Parsed manifests are cached per
process and re-read when the file's (mtime, size, inode) changes, so a publish is picked up at once.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from callmark import exports as layout
from callmark import safejson
from server.errors import NotFound, Unavailable


@dataclass(frozen=True)
class PublishedManifest:
    """One channel's manifest file: raw bytes (served as is), strong ETag and the parsed JSON."""

    channel: str
    raw: bytes
    etag: str
    signed: dict

    @property
    def version(self) -> int:
        return int(self.signed.get("version", 0))

    @property
    def hints(self) -> dict:
        h = self.signed.get("hints")
        return h if isinstance(h, dict) else {}


class Exports:
    """Access to CALLMARK_EXPORTS_DIR: manifests, artefacts, root metadata, history."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._cache: dict[str, tuple[tuple, PublishedManifest]] = {}
        self._lock = threading.Lock()

    def channels(self) -> list[str]:
        return layout.channels(self.root)

    def manifest(self, channel: str) -> PublishedManifest:
        """The channel's current manifest; NotFound for unknown channels, Unavailable if broken."""
        if not layout.is_channel(channel):
            raise NotFound(f"unknown channel {channel!r}; channels are lower-case names like "
                           f"'stable' (published: {self.channels()})")
        path = self.root / layout.manifest_path(channel)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"channel {channel!r} has no published manifest "
                           f"(published: {self.channels()})") from None
        sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        hit = self._cache.get(channel)
        if hit and hit[0] == sig:
            return hit[1]
        raw = path.read_bytes()
        try:
            doc = safejson.loads(raw, f"channels/{channel}/manifest.json",
                                 max_bytes=layout.MAX_MANIFEST_BYTES)
            signed = doc["signed"]
            if not isinstance(signed, dict) or not isinstance(signed.get("packs", []), list):
                raise ValueError("signed.packs is not a list")
        except (ValueError, KeyError, TypeError) as e:
            raise Unavailable(f"published manifest of channel {channel!r} is malformed ({e}); "
                              "republish it") from None
        pm = PublishedManifest(channel, raw, hashlib.sha256(raw).hexdigest()[:32], signed)
        with self._lock:
            self._cache[channel] = (sig, pm)
        return pm

    def artefact_path(self, name: str) -> Path:
        """Path of a content-addressed artefact `<sha256[:16]>-<name>`; NotFound otherwise."""
        if not layout.is_artefact_name(name):
            raise NotFound(f"no artefact {name!r}: names look like '<16 hex>-<file name>' as "
                           "listed in the manifest's 'path' fields")
        path = self.root / layout.ARTEFACTS_DIR / name
        if not _is_file(path):
            raise NotFound(f"no artefact {name!r} in the exports")
        return path

    def root_path(self, version: int | None) -> Path:
        """root.json (version None) or root/<version>.root.json."""
        path = self.root / layout.root_path(version)
        if not _is_file(path):
            raise NotFound(f"no root metadata version {version}" if version is not None
                           else "no root.json published yet")
        return path

    def history(self, limit: int = 100) -> list[dict]:
        path = self.root / layout.HISTORY_FILE
        if not _is_file(path):
            return []
        out: deque = deque(maxlen=limit)
        with path.open() as fh:
            for line in fh:
                line = line.strip()
                if line:
                    try:
                        out.append(safejson.loads(line, "history.jsonl"))
                    except ValueError:
                        out.append({"unparsed": line[:200]})
        return list(out)


def _is_file(path: Path) -> bool:
    """Path.is_file() that answers False instead of raising for names the OS refuses (too long,
    NUL bytes): a client-chosen name is a 404, never a 500."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _url(path: str) -> str:
    return "/v1/" + path.lstrip("/")


def _entry(d: dict, keys: tuple[str, ...]) -> dict:
    out = {k: d.get(k) for k in keys if k in d}
    if isinstance(d.get("path"), str):
        out["url"] = _url(d["path"])
    return out


PACK_KEYS = ("name", "region", "tier", "version", "entries", "state_hash", "path", "length", "sha256")
DELTA_KEYS = ("name", "from_version", "to_version", "from_state_hash", "to_state_hash", "path",
              "length", "sha256")


def find_pack(signed: dict, name: str | None, region: str | None) -> dict:
    """The manifest's pack called `name`, else the full-tier pack of `region`."""
    packs = [p for p in signed.get("packs", []) if isinstance(p, dict)]
    if name:
        for p in packs:
            if p.get("name") == name:
                return p
    elif region:
        cands = [p for p in packs if str(p.get("region", "")).upper() == region.upper()]
        cands.sort(key=lambda p: p.get("tier") != "full")
        if cands:
            return cands[0]
    names = [p.get("name") for p in packs]
    raise NotFound(f"this channel has no pack {'named ' + repr(name) if name else 'for region ' + repr(region)}; "
                   f"packs published: {names}")


def decide_update(signed: dict, name: str | None, region: str | None, version: int,
                  state_hash: str, max_chain: int) -> dict:
    """Answer an update request: up_to_date, a delta chain, or the full pack (with a reason)."""
    pack = find_pack(signed, name, region)
    out = {"manifest_version": signed.get("version"), "pack": _entry(pack, PACK_KEYS)}
    target = (pack.get("version"), pack.get("state_hash"))
    state_hash = (state_hash or "").lower()

    def full(reason: str) -> dict:
        return {**out, "status": "full", "reason": reason, "full": _entry(pack, PACK_KEYS),
                "deltas": []}

    if (version, state_hash) == target:
        return {**out, "status": "up_to_date", "reason": "pack is current", "deltas": []}
    if version <= 0 or not state_hash:
        return full("no pack on the device")
    if version == target[0]:
        return full("state hash unknown for this version: the pack differs from the published one")
    if isinstance(target[0], int) and version > target[0]:
        return full("device is ahead of the channel (rolled back): reinstall the full pack")
    deltas = [d for d in signed.get("deltas", [])
              if isinstance(d, dict) and d.get("name") == pack.get("name")]
    edges: dict[tuple, list[dict]] = {}
    for d in deltas:
        edges.setdefault((d.get("from_version"), str(d.get("from_state_hash", "")).lower()),
                         []).append(d)
    start = (version, state_hash)
    if start not in edges:
        return full(f"no delta starts at version {version} with that state hash")
    prev: dict[tuple, tuple[tuple, dict] | None] = {start: None}
    queue = deque([start])
    while queue:                      # breadth-first: the shortest chain of deltas
        node = queue.popleft()
        if node == (target[0], str(target[1]).lower()):
            break
        for d in edges.get(node, []):
            nxt = (d.get("to_version"), str(d.get("to_state_hash", "")).lower())
            if nxt not in prev:
                prev[nxt] = (node, d)
                queue.append(nxt)
    end = (target[0], str(target[1]).lower())
    if end not in prev:
        return full(f"no delta chain from version {version} to {target[0]}")
    chain = []
    node = end
    while prev[node] is not None:
        node, d = prev[node]
        chain.append(d)
    chain.reverse()
    if len(chain) > max_chain:
        return full(f"{len(chain)} versions behind (more than {max_chain}): full resync")
    total = sum(int(d.get("length") or 0) for d in chain)
    if pack.get("length") and total >= int(pack["length"]):
        return full("the deltas would be larger than the full pack")
    return {**out, "status": "delta", "reason": f"{len(chain)} delta(s), {total} bytes",
            "deltas": [_entry(d, DELTA_KEYS) for d in chain]}
