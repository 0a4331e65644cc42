"""Pack and delta wire blobs: the compact download form (layout in docs/pack-format.md)."""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

import numpy as np

from callmark import categories as _categories
from callmark.labels import FLAG_VERIFIED
from callmark.pack_codec import (
    KIND_DELTA, KIND_FULL, LABEL_COLS, RANGE_COLS, RANGE_SIZES, WIRE_FORMAT, WIRE_MAGIC,
    PackFormatError, PackTable, best_rice_k, column_planes, gaps_to_keys, header_bytes, keys_to_gaps,
    planes_column, reporters_code, reporters_value, rice_decode, rice_encode, zc, zd,
)

_PREFIX = struct.Struct("<4sBBI")  # magic, format, kind, header length


@dataclass
class Delta:
    """Decoded delta content: label removals and upserts, range removals and upserts."""

    removals: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # label keys
    upserts: PackTable = field(default_factory=PackTable)  # labels + names (+ upserted ranges)
    range_removals: dict = field(default_factory=lambda: {"start": np.zeros(0, np.int64),
                                                          "size": np.zeros(0, np.int64)})

    @property
    def changed(self) -> int:
        return (len(self.removals) + self.upserts.n_labels + self.upserts.n_ranges
                + len(self.range_removals["start"]))


class _Writer:
    def __init__(self):
        self.sections, self.blobs = [], []

    def add(self, sid: str, meta: dict, *blobs: bytes):
        meta = dict(meta, id=sid, len=[len(b) for b in blobs])
        self.sections.append(meta)
        self.blobs.extend(blobs)

    def keys(self, sid: str, keys: np.ndarray, strict: bool = True):
        gaps = keys_to_gaps(keys, strict)
        k = best_rice_k(gaps)
        self.add(sid, {"n": len(gaps), "k": k}, *rice_encode(gaps, k))

    def cols(self, sid: str, cols: list, prefix: bytes = b"", extra: dict | None = None):
        widths, planes = [], [prefix]
        for c in cols:
            w, p = column_planes(c)
            widths.append(w)
            planes.append(p)
        n = len(cols[0]) if cols else 0
        self.add(sid, dict(extra or {}, n=n, w=widths, pre=len(prefix)), zc(b"".join(planes)))

    def blob(self, kind: int, header: dict) -> bytes:
        header = dict(header, sections=self.sections)
        h = header_bytes(header)
        return _PREFIX.pack(WIRE_MAGIC, WIRE_FORMAT, kind, len(h)) + h + b"".join(self.blobs)


class _Reader:
    def __init__(self, data: bytes):
        if len(data) < _PREFIX.size:
            raise PackFormatError("wire blob is too short to be a callmark pack")
        magic, fmt, kind, hlen = _PREFIX.unpack_from(data)
        if magic != WIRE_MAGIC:
            raise PackFormatError("not a callmark wire blob (bad magic); pass a .pack or .delta file")
        if fmt != WIRE_FORMAT:
            raise PackFormatError(f"wire format {fmt} is not supported (this client reads {WIRE_FORMAT}); "
                                  "update the app")
        try:
            self.header = json.loads(data[_PREFIX.size:_PREFIX.size + hlen])
        except ValueError:
            raise PackFormatError("wire header is not valid JSON") from None
        self.kind = kind
        pos = _PREFIX.size + hlen
        self.parts = {}
        for s in self.header.get("sections", []):
            chunks = []
            for ln in s["len"]:
                if pos + ln > len(data):
                    raise PackFormatError(f"wire blob is truncated inside section {s['id']!r}")
                chunks.append(data[pos:pos + ln])
                pos += ln
            self.parts[s["id"]] = (s, chunks)
        if pos != len(data):
            raise PackFormatError("wire blob has trailing bytes")

    def has(self, sid):
        return sid in self.parts

    def keys(self, sid: str, strict: bool = True) -> np.ndarray:
        meta, (u, r, e) = self.parts[sid]
        return gaps_to_keys(rice_decode(u, r, e, meta["n"], meta["k"]), strict)

    def cols(self, sid: str) -> tuple[dict, bytes, list]:
        meta, (blob,) = self.parts[sid]
        raw = zd(blob)
        pre, n = meta["pre"], meta["n"]
        prefix, pos, out = raw[:pre], pre, []
        for w in meta["w"]:
            out.append(planes_column(raw[pos:pos + n * w], n, w))
            pos += n * w
        if pos != len(raw):
            raise PackFormatError(f"section {sid!r} has the wrong length")
        return meta, prefix, out

    def text(self, sid: str) -> str:
        return zd(self.parts[sid][1][0]).decode("utf-8")


