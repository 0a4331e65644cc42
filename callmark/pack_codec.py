"""Pack wire codec: quantisation, Rice-coded key gaps, attribute columns, the state hash.

Everything here works on numpy columns so that a million entries encode and decode in well under a
second. The byte layout is specified in docs/pack-format.md; keep the two in step.
"""
from __future__ import annotations

import hashlib
import json
import math
import operator
import struct
from dataclasses import dataclass, field

import numpy as np
import zstandard

from callmark.errors import CallmarkError

WIRE_MAGIC = b"CMPK"
WIRE_FORMAT = 1
KIND_FULL = 1
KIND_DELTA = 2
ZSTD_LEVEL = 19
RICE_ESCAPE = 64  # a quotient >= this is written as 64 one-bits + a varint of (q - 64)
CONF_SCALE = 100  # confidence is stored in whole percent (0..100)
REPORTERS_EXACT = 16  # reporter counts below this are exact; above, 4 significant bits are kept
MAX_REPORTERS = 2**31 - 1
RANGE_SIZES = (10, 100)  # allowed range sizes (numbers per block)
MAX_RANGE_SIZE = max(RANGE_SIZES)
HASH_MOD = 1 << 256


class PackError(CallmarkError):
    """Base class of label-pack errors."""


class PackFormatError(PackError, ValueError):
    """A pack, wire blob or delta that does not follow docs/pack-format.md."""


class PackIntegrityError(PackError):
    """A blob whose SHA-256 or length differs from what the index or manifest names."""


class PackStateMismatch(PackError):
    """A pack whose state hash is not the one a delta starts from or should end at."""


# ---------------------------------------------------------------- quantisation

def quantize_confidence(conf) -> np.ndarray:
    """Confidence in [0, 1] -> whole percent (uint8 0..100)."""
    c = np.asarray(conf, dtype=np.float64)
    if np.isnan(c).any():
        raise PackFormatError("confidence contains NaN; give a number between 0 and 1")
    return np.clip(np.rint(c * CONF_SCALE), 0, CONF_SCALE).astype(np.uint8)


def reporters_code(rep) -> np.ndarray:
    """Reporter counts -> uint8 log-bucket codes (exact below 16, then 4 significant bits)."""
    r = np.clip(np.asarray(rep, dtype=np.int64), 0, MAX_REPORTERS)
    code = r.copy()
    big = r >= REPORTERS_EXACT
    if big.any():
        rb = r[big]
        e = np.floor(np.log2(rb.astype(np.float64))).astype(np.int64)
        e = np.where((1 << e) > rb, e - 1, e)  # guard float rounding
        e = np.where((1 << (e + 1)) <= rb, e + 1, e)
        mant = (rb >> (e - 3)) & 7
        code[big] = REPORTERS_EXACT + (e - 4) * 8 + mant
    return code.astype(np.uint8)


def reporters_value(code) -> np.ndarray:
    """Inverse of reporters_code: the lower bound of each bucket (a count 'at least N')."""
    c = np.asarray(code, dtype=np.int64)
    out = c.copy()
    big = c >= REPORTERS_EXACT
    if big.any():
        cb = c[big] - REPORTERS_EXACT
        e = cb // 8 + 4
        out[big] = (8 + cb % 8) << (e - 3)
    return out.astype(np.int64)


def quantize_reporters(rep) -> np.ndarray:
    """Reporter counts -> the stored (bucketed) counts."""
    return reporters_value(reporters_code(rep))


def day_of(ts) -> np.ndarray:
    """Epoch seconds -> epoch days (0 stays 0 = unknown)."""
    t = np.asarray(ts, dtype=np.float64)
    return np.clip(np.floor(np.nan_to_num(t, nan=0.0) / 86400.0), 0, 2**31 - 1).astype(np.int64)


# ---------------------------------------------------------------- tables

LABEL_COLS = ("key", "category", "confidence", "reporters", "flags", "last_day")
RANGE_COLS = ("start", "size", "category", "confidence", "numbers", "flags", "last_day")


def _i64(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.int64))


