"""What a release changed: numbers added, removed, relabelled and confidence changes, per region.

`release_diff(old, new, top=10, min_confidence_change=0.05) -> ReleaseDiff`; `old` and `new` are
each one of:
- a build directory (`build.json` from `callmark build`; its `packs/`),
- a pack directory (`index.json` from `callmark pack build`),
- an exports directory, optionally with `:channel` and `@version` (`exports:stable@3`; default the
  current `stable` manifest), or a manifest file inside one (`exports/channels/stable/3.manifest.json`).
Only the `full` pack of each region is compared (lite and province packs are subsets of it), exact
labels and ranges separately. `ReleaseDiff.to_dict()` is JSON-ready; `.to_markdown()` a report.
Reads wire packs with callmark.pack_wire (no trainer, no server).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from callmark import exports as layout
from callmark.categories import CATEGORIES
from callmark.errors import CallmarkError
from callmark.numbers import format_key
from callmark.pack_wire import decode_full

_KEY = {c.code: c.key for c in CATEGORIES}


class DiffError(CallmarkError, ValueError):
    """A side of the diff that cannot be read (the message says what was expected)."""


@dataclass
class Side:
    """One side of a diff: where it came from and its full pack per region (wire files)."""

    label: str
    version: int | None
    packs: dict[str, Path]  # region -> wire pack file


def _from_pack_dir(d: Path, label: str) -> Side:
    try:
        idx = json.loads((d / "index.json").read_text())
        packs = {p["region"]: d / p["wire"] for p in idx["packs"] if p.get("tier") == "full"}
        return Side(label, int(idx["version"]), packs)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DiffError(f"{d}/index.json: not a pack index ({e})") from None


def _from_manifest(root: Path, path: Path, label: str) -> Side:
    try:
        signed = json.loads(path.read_text())["signed"]
        packs = {p["region"]: root / p["path"] for p in signed["packs"] if p.get("tier") == "full"}
        return Side(label, int(signed["version"]), packs)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DiffError(f"{path}: not a signed manifest ({e})") from None


def resolve(spec: str) -> Side:
    """A Side from a build dir, pack dir, exports dir (`[:channel][@version]`) or manifest file."""
    text = str(spec)
    p = Path(text)
    if p.is_file() and p.name.endswith("manifest.json"):
        root = p.parent.parent.parent  # exports/channels/<channel>/<file>
        return _from_manifest(root, p, text)
    if p.is_dir() and (p / "build.json").is_file():
        try:
            b = json.loads((p / "build.json").read_text())
            return _from_pack_dir(Path(b["pack_dir"]) if Path(b["pack_dir"]).is_dir()
                                  else p / "packs", text)
        except (ValueError, KeyError) as e:
            raise DiffError(f"{p}/build.json unreadable ({e}); rebuild it") from None
    if p.is_dir() and (p / "index.json").is_file():
        return _from_pack_dir(p, text)
    base, version = text, None
    if "@" in base:
        base, v = base.rsplit("@", 1)
        if not v.isdigit():
            raise DiffError(f"{spec}: the version after @ must be a number")
        version = int(v)
    channel = "stable"
    if not Path(base).is_dir() and ":" in base:
        base, channel = base.rsplit(":", 1)
    root = Path(base)
    if root.is_dir() and (root / layout.CHANNELS_DIR).is_dir():
        m = root / layout.manifest_path(channel, version)
        if not m.is_file():
            raise DiffError(f"{spec}: channel {channel} has no "
                            f"{'version ' + str(version) if version else 'manifest'} "
                            f"(versions: {layout.channel_versions(root, channel)})")
        return _from_manifest(root, m, text)
    raise DiffError(f"{spec}: not a build directory (build.json), pack directory (index.json), "
                    "exports directory (exports[:channel][@version]) or manifest file")


@dataclass
class RegionDiff:
    """Changes of one region's full pack."""

    region: str
    old_entries: int
    new_entries: int
    added: int
    removed: int
    relabelled: int
    confidence_changed: int
    unchanged: int
    ranges_added: int
    ranges_removed: int
    added_by_category: dict = field(default_factory=dict)
    removed_by_category: dict = field(default_factory=dict)
    relabelled_by_category: dict = field(default_factory=dict)  # "old->new" -> n
    top: dict = field(default_factory=dict)  # kind -> [rows]

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ReleaseDiff:
    """The whole diff (one RegionDiff per region on either side)."""

    old: str
    new: str
    old_version: int | None
    new_version: int | None
    regions: list[RegionDiff]

    def totals(self) -> dict:
        keys = ("added", "removed", "relabelled", "confidence_changed", "unchanged")
        return {k: sum(getattr(r, k) for r in self.regions) for k in keys}

    def to_dict(self) -> dict:
        return {"old": self.old, "new": self.new, "old_version": self.old_version,
                "new_version": self.new_version, "totals": self.totals(),
                "regions": [r.to_dict() for r in self.regions]}

    def to_markdown(self) -> str:
        t = self.totals()
        out = [f"# Release diff: {self.old} (v{self.old_version}) → {self.new} (v{self.new_version})", "",
               f"{t['added']:,} numbers added, {t['removed']:,} removed, {t['relabelled']:,} relabelled, "
               f"{t['confidence_changed']:,} confidence changes, {t['unchanged']:,} unchanged.", "",
               "| region | entries old → new | added | removed | relabelled | confidence | ranges +/- |",
               "|---|---|---|---|---|---|---|"]
        for r in self.regions:
            out.append(f"| {r.region} | {r.old_entries:,} → {r.new_entries:,} | {r.added:,} | "
                       f"{r.removed:,} | {r.relabelled:,} | {r.confidence_changed:,} | "
                       f"+{r.ranges_added} / -{r.ranges_removed} |")
        for r in self.regions:
            out += ["", f"## {r.region}", ""]
            cats = sorted(set(r.added_by_category) | set(r.removed_by_category))
            if cats:
                out += ["| category | added | removed |", "|---|---|---|"]
                out += [f"| {c} | {r.added_by_category.get(c, 0):,} | {r.removed_by_category.get(c, 0):,} |"
                        for c in cats]
            if r.relabelled_by_category:
                out += ["", "Relabelled: " + ", ".join(f"{k} {v:,}" for k, v in
                                                       sorted(r.relabelled_by_category.items(),
                                                              key=lambda x: -x[1]))]
            for kind, rows in r.top.items():
                if rows:
                    out += ["", f"Top {kind}:", ""]
                    out += [f"- {_row_text(kind, x)}" for x in rows]
        return "\n".join(out) + "\n"