def _label_cols(labels: dict, base_day: int) -> list:
    # Confidence is stored grouped by reporter code (stable order), so zstd sees its distribution
    # per reporter count: confidence depends on the number of reporters.
    rep = reporters_code(labels["reporters"])
    conf = labels["confidence"][np.argsort(rep, kind="stable")]
    return [labels["category"], conf, rep, labels["flags"], base_day - labels["last_day"]]


def _labels_from(keys, cols, base_day) -> dict:
    cat, grouped, rep, flags, age = cols
    conf = np.empty_like(grouped)
    conf[np.argsort(rep, kind="stable")] = grouped
    return dict(zip(LABEL_COLS, (keys, cat, conf, reporters_value(rep), flags, base_day - age)))


def _range_cols(ranges: dict, base_day: int) -> list:
    size_code = np.searchsorted(np.array(RANGE_SIZES), ranges["size"])
    return [size_code, ranges["category"], ranges["confidence"], ranges["numbers"], ranges["flags"],
            base_day - ranges["last_day"]]


def _ranges_from(starts, cols, base_day) -> dict:
    size_code, cat, conf, numbers, flags, age = cols
    if len(size_code) and size_code.max() >= len(RANGE_SIZES):
        raise PackFormatError("unknown range size code")
    sizes = np.array(RANGE_SIZES, dtype=np.int64)[size_code]
    return dict(zip(RANGE_COLS, (starts, sizes, cat, conf, numbers, flags, base_day - age)))


def _names_blob(t: PackTable) -> tuple[bytes, np.ndarray]:
    verified = t.labels["key"][(t.labels["flags"] & FLAG_VERIFIED) != 0]
    extra = set(t.names) - set(verified.tolist())
    if extra:
        raise PackFormatError(f"business name for key {min(extra)} whose row lacks the verified flag (1)")
    return "\x00".join(t.names.get(k, "") for k in verified.tolist()).encode("utf-8"), verified


def _names_from(text: str, labels: dict) -> dict:
    verified = labels["key"][(labels["flags"] & FLAG_VERIFIED) != 0].tolist()
    parts = text.split("\x00") if verified else []
    if len(parts) != len(verified):
        raise PackFormatError("business-name section does not match the verified rows")
    return {k: v for k, v in zip(verified, parts) if v}


def _base_day(*cols) -> int:
    return int(max([int(c.max()) for c in cols if len(c)] or [0]))


def encode_full(t: PackTable, meta: dict) -> bytes:
    """A full pack's wire blob. meta: name, region, tier, version, built_at, state_hash."""
    w = _Writer()
    base = _base_day(t.labels["last_day"], t.ranges["last_day"])
    w.keys("lk", t.labels["key"])
    w.cols("la", _label_cols(t.labels, base))
    w.keys("rk", t.ranges["start"], strict=False)
    w.cols("ra", _range_cols(t.ranges, base))
    names, _ = _names_blob(t)
    w.add("nm", {}, zc(names))
    cats = [c.to_dict() for c in _categories.CATEGORIES]
    w.add("ct", {}, zc(json.dumps(cats, ensure_ascii=False, separators=(",", ":")).encode()))
    header = dict(meta, base_day=base, labels=t.n_labels, ranges=t.n_ranges, entries=t.entries)
    return w.blob(KIND_FULL, header)


