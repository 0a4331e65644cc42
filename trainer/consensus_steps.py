"""The consensus method, one function per step of docs/consensus.md ("The method, step by step").

`trainer.consensus.run` calls them in order: `window` (1) -> `effective_votes` (2-4) ->
`vote_weights` (5-7) -> `reporter_model` (8) -> `best_category` (9) -> `publication` (10-11) ->
`assemble` (one row per number; ranges, 12). Each works on numpy columns of one vote per
(number, reporter), sorted by (number, reporter): item (int32 dense number id), reporter (int32),
class (int8 index into `CODES`), weight (float64), unit (reporter or bloc id).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from callmark.categories import CATEGORIES, by_key
from callmark.labels import FLAG_APPEAL_SUPPRESSED, FLAG_VERIFIED
from trainer import consensus_calibration as CAL
from trainer import consensus_change as CH
from trainer import consensus_defences as D
from trainer.consensus_em import fit, log_q0
from trainer.consensus_output import ConsensusResult, build_ranges
from trainer.ingest import Appeal, TagEvents

DAY = 86400
CODES = np.array([c.code for c in CATEGORIES], np.int16)  # class index -> category code
K = len(CODES)
CODE_TO_CLASS = np.full(int(CODES.max()) + 1, -1, np.int8)
CODE_TO_CLASS[CODES] = np.arange(K)
HARMFUL = np.array([c.harmful for c in CATEGORIES])
LEGIT = int(CODE_TO_CLASS[by_key("legit").code])


@dataclass
class Window:
    """Step 1: the events at or before `as_of`, only the columns the consensus reads."""

    key: np.ndarray
    rep: np.ndarray
    ts: np.ndarray
    cat: np.ndarray
    comp: np.ndarray
    out_keys: np.ndarray  # sorted distinct number keys: one output row each
    item: np.ndarray  # int32 rank of each event's key in out_keys
    first_ts: np.ndarray  # per reporter: epoch seconds of its first tag (account age)


@dataclass
class Votes:
    """Steps 2-4: one effective vote per (number, reporter), sorted by (number, reporter)."""

    items: np.ndarray  # int64 keys of the numbers that still have votes (sorted)
    item: np.ndarray  # int32 dense index into `items`
    rep: np.ndarray
    ts: np.ndarray
    cls: np.ndarray  # int8 class index
    comp: np.ndarray | None  # company per vote, None when the stream has none
    appeal_flag: np.ndarray  # sorted keys with an accepted appeal

    @property
    def n_items(self) -> int:
        return int(self.items.shape[0])


@dataclass
class Weights:
    """Steps 5-7: weight per vote, independence unit per vote, young-account marks."""

    w: np.ndarray
    unit: np.ndarray
    young: np.ndarray | None  # True where the account was below full weight; None: nobody
    units_are_reps: bool  # every (number, unit) pair holds one vote
    learn_w: np.ndarray | None = None  # float32 weight as evidence about the reporter; None: `w`


def window(events: TagEvents, as_of: int, recycled: dict[int, int], stats: dict,
           first_seen: np.ndarray | None = None, tagged_keys: np.ndarray | None = None) -> Window:
    """Step 1: drop events after `as_of`; a number's tags before its reissue go in step 2.
    `first_seen` / `tagged_keys`: given by an engine that reduced the events (see consensus.run)."""
    m = events.ts <= as_of
    n_after = int(m.size - np.count_nonzero(m))
    stats["after_as_of"] = n_after
    cols = ((events.key, events.reporter, events.ts, events.category, events.company)
            if not n_after else (events.key[m], events.reporter[m], events.ts[m],
                                 events.category[m], events.company[m]))
    del m
    if tagged_keys is None:
        out_keys, item = _dense_ids(cols[0])
    else:
        out_keys = np.asarray(tagged_keys, np.int64)
        item = np.searchsorted(out_keys, cols[0]).astype(np.int32)
    if first_seen is None:
        first_ts = np.full(len(events.reporters), np.iinfo(np.int64).max, np.int64)
        np.minimum.at(first_ts, cols[1], cols[2])
    else:
        first_ts = np.asarray(first_seen, np.int64)
    return Window(*cols, out_keys, item, first_ts)


def effective_votes(win: Window, cfg, recycled: dict[int, int], appeals: dict, stats: dict
                    ) -> Votes:
    """Steps 1-4: reissues, daily caps, the latest vote per (number, reporter), appeals."""
    n_reps = win.first_ts.shape[0]
    keep = None
    if recycled:
        rk = np.array(sorted(recycled), np.int64)
        rt = np.array([recycled[k] for k in rk], np.int64)
        pos = np.clip(np.searchsorted(rk, win.key), 0, rk.size - 1)
        hit = (rk[pos] == win.key) & (win.ts < rt[pos])
        stats["before_reissue"] = int(hit.sum())
        keep = ~hit
    if cfg.defences:
        capped = D.daily_cap_mask(win.rep, win.ts, cfg.daily_cap, n_reps)
        if capped is not None:
            stats["over_daily_cap"] = int((~capped if keep is None else keep & ~capped).sum())
            keep = capped if keep is None else keep & capped
        else:
            stats["over_daily_cap"] = 0
    if keep is None:
        sel = D.latest_vote(win.rep, win.item, win.ts, n_reps)  # sorted by (number, reporter)
    else:
        idx = np.flatnonzero(keep)
        sel = idx[D.latest_vote(win.rep[idx], win.item[idx], win.ts[idx], n_reps)]
        del idx, keep
    item_out, rep, ts = win.item[sel], win.rep[sel], win.ts[sel]
    cls = CODE_TO_CLASS[win.cat[sel]]
    # company per vote only when the stream has company names (a column no row had is a view)
    has_comp = win.comp.strides != (0,) and bool((win.comp >= 0).any())
    comp = win.comp[sel] if has_comp else None
    del sel
    appeal_flag = np.zeros(0, np.int64)
    if appeals:
        drop, appeal_flag = _appeal_drops(appeals, win.out_keys, item_out, cls, ts)
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
    items = win.out_keys[item_out[first]]
    item = (np.cumsum(first) - 1).astype(np.int32)
    return Votes(items, item, rep, ts, cls, comp, appeal_flag)


def vote_weights(v: Votes, first_ts: np.ndarray, cfg, as_of: int, stats: dict) -> Weights:
    """Steps 5-7: time decay x account history; blocs and cohorts collapsed; influence bound."""
    n_reps = first_ts.shape[0]
    age = (as_of - v.ts) if cfg.decay_from == "as_of" else (_latest_per_item(v) - v.ts)
    if cfg.decay_when == "change":  # only numbers whose votes show a change of use decay
        changed = CH.changed_items(v.item, v.ts, v.cls, v.n_items, cfg.change_alpha)
        stats["changed_numbers"] = int(changed.sum())
        age[~changed[v.item]] = 0
        del changed
    w = np.power(0.5, age / (cfg.half_life_days * DAY))
    rh = cfg.reliability_half_life_days
    # the reporter's record: learn_w / w = its own decay / the evidence decay (all else shared)
    ratio = (np.power(0.5, (as_of - v.ts) * (1.0 / (rh * DAY) if rh else 0.0)) /
             np.maximum(w, 1e-300))
    del age
    if not cfg.defences:
        return Weights(w, v.rep, None, True, (w * ratio).astype(np.float32))
    day = v.ts // DAY
    h = D.history_factor(v.rep, v.ts, first_ts, cfg.new_account_weight, cfg.maturity_days)
    young = h < 1.0
    bloc, n_blocs = D.find_blocs(v.item, v.rep, v.cls, n_reps, neighbours=cfg.bloc_neighbours,
                                 min_shared=cfg.bloc_min_shared,
                                 min_overlap=cfg.bloc_min_overlap,
                                 min_agreement=cfg.bloc_min_agreement,
                                 max_kappa=cfg.bloc_max_kappa)
    stats["blocs"] = n_blocs
    stats["reporters_in_blocs"] = int((bloc != np.arange(n_reps)).sum() + n_blocs)
    unit = bloc[v.rep].astype(np.int32) if n_blocs else v.rep
    del bloc
    w *= h
    del h
    w *= D.collapse(v.item, unit, young, day, w, cfg.cohort_cap, blocs=n_blocs > 0)
    w *= D.bound_influence(v.rep, w, n_reps, cfg.influence())
    ratio *= w
    return Weights(w, unit, young if young.any() else None, n_blocs == 0,
                   ratio.astype(np.float32))


def _latest_per_item(v: Votes) -> np.ndarray:
    """Per vote: epoch seconds of its number's latest vote (votes are sorted by number)."""
    if not v.item.size:
        return v.ts.copy()
    first = np.ones(v.item.shape[0], bool)
    first[1:] = v.item[1:] != v.item[:-1]
    return np.maximum.reduceat(v.ts, np.flatnonzero(first))[v.item]


