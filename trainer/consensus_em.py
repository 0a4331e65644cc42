"""Reporter reliability by EM: a one-coin Dawid-Skene model with a shared confusion matrix.

A reporter r is right with probability a_r; when wrong, the category it picks given the true one t
follows a crowd-wide confusion row Q[t, :] (zero diagonal). Each vote enters the likelihood raised to
its weight w_v (time decay x account history x bloc/cohort discount), so discounted votes are weak
evidence rather than simply fewer votes. With `loo`, a reporter's accuracy is scored against the
posterior of the item *without its own unit's votes* (a unit is a reporter or a detected bloc), so a
bloc cannot earn trust by agreeing with itself. All sums are column-wise numpy (bincount), chunked
over items so memory stays O(votes).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix

ITEM_CHUNK = 200_000  # items per dense (items x classes) block
VOTE_CHUNK = 400_000  # votes per (votes x classes) block in the M-step


@dataclass
class EMResult:
    """Fitted parameters and the per-item log posterior (unnormalised)."""

    log_post: np.ndarray  # float64 (items x classes), log P(class | votes) up to a per-item constant
    accuracy: np.ndarray  # float64 per reporter: probability its vote is right
    prior: np.ndarray  # float64 per class
    confusion: np.ndarray  # float64 (classes x classes), rows sum to 1, zero diagonal
    iterations: int


def _softmax(s: np.ndarray) -> np.ndarray:
    s = s - s.max(axis=1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=1, keepdims=True)
    return s


def _log_post(item, cls, w, log_a, log_1a, n_items, k, log_prior, log_q0) -> np.ndarray:
    """S[i, t] = log pi_t + sum_v w_v log P(vote c_v | t) for every item (chunked over items)."""
    out = np.empty((n_items, k), np.float64)
    bounds = np.searchsorted(item, np.arange(0, n_items + ITEM_CHUNK, ITEM_CHUNK))
    for ci, lo in enumerate(range(0, n_items, ITEM_CHUNK)):
        hi = min(n_items, lo + ITEM_CHUNK)
        a, b = bounds[ci], bounds[ci + 1]
        m = hi - lo
        cell = (item[a:b] - lo).astype(np.int64) * k + cls[a:b]
        wv = w[a:b]
        A = np.bincount(cell, wv * log_a[a:b], minlength=m * k).reshape(m, k)
        B = np.bincount(cell, wv * log_1a[a:b], minlength=m * k).reshape(m, k)
        W = np.bincount(cell, wv, minlength=m * k).reshape(m, k)
        # votes for class t when truth is t: log a; votes for c != t: log(1-a) + log Q[t, c]
        out[lo:hi] = log_prior + A - B + B.sum(axis=1, keepdims=True) + W @ log_q0.T
    return out


def fit(item: np.ndarray, rep: np.ndarray, cls: np.ndarray, w: np.ndarray, unit: np.ndarray,
        n_items: int, n_reps: int, k: int, *, prior_accuracy: float, prior_strength: float,
        accuracy_bounds: tuple[float, float], iterations: int, tol: float, loo: bool,
        learn_mask: np.ndarray | None = None) -> EMResult:
    """Fit accuracies, confusion and class prior; votes must be sorted by `item`.

    `unit` groups votes for the leave-one-out score (reporter or bloc id); `learn_mask` selects the
    votes that inform accuracies (e.g. items with at least two units)."""
    lo_b, hi_b = accuracy_bounds
    acc = np.full(n_reps, prior_accuracy, np.float64)
    q = np.full((k, k), 1.0 / (k - 1))
    np.fill_diagonal(q, 0.0)
    prior = np.bincount(cls, w, minlength=k) + 1.0
    prior /= prior.sum()
    alpha = prior_accuracy * prior_strength
    beta = (1.0 - prior_accuracy) * prior_strength
    lm = np.ones(item.shape[0], bool) if learn_mask is None else learn_mask
    l_item, l_rep, l_cls, l_w = item[lm], rep[lm], cls[lm], w[lm]
    if loo and l_item.size:
        gkey = l_item.astype(np.int64) * (int(unit.max()) + 1) + unit[lm]
        _, l_group, gsize = np.unique(gkey, return_inverse=True, return_counts=True)
        l_group = l_group.ravel()
        multi = gsize[l_group] > 1  # votes whose unit has other votes on the same item (blocs)
    log_post = None
    it = 0
    for it in range(1, iterations + 1):
        log_a = np.log(acc)[rep]
        log_1a = np.log1p(-acc)[rep]
        with np.errstate(divide="ignore"):
            log_q0 = np.log(q)
        np.fill_diagonal(log_q0, 0.0)
        log_post = _log_post(item, cls, w, log_a, log_1a, n_items, k, np.log(prior), log_q0)
        post = _softmax(log_post.copy())
        new_prior = post.sum(axis=0) + 1.0
        new_prior /= new_prior.sum()
        # M-step: score each learning vote against the (leave-own-unit-out) item posterior
        correct = np.empty(l_item.shape[0])
        qcount = np.zeros((k, k))
        log_acc, log_1acc = np.log(acc), np.log1p(-acc)
        for a in range(0, l_item.shape[0], VOTE_CHUNK):
            b = min(l_item.shape[0], a + VOTE_CHUNK)
            ii, cc, ww, rr = l_item[a:b], l_cls[a:b], l_w[a:b], l_rep[a:b]
            rows = np.arange(b - a)
            if loo:
                # remove the vote's own unit from its item's posterior: the vote itself, or for a
                # bloc the whole bloc's summed contribution
                lv = log_1acc[rr][:, None] + log_q0[:, cc].T
                lv[rows, cc] = log_acc[rr]
                lv *= ww[:, None]
                mm = np.flatnonzero(multi[a:b])
                if mm.size:
                    g = l_group[a:b][mm]
                    gu, ginv = np.unique(g, return_inverse=True)
                    gs = np.zeros((gu.size, k))
                    _group_add(gs, ginv.ravel(), lv[mm])
                    lv[mm] = gs[ginv.ravel()]
                p = _softmax(log_post[ii] - lv)
            else:
                p = post[ii]
            correct[a:b] = p[rows, cc]
            p *= ww[:, None]
            p[rows, cc] = 0.0
            onehot = csr_matrix((np.ones(b - a), (rows, cc)), shape=(b - a, k))
            qcount += np.asarray((onehot.T @ p).T)  # mistakes: truth t (row), vote c (column)
        num = np.bincount(l_rep, l_w * correct, minlength=n_reps) + alpha
        den = np.bincount(l_rep, l_w, minlength=n_reps) + alpha + beta
        new_acc = np.clip(num / den, lo_b, hi_b)
        qcount += 0.5  # smoothing so no confusion is impossible
        np.fill_diagonal(qcount, 0.0)
        new_q = qcount / qcount.sum(axis=1, keepdims=True)
        delta = max(float(np.abs(new_acc - acc).max(initial=0.0)), float(np.abs(new_q - q).max()),
                    float(np.abs(new_prior - prior).max()))
        acc, q, prior = new_acc, new_q, new_prior
        if delta < tol:
            break
    log_a = np.log(acc)[rep]
    log_1a = np.log1p(-acc)[rep]
    with np.errstate(divide="ignore"):
        log_q0 = np.log(q)
    np.fill_diagonal(log_q0, 0.0)
    log_post = _log_post(item, cls, w, log_a, log_1a, n_items, k, np.log(prior), log_q0)
    return EMResult(log_post, acc, prior, q, it)


def _group_add(out: np.ndarray, g: np.ndarray, vals: np.ndarray) -> None:
    """out[g] += vals row-wise (column bincounts, faster than np.add.at)."""
    m = out.shape[0]
    for t in range(vals.shape[1]):
        out[:, t] += np.bincount(g, vals[:, t], minlength=m)
