"""Reading and writing signed metadata files for the publisher (keys dir and exports/)."""
from __future__ import annotations

import contextlib
import fcntl
import json
from pathlib import Path
from typing import Iterator

from callmark.files import atomic_write
from callmark.manifest_errors import ReleaseError

MANIFEST_EXPIRES_DAYS = 7      # days a manifest stays valid (re-sign with `callmark resign` before)
ROOT_EXPIRES_DAYS = 365        # days a root stays valid (renew with `callmark keys rotate --no-online`)


def dump_metadata(env: dict) -> bytes:
    """A signed envelope as the publisher writes it (indented, sorted keys, UTF-8, final newline)."""
    return (json.dumps(env, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def write_metadata(path: Path, env: dict) -> None:
    """`dump_metadata` to ``path`` atomically."""
    atomic_write(path, dump_metadata(env))


def read_json(path: Path, what: str) -> dict:
    """A JSON file; ReleaseError naming ``what`` when missing or not JSON."""
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ReleaseError(f"{what}: {path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReleaseError(f"{what}: {path} is not valid JSON ({e})") from None


@contextlib.contextmanager
def locked(exports: Path) -> Iterator[None]:
    """One writer at a time per exports dir (an exclusive flock on ``exports/.release.lock``)."""
    exports.mkdir(parents=True, exist_ok=True)
    with open(exports / ".release.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