def decode_full(data: bytes) -> tuple[dict, PackTable, list]:
    """Wire blob -> (header, table, categories)."""
    r = _Reader(data)
    if r.kind != KIND_FULL:
        raise PackFormatError("this blob is a delta, not a full pack; use apply_delta")
    base = r.header["base_day"]
    labels = _labels_from(r.keys("lk"), r.cols("la")[2], base)
    ranges = _ranges_from(r.keys("rk", strict=False), r.cols("ra")[2], base)
    names = _names_from(r.text("nm"), labels)
    cats = json.loads(r.text("ct"))
    t = PackTable(labels, ranges, names)
    if t.n_labels != r.header.get("labels") or t.n_ranges != r.header.get("ranges"):
        raise PackFormatError("wire header counts do not match its content")
    return r.header, t, cats


def encode_delta(d: Delta, meta: dict) -> bytes:
    """A delta's wire blob. meta: name, from_version, version, from_state_hash, state_hash, entries."""
    w = _Writer()
    up = d.upserts
    base = _base_day(up.labels["last_day"], up.ranges["last_day"])
    keys = np.concatenate([d.removals, up.labels["key"]]).astype(np.int64)
    op = np.concatenate([np.zeros(len(d.removals), np.uint8), np.ones(up.n_labels, np.uint8)])
    order = np.argsort(keys, kind="stable")
    keys, op = keys[order], op[order]
    if len(keys) > 1 and (np.diff(keys) == 0).any():
        raise PackFormatError("a key is both removed and upserted in one delta")
    w.keys("dk", keys)
    w.cols("da", _label_cols(up.labels, base), prefix=np.packbits(op).tobytes())
    names, _ = _names_blob(up)
    w.add("dn", {}, zc(names))
    if len(d.range_removals["start"]) or up.n_ranges:
        rr = d.range_removals
        o = np.lexsort((rr["size"], rr["start"]))
        w.keys("xk", rr["start"][o], strict=False)
        w.cols("xa", [np.searchsorted(np.array(RANGE_SIZES), rr["size"][o])])
        w.keys("rk", up.ranges["start"], strict=False)
        w.cols("ra", _range_cols(up.ranges, base))
    header = dict(meta, base_day=base, removals=len(d.removals) + len(d.range_removals["start"]),
                  upserts=up.n_labels + up.n_ranges)
    return w.blob(KIND_DELTA, header)


def decode_delta(data: bytes) -> tuple[dict, Delta]:
    """Delta wire blob -> (header, Delta)."""
    r = _Reader(data)
    if r.kind != KIND_DELTA:
        raise PackFormatError("this blob is a full pack, not a delta; use expand_wire")
    base = r.header["base_day"]
    keys = r.keys("dk")
    meta, prefix, cols = r.cols("da")
    op = np.unpackbits(np.frombuffer(prefix, np.uint8))[: len(keys)].astype(bool)
    if len(op) != len(keys) or int(op.sum()) != meta["n"]:
        raise PackFormatError("delta operation column does not match its keys")
    labels = _labels_from(keys[op], cols, base)
    names = _names_from(r.text("dn"), labels)
    ranges, rr = {}, {"start": np.zeros(0, np.int64), "size": np.zeros(0, np.int64)}
    if r.has("xk"):
        starts = r.keys("xk", strict=False)
        (code,) = r.cols("xa")[2]
        rr = {"start": starts, "size": np.array(RANGE_SIZES, dtype=np.int64)[code]}
        ranges = _ranges_from(r.keys("rk", strict=False), r.cols("ra")[2], base)
    return r.header, Delta(keys[~op], PackTable(labels, ranges, names), rr)


def read_header(data: bytes) -> tuple[int, dict]:
    """(kind, header) of a wire blob without decoding its sections."""
    r = _Reader(data)
    return r.kind, r.header
