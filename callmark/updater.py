"""The client updater: trusted state, the fetchers, artefact checks and exports verification.

It imports the manifest objects (`callmark.manifest`) and the layout (`callmark.exports`), never
the other way round. Every fetcher derives from `Fetcher`, which enforces the metadata size limits
(`callmark.exports.MAX_ROOT_BYTES`, `MAX_MANIFEST_BYTES`) once; artefacts are bounded by the
length their manifest lists (`download_verified`).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from callmark import exports as layout
from callmark import safejson
from callmark.exports import MAX_MANIFEST_BYTES, MAX_ROOT_BYTES
from callmark.files import atomic_write, atomic_writer, file_sha256
from callmark.manifest import (
    CLIENT_FORMAT, ArtefactEntry, DeltaEntry, Manifest, Root, canonical_json, envelope_parts, utcnow,
    verify_envelope,
)
from callmark.manifest_errors import (
    ClientTooOldError, EndlessDataError, FreezeError, ManifestError, MetadataFormatError, MixAndMatchError,
    RollbackError, TamperedArtefactError,
)

MAX_ROOT_STEPS = 1024   # root versions walked in one refresh, at most
CHUNK = 64 * 1024       # bytes per read when streaming artefacts


def _parse(raw: bytes, what: str) -> dict:
    """Signed metadata bytes -> envelope dict, through callmark.safejson (depth, number length,
    surrogates; the size was bounded by the fetch). MetadataFormatError otherwise."""
    try:
        env = safejson.loads(raw, what, max_bytes=MAX_MANIFEST_BYTES)
    except safejson.JSONInputError as e:
        raise MetadataFormatError(str(e)) from None
    envelope_parts(env, what)
    return env


def verify_root_update(trusted: Root, env: dict, expected_version: int, what: str = "root") -> Root:
    """Accept root ``expected_version`` only if signed by the old root's and its own threshold."""
    signed, _ = envelope_parts(env, what)
    new = Root.from_dict(signed)
    verify_envelope(env, trusted, "root", f"{what} (by root v{trusted.version} keys)")
    verify_envelope(env, new, "root", f"{what} (by its own keys)")
    if new.version < expected_version:
        raise RollbackError(f"{what}: holds root version {new.version}, expected {expected_version}")
    if new.version != expected_version:
        raise MetadataFormatError(f"{what}: holds root version {new.version}, expected {expected_version}")
    return new


# ---------------------------------------------------------------- fetchers
class Fetcher:
    """Base of every fetcher: ``get`` enforces the size limit once, subclasses supply the bytes.

    Subclasses implement ``read(path, limit)`` (at most ``limit`` bytes of the file, or None when
    it does not exist) and ``iter(path)`` (the file in chunks, for artefacts)."""

    def read(self, path: str, limit: int) -> bytes | None:
        raise NotImplementedError

    def iter(self, path: str) -> Iterator[bytes]:
        raise NotImplementedError

    def get(self, path: str, max_bytes: int) -> bytes | None:
        """Whole file, or None if absent; EndlessDataError past ``max_bytes`` (reads one byte more)."""
        data = self.read(path, max_bytes + 1)
        if data is not None and len(data) > max_bytes:
            raise EndlessDataError(f"{path}: longer than the {max_bytes} bytes allowed for metadata")
        return data


def read_bounded(chunks: Iterable[bytes], limit: int) -> bytes:
    """Join ``chunks`` but stop once ``limit`` bytes are in (the rest is never read)."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        if len(buf) >= limit:
            break
    return bytes(buf[:limit])


class DirFetcher(Fetcher):
    """Reads metadata and artefacts from an exports/ directory (or a mirror of it)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def read(self, path: str, limit: int) -> bytes | None:
        p = self.root / path
        if not p.is_file():
            return None
        with open(p, "rb") as f:
            return f.read(limit)

    def iter(self, path: str) -> Iterator[bytes]:
        """The file's bytes in chunks."""
        with open(self.root / path, "rb") as f:
            yield from iter(lambda: f.read(CHUNK), b"")


class HttpFetcher(Fetcher):
    """Reads metadata and artefacts over HTTP(S) from a server or CDN base URL."""

    def __init__(self, base_url: str, timeout: float = 10.0, session: Any = None):
        import requests
        self.base = base_url.rstrip("/") + "/"
        self.timeout = timeout  # seconds per request
        self.session = session or requests.Session()

    def read(self, path: str, limit: int) -> bytes | None:
        with self.session.get(self.base + path, stream=True, timeout=self.timeout) as r:
            if r.status_code == 404:
                return None
            r.raise_for_status()
            return read_bounded(r.iter_content(CHUNK), limit)

    def iter(self, path: str) -> Iterator[bytes]:
        """The body in chunks (the caller stops reading at the listed length)."""
        with self.session.get(self.base + path, stream=True, timeout=self.timeout) as r:
            r.raise_for_status()
            yield from r.iter_content(CHUNK)


