"""Defences against fake and colluding reporters, all vectorised over vote columns.

- `daily_cap_mask`: at most N events per reporter per UTC day count (the rest are ignored).
- `latest_vote`: one effective vote per (reporter, number): the latest wins.
- `history_factor`: an account's vote weighs little until the account has history (age at the time
  of the vote, measured from its first tag).
- `find_blocs`: reporters that agree with each other on many numbers and, where they act together,
  agree with everyone else far less than the crowd agrees with itself form a bloc (no timing),
  counted as one voter on any number they share.
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


def find_blocs(item: np.ndarray, reporter: np.ndarray, cls: np.ndarray, n_reps: int, *,
               neighbours: int, min_shared: int, min_overlap: float, min_agreement: float,
               max_kappa: float) -> tuple[np.ndarray, int]:
    """Bloc id per reporter (its own id when alone) and the number of multi-member blocs.

    Timing plays no part; one vote per reporter per number; sorts and bincounts over the votes.
    1. Pairs. Votes are ordered by a fixed hash of the reporter id (the same order on every
       number, whatever the account's age or id) and each vote is paired with its next
       `neighbours` votes: O(votes x neighbours) also on numbers with thousands of votes (a
       sample of the pairs there). First within each (number, category): pairs that voted alike
       on >= `min_shared` numbers are candidates; then within each number (a sample independent
       of the categories), counting the candidates' shared numbers and agreements.
    2. Links. A pair that shares >= `min_shared` numbers, agrees on >= `min_agreement` of them
       and whose agreements cover >= `min_overlap` of the smaller reporter's votes is linked;
       connected components are candidates.
    3. Test. On each number a reference crowd counts every voter outside the candidates once and
       every candidate once (its members' most voted category), so no group outweighs another
       by its size. A candidate's agreement A is the share of the rest of that reference voting
       its category, averaged over the numbers where >= 2 of its members voted, and its
       chance-corrected agreement kappa = (A - c) / (1 - c), c = the sum of the squared category
       shares of the reference (Cohen's kappa against the crowd); numbers count by the members'
       votes on them. A candidate is a bloc when kappa < `max_kappa` (default 0: it agrees with
       everyone else less than chance would) or most of its joint votes are on numbers nobody
       else voted on (at least `min_shared` of them), and it holds less than half of the reporters with
       `min_shared` votes (a group that large is the crowd): colluders agree with each other far
       more than with everyone else. Prolific honest reporters who agree with each other because they agree
       with the truth agree with the rest of the crowd at least as much as the crowd agrees with
       itself, so they are not caught.
    """
    bloc = np.arange(n_reps, dtype=np.int64)
    n = item.shape[0]
    if n < 2:
        return bloc, 0
    nv = np.bincount(reporter, minlength=n_reps)
    item = item.astype(np.int64)
    hashed = ((reporter.astype(np.uint64) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
              ).astype(np.int64)
    elig_r = nv >= min_shared
    # pass 1, candidates: pairs voting the same category on a number (neighbours in hash order
    # within each (number, category)); only pairs with >= min_shared such numbers go on
    cell = item * (int(cls.max()) + 1) + cls
    order = np.argsort((cell << 32) | hashed) if int(cell.max()) < (1 << 30) else \
        np.lexsort((hashed, cell))
    cell = cell[order]
    r_s = reporter[order].astype(np.int64)
    el = elig_r[r_s]
    codes = []
    for j in range(1, neighbours + 1):
        same = (cell[j:] == cell[:-j]) & el[j:] & el[:-j]
        if not same.any():
            break
        a, b = r_s[:-j][same], r_s[j:][same]
        codes.append(np.minimum(a, b) * n_reps + np.maximum(a, b))
    del cell, el
    if not codes:
        return bloc, 0
    cand, cnt = np.unique(np.concatenate(codes), return_counts=True)
    del codes
    cand = cand[cnt >= min_shared]
    if not cand.size:
        return bloc, 0
    # pass 2, the candidates' shared numbers and agreements (neighbours in hash order per number)
    order = np.argsort((item << 32) | hashed) if int(item.max()) < (1 << 30) else \
        np.lexsort((hashed, item))
    del hashed
    i_s, r_s, c_s = item[order], reporter[order].astype(np.int64), cls[order].astype(np.int64)
    codes = []
    for j in range(1, neighbours + 1):
        same = np.flatnonzero(i_s[j:] == i_s[:-j])
        if not same.size:
            break
        a, b = r_s[:-j][same], r_s[j:][same]
        code = np.minimum(a, b) * n_reps + np.maximum(a, b)
        pos = np.clip(np.searchsorted(cand, code), 0, cand.size - 1)
        hit = cand[pos] == code
        codes.append(code[hit] * 2 + (c_s[j:][same[hit]] == c_s[:-j][same[hit]]))
    code, counts = np.unique(np.concatenate(codes), return_counts=True)
    del codes
    pair = code // 2
    first = np.ones(pair.size, bool)
    first[1:] = pair[1:] != pair[:-1]
    gid = np.cumsum(first) - 1
    shared = np.bincount(gid, counts)
    agreed = np.bincount(gid, counts * (code % 2))
    pair = pair[first]
    a, b = pair // n_reps, pair % n_reps
    link = ((shared >= min_shared) & (agreed >= min_agreement * shared)
            & (agreed >= min_overlap * np.minimum(nv[a], nv[b])) & (a != b))
    if not link.any():
        return bloc, 0
    a, b = a[link], b[link]
    nodes = np.unique(np.concatenate([a, b]))
    ia, ib = np.searchsorted(nodes, a), np.searchsorted(nodes, b)
    g = coo_matrix((np.ones(ia.shape[0]), (ia, ib)), shape=(nodes.size, nodes.size))
    n_comp, labels = connected_components(g, directed=False)
    comp = np.full(n_reps, -1, np.int64)
    comp[nodes] = labels
    # reference crowd per number: every voter in no candidate counts once, every candidate once
    # (its members' majority category), so no group outweighs the others by its size
    k = int(c_s.max()) + 1
    cell = i_s * k + c_s
    n_items = int(i_s[-1]) + 1
    out = comp[r_s] < 0
    mv = np.flatnonzero(~out)
    cm = comp[r_s[mv]]
    ci = cm * n_items + i_s[mv]
    g_ci, inv_ci, cnt_ci = np.unique(ci, return_inverse=True, return_counts=True)
    inv_ci = inv_ci.ravel()
    g_cc, inv_cc, cnt_cc = np.unique(ci * k + c_s[mv], return_inverse=True, return_counts=True)
    o = np.lexsort((-cnt_cc, g_cc // k))  # per (candidate, number): the most voted category
    top = np.ones(o.size, bool)
    top[1:] = (g_cc[o] // k)[1:] != (g_cc[o] // k)[:-1]
    lab = (g_cc[o][top] % k)  # aligned with g_ci (both sorted by candidate, number)
    c_item = g_ci % n_items
    c_comp = g_ci // n_items
    joint = cnt_ci >= 2  # numbers where the candidate acted together
    cells, cinv = np.unique(np.concatenate([cell[out], c_item * k + lab]), return_inverse=True)
    ref_c = np.bincount(cinv, minlength=cells.size).astype(float)
    ref_n = np.bincount(cells // k, ref_c, minlength=n_items)
    n_out = int(out.sum())
    # agreement with the reference crowd, leaving the candidate out
    with np.errstate(invalid="ignore", divide="ignore"):
        share_out = None
        share_c = (ref_c[cinv[n_out:]] - 1) / (ref_n[c_item] - 1)
    del share_out
    # chance agreement: sum of squared category shares of the reference crowd
    marg = np.bincount(cells % k, ref_c, minlength=k)
    chance = float((marg / max(marg.sum(), 1e-12)) @ (marg / max(marg.sum(), 1e-12)))
    # per (candidate, number) where it acted together, weighted by its members' votes there
    ok_c = joint & np.isfinite(share_c)
    wt = cnt_ci.astype(float)
    agree = np.bincount(c_comp[ok_c], (wt * share_c)[ok_c], minlength=n_comp)
    seen = np.bincount(c_comp[ok_c], wt[ok_c], minlength=n_comp)
    acted = np.bincount(c_comp[joint], wt[joint], minlength=n_comp)
    alone = np.bincount(c_comp[joint & ~ok_c], minlength=n_comp)  # numbers nobody else voted on
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = (agree / seen - chance) / max(1.0 - chance, 1e-12)
    small = np.bincount(labels, minlength=n_comp) * 2 < int((nv >= min_shared).sum())
    is_bloc = (acted > 0) & small & (((alone >= min_shared) & (seen * 2 <= acted))
                                     | (kappa < max_kappa))
    if not is_bloc.any():
        return bloc, 0
    keep = is_bloc[labels]
    nodes, labels = nodes[keep], labels[keep]
    rep_of = np.full(n_comp, np.iinfo(np.int64).max)
    np.minimum.at(rep_of, labels, nodes)
    bloc[nodes] = rep_of[labels]
    return bloc, int(is_bloc.sum())


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
