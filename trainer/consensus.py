"""Crowd consensus: tag events -> one calibrated label per number (see docs/consensus.md).

`run(events, config, as_of, verified=None, appeals=None, recycled=None) -> ConsensusResult`.
Steps: drop events after `as_of` and before a number's reissue; per-reporter daily caps; one vote per
reporter per number (latest wins); appeals drop the appealed categories' older evidence; vote weights
= time decay x account history, with blocs and young-account cohorts collapsed and each reporter's
total influence bounded; reporter reliability by EM (consensus_em); publication thresholds per
category; verified businesses; ranges (consensus_output).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone

import numpy as np

from callmark.categories import CATEGORIES, by_key
from callmark.labels import FLAG_APPEAL_SUPPRESSED, FLAG_VERIFIED
from trainer import consensus_defences as D
from trainer import consensus_calibration as CAL
from trainer.consensus_em import _log_q0, fit
from trainer.ingest import Appeal, TagEvents
from trainer.consensus_output import ConsensusResult, build_ranges

DAY = 86400
CODES = np.array([c.code for c in CATEGORIES], np.int16)  # class index -> category code
K = len(CODES)
CODE_TO_CLASS = np.full(int(CODES.max()) + 1, -1, np.int8)
CODE_TO_CLASS[CODES] = np.arange(K)
HARMFUL = np.array([c.harmful for c in CATEGORIES])
LEGIT = int(CODE_TO_CLASS[by_key("legit").code])
METHODS = ("em", "majority")


class ConsensusConfigError(ValueError):
    """A consensus configuration value that is out of range or unknown."""


@dataclass
class ConsensusConfig:
    """Every knob of the consensus; `from_dict` validates. Units in the comments."""

    half_life_days: float = 125.0  # days; evidence weight halves every half-life (PhoneBlock: 125)
    min_reporters: int = 3  # distinct independent reporters needed to publish (blocs count once)
    min_confidence: float = 0.5  # calibrated probability needed to publish
    min_reporters_by_category: dict[str, int] = field(default_factory=dict)  # per-category overrides
    min_confidence_by_category: dict[str, float] = field(default_factory=dict)
    method: str = "em"  # "em" (reliability-weighted) or "majority" (baseline, same thresholds)
    defences: bool = True  # False: plain EM / plain majority (no caps, history, blocs, cohorts)
    daily_cap: int = 20  # tag events per reporter per UTC day that count
    influence_budget: float | None = None  # max total (decayed) weight of one reporter across all
    # numbers, in votes; None: daily_cap x half_life_days / ln 2, the most an account within the
    # daily cap can ever hold (so it binds on accounts that evade the cap); 0: no bound
    new_account_weight: float = 0.2  # weight of a vote cast by a brand-new account (0..1]
    maturity_days: float = 3.0  # days of account age until its votes weigh fully
    cohort_cap: float = 1.0  # max total weight of young accounts on one number per UTC day (votes)
    bloc_neighbours: int = 8  # votes paired per vote on a number when looking for blocs
    bloc_min_shared: int = 4  # numbers a pair must share to be linked
    bloc_min_agreement: float = 0.9  # share of those on which the pair voted alike
    bloc_min_overlap: float = 0.25  # agreements covering that share of the smaller one's votes
    bloc_max_kappa: float = 0.0  # a linked group is a bloc when, where it acts together, its
    # chance-corrected agreement (Cohen's kappa) with everyone else is below this
    prior_accuracy: float = 0.75  # prior mean of a reporter's accuracy
    prior_strength: float = 4.0  # prior weight in votes
    accuracy_min: float = 0.34  # clip of learned accuracy
    accuracy_max: float = 0.95  # bounds one vote's likelihood ratio
    confusion_min_votes: int = 10  # votes per class in use a reporter needs for its own confusion
    # matrix (10 x 18 = 180 when all categories are used; 20 on a 2-class crowd); 0: none
    confusion_strength: float = 10.0  # pseudo-votes per true class pulling it to its one-coin row
    confusion_max_reporters: int = 100_000  # most prolific reporters with a matrix (memory bound)
    em_iterations: int = 10
    em_tol: float = 1e-3  # stop when no accuracy / confusion / prior moves more than this
    temper: bool = True  # confidence from the tempered posterior, tau chosen by predicting held-out
    # reports (consensus_calibration); False: the plain posterior
    calibration: tuple[float, float, float] = (1.0, 0.0, 0.0)  # (a, b, c): optional Platt map,
    # confidence = sigmoid(a * logit(p) + b * log(1 + independent reporters) + c) of the posterior
    # p, e.g. fitted on audited labels; (1, 0, 0) = none
    appeal_min_reporters: int = 0  # post-appeal reporters to lift a suppression; 0: min_reporters
    ranges: bool = True
    range10_min: int = 4  # published harmful numbers in a block of 10 to label the block
    range100_min: int = 8  # ... in a block of 100
    range100_min_blocks: int = 4  # spread over at least this many blocks of 10

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ConsensusConfigError naming the first bad value."""
        def bad(name, why):
            raise ConsensusConfigError(f"consensus config {name}={getattr(self, name)!r}: {why}")
        for name in ("half_life_days", "maturity_days", "prior_strength",
                     "confusion_strength"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                bad(name, "must be a non-negative number")
        ib = self.influence_budget
        if ib is not None and (isinstance(ib, bool) or not isinstance(ib, (int, float))
                               or not math.isfinite(ib) or ib < 0):
            bad("influence_budget", "must be a non-negative number of votes, or null (auto)")
        if self.half_life_days <= 0:
            bad("half_life_days", "must be > 0 (days)")
        for name in ("min_reporters", "daily_cap", "bloc_neighbours", "bloc_min_shared",
                     "em_iterations", "appeal_min_reporters", "confusion_min_votes",
                     "confusion_max_reporters", "range10_min", "range100_min",
                     "range100_min_blocks"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                bad(name, "must be a non-negative integer")
        for name in ("min_confidence", "new_account_weight", "bloc_min_overlap",
                     "bloc_min_agreement", "prior_accuracy",
                     "accuracy_min", "accuracy_max"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v <= 1:
                bad(name, "must be within 0..1")
        if not isinstance(self.bloc_max_kappa, (int, float)) or not -1 <= self.bloc_max_kappa <= 1:
            bad("bloc_max_kappa", "must be within -1..1")
        if not 0 < self.accuracy_min < self.accuracy_max < 1:
            bad("accuracy_max", "need 0 < accuracy_min < accuracy_max < 1")
        cal = self.calibration
        if (not isinstance(cal, (list, tuple)) or len(cal) != 3
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in cal)):
            bad("calibration", "must be three finite numbers (a, b, c)")
        self.calibration = tuple(float(v) for v in cal)
        if self.method not in METHODS:
            bad("method", f"use one of {', '.join(METHODS)}")
        for name, lo, hi in (("min_reporters_by_category", 0, None),
                             ("min_confidence_by_category", 0, 1)):
            d = getattr(self, name)
            if not isinstance(d, dict):
                bad(name, "must be a mapping of category key -> value")
            for k, v in d.items():
                try:
                    by_key(k)
                except ValueError as exc:
                    bad(name, str(exc))
                if not isinstance(v, (int, float)) or v < lo or (hi is not None and v > hi):
                    bad(name, f"value for {k} out of range")

    def influence(self) -> float:
        """The influence budget in votes (resolving None to the daily-cap steady state)."""
        if self.influence_budget is not None:
            return float(self.influence_budget)
        return self.daily_cap * self.half_life_days / math.log(2) if self.daily_cap else 0.0

    def thresholds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min reporters, min confidence) per class index."""
        mr = np.full(K, self.min_reporters, np.int64)
        mc = np.full(K, float(self.min_confidence))
        for k, v in self.min_reporters_by_category.items():
            mr[CODE_TO_CLASS[by_key(k).code]] = int(v)
        for k, v in self.min_confidence_by_category.items():
            mc[CODE_TO_CLASS[by_key(k).code]] = float(v)
        return mr, mc

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ConsensusConfig":
        """Build from a mapping, rejecting unknown keys."""
        if not isinstance(d, dict):
            raise ConsensusConfigError("consensus config must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConsensusConfigError(f"unknown consensus config keys {unknown}; known: "
                                       f"{', '.join(sorted(known))}")
        return cls(**d)


def parse_as_of(value) -> int:
    """Epoch seconds from an ISO-8601 string (naive = UTC), epoch number or datetime."""
    if isinstance(value, datetime):
        d = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return int(d.timestamp())
    if isinstance(value, (int, float, np.integer)):
        return int(value)
    from trainer.ingest import parse_ts
    t = parse_ts(value)
    if t is None:
        raise ConsensusConfigError(f"as_of {value!r} is not a time; use ISO-8601 like "
                                   f"2026-03-16T00:00:00Z or epoch seconds")
    return t


def run(events: TagEvents, config: ConsensusConfig | None = None, as_of=None,
        verified: dict[int, str] | None = None, appeals: dict[int, list[Appeal]] | None = None,
        recycled: dict[int, int] | None = None) -> ConsensusResult:
    """Labels for every number with a tag at or before `as_of` (default: the latest tag)."""
    cfg = config or ConsensusConfig()
    verified, appeals, recycled = verified or {}, appeals or {}, recycled or {}
    stats: dict[str, float] = {"events": len(events)}
    ts_all = events.ts
    as_of = int(ts_all.max()) if as_of is None and len(events) else parse_as_of(as_of or 0)
    m = ts_all <= as_of
    n_after = int(m.size - np.count_nonzero(m))
    stats["after_as_of"] = n_after
    # only the columns the consensus reads (a full `take` would copy the call facts too)
    ev_key, ev_rep, ev_ts, ev_cat, ev_comp = (
        (events.key, events.reporter, events.ts, events.category, events.company) if not n_after
        else (events.key[m], events.reporter[m], events.ts[m], events.category[m],
              events.company[m]))
    del m
    out_keys, ev_item = _dense_ids(ev_key)  # one output row per tagged number
    n_reps = len(events.reporters)
    first_ts = np.full(n_reps, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(first_ts, ev_rep, ev_ts)

    keep = None
    if recycled:
        rk = np.array(sorted(recycled), np.int64)
        rt = np.array([recycled[k] for k in rk], np.int64)
        pos = np.clip(np.searchsorted(rk, ev_key), 0, rk.size - 1)
        hit = (rk[pos] == ev_key) & (ev_ts < rt[pos])
        stats["before_reissue"] = int(hit.sum())
        keep = ~hit
    if cfg.defences:
        capped = D.daily_cap_mask(ev_rep, ev_ts, cfg.daily_cap, n_reps)
        if capped is not None:
            stats["over_daily_cap"] = int((~capped if keep is None else keep & ~capped).sum())
            keep = capped if keep is None else keep & capped
        else:
            stats["over_daily_cap"] = 0
    if keep is None:
        sel = D.latest_vote(ev_rep, ev_item, ev_ts, n_reps)  # sorted by (number, reporter)
    else:
        idx = np.flatnonzero(keep)
        sel = idx[D.latest_vote(ev_rep[idx], ev_item[idx], ev_ts[idx], n_reps)]
        del idx, keep
    item_out, rep, ts = ev_item[sel], ev_rep[sel], ev_ts[sel]
    cls = CODE_TO_CLASS[ev_cat[sel]]
    # company per vote only when the stream has company names (a column no row had is a view)
    has_comp = ev_comp.strides != (0,) and bool((ev_comp >= 0).any())
    comp = ev_comp[sel] if has_comp else None
    del sel, ev_item
    appeal_flag = np.zeros(0, np.int64)
    if appeals:
        drop, appeal_flag = _appeal_drops(appeals, out_keys, item_out, cls, ts)
        stats["appeal_dropped"] = int(drop.sum())
        if drop.any():
            keep = ~drop
            item_out, rep, ts, cls = (x[keep] for x in (item_out, rep, ts, cls))
            comp = comp[keep] if comp is not None else None
            del keep
    stats["votes"] = int(item_out.shape[0])

    # dense item ids over the numbers that still have votes (votes are sorted by number)
    first = np.ones(item_out.shape[0], bool)
    first[1:] = item_out[1:] != item_out[:-1]
    items = out_keys[item_out[first]]
    item = (np.cumsum(first) - 1).astype(np.int32)
    n_items = items.shape[0]
    del first, item_out
    w = np.power(0.5, (as_of - ts) / (cfg.half_life_days * DAY))
    young = None
    if cfg.defences:
        day = ts // DAY
        h = D.history_factor(rep, ts, first_ts, cfg.new_account_weight, cfg.maturity_days)
        young = h < 1.0
        bloc, n_blocs = D.find_blocs(item, rep, cls, n_reps, neighbours=cfg.bloc_neighbours,
                                     min_shared=cfg.bloc_min_shared,
                                     min_overlap=cfg.bloc_min_overlap,
                                     min_agreement=cfg.bloc_min_agreement,
                                     max_kappa=cfg.bloc_max_kappa)
        stats["blocs"] = n_blocs
        stats["reporters_in_blocs"] = int((bloc != np.arange(n_reps)).sum() + n_blocs)
        unit = bloc[rep].astype(np.int32) if n_blocs else rep
        del bloc
        w *= h
        del h
        w *= D.collapse(item, unit, young, day, w, cfg.cohort_cap, blocs=n_blocs > 0)
        w *= D.bound_influence(rep, w, n_reps, cfg.influence())
        del day
        units_are_reps = n_blocs == 0  # every (number, unit) pair holds one vote
        if not young.any():
            young = None
    else:
        unit = rep
        units_are_reps = True

    if cfg.method == "em" and n_items:
        n_units = _distinct_per_item(item, unit, n_items, units_are_reps)
        with _one_blas_thread():  # the products are small: threads only add overhead
            res = fit(item, rep, cls, w, unit, n_items, n_reps, K,
                      prior_accuracy=cfg.prior_accuracy, prior_strength=cfg.prior_strength,
                      accuracy_bounds=(cfg.accuracy_min, cfg.accuracy_max),
                      iterations=cfg.em_iterations, tol=cfg.em_tol, loo=cfg.defences,
                      learn_mask=(n_units[item] >= 2) if cfg.defences else None,
                      confusion_min_votes=cfg.confusion_min_votes,
                      confusion_strength=cfg.confusion_strength,
                      confusion_max_reporters=cfg.confusion_max_reporters)
        post = res.log_post  # normalised in place
        tau = 1.0
        if cfg.temper:
            idx = CAL.sample_votes((n_units[item] >= 2) & (unit == rep))
            lv = CAL.vote_loglik(rep[idx], cls[idx].astype(np.int64), np.log(res.accuracy),
                                 _log_q0(res.confusion), res.reporter_confusion)
            tau, _ = CAL.choose_tau(post, np.log(res.prior), item[idx], lv, w[idx])
            del lv, idx
            CAL.temper(post, np.log(res.prior), tau)
        stats["temper"] = tau
        post -= post.max(axis=1, keepdims=True)
        np.exp(post, out=post)
        post /= post.sum(axis=1, keepdims=True)
        stats["em_iterations"] = res.iterations
        accuracy = res.accuracy
        del res
    else:
        cell = item.astype(np.int64) * K + cls
        post = np.bincount(cell, w, minlength=n_items * K).reshape(n_items, K)
        tot = post.sum(axis=1, keepdims=True)
        post = np.where(tot > 0, post / np.maximum(tot, 1e-300), 1.0 / K)
        accuracy = None
    # the best category is chosen among the categories someone voted for on that number, so weak
    # evidence never turns a number tagged only "legit" into the prior's favourite harmful class
    voted = np.zeros((n_items, K), bool)
    voted[item, cls] = True
    # (in place: the categories nobody voted for are never read again)
    np.copyto(post, -1.0, where=~voted)
    del voted
    best = post.argmax(axis=1) if n_items else np.zeros(0, np.int64)
    conf = post[np.arange(n_items), best] if n_items else np.zeros(0)

    # counts for the best class: distinct reporters, independent units, company, last evidence
    on_best = cls == best[item]
    reporters = np.bincount(item[on_best], minlength=n_items)
    # publication units: young accounts once per (number, day); a bloc once; others each
    pub_unit = unit[on_best] if young is None else np.where(
        young[on_best], -(1 + ts[on_best] // DAY), unit[on_best])
    units = _distinct_per_item(item[on_best], pub_unit, n_items, units_are_reps and young is None)
    del pub_unit
    conf = calibrate(conf, units, cfg.calibration)
    last_ts = np.zeros(n_items, np.int64)
    np.maximum.at(last_ts, item, ts)
    company = (_top_company(item[on_best], comp[on_best], n_items, events.companies)
               if comp is not None else [""] * n_items)

    mr, mc = cfg.thresholds()
    published = (units >= mr[best]) & (reporters >= mr[best]) & (conf >= mc[best] - 1e-12)
    flags = np.zeros(n_items, np.int64)
    if appeal_flag.size:
        pos = np.clip(np.searchsorted(appeal_flag, items), 0, appeal_flag.size - 1)
        flags[appeal_flag[pos] == items] |= FLAG_APPEAL_SUPPRESSED
        if cfg.appeal_min_reporters:
            app = (flags & FLAG_APPEAL_SUPPRESSED) > 0
            published &= ~app | (units >= cfg.appeal_min_reporters)
    if verified:
        vk = np.array(sorted(verified), np.int64)
        pos = np.clip(np.searchsorted(vk, items), 0, vk.size - 1)
        isv = vk[pos] == items
        for i in np.flatnonzero(isv):
            flags[i] |= FLAG_VERIFIED
            company[i] = verified[int(items[i])] or company[i]
            a, b = np.searchsorted(item, i), np.searchsorted(item, i, side="right")
            if HARMFUL[best[i]]:  # never harmful: the likeliest benign class voted, else legit
                voted = np.zeros(K, bool)
                voted[cls[a:b]] = True
                benign = np.where(~HARMFUL & voted, post[i], -1.0)
                best[i] = int(benign.argmax()) if benign.max() >= 0 else LEGIT
            conf[i] = 1.0
            published[i] = True
            reporters[i] = int((cls[a:b] == best[i]).sum())

    # rows for tagged numbers with no remaining evidence (all before reissue / appealed)
    result_keys = out_keys
    n_out = result_keys.shape[0]
    pos = np.searchsorted(result_keys, items)
    col = dict(category=np.full(n_out, CODES[LEGIT], np.int16), confidence=np.zeros(n_out),
               reporters=np.zeros(n_out, np.int64), published=np.zeros(n_out, bool),
               flags=np.zeros(n_out, np.int64), last_ts=np.zeros(n_out, np.int64))
    col["category"][pos] = CODES[best]
    col["confidence"][pos] = conf
    col["reporters"][pos] = reporters
    col["published"][pos] = published
    col["flags"][pos] = flags
    col["last_ts"][pos] = last_ts
    comp_out = [""] * n_out
    for p, c in zip(pos.tolist(), company):
        comp_out[p] = c
    if appeal_flag.size:  # appealed numbers whose evidence is all gone still carry the flag
        fpos = np.clip(np.searchsorted(result_keys, appeal_flag), 0, max(n_out - 1, 0))
        if n_out:
            col["flags"][fpos[result_keys[fpos] == appeal_flag]] |= FLAG_APPEAL_SUPPRESSED
    if verified and n_out:
        vk = np.array(sorted(verified), np.int64)
        vpos = np.clip(np.searchsorted(vk, result_keys), 0, vk.size - 1)
        for p in np.flatnonzero(vk[vpos] == result_keys):
            col["flags"][p] |= FLAG_VERIFIED
            comp_out[p] = verified[int(result_keys[p])] or comp_out[p]
    stats["numbers"] = int(n_out)
    stats["published"] = int(col["published"].sum())
    ranges = build_ranges(result_keys, col, cfg, HARMFUL[CODE_TO_CLASS[col["category"]]],
                          set(verified)) if cfg.ranges else None
    return ConsensusResult(key=result_keys, company=comp_out, ranges=ranges, as_of=as_of,
                           config=cfg, stats=stats, reporter_accuracy=accuracy,
                           reporter_ids=events.reporters, **col)


def _one_blas_thread():
    """Limit BLAS to one thread (threadpoolctl, when installed); a no-op context otherwise."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only speed depends on it
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _dense_ids(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct keys, int32 rank of each key among them): np.unique(return_inverse) with
    less memory (one int64 sort order and one sorted copy at a time)."""
    n = keys.shape[0]
    order = np.argsort(keys)
    sk = keys[order]
    first = np.ones(n, bool)
    np.not_equal(sk[1:], sk[:-1], out=first[1:])
    distinct = sk[first]
    del sk
    ids = np.empty(n, np.int32)
    ids[order] = np.cumsum(first, dtype=np.int32) - 1
    return distinct, ids


def _appeal_drops(appeals: dict[int, list[Appeal]], out_keys: np.ndarray, item: np.ndarray,
                  cls: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(votes to drop, sorted keys to flag): an accepted appeal removes the votes of its categories
    cast before it was filed; a number is flagged when it has an appeal and any tag."""
    ak, ac, at = [], [], []
    for k, lst in appeals.items():
        for ap in lst:
            for c in ap.codes:
                if 0 <= c < CODE_TO_CLASS.size and CODE_TO_CLASS[c] >= 0:
                    ak.append(k)
                    ac.append(int(CODE_TO_CLASS[c]))
                    at.append(ap.filed_ts)
    keys = np.array(sorted(appeals), np.int64)
    pos = np.clip(np.searchsorted(out_keys, keys), 0, max(out_keys.size - 1, 0))
    flagged = keys[out_keys[pos] == keys] if out_keys.size else keys[:0]
    drop = np.zeros(item.shape[0], bool)
    if not ak:
        return drop, flagged
    ak = np.array(ak, np.int64)
    pos = np.clip(np.searchsorted(out_keys, ak), 0, max(out_keys.size - 1, 0))
    hit = out_keys[pos] == ak if out_keys.size else np.zeros(ak.size, bool)
    if not hit.any():
        return drop, flagged
    # per (number, class): the latest appeal's filing time; votes before it are dropped
    cell = pos[hit] * K + np.array(ac, np.int64)[hit]
    t = np.array(at, np.int64)[hit]
    order = np.lexsort((t, cell))
    cell, t = cell[order], t[order]
    last = np.ones(cell.size, bool)
    last[:-1] = cell[1:] != cell[:-1]
    cell, t = cell[last], t[last]
    v = item.astype(np.int64) * K + cls
    p = np.clip(np.searchsorted(cell, v), 0, cell.size - 1)
    drop = (cell[p] == v) & (ts < t[p])
    return drop, flagged


def calibrate(p: np.ndarray, units: np.ndarray, coef: tuple[float, float, float]) -> np.ndarray:
    """Platt-style map of the raw posterior of the best class to a calibrated probability."""
    a, b, c = coef
    if (a, b, c) == (1.0, 0.0, 0.0):
        return p
    q = np.clip(p, 1e-9, 1 - 1e-9)
    z = a * np.log(q / (1 - q)) + b * np.log1p(units) + c
    return 1.0 / (1.0 + np.exp(-z))


def _distinct_per_item(item: np.ndarray, unit: np.ndarray, n_items: int,
                       unique: bool = False) -> np.ndarray:
    """Distinct units per item; `unique`: every (item, unit) pair is known to occur once."""
    if item.size == 0:
        return np.zeros(n_items, np.int64)
    if unique:
        return np.bincount(item, minlength=n_items)
    u = unit.astype(np.int64)
    lo = int(u.min())
    span = int(u.max()) - lo + 1
    code = np.sort(item.astype(np.int64) * span + (u - lo))
    first = np.ones(code.size, bool)
    first[1:] = code[1:] != code[:-1]
    return np.bincount(code[first] // span, minlength=n_items)


def _top_company(item: np.ndarray, comp: np.ndarray, n_items: int, names: list[str]) -> list[str]:
    out = [""] * n_items
    m = comp >= 0
    if not m.any():
        return out
    pairs, counts = np.unique(np.stack([item[m].astype(np.int64), comp[m].astype(np.int64)]),
                              axis=1, return_counts=True)
    order = np.lexsort((-counts, pairs[0]))
    first = np.ones(order.size, bool)
    first[1:] = pairs[0][order][1:] != pairs[0][order][:-1]
    for j in order[first]:
        out[int(pairs[0][j])] = names[int(pairs[1][j])]
    return out