def _row_text(kind: str, x: dict) -> str:
    if kind == "relabelled":
        return (f"{x['number']}: {x['old_category']} → {x['category']} "
                f"({x['old_confidence']:.2f} → {x['confidence']:.2f}, {x['reporters']} reporters)")
    if kind == "confidence":
        return f"{x['number']} {x['category']}: {x['old_confidence']:.2f} → {x['confidence']:.2f}"
    return f"{x['number']} {x['category']} ({x['confidence']:.2f}, {x['reporters']} reporters)"


def _table(path: Path | None):
    if path is None:
        return None
    try:
        return decode_full(Path(path).read_bytes())[1]
    except (OSError, ValueError) as e:
        raise DiffError(f"{path}: cannot read the pack ({e})") from None


def _rows(t, idx, other=None, other_idx=None) -> list[dict]:
    out = []
    lab = t.labels
    for n, i in enumerate(idx):
        row = {"number": format_key(int(lab["key"][i])), "category": _KEY.get(int(lab["category"][i])),
               "confidence": int(lab["confidence"][i]) / 100, "reporters": int(lab["reporters"][i])}
        if other is not None:
            j = other_idx[n]
            row.update(old_category=_KEY.get(int(other.labels["category"][j])),
                       old_confidence=int(other.labels["confidence"][j]) / 100)
        out.append(row)
    return out


