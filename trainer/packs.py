"""Build label packs (full, lite, per province), their wire form, and deltas between versions.

Input is the consensus output LABELS.csv (docs/interfaces.md); output is a pack directory with
index.json, or a delta directory. The format itself lives in callmark/pack*.py and
docs/pack-format.md.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass

import numpy as np

from callmark import categories as _categories
from callmark.files import atomic_write
from callmark.labels import FLAG_RANGE, FLAG_VERIFIED, LabelsFormatError, read_labels, read_ranges, ranges_path
from callmark.pack import (
    LABEL_COLS, PACK_FORMAT, RANGE_COLS, Delta, PackError, PackFormatError,
    PackTable, hash_hex, read_header, read_pack_table, table_hash, write_pack_sqlite,
)
from callmark.pack_codec import day_of, quantize_confidence, quantize_reporters
from callmark.pack_wire import encode_delta, encode_full

INDEX = "index.json"


class LabelTableError(PackFormatError, LabelsFormatError):
    """Label rows that read well but do not make a valid pack table (a LabelsFormatError and a
    PackFormatError)."""


@dataclass
class PackConfig:
    """What `build_packs` writes."""

    region: str = "CN"  # ISO country the packs are for (pack names start with it)
    lite: bool = True  # also write a size-budgeted lite pack
    lite_budget_bytes: int = 512 * 1024  # wire bytes the lite pack may use
    lite_recency_days: float = 30.0  # score = log2(1 + reporters) - age_days / this
    provinces: bool = True  # per-province packs of local numbers (region CN only)
    min_province_entries: int = 1  # skip provinces with fewer label rows

    @classmethod
    def from_dict(cls, d: dict) -> "PackConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown pack config keys: {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- reading labels

def _category_code(value: str, where: str) -> int:
    value = (value or "").strip()
    try:
        return _categories.by_code(int(value)).code if value.isdigit() else _categories.by_key(value).code
    except ValueError as exc:
        raise LabelsFormatError(f"{where}: {exc}") from None


def _num(value, kind, where, col):
    try:
        if kind is int:
            text = str(value).strip()
            return int(text) if text.lstrip("-").isdigit() else int(float(text))  # keys exceed 2**53
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        raise LabelsFormatError(f"{where}: column {col!r} must be a number, got {value!r}") from None


def _key(row: dict, where: str, region: str) -> int:
    raw = (row.get("key") or "").strip()
    if raw:
        return _num(raw, int, where, "key")
    from callmark.numbers import key_of, normalize
    key = key_of(row.get("number") or "", region)
    if key is None and not normalize(row.get("number") or "", region).e164:
        raise LabelsFormatError(f"{where}: number {row.get('number')!r} is not a valid number; "
                                "fix or drop the row")
    return key  # None: readable but not dialable (a fragment): dropped and counted


def label_rows(path: str, region: str) -> tuple[dict, dict, dict, dict]:
    """(label columns, company names, range columns, dropped reasons -> rows) of a LABELS.csv:
    rows going into packs (published, or verified with a company) whose key is publishable."""
    from callmark.numbers import publishable_key
    cols = {c: [] for c in LABEL_COLS}
    names, dropped = {}, {}
    for row in read_labels(path):
        where = row.where
        flags = _num(row.get("flags") or 0, int, where, "flags")
        company = (row.get("company") or "").strip().replace("\x00", "")
        verified = bool(flags & FLAG_VERIFIED) and bool(company)
        if not row["published"] and not verified:
            continue
        key = _key(row, where, region)
        if key is None or not publishable_key(key):  # a fragment or bare code: counted, never published
            dropped["not a dialable number"] = dropped.get("not a dialable number", 0) + 1
            continue
        conf = _num(row["confidence"], float, where, "confidence")
        if not 0.0 <= conf <= 1.0:
            raise LabelsFormatError(f"{where}: confidence must be within 0..1, got {conf}")
        cols["key"].append(key)
        cols["category"].append(_category_code(row["category"], where))
        cols["confidence"].append(conf)
        cols["reporters"].append(max(0, _num(row["reporters"] or 0, int, where, "reporters")))
        cols["flags"].append(flags)
        cols["last_day"].append(_num(row.get("last_ts") or 0, float, where, "last_ts"))
        if verified:
            names[key] = company
    return cols, names, _read_ranges(path, region), dropped


def read_labels_csv(path: str, region: str = "CN") -> PackTable:
    """LABELS.csv (+ `<stem>.ranges.csv` if present) -> the pack table of what gets published.

    Rows with published=1 go in; so do verified businesses (flags & 1 with a company) for their
    names. Keys that are not dialable numbers (callmark.numbers.publishable_key) are left out.
    Every region's rows are kept: `trainer.pack_regions.read_region_labels` splits and checks them."""
    cols, names, ranges, _ = label_rows(path, region)
    return make_table(cols, ranges, names)