# ---------------------------------------------------------------- artefact checks
def download_verified(fetch_iter: Iterable[bytes], entry: ArtefactEntry, dest: str | os.PathLike) -> Path:
    """Stream ``fetch_iter`` into ``dest``; stop past ``entry.length``; check the SHA-256.

    Raises EndlessDataError if the source offers more bytes than listed (reading at most one chunk
    beyond the length), TamperedArtefactError on a short file or a hash mismatch. ``dest`` is only
    written (atomically) once everything checks out.
    """
    dest = Path(dest)
    h, total = hashlib.sha256(), 0
    it: Iterator[bytes] = iter(fetch_iter)
    try:
        with atomic_writer(dest) as f:   # removed again unless every check passes
            while total < entry.length:
                chunk = next(it, b"")
                if not chunk:
                    break
                if total + len(chunk) > entry.length:
                    raise EndlessDataError(f"{entry.path}: source sent more than the {entry.length} bytes listed")
                h.update(chunk)
                f.write(chunk)
                total += len(chunk)
            if total == entry.length:
                extra = next(it, b"")   # one look past the end: an honest source is exhausted
                if extra:
                    raise EndlessDataError(f"{entry.path}: source sent more than the {entry.length} bytes listed")
            if total < entry.length:
                raise TamperedArtefactError(f"{entry.path}: got {total} bytes, manifest lists {entry.length}")
            if h.hexdigest() != entry.sha256:
                raise TamperedArtefactError(f"{entry.path}: SHA-256 {h.hexdigest()[:16]}… differs from the "
                                            f"manifest's {entry.sha256[:16]}…")
        return dest
    finally:
        close = getattr(it, "close", None)
        if close:
            close()


def verify_file(entry: ArtefactEntry, path: str | os.PathLike) -> None:
    """Check a file on disk against its entry: exact length, then SHA-256 (TamperedArtefactError)."""
    p = Path(path)
    if not p.is_file():
        raise TamperedArtefactError(f"{entry.path}: missing (looked at {p})")
    size = p.stat().st_size
    if size != entry.length:
        raise TamperedArtefactError(f"{entry.path}: {size} bytes on disk, manifest lists {entry.length}")
    sha, _ = file_sha256(p)
    if sha != entry.sha256:
        raise TamperedArtefactError(f"{entry.path}: SHA-256 {sha[:16]}… differs from the "
                                    f"manifest's {entry.sha256[:16]}…")


# ---------------------------------------------------------------- trusted state
class TrustedState:
    """What a client has verified: the newest trusted root and the last manifest per channel.

    With ``state_dir`` it persists to ``root.json`` and ``channels/<channel>.json`` there.
    """

    def __init__(self, root_env: dict, manifests: dict[str, dict] | None = None,
                 state_dir: str | os.PathLike | None = None):
        self.root_env = root_env
        self.root = Root.from_dict(envelope_parts(root_env, "trusted root")[0])
        self.manifests: dict[str, dict] = dict(manifests or {})
        self.state_dir = Path(state_dir) if state_dir else None

    @classmethod
    def bootstrap(cls, initial_root: bytes | str | os.PathLike | dict,
                  state_dir: str | os.PathLike | None = None) -> "TrustedState":
        """Start from the root shipped with the app; it must carry its own root threshold."""
        if isinstance(initial_root, dict):
            env = initial_root
        else:
            raw = initial_root if isinstance(initial_root, bytes) else Path(initial_root).read_bytes()
            env = _parse(raw, "initial root")
        root = Root.from_dict(envelope_parts(env, "initial root")[0])
        verify_envelope(env, root, "root", "initial root")
        st = cls(env, None, state_dir)
        st.save()
        return st

    @staticmethod
    def exists(state_dir: str | os.PathLike) -> bool:
        """True when ``state_dir`` already holds a trusted root."""
        return (Path(state_dir) / "root.json").is_file()

    @classmethod
    def open(cls, state_dir: str | os.PathLike, initial_root: Any = None) -> "TrustedState":
        """Load saved state from ``state_dir``, or bootstrap it from ``initial_root``."""
        d = Path(state_dir)
        if not cls.exists(d):
            if initial_root is None:
                raise ManifestError(f"{d}: no trusted state yet; pass the initial root.json shipped with the app")
            return cls.bootstrap(initial_root, d)
        root_env = _parse((d / "root.json").read_bytes(), f"{d}/root.json")
        mans = {p.stem: _parse(p.read_bytes(), str(p)) for p in sorted((d / "channels").glob("*.json"))}
        return cls(root_env, mans, d)

    def save(self) -> None:
        """Persist (atomically) when a state dir is set."""
        if self.state_dir is None:
            return
        atomic_write(self.state_dir / "root.json", canonical_json(self.root_env))
        for ch, env in self.manifests.items():
            atomic_write(self.state_dir / "channels" / f"{ch}.json", canonical_json(env))

    def set_root(self, env: dict, root: Root) -> None:
        """Trust a newly verified root; forget manifests if the online keys changed (TUF 5.3.11)."""
        if set(root.roles["manifest"].keyids) != set(self.root.roles["manifest"].keyids):
            self.manifests.clear()
            if self.state_dir is not None:
                for p in (self.state_dir / "channels").glob("*.json"):
                    p.unlink()
        self.root_env, self.root = env, root

    def manifest(self, channel: str) -> Manifest | None:
        """The last verified manifest of ``channel``."""
        env = self.manifests.get(channel)
        return Manifest.from_dict(env["signed"]) if env else None