def reporter_model(v: Votes, wt: Weights, n_reps: int, cfg, stats: dict
                   ) -> tuple[np.ndarray, np.ndarray | None, "CAL.Reviewer | None"]:
    """Step 8: (posterior, items x classes float64, rows sum to 1; reporter accuracy or None;
    the careful reviewer whose choice the confidence is (`cfg.confidence == "reviewer"`,
    consensus_calibration.Reviewer), or None: the confidence is the posterior).

    "em": Dawid-Skene with per-reporter confusion where the votes justify it (consensus_em,
    consensus_confusion), its evidence tempered so the posterior is calibrated
    (consensus_calibration); "majority": weighted vote shares. A run whose labels collapse onto
    one category (>= 99 % of >= 50 numbers) although the weighted majority gives it to at most
    80 % falls back to the majority (the degenerate Dawid-Skene optimum;
    stats["collapse_guard"] = 1)."""
    n_items = v.n_items
    if cfg.method != "em" or not n_items:
        return majority(v, wt), None, None
    n_units = distinct_per_item(v.item, wt.unit, n_items, wt.units_are_reps)
    with _one_blas_thread():  # the products are small: threads only add overhead
        res = fit(v.item, v.rep, v.cls, wt.w, wt.unit, n_items, n_reps, K,
                  prior_accuracy=cfg.prior_accuracy, prior_strength=cfg.prior_strength,
                  accuracy_bounds=(cfg.accuracy_min, cfg.accuracy_max),
                  iterations=cfg.em_iterations, tol=cfg.em_tol, loo=cfg.defences,
                  learn_mask=(n_units[v.item] >= 2) if cfg.defences else None,
                  confusion_min_votes=cfg.confusion_min_votes,
                  confusion_strength=cfg.confusion_strength,
                  confusion_max_reporters=cfg.confusion_max_reporters, learn_w=wt.learn_w)
    stats["em_iterations"] = res.iterations
    if res.reporter_confusion is not None:
        stats["reporters_with_confusion"] = res.reporter_confusion.n
    post = res.log_post  # normalised in place
    tau = 1.0
    if cfg.temper:
        idx = CAL.sample_votes((n_units[v.item] >= 2) & (wt.unit == v.rep))
        lv = CAL.vote_loglik(v.rep[idx], v.cls[idx].astype(np.int64), np.log(res.accuracy),
                             log_q0(res.confusion), res.reporter_confusion)
        tau, _ = CAL.choose_tau(post, np.log(res.prior), v.item[idx], lv, wt.w[idx])
        del lv, idx
        CAL.temper(post, np.log(res.prior), tau)
    stats["temper"] = tau
    accuracy = res.accuracy
    reviewer = (CAL.Reviewer.from_model(res.confusion, res.accuracy, cfg.accuracy_max,
                                        cfg.prior_strength)
                if cfg.confidence == "reviewer" else None)
    del res, n_units
    post -= post.max(axis=1, keepdims=True)
    np.exp(post, out=post)
    post /= post.sum(axis=1, keepdims=True)
    labels = post.argmax(axis=1)
    top = int(np.bincount(labels).argmax())
    if n_items >= 50 and (labels == top).mean() >= 0.99:
        maj = majority(v, wt)
        if (maj.argmax(axis=1) == top).mean() <= 0.8:  # Dawid-Skene's degenerate optimum
            stats["collapse_guard"] = 1
            return maj, accuracy, None
    return post, accuracy, reviewer