def _read_ranges(path: str, region: str) -> dict:
    cols = {c: [] for c in RANGE_COLS}
    from callmark.numbers import key_of
    for row in read_ranges(ranges_path(path)):
        where = row.where
        start = key_of(row["start"], region)
        if start is None:
            raise LabelsFormatError(f"{where}: start {row['start']!r} is not a valid number")
        cols["start"].append(start)
        cols["size"].append(_num(row["size"], int, where, "size"))
        cols["category"].append(_category_code(row["category"], where))
        cols["confidence"].append(_num(row["confidence"], float, where, "confidence"))
        cols["numbers"].append(_num(row["numbers"] or 0, int, where, "numbers"))
        cols["flags"].append(FLAG_RANGE)
        cols["last_day"].append(_num(row.get("last_ts") or 0, float, where, "last_ts"))
    return cols


def make_table(labels: dict, ranges: dict | None = None, names: dict | None = None) -> PackTable:
    """Raw columns (confidence 0..1, reporter counts, last_ts epoch seconds) -> canonical PackTable."""
    lab = {c: np.asarray(labels[c]) for c in LABEL_COLS}
    lab["confidence"] = quantize_confidence(lab["confidence"])
    lab["reporters"] = quantize_reporters(lab["reporters"])
    lab["last_day"] = day_of(lab["last_day"])
    rng = {c: np.asarray((ranges or {}).get(c, [])) for c in RANGE_COLS}
    if len(rng["start"]):
        rng["confidence"] = quantize_confidence(rng["confidence"])
        rng["last_day"] = day_of(rng["last_day"])
    try:
        return PackTable(lab, rng, dict(names or {})).sort().validate()
    except PackFormatError as exc:
        raise LabelTableError(str(exc)) from None


# ---------------------------------------------------------------- tiers and regions

_PROV_CACHE: dict = {}


def provinces_of(keys: np.ndarray) -> np.ndarray:
    """Province key (e.g. 'guangdong') of each Chinese number key, '' for others (cached by prefix)."""
    from callmark.numbers import format_key, normalize, SHORT_KEY_BASE
    out = np.full(len(keys), "", dtype=object)
    k = np.asarray(keys, dtype=np.int64)
    cn = np.zeros(len(k), dtype=bool)
    for digits in range(8, 14):  # keys of +86 numbers: "86" followed by 8..13 digits
        cn |= (k >= 86 * 10**digits) & (k < 87 * 10**digits)
    cn &= k < SHORT_KEY_BASE
    prefixes = k // 10**4
    for i in np.flatnonzero(cn).tolist():
        p = int(prefixes[i])
        if p not in _PROV_CACHE:
            _PROV_CACHE[p] = normalize(format_key(int(k[i]))).province or ""
        out[i] = _PROV_CACHE[p]
    return out


def select_lite(t: PackTable, budget_bytes: int, recency_days: float, meta: dict) -> tuple[PackTable, bytes]:
    """The most reported, most recent rows whose wire form fits `budget_bytes`."""
    lab = t.labels
    age = (lab["last_day"].max() if t.n_labels else 0) - lab["last_day"]
    score = np.log2(1.0 + lab["reporters"]) - age / recency_days + (lab["flags"] & FLAG_VERIFIED)
    order = np.argsort(-score, kind="stable")
    n_all = t.n_labels
    full_blob = encode_full(t, meta)
    if len(full_blob) <= budget_bytes:
        return t, full_blob
    n = int(n_all * budget_bytes / len(full_blob))
    best = None
    for _ in range(8):
        mask = np.zeros(n_all, dtype=bool)
        mask[order[:n]] = True
        sub = t.subset(mask)
        blob = encode_full(sub, meta)
        if len(blob) <= budget_bytes:
            best = (sub, blob)
            if len(blob) >= 0.98 * budget_bytes or n >= n_all:
                break
            n = min(n_all, max(n + 1, int(n * budget_bytes / len(blob) * 0.995)))
        else:
            n = max(0, min(n - 1, int(n * budget_bytes / len(blob) * 0.99)))
    if best is None:
        raise PackError(f"lite budget of {budget_bytes} bytes cannot even hold the ranges; raise it")
    return best


