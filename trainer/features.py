"""Per-number call-behaviour features (teacher input) and per-call raw facts (student input).

Both read the simulator's / carrier's `calls.csv` (docs/interfaces.md) as a stream of chunks.
Memory is bounded by the number of distinct numbers, (number, subscriber) pairs and (number, day /
hour) buckets, never by the number of call records.
"""
from __future__ import annotations

import csv
import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from callmark import categories
from callmark.categories import HARMFUL_KEYS
from callmark.errors import UnknownCategoryError
from callmark.labels import FLAG_MODEL, FLAG_VERIFIED, read_labels
from callmark.pack import block_start, others_in_block
from trainer.call_records import FeatureInputError, iter_records, parse_ts  # noqa: F401  (re-exported)

CALL_COLUMNS = ("caller", "callee_hash", "start", "ring_s", "talk_s", "answered", "direction",
                "presentation", "verification")
LOCAL_OFFSET_S = 8 * 3600  # China local time = UTC+8 (hour-of-day features use local time)
SHORT_RING_S = 3.0  # a ring under this, unanswered, counts as a one-ring attempt


@dataclass
class FeatureTable:
    """Numeric feature matrix with one row per number id."""

    ids: list[str]
    names: list[str]
    X: np.ndarray  # float64 [len(ids), len(names)], NaN = missing
    y: np.ndarray | None = None  # optional labels (0/1)
    meta: dict = field(default_factory=dict)

    def column(self, name: str) -> np.ndarray:
        return self.X[:, self.names.index(name)]

    def to_csv(self, path, id_column: str = "number", label_column: str | None = None) -> Path:
        """Write the table as CSV (empty cell = missing)."""
        path = Path(path)
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([id_column] + self.names + ([label_column] if label_column and self.y is not None else []))
            for i, ident in enumerate(self.ids):
                row = ["" if math.isnan(v) else f"{v:.6g}" for v in self.X[i]]
                if label_column and self.y is not None:
                    row.append(str(int(self.y[i])))
                w.writerow([ident] + row)
        return path


def iter_call_chunks(calls_csv, chunk_rows: int = 250_000, mapping: dict[str, str] | None = None
                     ) -> Iterator[dict[str, np.ndarray]]:
    """Stream call records (CSV or Parquet, `trainer.call_records` schema, optional column `mapping`)
    as dicts of column arrays (`start` as epoch seconds, `answered` and `inbound` bool)."""
    return iter_records(calls_csv, mapping, chunk_rows)


class _KeyCounter:
    """Sorted unique int64 keys with summed count columns; merged chunk by chunk."""

    def __init__(self, ncols: int):
        self.keys = np.empty(0, dtype=np.int64)
        self.vals = np.empty((0, ncols), dtype=np.float64)

    def add(self, keys: np.ndarray, vals: np.ndarray) -> None:
        allk = np.concatenate([self.keys, keys])
        allv = np.concatenate([self.vals, vals])
        uniq, inv = np.unique(allk, return_inverse=True)
        out = np.zeros((len(uniq), allv.shape[1]))
        for j in range(allv.shape[1]):
            out[:, j] = np.bincount(inv, weights=allv[:, j], minlength=len(uniq))
        self.keys, self.vals = uniq, out


_PAIR_SHIFT = 40  # pair key = number id << 40 | 40 bits of the callee hash


def _callee_bits(callee: np.ndarray) -> np.ndarray:
    """40 bits identifying the subscriber (hex hashes as is, anything else through crc32+length)."""
    mask = (1 << _PAIR_SHIFT) - 1

    def bits(h: str) -> int:
        try:
            return int(h, 16) & mask
        except ValueError:
            return (zlib.crc32(h.encode()) << 8 | len(h) & 0xFF) & mask
    return np.fromiter((bits(h) for h in callee), dtype=np.int64, count=len(callee))


