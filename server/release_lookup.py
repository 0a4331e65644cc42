"""The k-anonymous lookup table of each channel, read from the channel's published release.

A channel's table holds every exact label of its `full` packs (all regions), keyed by the SHA-256
of the number's E.164 string (callmark.numbers.lookup_hash). It is rebuilt when the channel's
manifest version changes (`Exports.manifest` notices a publish by the file's stat), so a publish
needs no admin step; each server process holds its own copy (numpy columns, ~60 bytes a label).
Range labels are not in it: a range has no single number to hash, and phones hold ranges in their
packs. A pack that cannot be read leaves the table out (`error` says why); the lookup endpoint then
answers from the store's admin-loaded table, as before releases existed.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from callmark.categories import CATEGORIES
from callmark.numbers import format_key, lookup_hash
from callmark.pack_wire import decode_full
from server.errors import NotFound

_CAT_KEYS = {c.code: c.key for c in CATEGORIES}


@dataclass
class LookupTable:
    """One channel's labels sorted by hash (parallel columns)."""

    channel: str
    manifest_version: int
    hashes: np.ndarray  # sorted fixed-width ASCII hex hashes ('S64')
    cols: dict = field(default_factory=dict)  # code, confidence, reporters, flags, last_ts
    companies: dict = field(default_factory=dict)  # row index -> verified company name
    regions: tuple = ()

    @property
    def entries(self) -> int:
        return int(self.hashes.shape[0])

    @property
    def version(self) -> str:
        return f"{self.channel}-v{self.manifest_version}"

    def prefix(self, prefix: str, limit: int) -> list[dict]:
        """Rows whose hash starts with `prefix` (lower-case hex), at most `limit` + 1."""
        lo = int(np.searchsorted(self.hashes, prefix.encode("ascii"), "left"))
        hi = int(np.searchsorted(self.hashes, (prefix + "g").encode("ascii"), "left"))
        hi = min(hi, lo + limit + 1)
        c = self.cols
        out = []
        for i in range(lo, hi):
            code = int(c["code"][i])
            out.append({"hash": self.hashes[i].decode("ascii"), "category": _CAT_KEYS.get(code, str(code)),
                        "code": code, "confidence": round(float(c["confidence"][i]) / 100.0, 2),
                        "reporters": int(c["reporters"][i]), "flags": int(c["flags"][i]),
                        "last_ts": int(c["last_day"][i]) * 86400 or None,
                        "company": self.companies.get(i)})
        return out


def build_table(exports, channel: str) -> LookupTable:
    """Read the channel's current full packs from `exports` (server.exports.Exports) into a table.
    Raises NotFound when the channel has no manifest, ValueError/OSError for unreadable packs."""
    pm = exports.manifest(channel)
    packs = [p for p in pm.signed.get("packs", []) if isinstance(p, dict) and p.get("tier") == "full"]
    hashes, parts, names = [], [], []
    for p in packs:
        path = exports.artefact_path(str(p["path"]).rsplit("/", 1)[-1])  # names checked
        _, t, _ = decode_full(path.read_bytes())
        keys = t.labels["key"].tolist()
        hashes.extend(lookup_hash(format_key(k)) for k in keys)
        parts.append(t.labels)
        names.extend(t.names.get(k) for k in keys)
    h = np.array(hashes, dtype="S64") if hashes else np.zeros(0, "S64")
    order = np.argsort(h, kind="stable")
    cols = {}
    for c in ("category", "confidence", "reporters", "flags", "last_day"):
        col = np.concatenate([x[c] for x in parts]) if parts else np.zeros(0, np.int64)
        cols["code" if c == "category" else c] = col[order]
    companies = {i: names[j] for i, j in enumerate(order.tolist()) if names[j]}
    return LookupTable(channel, pm.version, h[order], cols, companies,
                       tuple(sorted({str(p.get("region")) for p in packs})))


class ReleaseLookups:
    """Per-channel tables, rebuilt when a channel's manifest version changes (thread-safe)."""

    def __init__(self, exports):
        self.exports = exports
        self._tables: dict[str, LookupTable] = {}
        self._errors: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()

    def table(self, channel: str) -> LookupTable | None:
        """The channel's current table, None when it has no release or its packs are unreadable."""
        try:
            version = self.exports.manifest(channel).version
        except NotFound:
            return None
        except Exception:  # noqa: BLE001 - a broken manifest: readyz reports it elsewhere
            return None
        have = self._tables.get(channel)
        if have is not None and have.manifest_version == version:
            return have
        if self._errors.get(channel, (None,))[0] == version:
            return None
        with self._lock:
            have = self._tables.get(channel)
            if have is not None and have.manifest_version == version:
                return have
            try:
                t = build_table(self.exports, channel)
            except (ValueError, OSError, KeyError, TypeError) as e:  # PackFormatError is a ValueError
                self._errors[channel] = (version, f"{type(e).__name__}: {e}")
                self._tables.pop(channel, None)
                return None
            self._tables[channel] = t
            self._errors.pop(channel, None)
            return t

    def status(self) -> dict:
        """{channel: {entries, version, regions} or {error}} for every published channel."""
        out = {}
        for ch in self.exports.channels():
            t = self.table(ch)
            if t is not None:
                out[ch] = {"entries": t.entries, "version": t.version, "regions": list(t.regions)}
            elif ch in self._errors:
                out[ch] = {"error": self._errors[ch][1]}
        return out