def _write_pack(t: PackTable, meta: dict, out_dir: str) -> dict:
    h = hash_hex(table_hash(t))
    meta = dict(meta, state_hash=h)
    blob = encode_full(t, meta)
    base = f"{meta['name']}-v{meta['version']}"
    wire, sqlite = base + ".pack", base + ".sqlite"
    with open(os.path.join(out_dir, wire), "wb") as f:
        f.write(blob)
    spath = os.path.join(out_dir, sqlite)
    if os.path.exists(spath):
        os.remove(spath)
    cats = [c.to_dict() for c in _categories.CATEGORIES]
    from callmark.pack import MAX_RANGE_SIZE
    write_pack_sqlite(spath, t, dict(meta, format=PACK_FORMAT, entries=t.entries, labels=t.n_labels,
                                     ranges=t.n_ranges, max_range_size=MAX_RANGE_SIZE), cats)
    return {"name": meta["name"], "region": meta["region"], "tier": meta["tier"], "sqlite": sqlite,
            "sqlite_bytes": os.path.getsize(spath), "wire": wire, "wire_bytes": len(blob),
            "wire_sha256": hashlib.sha256(blob).hexdigest(), "entries": t.entries, "state_hash": h}


def build_packs(t: PackTable, version: int, out_dir: str, config: PackConfig | None = None,
                built_at: str | None = None) -> dict:
    """Write the full, lite and province packs of table `t` into `out_dir`; returns index.json's dict."""
    config = config or PackConfig()
    if int(version) < 0:
        raise PackError("version must be a non-negative integer")
    os.makedirs(out_dir, exist_ok=True)
    built_at = built_at or _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    base = {"region": config.region, "version": int(version), "built_at": built_at}
    packs = [_write_pack(t, dict(base, name=f"{config.region}-full", tier="full"), out_dir)]
    if config.lite:
        meta = dict(base, name=f"{config.region}-lite", tier="lite")
        sub, _ = select_lite(t, config.lite_budget_bytes, config.lite_recency_days,
                             dict(meta, state_hash=""))
        packs.append(_write_pack(sub, meta, out_dir))
    if config.provinces and config.region == "CN" and t.n_labels:
        prov = provinces_of(t.labels["key"])
        for p in sorted(set(prov.tolist()) - {""}):
            mask = prov == p
            if mask.sum() >= config.min_province_entries:
                sub = t.subset(mask, keep_ranges=False)
                packs.append(_write_pack(sub, dict(base, name=f"CN-{p}", tier="province"), out_dir))
    index = {"format": PACK_FORMAT, "version": int(version), "built_at": built_at, "packs": packs}
    write_json(os.path.join(out_dir, INDEX), index)
    return index


