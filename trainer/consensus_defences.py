"""Defences against fake and colluding reporters, all vectorised over vote columns.

- `daily_cap_mask`: at most N events per reporter per UTC day count (the rest are ignored).
- `latest_vote`: one effective vote per (reporter, number): the latest wins.
- `history_factor`: an account's vote weighs little until the account has history (age at the time
  of the vote, measured from its first tag).
- `find_blocs`: reporters that repeatedly vote on the same numbers close together in time are linked;
  linked components are blocs, counted as one voter on any number they share.
- `collapse`: within a number, a bloc's votes together weigh as its heaviest member, and young
  accounts voting on the same number on the same day together weigh at most `cohort_cap`.
- `bound_influence`: a reporter's total weight across all numbers is capped.
"""
from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

DAY = 86400
CAP_BINS_MIN = 1 << 22  # daily cap: (reporter, day) bins counted directly up to this many (or n)


def daily_cap_mask(reporter: np.ndarray, ts: np.ndarray, cap: int, n_reps: int | None = None
                   ) -> np.ndarray | None:
    """True for events within the first `cap` of their reporter's UTC day (by time, ties by row);
    None when no reporter exceeds the cap on any day (everything counts)."""
    n = reporter.shape[0]
    if n == 0 or cap <= 0:
        return None
    day = ts // DAY
    d0 = int(day.min())
    n_days = int(day.max()) - d0 + 1
    n_reps = int(reporter.max()) + 1 if n_reps is None else n_reps
    if n <= cap:
        return None
    group = reporter.astype(np.int64) * n_days + (day - d0)
    del day
    if n_reps * n_days <= max(n, CAP_BINS_MIN):  # counts by direct indexing (<= 8 B per event)
        over = np.bincount(group, minlength=n_reps * n_days)[group] > cap
    else:  # sorted copy: run lengths, then mark the events of the few over-cap groups
        g = np.sort(group)
        starts = np.flatnonzero(np.concatenate(([True], g[1:] != g[:-1])))
        runs = np.diff(np.append(starts, n))
        big = g[starts[runs > cap]]
        del g, starts, runs
        if not big.size:
            return None
        over = np.isin(group, big)
    if not over.any():
        return None
    # rank the events of the over-cap (reporter, day) groups by time
    sub = np.flatnonzero(over)
    order = sub[np.lexsort((sub, ts[sub], group[sub]))]
    g = group[order]
    new = np.ones(order.size, bool)
    new[1:] = g[1:] != g[:-1]
    start = np.maximum.accumulate(np.where(new, np.arange(order.size), 0))
    keep = np.ones(n, bool)
    keep[order] = (np.arange(order.size) - start) < cap
    return keep


def latest_vote(reporter: np.ndarray, item: np.ndarray, ts: np.ndarray, n_reps: int | None = None
                ) -> np.ndarray:
    """Indices of the latest event per (reporter, item) (ties: the later row), sorted by
    (item, reporter). `item` are dense non-negative ids (e.g. ranks of the number keys)."""
    n = item.shape[0]
    if n == 0:
        return np.empty(0, np.int64)
    n_reps = int(reporter.max()) + 1 if n_reps is None else n_reps
    pair = item.astype(np.int64) * n_reps + reporter
    order = np.argsort(pair)
    ps = pair[order]
    dup = ps[1:] == ps[:-1]
    if not dup.any():
        return order
    # pairs with several events: keep the latest (then the later row); a small subset usually
    in_dup = np.zeros(n, bool)
    in_dup[1:] = dup
    in_dup[:-1] |= dup
    pos = np.flatnonzero(in_dup)
    rows = order[pos]
    sub = rows[np.lexsort((rows, ts[rows], ps[pos]))]
    last = np.ones(sub.size, bool)
    last[:-1] = pair[sub][1:] != pair[sub][:-1]
    keep = ~in_dup
    out = np.concatenate([order[keep], sub[last]])
    return out[np.argsort(pair[out], kind="stable")]


def history_factor(reporter: np.ndarray, ts: np.ndarray, first_ts: np.ndarray, new_weight: float,
                   maturity_days: float) -> np.ndarray:
    """Weight in [new_weight, 1] growing linearly with the account's age at the vote."""
    if maturity_days <= 0:
        return np.ones(reporter.shape[0])
    age = (ts - first_ts[reporter]) / (maturity_days * DAY)
    return new_weight + (1.0 - new_weight) * np.clip(age, 0.0, 1.0)