@dataclass
class PackTable:
    """Canonical (already quantised) pack content as numpy columns, sorted by key.

    labels: key, category (code), confidence (percent), reporters (bucketed), flags, last_day (epoch
    days). ranges: start (key of first number), size, category, confidence, numbers, flags, last_day.
    names: verified-business names {key: name} for label rows that have one.
    """

    labels: dict = field(default_factory=dict)
    ranges: dict = field(default_factory=dict)
    names: dict = field(default_factory=dict)

    def __post_init__(self):
        self.labels = {c: _i64(self.labels.get(c, ())) for c in LABEL_COLS}
        self.ranges = {c: _i64(self.ranges.get(c, ())) for c in RANGE_COLS}

    @property
    def n_labels(self) -> int:
        return len(self.labels["key"])

    @property
    def n_ranges(self) -> int:
        return len(self.ranges["start"])

    @property
    def entries(self) -> int:
        """Rows a lookup can hit: exact labels plus ranges."""
        return self.n_labels + self.n_ranges

    def sort(self) -> "PackTable":
        """Sort labels by key and ranges by (start, size); reject duplicate keys."""
        o = np.argsort(self.labels["key"], kind="stable")
        self.labels = {c: v[o] for c, v in self.labels.items()}
        k = self.labels["key"]
        if len(k) > 1 and (np.diff(k) == 0).any():
            dup = int(k[1:][np.diff(k) == 0][0])
            raise PackFormatError(f"number key {dup} appears twice; give each number one label row")
        o = np.lexsort((self.ranges["size"], self.ranges["start"]))
        self.ranges = {c: v[o] for c, v in self.ranges.items()}
        s, z = self.ranges["start"], self.ranges["size"]
        if len(s) > 1 and ((np.diff(s) == 0) & (np.diff(z) == 0)).any():
            raise PackFormatError("a range (start, size) appears twice; give each block one row")
        return self

    def validate(self) -> "PackTable":
        """Check value domains; raises PackFormatError saying which column is out of range."""
        checks = [("labels", self.labels, "key", 1, 2**62), ("labels", self.labels, "category", 0, 65535),
                  ("labels", self.labels, "confidence", 0, CONF_SCALE),
                  ("labels", self.labels, "reporters", 0, MAX_REPORTERS),
                  ("labels", self.labels, "flags", 0, 65535), ("labels", self.labels, "last_day", 0, 2**31 - 1),
                  ("ranges", self.ranges, "start", 1, 2**62), ("ranges", self.ranges, "category", 0, 65535),
                  ("ranges", self.ranges, "confidence", 0, CONF_SCALE),
                  ("ranges", self.ranges, "numbers", 0, MAX_REPORTERS),
                  ("ranges", self.ranges, "flags", 0, 65535), ("ranges", self.ranges, "last_day", 0, 2**31 - 1)]
        for tname, t, col, lo, hi in checks:
            v = t[col]
            if len(v) and (v.min() < lo or v.max() > hi):
                raise PackFormatError(f"{tname}.{col} must lie in [{lo}, {hi}], got [{v.min()}, {v.max()}]")
        if self.n_ranges and not np.isin(self.ranges["size"], RANGE_SIZES).all():
            raise PackFormatError(f"range size must be one of {RANGE_SIZES}")
        if self.n_labels and not np.array_equal(quantize_reporters(self.labels["reporters"]),
                                                self.labels["reporters"]):
            raise PackFormatError("labels.reporters is not bucketed; pass counts through quantize_reporters")
        for k, name in self.names.items():
            if not name or "\x00" in name:
                raise PackFormatError(f"business name for key {k} is empty or contains NUL")
        return self

    def subset(self, mask: np.ndarray, keep_ranges: bool = True) -> "PackTable":
        """The rows of `mask` (a boolean array over labels), with names that belong to them."""
        labels = {c: v[mask] for c, v in self.labels.items()}
        keys = set(labels["key"].tolist()) if self.names else set()
        names = {k: v for k, v in self.names.items() if k in keys}
        ranges = self.ranges if keep_ranges else {}
        return PackTable(labels, dict(ranges), names)

    def equals(self, other: "PackTable") -> bool:
        """True when both tables hold the same rows."""
        return (all(np.array_equal(self.labels[c], other.labels[c]) for c in LABEL_COLS)
                and all(np.array_equal(self.ranges[c], other.ranges[c]) for c in RANGE_COLS)
                and self.names == other.names)


# ---------------------------------------------------------------- state hash

_LABEL_DT = np.dtype([("t", "S1"), ("key", ">u8"), ("category", ">u2"), ("confidence", "u1"),
                      ("reporters", ">u4"), ("flags", ">u2"), ("last_day", ">u4")])
_RANGE_DT = np.dtype([("t", "S1"), ("start", ">u8"), ("size", ">u4"), ("category", ">u2"),
                      ("confidence", "u1"), ("numbers", ">u4"), ("flags", ">u2"), ("last_day", ">u4")])


def _rows_bytes(cols: dict, dt: np.dtype, tag: bytes) -> tuple[bytes, int]:
    n = len(next(iter(cols.values()))) if cols else 0
    a = np.zeros(n, dtype=dt)
    a["t"] = tag
    for name in dt.names[1:]:
        a[name] = cols[name]
    return a.tobytes(), dt.itemsize