def write_json(path: str, obj: dict):
    atomic_write(path, json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def read_index(d: str) -> dict:
    """index.json of a pack or delta directory, checked."""
    p = os.path.join(d, INDEX)
    if not os.path.isfile(p):
        raise PackFormatError(f"{d} has no {INDEX}; pass a directory written by `callmark pack build/delta`")
    with open(p, encoding="utf-8") as f:
        try:
            idx = json.load(f)
        except ValueError:
            raise PackFormatError(f"{p} is not valid JSON") from None
    if idx.get("format") != PACK_FORMAT or not ("packs" in idx or "deltas" in idx):
        raise PackFormatError(f"{p}: unsupported index (format {idx.get('format')!r})")
    return idx


# ---------------------------------------------------------------- deltas

def diff_tables(old: PackTable, new: PackTable) -> Delta:
    """Removals and upserts that turn `old` into `new`."""
    ok, nk = old.labels["key"], new.labels["key"]
    removals = ok[~np.isin(ok, nk)]
    idx = np.minimum(np.searchsorted(ok, nk), max(len(ok) - 1, 0))
    same = (idx < len(ok)) & (ok[idx] == nk) if len(ok) else np.zeros(len(nk), bool)
    for c in LABEL_COLS[1:]:
        if len(ok):
            same &= old.labels[c][idx] == new.labels[c]
    for k in set(old.names) | set(new.names):
        if old.names.get(k) != new.names.get(k):
            pos = np.searchsorted(nk, k)
            if pos < len(nk) and nk[pos] == k:
                same[pos] = False
    up = new.subset(~same, keep_ranges=False)
    orows = set(zip(*(old.ranges[c].tolist() for c in RANGE_COLS)))
    nrows = list(zip(*(new.ranges[c].tolist() for c in RANGE_COLS)))
    nblocks = {r[:2] for r in nrows}
    rr = sorted({r[:2] for r in orows} - nblocks)
    ru = [r for r in nrows if r not in orows]
    up.ranges = {c: np.array([r[i] for r in ru], dtype=np.int64) for i, c in enumerate(RANGE_COLS)}
    rem = {"start": np.array([r[0] for r in rr], dtype=np.int64), "size": np.array([r[1] for r in rr], dtype=np.int64)}
    return Delta(removals.astype(np.int64), up, rem)


def build_delta(old_path: str, new_path: str) -> tuple[bytes, dict]:
    """Delta blob between two pack files, and its stats."""
    ometa, old = read_pack_table(old_path)
    nmeta, new = read_pack_table(new_path)
    d = diff_tables(old, new)
    meta = {"name": nmeta["name"], "from_version": int(ometa["version"]), "version": int(nmeta["version"]),
            "from_state_hash": ometa["state_hash"], "state_hash": nmeta["state_hash"],
            "entries": int(nmeta["entries"]), "built_at": nmeta.get("built_at", "")}
    blob = encode_delta(d, meta)
    h = read_header(blob)[1]
    return blob, {"upserts": h["upserts"], "removals": h["removals"], **meta}


def make_deltas(old_dir: str, new_dir: str, out_dir: str) -> dict:
    """Write a delta for every pack present in both directories; returns the delta index.json dict.

    PackError when `new_dir`'s version is not newer than `old_dir`'s: a delta moves a phone forward
    (a phone refuses a manifest whose version goes back), so a swapped pair is a mistake.
    """
    old_idx, new_idx = read_index(old_dir), read_index(new_dir)
    if "packs" not in old_idx or "packs" not in new_idx:
        raise PackFormatError("--old and --new must both be pack directories (from `callmark pack build`)")
    if int(new_idx["version"]) <= int(old_idx["version"]):
        raise PackError(f"--new is v{new_idx['version']}, not newer than --old v{old_idx['version']}: a delta "
                        f"moves a phone forward; did you swap --old and --new?")
    olds = {p["name"]: p for p in old_idx["packs"]}
    os.makedirs(out_dir, exist_ok=True)
    deltas = []
    for p in new_idx["packs"]:
        if p["name"] not in olds:
            continue
        o = olds[p["name"]]
        blob, st = build_delta(os.path.join(old_dir, o["sqlite"]), os.path.join(new_dir, p["sqlite"]))
        fname = f"{p['name']}-v{old_idx['version']}-v{new_idx['version']}.delta"
        with open(os.path.join(out_dir, fname), "wb") as f:
            f.write(blob)
        deltas.append({"name": p["name"], "file": fname, "bytes": len(blob),
                       "sha256": hashlib.sha256(blob).hexdigest(), "upserts": st["upserts"],
                       "removals": st["removals"], "from_state_hash": st["from_state_hash"],
                       "to_state_hash": st["state_hash"], "entries": st["entries"],
                       "full_wire_bytes": p["wire_bytes"]})
    if not deltas:
        raise PackError("the two pack directories share no pack name; nothing to diff")
    index = {"format": PACK_FORMAT, "from_version": old_idx["version"], "to_version": new_idx["version"],
             "deltas": deltas}
    write_json(os.path.join(out_dir, INDEX), index)
    return index


# ---------------------------------------------------------------- stats

def stats(path: str) -> dict:
    """Figures of a pack directory, a delta directory or a .sqlite file (see `callmark pack stats`)."""
    from callmark import pack_layers
    if pack_layers.is_layered(path):  # a phone's layered pack: base + overlays
        meta, st = pack_layers.read_meta(path), pack_layers.layer_stats(path)
        return {"kind": "layered", "name": meta.get("name"), "version": int(meta["version"]),
                "entries": int(meta["entries"]), "sqlite_bytes": sum(st["bytes"].values()), "wire_bytes": 0,
                "state_hash": meta["state_hash"], "layers": st}
    if os.path.isdir(path):
        idx = read_index(path)
        if "packs" in idx:
            main = next((p for p in idx["packs"] if p["tier"] == "full"), idx["packs"][0])
            out = {"kind": "packs", "version": idx["version"], **{k: main[k] for k in (
                "name", "entries", "sqlite_bytes", "wire_bytes", "state_hash")}}
            out["wire_bytes_per_entry"] = round(main["wire_bytes"] / max(1, main["entries"]), 3)
            out["packs"] = idx["packs"]
            return out
        main = next((d for d in idx["deltas"] if d["name"].endswith("-full")), idx["deltas"][0])
        return {"kind": "delta", "from_version": idx["from_version"], "to_version": idx["to_version"],
                "name": main["name"], "entries": main.get("entries"), "sqlite_bytes": 0,
                "wire_bytes": main["bytes"], "state_hash": main["to_state_hash"],
                "upserts": main["upserts"], "removals": main["removals"],
                "bytes_per_changed_entry": round(main["bytes"] / max(1, main["upserts"] + main["removals"]), 3),
                "deltas": idx["deltas"]}
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"CMPK":  # a wire blob: figures from its header
        with open(path, "rb") as f:
            blob = f.read()
        kind, h = read_header(blob)
        out = {"kind": "wire" if kind == 1 else "delta-wire", "name": h.get("name"),
               "version": h.get("version"), "entries": h.get("entries"), "sqlite_bytes": 0,
               "wire_bytes": len(blob), "state_hash": h.get("state_hash"),
               "wire_sha256": hashlib.sha256(blob).hexdigest()}
        if kind != 1:
            out.update(upserts=h.get("upserts"), removals=h.get("removals"),
                       from_version=h.get("from_version"), from_state_hash=h.get("from_state_hash"))
        return out
    meta, t = read_pack_table(path)
    wire_bytes = None
    sib = os.path.join(os.path.dirname(os.path.abspath(path)), INDEX)
    if os.path.isfile(sib):
        with open(sib, encoding="utf-8") as f:
            for p in json.load(f).get("packs", []):
                if p.get("sqlite") == os.path.basename(path) and p.get("state_hash") == meta.get("state_hash"):
                    wire_bytes = p["wire_bytes"]
    if wire_bytes is None:
        wire_bytes = len(encode_full(t, dict(meta, version=int(meta.get("version", 0)))))
    return {"kind": "sqlite", "name": meta.get("name"), "version": int(meta.get("version", 0)),
            "entries": int(meta["entries"]), "sqlite_bytes": os.path.getsize(path), "wire_bytes": wire_bytes,
            "state_hash": meta["state_hash"], "labels": t.n_labels, "ranges": t.n_ranges,
            "businesses": len(t.names)}



# ---------------------------------------------------------------- entropy reference

def entropy_reference(t: PackTable) -> dict:
    """Reference size of a table: Rice-coded key gaps (best k) + order-0 entropy of each attribute column.

    Business names and the category table have no such reference; their zstd size is added as is.
    """
    from callmark.pack_codec import (best_rice_k, entropy_bits, keys_to_gaps, reporters_code,
                                     rice_cost_bits, zc)
    bits = {}
    for tname, tab, kcol, strict, attrs in (
            ("labels", t.labels, "key", True, ("category", "confidence", "reporters", "flags", "last_day")),
            ("ranges", t.ranges, "start", False, ("size", "category", "confidence", "numbers", "flags",
                                                  "last_day"))):
        gaps = keys_to_gaps(tab[kcol], strict)
        bits[f"{tname}.keys"] = rice_cost_bits(gaps, best_rice_k(gaps)) if len(gaps) else 0
        for c in attrs:
            col = reporters_code(tab[c]) if c == "reporters" else tab[c]
            bits[f"{tname}.{c}"] = entropy_bits(col)
    verified = t.labels["key"][(t.labels["flags"] & FLAG_VERIFIED) != 0].tolist()
    names = "\x00".join(t.names.get(k, "") for k in verified).encode()
    bits["names"] = 8 * len(zc(names))
    cats = json.dumps([c.to_dict() for c in _categories.CATEGORIES], ensure_ascii=False,
                      separators=(",", ":")).encode()
    bits["categories"] = 8 * len(zc(cats))
    total = sum(bits.values()) / 8
    return {"bytes": total, "bits": bits, "bytes_per_entry": total / max(1, t.entries)}


# ---------------------------------------------------------------- synthetic labels (tests, benchmarks)

# Chinese mobile prefixes (3 digits) with rough weights of their share of numbers in use.
CN_MOBILE_PREFIXES = {  # 149 (data-only SIMs) left out: not a dialable number in the plan
    134: 3, 135: 4, 136: 4, 137: 4, 138: 5, 139: 5, 147: 1, 150: 3, 151: 3, 152: 3, 157: 2, 158: 3,
    159: 3, 172: 1, 178: 2, 182: 3, 183: 2, 184: 1, 187: 3, 188: 3, 195: 1, 197: 1, 198: 2,
    130: 3, 131: 3, 132: 3, 155: 2, 156: 3, 166: 2, 175: 1, 176: 2, 185: 2, 186: 3, 196: 1,
    133: 2, 153: 2, 173: 2, 177: 2, 180: 2, 181: 2, 189: 3, 190: 1, 191: 1, 193: 1, 199: 2,
    162: 1, 165: 1, 167: 1, 170: 2, 171: 2, 192: 1,
}


def synthetic_keys(n: int, rng: np.random.Generator) -> np.ndarray:
    """About n distinct sorted keys drawn like Chinese mobile numbers (+86 1xx xxxx xxxx)."""
    pre = np.array(list(CN_MOBILE_PREFIXES))
    w = np.array(list(CN_MOBILE_PREFIXES.values()), dtype=float)
    keys = np.zeros(0, dtype=np.int64)
    while len(keys) < n:
        m = n - len(keys)
        draw = 86 * 10**11 + rng.choice(pre, m, p=w / w.sum()) * 10**8 + rng.integers(0, 10**8, m)
        keys = np.union1d(keys, draw)
    return keys[:n].astype(np.int64)


def synthetic_table(n: int, seed: int = 0, day: int = 20400, ranges: int = 0,
                    verified_share: float = 0.005) -> PackTable:
    """A plausible published label table of n numbers (categories by FACTS.md shares, Wilson-like
    confidence growing with reporters, heavy-tailed reporter counts, recent-heavy evidence days)."""
    rng = np.random.default_rng(seed)
    keys = synthetic_keys(n, rng)
    cats = [_categories.by_key(k).code for k in ("harassment", "fraud", "telemarketing", "real_estate",
                                                 "loans", "insurance", "delivery", "customer_service")]
    cat = rng.choice(cats, n, p=[.42, .20, .16, .08, .06, .03, .03, .02])
    rep = np.minimum(1 + np.floor(rng.pareto(1.3, n) * 3), 100000).astype(np.int64)
    agree = rng.beta(8, 2, n)
    z = 1.96
    conf = (agree + z * z / (2 * rep) - z * np.sqrt(agree * (1 - agree) / rep + z * z / (4 * rep * rep))) \
        / (1 + z * z / rep)
    last = (day - np.minimum(rng.exponential(20, n), 365).astype(np.int64)) * 86400
    flags = np.where(rng.random(n) < verified_share, FLAG_VERIFIED, 0)
    names = {int(k): f"企业{i:05d}" for i, k in enumerate(keys[flags == FLAG_VERIFIED].tolist())}
    rng_cols = {c: [] for c in RANGE_COLS}
    if ranges:
        starts = np.unique(synthetic_keys(ranges, rng) // 100 * 100)
        size = rng.choice([10, 100], len(starts))
        rng_cols = {"start": starts, "size": size, "category": rng.choice(cats[:3], len(starts)),
                    "confidence": rng.uniform(0.6, 0.99, len(starts)),
                    "numbers": np.where(size == 10, rng.integers(4, 11, len(starts)),
                                        rng.integers(8, 40, len(starts))),
                    "flags": np.full(len(starts), FLAG_RANGE), "last_day": np.full(len(starts), day * 86400)}
    return make_table({"key": keys, "category": cat, "confidence": conf, "reporters": rep, "flags": flags,
                       "last_day": last}, rng_cols, names)
