"""Consensus per source profile: each source's events get its profile's policy; one result.

`run_sources(inputs, overrides, as_of) -> ConsensusResult`:
- a `crowd` source runs `trainer.consensus.run` with `ConsensusConfig(**profile.consensus,
  **overrides)` (the profile's parameters, then the build's own overrides) over that source's
  events only, as of its own newest event unless `as_of` is given (each stream keeps its clock);
- a `list` source (a published community list such as PhoneBlock's) is not re-voted: each number
  keeps the list's category, confidence = Wilson 95 % lower bound of its net votes
  (callmark.sources.wilson_lower, PhoneBlock's own measure), reporters = net votes, published at
  >= `min_votes`. A verified business is never published harmful; an accepted appeal suppresses
  list rows older than the appeal.
Merge: one row per number; a published row beats an unpublished one, then the higher confidence.
Ranges are kept from every crowd source, minus blocks that cover a number published benign.
"""
from __future__ import annotations

import numpy as np

from callmark.categories import CATEGORIES
from callmark.labels import FLAG_APPEAL_SUPPRESSED, FLAG_VERIFIED
from callmark.sources import profile, wilson_lower
from trainer import consensus as consensus_lib
from trainer.consensus_output import ConsensusResult, RangeLabels

HARMFUL_CODES = np.array([c.code for c in CATEGORIES if c.harmful], np.int16)


def config_for(source: str, overrides: dict | None = None) -> consensus_lib.ConsensusConfig:
    """The ConsensusConfig of a crowd source: its profile's parameters, then `overrides`."""
    return consensus_lib.ConsensusConfig.from_dict(dict(profile(source).consensus, **(overrides or {})))


def list_result(rows, source: str, as_of=None, verified: dict | None = None,
                appeals: dict | None = None) -> ConsensusResult:
    """Labels of a `list` source's rows (trainer.sources.ListRows); see the module doc."""
    prof = profile(source)
    n = len(rows)
    conf = np.array([wilson_lower(v) for v in rows.votes.tolist()], np.float64)
    published = rows.votes >= prof.min_votes
    flags = np.zeros(n, np.int64)
    company = [""] * n
    if as_of is not None:
        keep = rows.ts <= consensus_lib.parse_as_of(as_of)
        published &= keep
    harmful = np.isin(rows.category, HARMFUL_CODES)
    for i, k in enumerate(rows.key.tolist()):
        if verified and k in verified:
            flags[i] |= FLAG_VERIFIED
            company[i] = verified[k]
            if harmful[i]:
                published[i] = False
        for a in (appeals or {}).get(k, ()):
            if int(rows.category[i]) in a.codes and int(rows.ts[i]) < a.filed_ts:
                flags[i] |= FLAG_APPEAL_SUPPRESSED
                published[i] = False
    as_of_ts = int(rows.ts.max()) if n else 0
    return ConsensusResult(rows.key.copy(), rows.category.copy(), conf, rows.votes.copy(), published,
                           flags, rows.ts.copy(), company, None, as_of_ts,
                           {"policy": "list", "min_votes": prof.min_votes},
                           {"numbers": n, "published": int(published.sum()), "events": n})


def merge(results: dict[str, ConsensusResult]) -> ConsensusResult:
    """One result of several (see the module doc); `stats["sources"]` keeps each one's figures."""
    items = [r for r in results.values() if len(r)]
    if len(items) == 1 and len(results) == 1:
        r = items[0]
        r.stats = dict(r.stats, sources={next(iter(results)): _figures(r)})
        return r
    cols = {c: np.concatenate([getattr(r, c) for r in items]) if items else np.zeros(0)
            for c in ("key", "category", "confidence", "reporters", "published", "flags", "last_ts")}
    company = [c for r in items for c in r.company]
    n = cols["key"].shape[0]
    # best row per key: published first, then confidence (lexsort: last key is primary)
    order = np.lexsort((-cols["confidence"], ~cols["published"].astype(bool), cols["key"]))
    first = np.ones(n, bool)
    first[1:] = cols["key"][order][1:] != cols["key"][order][:-1]
    pick = order[first]
    out = {c: v[pick] for c, v in cols.items()}
    ranges = _merge_ranges([r.ranges for r in items], out)
    as_of = max((r.as_of for r in items), default=0)
    stats = {"numbers": int(pick.size), "published": int(out["published"].sum()),
             "events": int(sum(r.stats.get("events", 0) for r in items)),
             "sources": {name: _figures(r) for name, r in results.items()}}
    return ConsensusResult(out["key"].astype(np.int64), out["category"].astype(np.int16),
                           out["confidence"].astype(np.float64), out["reporters"].astype(np.int64),
                           out["published"].astype(bool), out["flags"].astype(np.int64),
                           out["last_ts"].astype(np.int64), [company[i] for i in pick.tolist()],
                           ranges, as_of, {n: r.config for n, r in results.items()}, stats)


def _figures(r: ConsensusResult) -> dict:
    return {"numbers": len(r), "published": int(r.published.sum()),
            "events": int(r.stats.get("events", 0)), "ranges": 0 if r.ranges is None else len(r.ranges)}


def _merge_ranges(parts, labels: dict) -> RangeLabels | None:
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        return None
    cols = {c: np.concatenate([getattr(p, c) for p in parts])
            for c in ("start", "size", "category", "confidence", "numbers", "last_ts")}
    _, idx = np.unique(np.stack([cols["start"], cols["size"]]), axis=1, return_index=True)
    keep = np.zeros(cols["start"].shape[0], bool)
    keep[idx] = True
    benign = labels["key"][labels["published"].astype(bool)
                           & ~np.isin(labels["category"], HARMFUL_CODES)]
    for i in np.flatnonzero(keep):
        s, z = int(cols["start"][i]), int(cols["size"][i])
        if np.any((benign >= s) & (benign < s + z)):
            keep[i] = False
    return RangeLabels(*(cols[c][keep] for c in ("start", "size", "category", "confidence",
                                                  "numbers", "last_ts")))


def run_sources(inputs, overrides: dict | None = None, as_of=None) -> ConsensusResult:
    """Consensus over `inputs` (trainer.sources.BuildInputs), one policy per source profile."""
    side = inputs.side
    results: dict[str, ConsensusResult] = {}
    for name, events in inputs.groups.items():
        if len(events):
            results[name] = consensus_lib.run(events, config_for(name, overrides), as_of=as_of, **side)
    for name, rows in inputs.lists.items():
        results[name] = list_result(rows, name, as_of, side["verified"], side["appeals"])
    if not results:
        raise ValueError("no events to run the consensus on")
    return merge(results)