def majority(v: Votes, wt: Weights) -> np.ndarray:
    """(items x classes) weighted vote shares."""
    n_items = v.n_items
    post = np.bincount(v.item.astype(np.int64) * K + v.cls, wt.w,
                       minlength=n_items * K).reshape(n_items, K)
    tot = post.sum(axis=1, keepdims=True)
    return np.where(tot > 0, post / np.maximum(tot, 1e-300), 1.0 / K)


def best_category(post: np.ndarray, v: Votes, wt: Weights | None = None,
                  reviewer: "CAL.Reviewer | None" = None) -> tuple[np.ndarray, np.ndarray]:
    """Step 9: (best class, its confidence) among the classes someone voted for on the number,
    so weak evidence never turns a number tagged only "legit" into the prior's favourite.

    The confidence is the best class's posterior probability, or with `reviewer` (and the vote
    weights `wt`) the probability that a careful reviewer picks it
    (consensus_calibration.reviewer_confidence)."""
    n_items = v.n_items
    if not n_items:
        return np.zeros(0, np.int64), np.zeros(0)
    voted = np.zeros((n_items, K), bool)
    voted[v.item, v.cls] = True
    if reviewer is not None:  # the label first (blocks of items: no second items x K copy)
        best = np.empty(n_items, np.int64)
        for lo in range(0, n_items, CAL.BLOCK):
            hi = min(n_items, lo + CAL.BLOCK)
            best[lo:hi] = np.where(voted[lo:hi], post[lo:hi], -1.0).argmax(axis=1)
        conf = CAL.reviewer_confidence(post, best, v.item, v.cls, v.rep, wt.w, reviewer)
    np.copyto(post, -1.0, where=~voted)  # in place: those classes are never read again
    del voted
    if reviewer is None:
        best = post.argmax(axis=1)
        conf = post[np.arange(n_items), best]
    return best, conf