# per-number accumulator columns (sums over the number's calls)
_ACC = ("calls", "rang", "dialled", "answered_in", "ring_s_in", "talk_s_in", "short_ring_in",
        "long_talk_in", "night_in", "business_in", "verif_failed", "verif_none", "present_odd",
        "ts_min", "ts_max")

FEATURE_NAMES = (
    "calls", "rang_share", "answer_rate", "ring_s_mean", "talk_s_mean", "short_ring_share",
    "long_talk_share", "night_share", "business_share", "hour_nunique", "hour_entropy",
    "distinct_callees", "calls_per_callee", "repeat_callee_share", "callback_share", "dialled_by",
    "active_days", "span_days", "calls_per_day", "max_calls_day", "max_calls_hour",
    "verif_failed_share", "verif_none_share", "present_odd_share",
)


def aggregate_calls(calls_csv, chunk_rows: int = 250_000, progress: bool = False) -> FeatureTable:
    """Per-number call-behaviour features from calls.csv (one row per remote number `caller`).

    Features are from the number's side: `rang_share` is the share of its calls that it placed
    (direction=in at the subscriber); ring/talk/answer figures are over calls it placed.
    """
    ids: dict[str, int] = {}
    acc = np.zeros((0, len(_ACC)))
    hours = np.zeros((0, 24))
    pairs = _KeyCounter(2)  # (rang, dialled) per (number, subscriber)
    days = _KeyCounter(1)  # calls placed per (number, local day)
    hrs = _KeyCounter(1)  # calls placed per (number, absolute hour)
    chunks = iter_call_chunks(calls_csv, chunk_rows)
    if progress:
        from callmark.progress import bar
        chunks = bar(chunks, unit="chunk", desc="aggregate")
    rows = 0
    for ch in chunks:
        rows += len(ch["caller"])
        nid = np.fromiter((ids.setdefault(c, len(ids)) for c in ch["caller"]), dtype=np.int64,
                          count=len(ch["caller"]))
        if len(ids) > len(acc):
            grow = len(ids) - len(acc)
            acc = np.vstack([acc, np.zeros((grow, len(_ACC)))])
            acc[-grow:, _ACC.index("ts_min")] = np.inf
            acc[-grow:, _ACC.index("ts_max")] = -np.inf
            hours = np.vstack([hours, np.zeros((grow, 24))])
        inb = ch["inbound"]
        ans = ch["answered"] & inb
        local = ch["start"] + LOCAL_OFFSET_S
        hour = ((local // 3600) % 24).astype(np.int64)
        cols = {
            "calls": np.ones(len(nid)), "rang": inb, "dialled": ~inb, "answered_in": ans,
            "ring_s_in": np.where(inb, ch["ring_s"], 0.0), "talk_s_in": np.where(ans, ch["talk_s"], 0.0),
            "short_ring_in": inb & ~ch["answered"] & (ch["ring_s"] < SHORT_RING_S),
            "long_talk_in": ans & (ch["talk_s"] >= 60), "night_in": inb & ((hour < 7) | (hour >= 22)),
            "business_in": inb & (hour >= 9) & (hour < 18),
            "verif_failed": ch["verification"] == "failed", "verif_none": ch["verification"] == "none",
            "present_odd": np.asarray([not p.startswith("+") and not p[:1].isdigit() or "-" in p
                                       for p in ch["presentation"]]),
        }
        for j, name in enumerate(_ACC[:-2]):
            np.add.at(acc[:, j], nid, np.asarray(cols[name], dtype=np.float64))
        np.minimum.at(acc[:, -2], nid, ch["start"])
        np.maximum.at(acc[:, -1], nid, ch["start"])
        np.add.at(hours, (nid[inb], hour[inb]), 1.0)
        pairs.add((nid << _PAIR_SHIFT) | _callee_bits(ch["callee"]),
                  np.column_stack([inb, ~inb]).astype(np.float64))
        day = (local // 86400).astype(np.int64)
        days.add((nid[inb] << 24) | day[inb], np.ones((int(inb.sum()), 1)))
        habs = (local // 3600).astype(np.int64)
        hrs.add((nid[inb] << 28) | habs[inb], np.ones((int(inb.sum()), 1)))
    if not ids:
        raise FeatureInputError(f"{calls_csv} holds no call records")
    n = len(ids)
    A = {name: acc[:, j] for j, name in enumerate(_ACC)}
    # pair statistics
    pn = pairs.keys >> _PAIR_SHIFT
    rang_pair = pairs.vals[:, 0] > 0
    distinct = np.bincount(pn, weights=rang_pair, minlength=n)
    repeat = np.bincount(pn, weights=pairs.vals[:, 0] >= 2, minlength=n)
    callback = np.bincount(pn, weights=rang_pair & (pairs.vals[:, 1] > 0), minlength=n)
    dialled_by = np.bincount(pn, weights=pairs.vals[:, 1] > 0, minlength=n)
    dn = days.keys >> 24
    active_days = np.bincount(dn, minlength=n)
    max_day = np.zeros(n)
    np.maximum.at(max_day, dn, days.vals[:, 0])
    max_hour = np.zeros(n)
    np.maximum.at(max_hour, hrs.keys >> 28, hrs.vals[:, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        rang = A["rang"]
        p = hours / np.maximum(hours.sum(1, keepdims=True), 1)
        entropy = -(np.where(p > 0, p * np.log2(np.where(p > 0, p, 1)), 0)).sum(1)
        feats = {
            "calls": A["calls"], "rang_share": rang / A["calls"],
            "answer_rate": np.where(rang > 0, A["answered_in"] / rang, np.nan),
            "ring_s_mean": np.where(rang > 0, A["ring_s_in"] / rang, np.nan),
            "talk_s_mean": np.where(A["answered_in"] > 0, A["talk_s_in"] / A["answered_in"], np.nan),
            "short_ring_share": np.where(rang > 0, A["short_ring_in"] / rang, np.nan),
            "long_talk_share": np.where(A["answered_in"] > 0, A["long_talk_in"] / A["answered_in"], np.nan),
            "night_share": np.where(rang > 0, A["night_in"] / rang, np.nan),
            "business_share": np.where(rang > 0, A["business_in"] / rang, np.nan),
            "hour_nunique": (hours > 0).sum(1).astype(float), "hour_entropy": entropy,
            "distinct_callees": distinct,
            "calls_per_callee": np.where(distinct > 0, rang / distinct, np.nan),
            "repeat_callee_share": np.where(distinct > 0, repeat / distinct, np.nan),
            "callback_share": np.where(distinct > 0, callback / distinct, np.nan),
            "dialled_by": dialled_by, "active_days": active_days.astype(float),
            "span_days": (A["ts_max"] - A["ts_min"]) / 86400.0,
            "calls_per_day": np.where(active_days > 0, rang / active_days, np.nan),
            "max_calls_day": max_day, "max_calls_hour": max_hour,
            "verif_failed_share": A["verif_failed"] / A["calls"], "verif_none_share": A["verif_none"] / A["calls"],
            "present_odd_share": A["present_odd"] / A["calls"],
        }
    X = np.column_stack([feats[k] for k in FEATURE_NAMES]).astype(np.float64)
    return FeatureTable(ids=list(ids), names=list(FEATURE_NAMES), X=X,
                        meta={"rows": rows, "numbers": n, "pairs": int(len(pairs.keys))})


def read_truth(truth_csv) -> dict[str, list[tuple[int, str, int]]]:
    """truth.csv -> {number: [(first_day, category, harmful), ...]} sorted by first_day."""
    out: dict[str, list[tuple[int, str, int]]] = {}
    path = Path(truth_csv)
    if not path.is_file():
        raise FeatureInputError(f"truth file {path} not found")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("number", "category", "harmful") if c not in (reader.fieldnames or [])]
        if missing:
            raise FeatureInputError(f"truth file {path} lacks the column(s) {', '.join(missing)}; it needs "
                                    f"number,category,harmful (first_day optional), it has {reader.fieldnames}")
        for line, r in enumerate(reader, start=2):
            number, entry = _truth_row(path, line, r)
            out.setdefault(number, []).append(entry)
    for v in out.values():
        v.sort()
    return out


def _truth_row(path: Path, line: int, r: dict) -> tuple[str, tuple[int, str, int]]:
    """One truth.csv row -> (number, (first_day, category key, harmful)); FeatureInputError naming
    the file, line and fix for a bad value."""
    number = (r.get("number") or "").strip()
    if not number:
        raise FeatureInputError(f"{path} line {line}: empty number; write it as in the call records (e.g. +86…)")
    harmful, first_day = (r.get("harmful") or "").strip(), (r.get("first_day") or "0").strip()
    if harmful not in ("0", "1"):
        raise FeatureInputError(f"{path} line {line}: harmful must be 1 or 0, got {harmful!r}")
    if not first_day.lstrip("-").isdigit():
        raise FeatureInputError(f"{path} line {line}: first_day must be a day number, got {first_day!r}")
    try:
        category = categories.by_key(r.get("category") or "").key
    except UnknownCategoryError as exc:
        raise FeatureInputError(f"{path} line {line}: {exc}") from None
    return number, (int(first_day), category, int(harmful))


def truth_at(entries: list[tuple[int, str, int]], day: int) -> tuple[str, int]:
    """The (category, harmful) of the owner of a number on `day` (numbers are recycled)."""
    cur = entries[0]
    for e in entries:
        if e[0] <= day:
            cur = e
    return cur[1], cur[2]


def number_labels(table: FeatureTable, truth_csv) -> np.ndarray:
    """0/1 harmful label per table row from truth.csv (a recycled number counts as harmful if any
    owner in the period was)."""
    truth = read_truth(truth_csv)
    return np.asarray([max((e[2] for e in truth.get(i, [(0, "legit", 0)])), default=0) for i in table.ids],
                      dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Student examples: the raw facts a handset has when a call rings (see callmark/model.py)
# ---------------------------------------------------------------------------------------------

@dataclass
class RingEvents:
    """Incoming calls as the called handset saw them, with targets."""

    facts: list[dict]  # raw facts per call (callmark.model.encode input)
    caller: list[str]  # remote number as in calls.csv
    category: list[str]  # true (or consensus) category key of the caller at call time
    harmful: np.ndarray  # 0/1 per call
    in_pack: np.ndarray  # bool: the caller had a published pack label when the call rang
    day: np.ndarray  # day index since the first call
    meta: dict = field(default_factory=dict)
    known: np.ndarray | None = None  # bool: the caller is in the truth file (else counted honest)


def read_tags(tags_jsonl) -> list[tuple[float, int, str, str]]:
    """tags.jsonl -> sorted [(epoch s, number key, reporter, category)]; unreadable numbers skipped."""
    from callmark.numbers import key_of

    path = Path(tags_jsonl)
    out = []
    if not path.is_file():
        return out
    with path.open() as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                t = json.loads(line)
                key = key_of(str(t["number"]))
                ts = parse_ts([t["ts"]])[0]
            except (ValueError, KeyError, FeatureInputError):
                continue
            if key is not None:
                out.append((ts, key, str(t.get("reporter", "")), str(t.get("category", ""))))
    out.sort()
    return out


def _is_harmful(label: dict | None) -> bool:
    return bool(label) and label.get("pack_category") in HARMFUL_KEYS


class RollingPack:
    """A crude daily pack built from tags seen so far: what a phone synced at the start of the day.

    A number is published once `min_reporters` distinct reporters tagged it; its category is the one
    most reporters chose; confidence = top reporters / (all reporters + 1). Verified businesses are
    always present with the verified flag.
    """

    def __init__(self, tags: list, verified: set[int], min_reporters: int = 2):
        self.tags, self.i = tags, 0
        self.votes: dict[int, dict[str, set]] = {}
        self.verified = verified
        self.min_reporters = min_reporters
        self.by_block: dict[int, set[int]] = {}
        self._harmful_in_block: dict[int, set[int]] = {}  # per day: block -> keys with a harmful label

    def advance(self, until_ts: float) -> None:
        while self.i < len(self.tags) and self.tags[self.i][0] < until_ts:
            _, key, rep, cat = self.tags[self.i]
            self.votes.setdefault(key, {}).setdefault(cat, set()).add(rep)
            self.by_block.setdefault(block_start(key), set()).add(key)
            self.i += 1
        self._harmful_in_block = {}

    def block_harmful(self, key: int | None) -> int:
        """Other numbers of `key`'s 100-number block with a harmful label (`PackReader.block_harmful`)."""
        if key is None:
            return 0
        b = block_start(key)
        if b not in self._harmful_in_block:
            self._harmful_in_block[b] = {k for k in self.by_block.get(b, ()) if _is_harmful(self.lookup(k))}
        return others_in_block(key, self._harmful_in_block[b])

    def lookup(self, key: int | None) -> dict | None:
        if key is None:
            return None
        v = self.votes.get(key)
        ver = key in self.verified
        if v:
            reporters = len(set().union(*v.values()))
            cat, voters = max(v.items(), key=lambda kv: len(kv[1]))
            if reporters >= self.min_reporters:
                return {"pack_category": cat, "pack_confidence": len(voters) / (reporters + 1),
                        "pack_reporters": reporters, "pack_verified": ver}
        if ver:
            return {"pack_category": "customer_service", "pack_confidence": 0.99, "pack_reporters": 0,
                    "pack_verified": True}
        return None


class StaticPack:
    """A fixed pack from a consensus LABELS.csv (published rows only)."""

    def __init__(self, labels_csv):
        from callmark.numbers import key_of

        self.rows: dict[int, dict] = {}
        for r in read_labels(labels_csv, published_only=True):
            key = key_of(r["number"])
            flags = int(r.get("flags") or 0)
            if key is not None:
                self.rows[key] = {"pack_category": r["category"],
                                  "pack_confidence": float(r.get("confidence") or 0),
                                  "pack_reporters": int(float(r.get("reporters") or 0)),
                                  "pack_verified": bool(flags & FLAG_VERIFIED),
                                  "pack_model_derived": bool(flags & FLAG_MODEL)}
        self.harmful_in_block: dict[int, set[int]] = {}
        for key, row in self.rows.items():
            if _is_harmful(row):
                self.harmful_in_block.setdefault(block_start(key), set()).add(key)

    def advance(self, until_ts: float) -> None:
        pass

    def block_harmful(self, key: int | None) -> int:
        """Other numbers of `key`'s 100-number block with a harmful label (`PackReader.block_harmful`)."""
        return 0 if key is None else others_in_block(key, self.harmful_in_block.get(block_start(key), frozenset()))

    def lookup(self, key: int | None) -> dict | None:
        return self.rows.get(key) if key is not None else None


def _keep_handset(callee: str, share: float) -> bool:
    return share >= 1.0 or (int(callee[:8] or "0", 16) / 0xFFFFFFFF) < share


def ring_events(data_dir, *, labels_csv=None, handset_share: float = 1.0, max_events: int = 500_000,
                seed: int = 0, chunk_rows: int = 250_000, truth_csv=None,
                caller_filter=None) -> RingEvents:
    """Replay calls.csv in time order and emit the raw facts of every incoming call on a sample of
    handsets (`handset_share` of subscribers, chosen by callee hash), with local history per
    (number, handset), the pack as synced at the start of the call's day, and truth targets.

    `data_dir` is a simulator output (calls.csv, truth.csv, tags.jsonl, verified.csv). With
    `labels_csv` (consensus LABELS.csv) that file is the pack instead of the rolling tag pack; with
    `truth_csv` targets come from that file instead of `data_dir/truth.csv` (e.g. a simulation's
    ground truth for a build trained on release labels). With `caller_filter` (number -> bool) only
    calls from callers it accepts are kept (local history still counts every call).
    Memory: history per sampled (number, handset) pair; at most `max_events` events are kept
    (reservoir sample).
    """
    from callmark.numbers import key_of

    data = Path(data_dir)
    truth = read_truth(truth_csv or data / "truth.csv")
    verified = set()
    if (data / "verified.csv").is_file():
        with (data / "verified.csv").open(newline="") as fh:
            verified = {k for k in (key_of(r["number"]) for r in csv.DictReader(fh)) if k is not None}
    pack = StaticPack(labels_csv) if labels_csv else RollingPack(read_tags(data / "tags.jsonl"), verified)
    history: dict[tuple[str, str], list] = {}
    rng = np.random.default_rng(seed)
    out_facts, out_caller, out_cat, out_harm, out_pack, out_day, out_known = [], [], [], [], [], [], []
    lists = (out_facts, out_caller, out_cat, out_harm, out_pack, out_day, out_known)
    seen = 0
    day0 = None
    cur_day = None
    unknown = 0
    for ch in iter_call_chunks(data / "calls.csv", chunk_rows):
        local = ch["start"] + LOCAL_OFFSET_S
        if day0 is None:
            day0 = int(local[0] // 86400)
        for i in range(len(local)):
            callee = ch["callee"][i]
            if not _keep_handset(callee, handset_share):
                continue
            caller = ch["caller"][i]
            day = int(local[i] // 86400) - day0
            if day != cur_day:
                cur_day = day
                pack.advance((day + day0) * 86400 - LOCAL_OFFSET_S)
            ts = ch["start"][i]
            h = history.get((caller, callee))
            if ch["inbound"][i] and (caller_filter is None or caller_filter(caller)):
                facts = {"number": ch["presentation"][i], "hour": int(local[i] // 3600) % 24,
                         "weekday": int((local[i] // 86400 + 3) % 7), "verification": ch["verification"][i],
                         "in_contacts": bool(h and h[4] > 0)}
                if h:
                    facts.update(prior_calls=h[0], prior_answered=h[1], last_talk_s=h[2],
                                 days_since_last=(ts - h[3]) / 86400.0)
                key = key_of(caller)
                label = pack.lookup(key)
                if label:
                    facts.update(label)
                facts["pack_block_harmful"] = pack.block_harmful(key)
                entries = truth.get(caller)
                if entries is None:
                    unknown += 1
                    cat, harm = "legit", 0
                else:
                    cat, harm = truth_at(entries, day)
                seen += 1
                slot = len(out_facts) if len(out_facts) < max_events else int(rng.integers(0, seen))
                if slot < max_events:
                    row = (facts, caller, cat, harm, label is not None, day, entries is not None)
                    if slot == len(out_facts):
                        for lst, v in zip(lists, row):
                            lst.append(v)
                    else:
                        for lst, v in zip(lists, row):
                            lst[slot] = v
            if h is None:
                h = history[(caller, callee)] = [0, 0, 0.0, ts, 0]
            h[0] += 1
            h[1] += int(ch["answered"][i])
            h[2] = float(ch["talk_s"][i]) if ch["answered"][i] else h[2]
            h[3] = ts
            h[4] += int(not ch["inbound"][i])  # the handset dialled this number: a contact proxy
    if not out_facts:
        raise FeatureInputError(f"no incoming calls found in {data / 'calls.csv'} (handset_share={handset_share})")
    return RingEvents(facts=out_facts, caller=out_caller, category=out_cat,
                      harmful=np.asarray(out_harm, dtype=np.int64), in_pack=np.asarray(out_pack, dtype=bool),
                      day=np.asarray(out_day, dtype=np.int64), known=np.asarray(out_known, dtype=bool),
                      meta={"incoming_calls": seen, "kept": len(out_facts), "pairs": len(history),
                            "callers_not_in_truth": unknown, "pack": "labels" if labels_csv else "rolling-tags"})
