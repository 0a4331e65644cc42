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

Cost: two sorts of the votes of non-unanimous numbers (time order; plurality category), a few
O(votes) passes over blocks of ~2^20 votes, no per-number Python loop (~0.3 s CPU per 1 M
votes). Pure numpy / scipy over (item, ts, class) columns, so another engine can run it.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import chi2

BLOCK = 1 << 20  # votes per block of numbers


def changed_items(item: np.ndarray, ts: np.ndarray, cls: np.ndarray, n_items: int,
                  alpha: float) -> np.ndarray:
    """(n_items,) bool: numbers whose votes show a change of category over time.

    `item` (int, dense ids, sorted ascending: votes grouped by number), `ts` (epoch s), `cls`
    (class index) per vote; `alpha` in (0, 1): family-wise false-alarm rate per number (0: no
    number is ever flagged)."""
    out = np.zeros(n_items, bool)
    if item.size == 0 or alpha <= 0:
        return out
    # blocks of whole numbers, ~BLOCK votes each: the temporaries stay small at 10 M votes
    cuts = np.searchsorted(item, item[np.arange(BLOCK, item.size, BLOCK)])
    for a, b in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [item.size]))):
        if b > a:
            _block(item[a:b], ts[a:b], cls[a:b], alpha, out)
    return out


def _block(item: np.ndarray, ts: np.ndarray, cls: np.ndarray, alpha: float, out: np.ndarray):
    """`changed_items` on votes of whole numbers; sets `out` in place."""
    first = np.ones(item.size, bool)
    first[1:] = item[1:] != item[:-1]
    starts = np.flatnonzero(first)
    n = np.diff(np.append(starts, item.size))
    mixed = (np.minimum.reduceat(cls, starts) != np.maximum.reduceat(cls, starts)) & (n >= 3)
    if not mixed.any():
        return
    ids, nn = item[starts[mixed]], n[mixed]  # only numbers with >= 2 categories and >= 3 votes
    sel = np.repeat(mixed, n)
    local = np.repeat(np.arange(ids.size, dtype=np.int64), nn)  # votes are grouped by number
    t, c = ts[sel].astype(np.int64), cls[sel].astype(np.int64)
    del sel
    # time order within each number: one stable sort of (number, time) (ties keep vote order)
    t -= t.min()
    span = int(t.max()) + 1
    order = (np.argsort(local * span + t, kind="stable") if ids.size * span < 2 ** 62
             else np.lexsort((t, local)))
    c = c[order]
    del order, t
    # the plurality category of each number (ties: the smaller class index), from run lengths of
    # the sorted (number, class) codes
    code = np.sort(local * 64 + c)
    rf = np.ones(code.size, bool)
    rf[1:] = code[1:] != code[:-1]
    rs = np.flatnonzero(rf)
    run_len = np.diff(np.append(rs, code.size))
    run_code = code[rs]
    del code, rf
    run_item = run_code // 64
    enc = run_len * 64 + (63 - run_code % 64)  # most votes first, then the smaller class
    head = np.ones(run_item.size, bool)
    head[1:] = run_item[1:] != run_item[:-1]
    plur = 63 - np.maximum.reduceat(enc, np.flatnonzero(head)) % 64
    x = (c == plur[local]).astype(np.int64)
    # within-number prefix counts: position j (1..n) and plurality votes k among the first j
    st = np.concatenate(([0], np.cumsum(nn)[:-1]))
    cx = np.cumsum(x)
    k = cx - np.repeat(np.concatenate(([0], cx[st[1:] - 1])), nn)
    j = np.arange(x.size) - np.repeat(st, nn) + 1
    del cx, x
    kt = k[st + nn - 1]  # plurality votes of the number
    # L(k, m) = k log k + (m - k) log(m - k) - m log m, from a table of v log v (v integer)
    xl = np.arange(int(nn.max()) + 1, dtype=np.float64)
    xl[1:] *= np.log(xl[1:])
    ktot, ntot = np.repeat(kt, nn), np.repeat(nn, nn)
    llr = (xl[k] + xl[j - k] - xl[j] + xl[ktot - k] + xl[ntot - j - ktot + k] - xl[ntot - j])
    del k, j, ktot, ntot
    best = np.maximum.reduceat(llr, st) - (xl[kt] + xl[nn - kt] - xl[nn])
    # chi-square(1) critical value at alpha / (n - 1), once per distinct n
    un, inv = np.unique(nn, return_inverse=True)
    crit = 0.5 * chi2.isf(alpha / np.maximum(un - 1, 1), 1)[inv]
    out[ids[best > crit]] = True
