"""Evidence that a number's use changed: the votes before some moment disagree with those after.

Time decay exists because a number's owner or use can change (a reissued number, a campaign that
moved on); age alone is a weak reason to forget a vote. So the decay is applied to a number only
when its own votes show a change (`consensus.ConsensusConfig.decay_when="change"`): a change-point
test on the number's votes in time order (ties by reporter).

Test. Each vote is coded x = 1 when it is the number's most voted category, else 0 (a change
from A to B moves the share of the plurality category whichever of the two it is). For every split
of the n time-ordered votes into a first j and a last n - j, the likelihood-ratio statistic of
two Bernoulli rates (before / after) against one is

    LLR_j = L(x_1..x_j) + L(x_j+1..x_n) - L(x_1..x_n),  L(part) = k log(k/m) + (m-k) log((m-k)/m)

(m votes in the part, k of them x = 1),

the standard binary change-point statistic (Hinkley 1970; Page's CUSUM is its sequential form).
Each 2 LLR_j is chi-square with 1 degree of freedom when nothing changed; the number is flagged
when the largest of its n - 1 statistics passes the Bonferroni-corrected level `alpha / (n - 1)`
(family-wise error <= alpha per number, conservative because the splits are correlated). A
number whose votes are all one category, or that has fewer than 3 votes, cannot show a change.

Cost: one lexsort of the votes of non-unanimous numbers, a few O(votes) passes; no per-number
Python loop. Pure numpy / scipy over (item, ts, class) columns, so another engine can run it.
"""
from __future__ import annotations

import numpy as np
from scipy.special import xlogy
from scipy.stats import chi2


def _xlx(k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """k log(k/n) + (n-k) log((n-k)/n) (0 where n = 0): the Bernoulli log likelihood at its MLE."""
    n_safe = np.maximum(n, 1)
    return xlogy(k, k / n_safe) + xlogy(n - k, (n - k) / n_safe)


def changed_items(item: np.ndarray, ts: np.ndarray, cls: np.ndarray, n_items: int,
                  alpha: float) -> np.ndarray:
    """(n_items,) bool: numbers whose votes show a change of category over time.

    `item` (int, dense ids, sorted ascending: votes grouped by number), `ts` (epoch s), `cls`
    (class index) per vote; `alpha` in (0, 1): family-wise false-alarm rate per number (0: no
    number is ever flagged)."""
    out = np.zeros(n_items, bool)
    if item.size == 0 or alpha <= 0:
        return out
    item = item.astype(np.int64)
    first = np.ones(item.size, bool)
    first[1:] = item[1:] != item[:-1]
    starts = np.flatnonzero(first)
    ids = item[starts]
    n = np.diff(np.append(starts, item.size))
    c = cls.astype(np.int64)
    mixed = (np.minimum.reduceat(c, starts) != np.maximum.reduceat(c, starts)) & (n >= 3)
    if not mixed.any():
        return out
    sel = np.repeat(mixed, n)  # only numbers with >= 2 categories and >= 3 votes
    it, t, c = item[sel], ts[sel], c[sel]
    order = np.lexsort((t, it))  # by number, then time (stable: ties keep vote order)
    it, c = it[order], c[order]
    del order, t
    # the plurality category of each number (ties: the smaller class index)
    code = it * 64 + c
    uc, cnt = np.unique(code, return_counts=True)
    un = uc // 64
    o = np.lexsort((uc % 64, -cnt, un))
    head = np.ones(o.size, bool)
    head[1:] = un[o][1:] != un[o][:-1]
    plur_item, plur_cls = un[o][head], (uc % 64)[o][head]
    local = np.searchsorted(plur_item, it)
    x = (c == plur_cls[local]).astype(np.float64)
    # within-number prefix sums: position j (1..n) and ones among the first j votes
    f = np.ones(it.size, bool)
    f[1:] = it[1:] != it[:-1]
    st = np.flatnonzero(f)
    nn = np.diff(np.append(st, it.size))
    pos = np.arange(it.size) - np.repeat(st, nn) + 1.0
    cx = np.cumsum(x)
    base = np.repeat(np.concatenate(([0.0], cx[st[1:] - 1])), nn)
    k1 = cx - base
    ntot = np.repeat(nn.astype(np.float64), nn)
    ktot = np.repeat(k1[st + nn - 1], nn)
    llr = _xlx(k1, pos) + _xlx(ktot - k1, ntot - pos) - _xlx(ktot, ntot)
    best = np.maximum.reduceat(llr, st)
    crit = 0.5 * chi2.isf(alpha / np.maximum(nn - 1, 1), 1)
    out[plur_item[best > crit]] = True
    return out