# ---------------------------------------------------------------- updater
class Updater:
    """Refreshes a TrustedState for one channel and checks every artefact against it."""

    def __init__(self, state: TrustedState, fetcher: Any, channel: str = "stable",
                 now: Callable[[], datetime] = utcnow, client_format: int = CLIENT_FORMAT):
        self.state, self.fetcher, self.channel = state, fetcher, channel
        self.now, self.client_format = now, client_format

    def refresh_root(self) -> Root:
        """Walk root/<v+1>.root.json while present; each must be signed by old and new root keys."""
        for _ in range(MAX_ROOT_STEPS):
            v = self.state.root.version + 1
            where = layout.root_path(v)
            raw = self.fetcher.get(where, MAX_ROOT_BYTES)
            if raw is None:
                break
            env = _parse(raw, where)
            self.state.set_root(env, verify_root_update(self.state.root, env, v, where))
            self.state.save()
        if self.state.root.expires <= self.now():
            r = self.state.root
            raise FreezeError(f"root v{r.version} expired at {r.expires:%Y-%m-%d %H:%M}Z")
        return self.state.root

    def refresh(self) -> Manifest:
        """Refresh the root chain, then fetch and accept the channel's current manifest."""
        self.refresh_root()
        where = layout.manifest_path(self.channel)
        raw = self.fetcher.get(where, MAX_MANIFEST_BYTES)
        if raw is None:
            raise ManifestError(f"{where}: not found (is the channel name right?)")
        return self.accept_manifest(_parse(raw, where), where)

    def accept_manifest(self, env: dict, what: str = "manifest") -> Manifest:
        """Verify a manifest envelope against the trusted root and state; remember it."""
        signed, _ = envelope_parts(env, what)
        verify_envelope(env, self.state.root, "manifest", what)
        m = Manifest.from_dict(signed)
        if m.channel != self.channel:
            raise MixAndMatchError(f"{what}: is for channel {m.channel!r}, expected {self.channel!r}")
        prev = self.state.manifests.get(self.channel)
        if prev is not None:
            pv = prev["signed"]["version"]
            if m.version < pv:
                raise RollbackError(f"{what}: version {m.version} is lower than version {pv} already seen")
            if m.version == pv and canonical_json(signed) != canonical_json(prev["signed"]):
                raise RollbackError(f"{what}: version {m.version} reused with different content")
        if m.expires <= self.now():
            raise FreezeError(f"{what}: v{m.version} expired at {m.expires:%Y-%m-%d %H:%M}Z")
        if m.min_client_format > self.client_format:
            raise ClientTooOldError(f"{what}: needs client format {m.min_client_format}, "
                                    f"this client implements {self.client_format}; update the app")
        m.check_consistency(signed)
        self.state.manifests[self.channel] = env
        self.state.save()
        return m

    @property
    def manifest(self) -> Manifest:
        """The channel's trusted manifest (refresh first)."""
        m = self.state.manifest(self.channel)
        if m is None:
            raise ManifestError(f"no trusted manifest for channel {self.channel!r}; call refresh() first")
        return m

    def require_listed(self, entry: ArtefactEntry) -> None:
        """MixAndMatchError unless ``entry`` is one the current trusted manifest lists."""
        key = (entry.path, entry.length, entry.sha256)
        if key not in {(a.path, a.length, a.sha256) for a in self.manifest.artefacts()}:
            raise MixAndMatchError(f"{entry.path}: not part of trusted {self.channel} manifest "
                                   f"v{self.manifest.version} (from another release?)")

    def fetch_artefact(self, entry: ArtefactEntry, dest: str | os.PathLike) -> Path:
        """Download a listed artefact to ``dest``, bounded by its length, hash-checked."""
        self.require_listed(entry)
        return download_verified(self.fetcher.iter(entry.path), entry, dest)

    def verify_artefact(self, entry: ArtefactEntry, path: str | os.PathLike) -> None:
        """Check a local file is the listed artefact (membership, length, SHA-256)."""
        self.require_listed(entry)
        verify_file(entry, path)

    def check_pack_state(self, name: str, state_hash: str) -> None:
        """MixAndMatchError unless an expanded pack's state hash is the manifest's."""
        try:
            p = self.manifest.pack(name)
        except KeyError as e:
            raise MixAndMatchError(str(e).strip("'\"")) from None
        if state_hash != p.state_hash:
            raise MixAndMatchError(f"pack {name}: state {state_hash[:12]}… is not the state "
                                   f"{p.state_hash[:12]}… of v{p.version} in manifest v{self.manifest.version}")

    def delta_for(self, name: str, current_state_hash: str) -> DeltaEntry | None:
        """The listed delta that starts at the client's current pack state, or None (fetch full)."""
        for x in self.manifest.deltas:
            if x.name == name and x.from_state_hash == current_state_hash:
                return x
        return None

    def check_delta(self, delta: DeltaEntry, before_state: str, after_state: str | None = None) -> None:
        """MixAndMatchError if a delta does not start at ``before_state`` or end at the manifest's."""
        self.require_listed(delta)
        if before_state != delta.from_state_hash:
            raise MixAndMatchError(f"delta {delta.name} v{delta.from_version}->v{delta.to_version}: "
                                   f"starts at {delta.from_state_hash[:12]}…, "
                                   f"client pack is {before_state[:12]}…")
        if after_state is not None:
            self.check_pack_state(delta.name, after_state)