def publication(post, best, conf, v: Votes, wt: Weights, cfg, verified: dict[int, str],
                company_names: list[str]) -> dict:
    """Steps 9-11: calibrated confidence, counts, thresholds, appeals, verified businesses.

    Returns per-number columns: category class, confidence, reporters, units, published, flags,
    last_ts, company."""
    item, cls, n_items = v.item, v.cls, v.n_items
    on_best = cls == best[item]
    reporters = np.bincount(item[on_best], minlength=n_items)
    # publication units: young accounts once per (number, day); a bloc once; others each
    pub_unit = wt.unit[on_best] if wt.young is None else np.where(
        wt.young[on_best], -(1 + v.ts[on_best] // DAY), wt.unit[on_best])
    units = distinct_per_item(item[on_best], pub_unit, n_items,
                              wt.units_are_reps and wt.young is None)
    del pub_unit
    conf = calibrate(conf, units, cfg.calibration)
    last_ts = np.zeros(n_items, np.int64)
    np.maximum.at(last_ts, item, v.ts)
    company = (_top_company(item[on_best], v.comp[on_best], n_items, company_names)
               if v.comp is not None else [""] * n_items)
    mr, mc = cfg.thresholds()
    published = (units >= mr[best]) & (reporters >= mr[best]) & (conf >= mc[best] - 1e-12)
    flags = np.zeros(n_items, np.int64)
    if v.appeal_flag.size:
        pos = np.clip(np.searchsorted(v.appeal_flag, v.items), 0, v.appeal_flag.size - 1)
        flags[v.appeal_flag[pos] == v.items] |= FLAG_APPEAL_SUPPRESSED
        if cfg.appeal_min_reporters:
            app = (flags & FLAG_APPEAL_SUPPRESSED) > 0
            published &= ~app | (units >= cfg.appeal_min_reporters)
    if verified:
        vk = np.array(sorted(verified), np.int64)
        pos = np.clip(np.searchsorted(vk, v.items), 0, vk.size - 1)
        for i in np.flatnonzero(vk[pos] == v.items):
            flags[i] |= FLAG_VERIFIED
            company[i] = verified[int(v.items[i])] or company[i]
            a, b = np.searchsorted(item, i), np.searchsorted(item, i, side="right")
            if HARMFUL[best[i]]:  # never harmful: the likeliest benign class voted, else legit
                voted = np.zeros(K, bool)
                voted[cls[a:b]] = True
                benign = np.where(~HARMFUL & voted, post[i], -1.0)
                best[i] = int(benign.argmax()) if benign.max() >= 0 else LEGIT
            conf[i] = 1.0
            published[i] = True
            reporters[i] = int((cls[a:b] == best[i]).sum())
    return dict(best=best, confidence=conf, reporters=reporters, published=published,
                flags=flags, last_ts=last_ts, company=company)


def assemble(win: Window, v: Votes, cols: dict, cfg, verified: dict[int, str], as_of: int,
             stats: dict, accuracy, reporter_ids) -> ConsensusResult:
    """One row per tagged number (a number whose evidence was all removed: legit, confidence 0,
    unpublished); flags of appealed / verified numbers; step 12, ranges."""
    result_keys = win.out_keys
    n_out = result_keys.shape[0]
    pos = np.searchsorted(result_keys, v.items)
    col = dict(category=np.full(n_out, CODES[LEGIT], np.int16), confidence=np.zeros(n_out),
               reporters=np.zeros(n_out, np.int64), published=np.zeros(n_out, bool),
               flags=np.zeros(n_out, np.int64), last_ts=np.zeros(n_out, np.int64))
    col["category"][pos] = CODES[cols["best"]]
    for name in ("confidence", "reporters", "published", "flags", "last_ts"):
        col[name][pos] = cols[name]
    comp_out = [""] * n_out
    for p, c in zip(pos.tolist(), cols["company"]):
        comp_out[p] = c
    flag = v.appeal_flag
    if flag.size and n_out:  # appealed numbers whose evidence is all gone still carry the flag
        fpos = np.clip(np.searchsorted(result_keys, flag), 0, n_out - 1)
        col["flags"][fpos[result_keys[fpos] == flag]] |= FLAG_APPEAL_SUPPRESSED
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
                           reporter_ids=reporter_ids, **col)


def calibrate(p: np.ndarray, units: np.ndarray, coef: tuple[float, float, float]) -> np.ndarray:
    """Optional Platt-style map of the best class's probability (identity for (1, 0, 0))."""
    a, b, c = coef
    if (a, b, c) == (1.0, 0.0, 0.0):
        return p
    q = np.clip(p, 1e-9, 1 - 1e-9)
    z = a * np.log(q / (1 - q)) + b * np.log1p(units) + c
    return 1.0 / (1.0 + np.exp(-z))


def distinct_per_item(item: np.ndarray, unit: np.ndarray, n_items: int,
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
