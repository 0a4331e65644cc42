"""File helpers every side shares: one atomic write and one file hash.

`atomic_write` writes a temp file in the same directory, fsyncs it and renames it over the target
(``os.replace``), so a reader sees the old file or the new one, never half of one. `file_sha256`
streams a file through SHA-256 (1 MiB chunks) and returns the hex digest and the byte length.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import IO, Iterator

CHUNK = 1 << 20  # bytes read at a time when hashing


def _tmp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def fsync_dir(directory: str | os.PathLike) -> None:
    """fsync a directory so that a rename inside it survives a power cut (no-op where unsupported)."""
    try:
        fd = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb", *, perms: int | None = None,
                  encoding: str | None = None, newline: str | None = None) -> Iterator[IO]:
    """Open a temp file next to ``path`` for writing; on a clean exit fsync it and move it over
    ``path`` (``os.replace``); on an exception remove it and leave ``path`` untouched.

    ``mode`` is ``"wb"`` or ``"w"`` (text, then ``encoding`` defaults to UTF-8); ``perms`` sets the
    file mode bits (e.g. 0o600 for keys). Parent directories are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(path)
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, perms if perms is not None else 0o644)
    ok = False
    try:
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if perms is not None:
            os.chmod(tmp, perms)
        os.replace(tmp, path)
        ok = True
    finally:
        if not ok:
            tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: bytes | str, perms: int | None = None) -> None:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically (see `atomic_writer`)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_writer(path, "wb", perms=perms) as f:
        f.write(data)


def commit_file(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    """Make an already written temp file durable and move it over ``final`` (fsync file, rename,
    fsync the directory)."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    fsync_dir(os.path.dirname(os.path.abspath(final)))


def file_sha256(path: str | os.PathLike) -> tuple[str, int]:
    """(lowercase hex SHA-256, length in bytes) of the file at ``path``; OSError if unreadable."""
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n