# ---------------------------------------------------------------- exports verification
@dataclass
class ExportsReport:
    """Outcome of :func:`verify_exports`: what was checked and every problem found."""
    root_version: int = 0
    channels: dict[str, int] = field(default_factory=dict)   # channel -> manifest version
    artefacts_checked: int = 0
    problems: list[str] = field(default_factory=list)        # "ErrorClass: message"

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, e: Exception) -> None:
        self.problems.append(f"{type(e).__name__}: {e}")


def verify_exports(exports_dir: str | os.PathLike, trusted_root: str | os.PathLike | None = None,
                   now: Callable[[], datetime] = utcnow) -> ExportsReport:
    """Check an exports/ tree from the root of trust: root chain, channels, every artefact."""
    ex = Path(exports_dir)
    rep = ExportsReport()
    root_path = Path(trusted_root) if trusted_root else ex / layout.root_path(1)
    fetcher = DirFetcher(ex)
    try:
        if not root_path.is_file():
            raise ManifestError(f"trusted root {root_path} not found: pass --root FILE (the root.json shipped "
                                "in the app) or publish a release first")
        state = TrustedState.bootstrap(root_path)
        Updater(state, fetcher, now=now).refresh_root()
    except (ManifestError, OSError) as e:
        rep.add(e)
        return rep
    rep.root_version = state.root.version
    try:
        top = _parse((ex / layout.ROOT_FILE).read_bytes(), layout.ROOT_FILE)
        tv, cv = top["signed"].get("version"), state.root.version
        if not isinstance(tv, int) or tv > cv:
            raise MetadataFormatError(f"root.json is version {tv} but the root/ chain ends at version {cv} "
                                      f"(root/{cv + 1}.root.json missing or invalid?)")
        if tv < cv:
            raise RollbackError(f"root.json is version {tv}, older than root/{cv}.root.json")
        if canonical_json(top) != canonical_json(state.root_env):
            raise MixAndMatchError(f"root.json differs from root/{cv}.root.json (published with other keys?)")
    except (ManifestError, OSError) as e:
        rep.add(e)
    chan_dir = ex / layout.CHANNELS_DIR
    for cdir in sorted(p for p in chan_dir.iterdir() if p.is_dir()) if chan_dir.is_dir() else []:
        try:
            m = Updater(state, fetcher, channel=cdir.name, now=now).refresh()
        except (ManifestError, OSError) as e:
            rep.add(e)
            continue
        rep.channels[cdir.name] = m.version
        for p in cdir.iterdir():
            pv = layout.versioned_manifest(p.name)
            if pv is None:
                continue
            try:
                v = _parse(p.read_bytes(), str(p.relative_to(ex)))["signed"].get("version")
                if v != pv:
                    raise MetadataFormatError(f"{p.relative_to(ex)}: holds version {v}")
                if v > m.version:
                    raise RollbackError(f"channels/{cdir.name}/manifest.json is v{m.version} but "
                                        f"{p.name} exists (a rolled-back current manifest)")
            except (ManifestError, OSError) as e:
                rep.add(e)
        for a in m.artefacts():
            rep.artefacts_checked += 1
            try:
                verify_file(a, ex / a.path)
            except ManifestError as e:
                rep.add(e)
    return rep
