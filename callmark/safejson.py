"""The one JSON decoding path for untrusted input (request bodies, mirror answers, metadata, files).

`json.loads` on hostile input can crash a process instead of refusing the input: nesting 100 k deep
raises RecursionError, an integer of 5,000 digits raises a bare ValueError (Python's 4,300-digit
guard), `"\\ud800"` decodes to a lone surrogate that later breaks UTF-8 encoding (SQLite, logs,
CSV), `NaN`/`Infinity` are not JSON at all (RFC 8259). `loads` checks all of these before or while
parsing and raises one typed error, `JSONInputError` (a ValueError), whose message names the input
(`what`) and the problem in one line.

Limits (defaults; every call may lower or raise them):
- `max_bytes` (default 16 MiB, `callmark.exports.MAX_MANIFEST_BYTES`): longer input is refused unread.
- `max_depth` (default 64): arrays/objects nested deeper are refused (counted without recursion).
- `max_number_len` (default 40 characters): longer number literals are refused (an int64 needs 20).
- lone UTF-16 surrogates (escaped `\\udXXX` not forming a pair) and invalid UTF-8 are refused.
- NUL characters (`\\u0000`) in strings or keys are refused: no text field means one, C-string APIs
  truncate at it and PostgreSQL's text type cannot store it.
- `NaN`, `Infinity`, `-Infinity` are refused.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np

MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64
MAX_NUMBER_LEN = 40

_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.S)
_NUMBER_CHARS = rb"[-+.0-9eE]"
_ESC_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_ESC_NUL = re.compile(rb"\\u0000")
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[ord("[")] = _OPEN[ord("{")] = 1
_OPEN[ord("]")] = _OPEN[ord("}")] = -1


class JSONInputError(ValueError):
    """Untrusted JSON was refused: malformed, too large, too deep, a too-long number, a lone
    surrogate, invalid UTF-8 or a non-standard constant. `what` names the input, `reason` the
    problem; str(e) is one line: "<what>: <reason>"."""

    def __init__(self, what: str, reason: str):
        super().__init__(f"{what}: {reason}")
        self.what, self.reason = what, reason


def _depth(stripped: bytes) -> int:
    """Deepest [ / { nesting of a JSON text whose strings are blanked out (no recursion)."""
    if stripped.count(b"[") + stripped.count(b"{") == 0:
        return 0
    marks = stripped.translate(None, _BRACKETS)
    if not marks:
        return 0
    steps = _OPEN[np.frombuffer(marks, dtype=np.uint8)].astype(np.int64)
    return int(np.cumsum(steps).max())


def _bad_text(obj: Any, nul: bool) -> str | None:
    """The problem with a string (value or key) holding a lone surrogate, or a NUL when `nul`; else None."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, str):
            if nul and "\x00" in o:
                return "holds a NUL character (\\u0000), which no text field may contain"
            try:
                o.encode("utf-8")
            except UnicodeEncodeError:
                return "holds a lone UTF-16 surrogate escape (e.g. \\ud800 without its pair)"
        elif isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
    return None


def loads(data: bytes | bytearray | str, what: str = "JSON input", *, max_bytes: int = MAX_BYTES,
          max_depth: int = MAX_DEPTH, max_number_len: int = MAX_NUMBER_LEN) -> Any:
    """Parse untrusted JSON text (UTF-8 bytes or str) within the limits above.

    Returns the parsed value (dict, list, str, int, float, bool or None).
    Raises JSONInputError (a ValueError) with a one-line message "<what>: <problem>".
    """
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError:
            raise JSONInputError(what, "holds a lone UTF-16 surrogate (not valid Unicode text)") from None
    else:
        raw = bytes(data)
    if len(raw) > max_bytes:
        raise JSONInputError(what, f"{len(raw)} bytes, more than the {max_bytes} allowed")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise JSONInputError(what, f"not UTF-8 (bad byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    stripped = _STRING.sub(b'""', raw) if b'"' in raw else raw
    depth = _depth(stripped)
    if depth > max_depth:
        raise JSONInputError(what, f"nested {depth} levels deep, more than the {max_depth} allowed")
    m = re.search(_NUMBER_CHARS + b"{%d,}" % (max_number_len + 1), stripped)
    if m:
        raise JSONInputError(what, f"a number of {len(m.group())} characters at offset {m.start()} "
                                   f"(of the text without strings), more than the {max_number_len} allowed")

    def constant(name: str):
        raise JSONInputError(what, f"{name} is not valid JSON")

    try:
        obj = json.loads(text, parse_constant=constant)
    except JSONInputError:
        raise
    except json.JSONDecodeError as e:
        raise JSONInputError(what, f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except (ValueError, RecursionError) as e:      # defensive: the checks above should catch these
        raise JSONInputError(what, f"not acceptable JSON ({type(e).__name__}: {str(e)[:80]})") from None
    nul = bool(_ESC_NUL.search(raw))
    if nul or _ESC_SURROGATE.search(raw):
        problem = _bad_text(obj, nul)
        if problem:
            raise JSONInputError(what, problem)
    return obj


def load_path(path: str | Path, what: str | None = None, **limits: Any) -> Any:
    """Read and parse a JSON file; reads at most max_bytes + 1 bytes. Errors name the file.

    Raises JSONInputError, or OSError when the file cannot be read."""
    max_bytes = limits.get("max_bytes", MAX_BYTES)
    with open(path, "rb") as f:
        raw = f.read(max_bytes + 1)
    return loads(raw, what or str(path), **limits)


def iter_lines(lines: Iterator[bytes | str], what: str, first_line: int = 1, **limits: Any) -> Iterator[Any]:
    """Parse JSON Lines; blank lines are skipped. Errors name `what` and the line number."""
    for n, line in enumerate(lines, first_line):
        if not line.strip():
            continue
        yield loads(line, f"{what} line {n}", **limits)