try:  # CPython's own SHA-256: a third of OpenSSL's per-call overhead on 22-byte rows, same digests
    from _sha256 import sha256 as _row_sha256
except ImportError:  # pragma: no cover - other Pythons
    try:
        from _sha2 import sha256 as _row_sha256
    except ImportError:
        _row_sha256 = hashlib.sha256
_DIGEST = operator.methodcaller("digest")


def _digest_sum(buf: bytes, size: int) -> int:
    total, step = 0, size * (1 << 18)
    for s in range(0, len(buf), step):  # 256 k rows at a time keeps memory flat
        rows = [buf[i:i + size] for i in range(s, min(len(buf), s + step), size)]
        total += _sum_digests(b"".join(map(_DIGEST, map(_row_sha256, rows))))
    return total % HASH_MOD


def _sum_digests(digests: bytes) -> int:
    limbs = np.frombuffer(digests, dtype=">u4").reshape(-1, 8).astype(np.uint64)
    total = 0
    for start in range(0, len(limbs), 1 << 30):  # each limb sum stays below 2**62
        sums = limbs[start:start + (1 << 30)].sum(axis=0, dtype=np.uint64)
        for j, s in enumerate(sums.tolist()):
            total += int(s) << (32 * (7 - j))
    return total % HASH_MOD


def name_row(key: int, name: str) -> bytes:
    """Canonical encoding of a business-name row."""
    return b"B" + struct.pack(">Q", int(key)) + name.encode("utf-8")


def rows_hash(labels: dict | None = None, ranges: dict | None = None, names: dict | None = None) -> int:
    """Sum mod 2**256 of SHA-256 over the canonical encoding of every given row (a multiset hash)."""
    total = 0
    if labels is not None and len(labels["key"]):
        total += _digest_sum(*_rows_bytes(labels, _LABEL_DT, b"L"))
    if ranges is not None and len(ranges["start"]):
        total += _digest_sum(*_rows_bytes(ranges, _RANGE_DT, b"R"))
    for k, v in (names or {}).items():
        total += int.from_bytes(hashlib.sha256(name_row(k, v)).digest(), "big")
    return total % HASH_MOD


def table_hash(t: PackTable) -> int:
    """State hash of a whole table."""
    return rows_hash(t.labels, t.ranges, t.names)


def hash_hex(h: int) -> str:
    """64-hex-digit form of a state hash."""
    return f"{h % HASH_MOD:064x}"


# ---------------------------------------------------------------- integer codes

def varints(values) -> bytes:
    """LEB128 encoding of non-negative ints (few values: a plain loop)."""
    out = bytearray()
    for v in values:
        v = int(v)
        while True:
            b = v & 0x7F
            v >>= 7
            if v:
                out.append(b | 0x80)
            else:
                out.append(b)
                break
    return bytes(out)


