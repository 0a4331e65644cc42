"""Lookup: k-anonymous hash-prefix buckets from the published labels.

The phone hashes the E.164 string with SHA-256, sends only a short hex prefix and gets every label
in that bucket; it matches the full hash locally. Prefixes longer than the table size allows
(expected bucket < k labels) are refused, so a bucket never narrows down to one number."""
from __future__ import annotations

import math

from flask import request
from flask_smorest import Blueprint

from server.errors import Unprocessable
from server.schemas import LookupAnswer, LookupInfo
from server.web import Ctx


def max_prefix(entries: int, k: int, lo: int, hi: int) -> int:
    """Longest prefix (hex chars) whose expected bucket still holds >= k labels, within [lo, hi]."""
    best = int(math.floor(math.log(entries / k, 16))) if entries >= k else 0
    return max(lo, min(hi, best))


DEFAULT_CHANNEL = "stable"


def make_blueprint(c: Ctx) -> Blueprint:
    blp = Blueprint("lookup", __name__, url_prefix="/v1", description="k-anonymous label lookup")
    cfg = c.config

    def source(channel: str | None):
        """(release table or None, entries, version): the channel's published release when it has
        one (rebuilt when its manifest version changes), else the admin-loaded store table."""
        ch = (channel or DEFAULT_CHANNEL).strip().lower()
        table = c.lookups.table(ch) if c.lookups is not None else None
        if table is None and channel and channel.strip().lower() != DEFAULT_CHANNEL:
            raise Unprocessable(f"channel {channel!r} has no readable release to look up in "
                                f"(published: {c.exports.channels()})",
                                {"query": {"channel": ["no release"]}})
        if table is not None:
            return table, table.entries, table.version
        meta = c.store.lookup_meta()
        return None, int(meta.get("lookup_count", 0)), meta.get("lookup_version")

    def info(channel: str | None = None) -> dict:
        _, n, version = source(channel)
        return {"entries": n, "version": version, "k": cfg.lookup_k,
                "min_prefix": cfg.lookup_min_prefix,
                "max_prefix": max_prefix(n, cfg.lookup_k, cfg.lookup_min_prefix,
                                         cfg.lookup_max_prefix),
                "hash": "sha256 hex of the E.164 string, e.g. sha256('+8613812345678')"}

    @blp.route("/lookup", methods=["GET"])
    @blp.response(200, LookupInfo)
    def lookup_info():
        """How to query: current table size and the accepted prefix lengths (`?channel=`,
        default stable: the labels of the channel's published release)."""
        return info(request.args.get("channel"))

    @blp.route("/lookup/<string:hash_prefix>", methods=["GET"])
    @blp.response(200, LookupAnswer)
    @blp.alt_response(422, schema=None, description="Prefix not hex, too long or too short")
    def lookup(hash_prefix: str):
        """Every published label whose number hash starts with `hash_prefix` (`?channel=`)."""
        p = hash_prefix.lower()
        channel = request.args.get("channel")
        table, n, version = source(channel)
        meta = info(channel)
        if not p or any(ch not in "0123456789abcdef" for ch in p):
            raise Unprocessable("hash_prefix must be hexadecimal (a prefix of the SHA-256 of the "
                                "E.164 number)", {"path": {"hash_prefix": ["not hex"]}})
        if not meta["min_prefix"] <= len(p) <= meta["max_prefix"]:
            raise Unprocessable(
                f"hash_prefix must be {meta['min_prefix']}..{meta['max_prefix']} hex chars so "
                f"each bucket holds at least {cfg.lookup_k} labels (got {len(p)})",
                {"path": {"hash_prefix": [f"length must be {meta['min_prefix']}.."
                                          f"{meta['max_prefix']}"]}})
        rows = (table.prefix(p, cfg.lookup_max_bucket) if table is not None
                else c.store.lookup_prefix(p, cfg.lookup_max_bucket))
        if len(rows) > cfg.lookup_max_bucket:
            raise Unprocessable(f"bucket too large; use a longer prefix (up to "
                                f"{meta['max_prefix']} chars)")
        return {"prefix": p, "version": version, "labels": rows}

    return blp