def find_blocs(item: np.ndarray, reporter: np.ndarray, ts: np.ndarray, n_reps: int, *,
               window_days: float, neighbours: int, min_shared: int, min_overlap: float,
               presorted: bool = False) -> tuple[np.ndarray, int]:
    """Bloc id per reporter (its own id when alone) and the number of multi-member blocs.

    Within each number, votes are ordered by reporter id (an order that is the same on every number,
    so members of a bloc stay neighbours wherever they vote together) and each vote is paired with
    its next `neighbours` votes that fall within `window_days` of it; a pair of reporters paired
    on >= `min_shared` numbers, covering >= `min_overlap` of the smaller one's votes, is linked.
    Items must be one vote per reporter; `presorted`: votes already sorted by (item, reporter)."""
    bloc = np.arange(n_reps, dtype=np.int64)
    nv = np.bincount(reporter, minlength=n_reps)
    m = nv[reporter] >= min_shared
    if m.sum() < 2:
        return bloc, 0
    it, rp, t = (item, reporter, ts) if m.all() else (item[m], reporter[m], ts[m])
    del m
    if not presorted:
        order = np.lexsort((rp, it))
        it, rp, t = it[order], rp[order], t[order]
        del order
    window = window_days * DAY
    pa, pb = [], []
    for j in range(1, neighbours + 1):
        same = (it[j:] == it[:-j]) & (np.abs(t[j:] - t[:-j]) <= window)
        if not same.any():
            break
        a, b = rp[:-j][same], rp[j:][same]
        pa.append(np.minimum(a, b))
        pb.append(np.maximum(a, b))
    if not pa:
        return bloc, 0
    a = np.concatenate(pa).astype(np.int64)
    b = np.concatenate(pb).astype(np.int64)
    code, counts = np.unique(a * n_reps + b, return_counts=True)
    a, b = code // n_reps, code % n_reps
    smaller = np.minimum(nv[a], nv[b])
    link = (counts >= min_shared) & (counts >= min_overlap * smaller) & (a != b)
    if not link.any():
        return bloc, 0
    a, b = a[link], b[link]
    nodes = np.unique(np.concatenate([a, b]))
    ia, ib = np.searchsorted(nodes, a), np.searchsorted(nodes, b)
    g = coo_matrix((np.ones(ia.shape[0]), (ia, ib)), shape=(nodes.size, nodes.size))
    n_comp, labels = connected_components(g, directed=False)
    # bloc id: smallest reporter id in the component
    rep_of = np.full(n_comp, np.iinfo(np.int64).max)
    np.minimum.at(rep_of, labels, nodes)
    bloc[nodes] = rep_of[labels]
    return bloc, int(n_comp)


def collapse(item: np.ndarray, unit: np.ndarray, young: np.ndarray, day: np.ndarray,
             w: np.ndarray, cohort_cap: float, blocs: bool = True) -> np.ndarray:
    """Per-vote multipliers: blocs weigh as their heaviest member per number; young accounts on the
    same number and day weigh at most `cohort_cap` together. `blocs=False`: no unit has several
    members (skips the grouping)."""
    n = w.shape[0]
    mult = np.ones(n)
    if n == 0:
        return mult
    if blocs:  # bloc collapse: group (item, unit)
        _, g = np.unique(item.astype(np.int64) * (int(unit.max()) + 1) + unit,
                         return_inverse=True)
        g = g.ravel()
        gsum = np.bincount(g, w)
        gmax = np.zeros(gsum.shape[0])
        np.maximum.at(gmax, g, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            mult *= np.where(gsum[g] > 0, gmax[g] / gsum[g], 1.0)
    # cohort cap over young votes of the same (item, day)
    if young.any() and cohort_cap > 0:
        idx = np.flatnonzero(young)
        _, c = np.unique(item[idx].astype(np.int64) * 100_000 + day[idx], return_inverse=True)
        c = c.ravel()
        csum = np.bincount(c, (w * mult)[idx])
        scale = np.where(csum > cohort_cap, cohort_cap / np.maximum(csum, 1e-12), 1.0)
        mult[idx] *= scale[c]
    return mult


def bound_influence(reporter: np.ndarray, w: np.ndarray, n_reps: int, budget: float) -> np.ndarray:
    """Per-vote multipliers so each reporter's total weight is at most `budget`."""
    if budget <= 0:
        return np.ones(w.shape[0])
    total = np.bincount(reporter, w, minlength=n_reps)
    scale = np.where(total > budget, budget / np.maximum(total, 1e-12), 1.0)
    return scale[reporter]
