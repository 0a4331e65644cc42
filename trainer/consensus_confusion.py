"""Per-reporter confusion matrices (full Dawid-Skene) for the reporters whose votes justify one.

The crowd model (consensus_em) gives every reporter r a one-coin row: P(vote c | truth t) = a_r when
c = t, else (1 - a_r) * Q[t, c], with Q the crowd-wide confusion. A reporter with at least
`votes_per_class` votes per class in use (and not in a bloc) also gets its own confusion matrix, the Dawid & Skene (1979)
estimate shrunk toward that one-coin row with `strength` pseudo-votes per true class:

    pi_r[t, c] = (N_r[t, c] + s * onecoin_r[t, c]) / (sum_c N_r[t, c] + s)

where N_r[t, c] is r's weighted soft count of votes c on items whose truth is t (leave-one-unit-out
posterior, as for the accuracies). A reporter with 3 votes in a class row keeps mostly the crowd's
row; one with 3,000 is read from its own counts. Memory: only these reporters have a matrix, kept as
the float32 log-ratio `ld[h, c, t] = log pi_r[t, c] - log onecoin_r[t, c]` (vote class major, so a
vote gathers one contiguous row), at most `max_reporters` of them (the most prolific):
100,000 x 18 x 18 x 4 B = 130 MB at most, never a dense (all reporters x 18 x 18) array.

Pure numpy over vote columns (item, reporter, class, weight): the Spark engine can run the same
steps per partition.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix

VOTE_BLOCK = 65_536  # heavy votes per float64 (votes x classes) block


@dataclass
class Confusions:
    """The reporters with their own matrix and the matrices' log-ratio to their one-coin rows."""

    hid: np.ndarray  # int32 per reporter: row in `ld`, -1 for one-coin reporters
    ld: np.ndarray  # float32 (n_heavy, classes of the vote, true classes)
    counts: np.ndarray  # float64 (n_heavy, vote class, true class): this round's soft counts

    @property
    def n(self) -> int:
        return int(self.ld.shape[0])


def select(rep: np.ndarray, unit: np.ndarray, n_reps: int, k: int, votes_per_class: int,
           max_reporters: int, cls: np.ndarray | None = None) -> Confusions:
    """Reporters with >= `votes_per_class` x (classes anyone voted) votes that are their own unit
    (not in a bloc), the `max_reporters` most prolific first: a matrix is only worth its
    K x K entries when the reporter has votes in every row to fill it. `votes_per_class` <= 0:
    nobody (the one-coin model)."""
    hid = np.full(n_reps, -1, np.int32)
    if votes_per_class > 0 and rep.size and max_reporters > 0:
        used = k if cls is None else int(np.count_nonzero(np.bincount(cls, minlength=k)))
        min_votes = votes_per_class * max(used, 2)
        nv = np.bincount(rep, minlength=n_reps)
        in_bloc = np.zeros(n_reps, bool)
        in_bloc[rep[unit != rep]] = True
        unit_rep = np.full(n_reps, -1, np.int64)
        unit_rep[rep] = unit
        # the smallest member of a bloc has unit == its own id: it still shares its unit
        members = np.bincount(unit_rep[unit_rep >= 0], minlength=n_reps)
        in_bloc |= (unit_rep >= 0) & (members[np.maximum(unit_rep, 0)] > 1)
        cand = np.flatnonzero((nv >= min_votes) & ~in_bloc)
        if cand.size > max_reporters:
            cand = np.sort(cand[np.argsort(-nv[cand], kind="stable")[:max_reporters]])
        hid[cand] = np.arange(cand.size, dtype=np.int32)
    n_h = int((hid >= 0).sum())
    return Confusions(hid, np.zeros((n_h, k, k), np.float32), np.zeros((n_h, k, k)))


def onecoin_log(log_acc: np.ndarray, log_1acc: np.ndarray, log_q0: np.ndarray, r: np.ndarray,
                c: np.ndarray) -> np.ndarray:
    """(votes x classes) log P(vote c | truth t) under the one-coin model (float64)."""
    lv = log_1acc[r][:, None] + log_q0[:, c].T
    lv[np.arange(r.size), c] = log_acc[r]
    return lv


def loo_heavy(post: np.ndarray, item: np.ndarray, rep: np.ndarray, cls: np.ndarray,
              w: np.ndarray, conf: Confusions, log_acc, log_1acc, log_q0, qcount: np.ndarray,
              loo: bool, learn_w: np.ndarray | None = None) -> np.ndarray:
    """P(vote's class | the item's other votes) for the votes of reporters with a matrix.

    Fills `conf.counts` (N_r, vote class major) and adds the mistakes to `qcount[t, c]`. `post` is
    the items' posterior (items x classes) including these votes; with `loo` each vote's own
    likelihood (weight `w`) is divided out first; the counts are weighted by `learn_w` (default
    `w`)."""
    lw_all = w if learn_w is None else learn_w
    k = post.shape[1]
    n = item.size
    correct = np.empty(n)
    conf.counts[:] = 0.0
    flat_counts = conf.counts.reshape(-1, k)
    for a in range(0, n, VOTE_BLOCK):
        b = min(n, a + VOTE_BLOCK)
        r, c, ww = rep[a:b], cls[a:b], w[a:b]
        h = conf.hid[r]
        p = post[item[a:b]].astype(np.float64)
        if loo:
            lv = onecoin_log(log_acc, log_1acc, log_q0, r, c) + conf.ld[h, c]
            lv *= -ww[:, None]
            lv -= lv.max(axis=1, keepdims=True)
            p *= np.exp(lv)
        p /= p.sum(axis=1, keepdims=True)
        rows = np.arange(b - a)
        correct[a:b] = p[rows, c]
        p *= lw_all[a:b][:, None]
        cell = h.astype(np.int64) * k + c
        ones = np.ones(b - a)
        # one sparse product each: counts[(h, c), t] += w p(t); mistakes qcount[t, c] += w p(t)
        flat_counts += csr_matrix((ones, (cell, rows)), shape=(flat_counts.shape[0], b - a)) @ p
        p[rows, c] = 0.0
        qcount += (csr_matrix((ones, (c, rows)), shape=(k, b - a)) @ p).T
    return correct


def update(conf: Confusions, acc: np.ndarray, q: np.ndarray, strength: float,
           acc_max: float) -> None:
    """New log-ratios from this round's counts, shrunk toward each reporter's one-coin row.

    A diagonal entry is capped at `acc_max` (the bounded likelihood ratio of the one-coin model)."""
    if not conf.n:
        return
    k = q.shape[0]
    a = acc[np.flatnonzero(conf.hid >= 0)[np.argsort(conf.hid[conf.hid >= 0])]]
    eye = np.eye(k, dtype=bool)
    # one-coin rows, transposed like the counts: base[h, c, t] = onecoin_h[t, c]
    base = (1.0 - a)[:, None, None] * q.T[None, :, :]
    base[:, eye] = a[:, None]
    pi = conf.counts + strength * base
    pi /= pi.sum(axis=1, keepdims=True)  # normalise over the vote class for each truth t
    diag = pi[:, eye]
    over = diag > acc_max
    if over.any():  # move the excess mass to the off-diagonal entries of that row
        scale = np.where(over, (1.0 - acc_max) / np.maximum(1.0 - diag, 1e-12), 1.0)
        pi *= scale[:, None, :]
        pi[:, eye] = np.where(over, acc_max, diag)
    with np.errstate(divide="ignore"):
        ld = np.log(np.maximum(pi, 1e-300)) - np.log(np.maximum(base, 1e-300))
    conf.ld[:] = ld.astype(np.float32)