def _count(codes) -> dict:
    u, n = np.unique(np.asarray(codes, np.int64), return_counts=True)
    return {_KEY.get(int(c), str(c)): int(k) for c, k in zip(u, n)}


def region_diff(region: str, old, new, top: int = 10, min_change: float = 0.05) -> RegionDiff:
    """Diff of two pack tables (either may be None: a region on one side only)."""
    empty = {"key": np.zeros(0, np.int64), "category": np.zeros(0, np.int64),
             "confidence": np.zeros(0, np.int64), "reporters": np.zeros(0, np.int64)}
    ol = old.labels if old is not None else empty
    nl = new.labels if new is not None else empty
    ok, nk = np.asarray(ol["key"], np.int64), np.asarray(nl["key"], np.int64)
    common, oi, ni = np.intersect1d(ok, nk, assume_unique=True, return_indices=True)
    added = np.flatnonzero(~np.isin(nk, common))
    removed = np.flatnonzero(~np.isin(ok, common))
    ocat, ncat = np.asarray(ol["category"])[oi], np.asarray(nl["category"])[ni]
    relab = ocat != ncat
    dconf = (np.asarray(nl["confidence"])[ni].astype(np.int64)
             - np.asarray(ol["confidence"])[oi].astype(np.int64))
    conf_changed = ~relab & (np.abs(dconf) >= round(min_change * 100))
    ranges = lambda t: set() if t is None else set(zip(t.ranges["start"].tolist(), t.ranges["size"].tolist()))  # noqa: E731
    r_old, r_new = ranges(old), ranges(new)
    pairs = {}
    for a, b in zip(ocat[relab].tolist(), ncat[relab].tolist()):
        k = f"{_KEY.get(a, a)}->{_KEY.get(b, b)}"
        pairs[k] = pairs.get(k, 0) + 1
    by_rep = lambda lab, idx: idx[np.argsort(-np.asarray(lab["reporters"])[idx], kind="stable")][:top]  # noqa: E731
    tops = {"added": _rows(new, by_rep(nl, added)) if new is not None else [],
            "removed": _rows(old, by_rep(ol, removed)) if old is not None else []}
    ri = np.flatnonzero(relab)
    ri = ri[np.argsort(-np.asarray(nl["reporters"])[ni[ri]], kind="stable")][:top]
    tops["relabelled"] = _rows(new, ni[ri], old, oi[ri]) if ri.size else []
    ci = np.flatnonzero(conf_changed)
    ci = ci[np.argsort(-np.abs(dconf[ci]), kind="stable")][:top]
    tops["confidence"] = _rows(new, ni[ci], old, oi[ci]) if ci.size else []
    return RegionDiff(region, 0 if old is None else old.entries, 0 if new is None else new.entries,
                      int(added.size), int(removed.size), int(relab.sum()), int(conf_changed.sum()),
                      int(common.size - relab.sum() - conf_changed.sum()),
                      len(r_new - r_old), len(r_old - r_new),
                      _count(np.asarray(nl["category"])[added]), _count(np.asarray(ol["category"])[removed]),
                      pairs, tops)


def release_diff(old, new, top: int = 10, min_confidence_change: float = 0.05) -> ReleaseDiff:
    """Diff two releases, builds or pack dirs (see the module doc). Raises DiffError."""
    a = old if isinstance(old, Side) else resolve(old)
    b = new if isinstance(new, Side) else resolve(new)
    regions = []
    for r in sorted(set(a.packs) | set(b.packs)):
        regions.append(region_diff(r, _table(a.packs.get(r)), _table(b.packs.get(r)), top,
                                   min_confidence_change))
    return ReleaseDiff(a.label, b.label, a.version, b.version, regions)
