"""The exports/ layout: where every published file lives, and the size limits clients enforce.

One tree, written only by the publisher (`publisher/`), served byte for byte by the server
(`server/exports.py`), read by the updater (`callmark/updater.py`) and the handset
(`tools/handset_*.py`). Paths here are relative POSIX strings: the same string is a file path
under the exports root and the path part of a URL (docs/interfaces.md, "Exports")::

    root.json                          the newest root metadata (what a new app ships)
    root/<v>.root.json                 every root version, the chain clients walk (TUF 5.3)
    channels/<channel>/manifest.json   the channel's current signed manifest
    channels/<channel>/<v>.manifest.json   every manifest version published in the channel
    artefacts/<sha256[:16]>-<name>     immutable, content-addressed packs, deltas, models
    history.jsonl                      one JSON record per publish/promote/rollback/... (append-only)
"""
from __future__ import annotations

import os
import re
from pathlib import Path

ROOT_FILE = "root.json"
ROOT_DIR = "root"
CHANNELS_DIR = "channels"
ARTEFACTS_DIR = "artefacts"
HISTORY_FILE = "history.jsonl"
MANIFEST_FILE = "manifest.json"

MAX_ROOT_BYTES = 512 * 1024            # bytes; a longer root file is an endless-data attack
MAX_MANIFEST_BYTES = 16 * 1024 * 1024  # bytes; ditto for a manifest
ARTEFACT_PREFIX_HEX = 16               # hex digits of the SHA-256 that start an artefact name

CHANNEL_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
ARTEFACT_RE = re.compile(r"^[0-9a-f]{16}-[A-Za-z0-9._-]{1,200}$")
VERSIONED_MANIFEST_RE = re.compile(r"^(\d+)\.manifest\.json$")
VERSIONED_ROOT_RE = re.compile(r"^(\d+)\.root\.json$")


def root_path(version: int | None = None) -> str:
    """``root.json`` (version None) or ``root/<version>.root.json``."""
    return ROOT_FILE if version is None else f"{ROOT_DIR}/{int(version)}.root.json"


def manifest_path(channel: str, version: int | None = None) -> str:
    """``channels/<channel>/manifest.json`` or, with a version, ``.../<version>.manifest.json``."""
    leaf = MANIFEST_FILE if not version else f"{int(version)}.manifest.json"
    return f"{CHANNELS_DIR}/{channel}/{leaf}"


def manifest_channel(path: str) -> str | None:
    """The channel of a current-manifest path (``channels/<c>/manifest.json``), else None."""
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == CHANNELS_DIR and parts[2] == MANIFEST_FILE:
        return parts[1]
    return None


def artefact_path(sha256: str, name: str) -> str:
    """``artefacts/<sha256[:16]>-<name>`` with characters outside ``[A-Za-z0-9._-]`` made ``_``.

    A file already named ``<its sha256[:16]>-<name>`` (a model report's plots) keeps its name, so links
    written between artefacts before publishing resolve in ``artefacts/`` too."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name)
    prefix = f"{sha256[:ARTEFACT_PREFIX_HEX]}-"
    return f"{ARTEFACTS_DIR}/{safe}" if safe.startswith(prefix) else f"{ARTEFACTS_DIR}/{prefix}{safe}"


def is_channel(name: str) -> bool:
    """True for a valid channel name (lower-case, digits, ``_-``, at most 32 characters)."""
    return bool(CHANNEL_RE.match(name or ""))


def is_artefact_name(name: str) -> bool:
    """True for a valid artefact file name (``<16 hex>-<file name>``, no path parts)."""
    return bool(ARTEFACT_RE.match(name or "")) and ".." not in name


def versioned_manifest(filename: str) -> int | None:
    """The version in a ``<v>.manifest.json`` file name, else None."""
    m = VERSIONED_MANIFEST_RE.match(filename)
    return int(m.group(1)) if m else None


def channel_versions(exports: str | os.PathLike, channel: str) -> list[int]:
    """Manifest versions published in a channel, ascending."""
    d = Path(exports) / CHANNELS_DIR / channel
    return sorted(v for p in d.glob("*.manifest.json") if (v := versioned_manifest(p.name)) is not None)


def channels(exports: str | os.PathLike) -> list[str]:
    """Channels that have a current manifest, sorted."""
    d = Path(exports) / CHANNELS_DIR
    return sorted(p.parent.name for p in d.glob(f"*/{MANIFEST_FILE}")) if d.is_dir() else []


def root_versions(directory: str | os.PathLike) -> list[int]:
    """Root versions present as ``root/<v>.root.json`` under ``directory`` (exports or keys dir)."""
    d = Path(directory) / ROOT_DIR
    return sorted(int(m.group(1)) for p in d.glob("*.root.json") if (m := VERSIONED_ROOT_RE.match(p.name)))