def read_varints(buf: bytes, n: int) -> list[int]:
    """Decode n LEB128 ints from buf."""
    out, v, shift, pos = [], 0, 0, 0
    while len(out) < n:
        if pos >= len(buf):
            raise PackFormatError("varint stream ends early")
        b = buf[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            out.append(v)
            v, shift = 0, 0
    return out


def rice_cost_bits(gaps: np.ndarray, k: int) -> int:
    """Exact size in bits of the Rice code of `gaps` with parameter k (escapes included)."""
    g = np.asarray(gaps, dtype=np.uint64)
    q = (g >> np.uint64(k)).astype(np.int64) if len(g) else np.zeros(0, np.int64)
    esc = q >= RICE_ESCAPE
    bits = int(np.minimum(q, RICE_ESCAPE).sum()) + len(g) * (1 + k)
    if esc.any():
        bits += 8 * len(varints(q[esc] - RICE_ESCAPE))
    return bits


def best_rice_k(gaps: np.ndarray) -> int:
    """The Rice parameter that minimises the coded size."""
    if not len(gaps):
        return 0
    m = float(np.median(np.asarray(gaps, dtype=np.float64))) + 1.0
    guess = max(0, int(math.log2(m)))
    cands = range(max(0, guess - 3), min(62, guess + 4))
    return min(cands, key=lambda k: rice_cost_bits(gaps, k))


def rice_encode(gaps: np.ndarray, k: int) -> tuple[bytes, bytes, bytes]:
    """Rice code split into three streams: unary quotients, k-bit remainders, escape varints."""
    g = np.asarray(gaps, dtype=np.uint64)
    n = len(g)
    q = (g >> np.uint64(k)).astype(np.int64)
    qc = np.minimum(q, RICE_ESCAPE)
    total = int(qc.sum()) + n
    bits = np.ones(total, dtype=np.uint8)
    bits[np.cumsum(qc + 1) - 1] = 0
    unary = np.packbits(bits).tobytes()
    if k:
        rem = (g & np.uint64((1 << k) - 1))
        parts = []
        for s in range(0, n, 1 << 18):
            r = rem[s:s + (1 << 18)]
            shifts = np.arange(k - 1, -1, -1, dtype=np.uint64)
            parts.append(((r[:, None] >> shifts) & np.uint64(1)).astype(np.uint8).ravel())
        remb = np.packbits(np.concatenate(parts) if parts else np.zeros(0, np.uint8)).tobytes()
    else:
        remb = b""
    esc = varints((q[q >= RICE_ESCAPE] - RICE_ESCAPE).tolist())
    return unary, remb, esc


def rice_decode(unary: bytes, remb: bytes, esc: bytes, n: int, k: int) -> np.ndarray:
    """Inverse of rice_encode."""
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    bits = np.unpackbits(np.frombuffer(unary, dtype=np.uint8))
    z = np.flatnonzero(bits == 0)[:n]
    if len(z) < n:
        raise PackFormatError("Rice stream ends early")
    q = np.diff(z, prepend=-1).astype(np.int64) - 1
    big = q == RICE_ESCAPE
    if big.any():
        q[big] += np.array(read_varints(esc, int(big.sum())), dtype=np.int64)
    g = q.astype(np.uint64) << np.uint64(k)
    if k:
        rb = np.unpackbits(np.frombuffer(remb, dtype=np.uint8))[: n * k]
        if len(rb) < n * k:
            raise PackFormatError("Rice remainder stream ends early")
        kb = (k + 7) // 8 * 8  # left-pad each remainder to whole bytes, pack, read big-endian
        padded = np.zeros((n, kb), dtype=np.uint8)
        padded[:, kb - k:] = rb.reshape(n, k)
        by = np.packbits(padded, axis=1)
        r = by[:, 0].astype(np.uint64)
        for j in range(1, kb // 8):
            r = (r << np.uint64(8)) | by[:, j]
        g |= r
    return g


def keys_to_gaps(keys: np.ndarray, strict: bool = True) -> np.ndarray:
    """Sorted keys -> gaps (first gap = first key; strict: minus one, as keys never repeat)."""
    k = np.asarray(keys, dtype=np.int64)
    if not len(k):
        return np.zeros(0, dtype=np.uint64)
    d = np.diff(k, prepend=0)
    if strict:
        d[1:] -= 1
    if (d < 0).any():
        raise PackFormatError("keys are not sorted ascending")
    return d.astype(np.uint64)


def gaps_to_keys(gaps: np.ndarray, strict: bool = True) -> np.ndarray:
    """Inverse of keys_to_gaps."""
    g = np.asarray(gaps, dtype=np.uint64).astype(np.int64)
    if strict and len(g):
        g = g.copy()
        g[1:] += 1
    return np.cumsum(g, dtype=np.int64)


def entropy_bits(values) -> float:
    """Empirical (order-0) entropy of a column, in bits for the whole column."""
    v = np.asarray(values)
    if not len(v):
        return 0.0
    _, counts = np.unique(v, return_counts=True)
    p = counts / len(v)
    return float(-(counts * np.log2(p)).sum())


# ---------------------------------------------------------------- columns

def column_planes(values: np.ndarray) -> tuple[int, bytes]:
    """Non-negative ints -> (width in bytes, little-endian byte planes concatenated)."""
    v = np.asarray(values, dtype=np.uint64)
    top = int(v.max()) if len(v) else 0
    width = max(1, (top.bit_length() + 7) // 8)
    planes = [((v >> np.uint64(8 * i)) & np.uint64(0xFF)).astype(np.uint8).tobytes() for i in range(width)]
    return width, b"".join(planes)


def planes_column(buf: bytes, n: int, width: int) -> np.ndarray:
    """Inverse of column_planes."""
    a = np.frombuffer(buf, dtype=np.uint8)
    if len(a) != n * width:
        raise PackFormatError("attribute column has the wrong length")
    out = np.zeros(n, dtype=np.int64)
    for i in range(width):
        out |= a[i * n:(i + 1) * n].astype(np.int64) << (8 * i)
    return out


def zc(data: bytes, level: int = ZSTD_LEVEL) -> bytes:
    """zstd-compress."""
    return zstandard.ZstdCompressor(level=level).compress(data)


def zd(data: bytes, limit: int = 1 << 31) -> bytes:
    """zstd-decompress (bounded)."""
    try:
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=limit)
    except zstandard.ZstdError as exc:
        raise PackFormatError(f"corrupt compressed section: {exc}") from None


def header_bytes(header: dict) -> bytes:
    """Compact JSON of a wire header."""
    return json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
