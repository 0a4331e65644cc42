"""Calibrated confidence without gold labels: a tempered posterior fitted on held-out reports.

Dawid-Skene posteriors are over-confident on real crowds because reporters' errors are not
independent given the truth (hard numbers fool several reporters at once), so each vote counts as
more evidence than it is. The standard remedy is a tempered (power) likelihood: the log evidence of
every number is scaled by one factor tau in (0, 1],

    log p_tau(t | votes) = log prior(t) + tau * sum_v w_v log pi_r(v)[t, c_v] + const.

tau is chosen per run *without gold labels*, by how well the tempered posterior predicts reports it
has not seen: for a sample of votes, each is removed from its number's evidence and predicted from
the rest, P(c_v) = sum_t p_tau,-v(t) pi_r[t, c_v]; tau minimises the log loss of these
predictions (a leave-one-out predictive check; cf. generalised / "safe" Bayes tempering,
Grunwald 2012). An over-confident posterior predicts held-out votes badly, so the same data that
shows the over-confidence corrects it, on any crowd, with nothing fitted to one dataset.

The published confidence is not the posterior itself but what a careful reviewer would say
(`Reviewer`, `reviewer_confidence`; docs/consensus.md step 9).

Pure numpy over (item, reporter, class, weight) columns.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TAUS = np.round(np.arange(0.05, 1.0001, 0.05), 2)  # candidate tempering factors
SAMPLE = 50_000  # votes used to choose tau (a random sample of the learnable ones)
BLOCK = 1 << 20  # votes / items per block in `reviewer_confidence`


def vote_loglik(rep: np.ndarray, cls: np.ndarray, log_acc: np.ndarray, log_q0: np.ndarray,
                conf=None) -> np.ndarray:
    """(votes x classes) log P(vote class | truth t) under the fitted reporter model."""
    log_1acc = np.log1p(-np.exp(log_acc))
    lv = log_1acc[rep][:, None] + log_q0[:, cls].T
    lv[np.arange(rep.size), cls] = log_acc[rep]
    if conf is not None and conf.n:
        h = conf.hid[rep]
        m = h >= 0
        lv[m] += conf.ld[h[m], cls[m]]
    return lv


def choose_tau(log_post: np.ndarray, log_prior: np.ndarray, item: np.ndarray, lv: np.ndarray,
               w: np.ndarray) -> tuple[float, np.ndarray]:
    """(tau, log loss per candidate) for held-out votes `lv` (votes x classes) of items `item`.

    `log_post` (items x classes) is the untempered log posterior including the log prior."""
    if item.size == 0:
        return 1.0, np.zeros(TAUS.size)
    ev = log_post[item] - log_prior  # the number's evidence, this vote included
    ev -= w[:, None] * lv  # ... and without it
    lik = np.exp(lv - lv.max(axis=1, keepdims=True))
    shift = lv.max(axis=1)
    loss = np.full(TAUS.size, np.inf)

    def at(j):
        if not np.isfinite(loss[j]):
            z = log_prior + TAUS[j] * ev
            z -= z.max(axis=1, keepdims=True)
            np.exp(z, out=z)
            pred = (z * lik).sum(axis=1) / z.sum(axis=1)
            loss[j] = -float(np.mean(np.log(np.maximum(pred, 1e-300)) + shift))
        return loss[j]
    # golden-section style search over the grid (the loss is unimodal in tau in practice)
    lo, hi = 0, TAUS.size - 1
    while hi - lo > 2:
        m1, m2 = lo + (hi - lo) // 3, hi - (hi - lo) // 3
        if at(m1) <= at(m2):
            hi = m2
        else:
            lo = m1
    for j in range(lo, hi + 1):
        at(j)
    return float(TAUS[int(loss.argmin())]), loss


def sample_votes(learn: np.ndarray, seed: int = 0) -> np.ndarray:
    """Indices of at most SAMPLE votes among the True entries of `learn` (sorted)."""
    idx = np.flatnonzero(learn)
    if idx.size > SAMPLE:
        idx = np.sort(np.random.default_rng(seed).choice(idx, SAMPLE, replace=False))
    return idx


def temper(log_post: np.ndarray, log_prior: np.ndarray, tau: float) -> np.ndarray:
    """In place: log prior + tau x evidence (tau = 1 leaves it unchanged)."""
    if tau != 1.0:
        log_post -= log_prior
        log_post *= tau
        log_post += log_prior
    return log_post


@dataclass
class Reviewer:
    """A careful person judging a label: the gold of a crowd data set, an auditor, the user.

    On number i the reviewer picks the true category with probability g_i, otherwise a category
    confused like the crowd (Q). g_i is the reviewer's chance of siding with the label there: a
    Beta posterior with prior mean `accuracy` (the most the model credits any one person with,
    `accuracy_max`) and `strength` pseudo-votes (`prior_strength`), updated by the number's own
    votes, each counting agree / disagree with the label with the weight it has in the
    optimal weighted majority, w_v * log(a_r / (1 - a_r)) (Nitzan & Paroush 1982; 0 for reporters
    no better than a coin). Where careful reporters split, careful reviewers split too (the item
    is hard, as GLAD's item difficulty says); where they agree, the reviewer agrees."""

    q: np.ndarray  # (classes x classes) crowd confusion, zero diagonal, rows sum to 1
    accuracy: float  # prior mean of g_i
    strength: float  # prior weight of g_i, in votes
    log_odds: np.ndarray  # per reporter: max(0, log(a_r / (1 - a_r)))

    @classmethod
    def from_model(cls, q: np.ndarray, reporter_accuracy: np.ndarray, accuracy: float,
                   strength: float) -> "Reviewer":
        a = np.clip(reporter_accuracy, 1e-6, 1 - 1e-6)
        q = np.array(q, np.float64)
        np.fill_diagonal(q, 0.0)
        return cls(q, float(accuracy), float(strength), np.maximum(0.0, np.log(a / (1 - a))))


def reviewer_confidence(post: np.ndarray, best: np.ndarray, item: np.ndarray, cls: np.ndarray,
                        rep: np.ndarray, w: np.ndarray, rv: Reviewer) -> np.ndarray:
    """(items,) P(the reviewer picks `best`) = g_i p_i(best) + (1 - g_i) sum_t p_i(t) Q[t, best].

    `post` (items x classes) the posterior (rows sum to 1), `best` (items,) the label; vote
    columns `item`, `cls`, `rep`, `w` (weights). Blocks of BLOCK votes / items."""
    n_items = post.shape[0]
    num, den = np.zeros(n_items), np.zeros(n_items)
    for a in range(0, item.size, BLOCK):
        b = min(item.size, a + BLOCK)
        it = item[a:b]
        om = w[a:b] * rv.log_odds[rep[a:b]]
        den += np.bincount(it, om, minlength=n_items)
        om *= cls[a:b] == best[it]
        num += np.bincount(it, om, minlength=n_items)
    g = (rv.strength * rv.accuracy + num) / (rv.strength + den)
    del num, den
    conf = np.empty(n_items)
    qt = np.ascontiguousarray(rv.q.T)  # qt[c, t] = Q[t, c]
    for lo in range(0, n_items, BLOCK):
        hi = min(n_items, lo + BLOCK)
        pb, bb = post[lo:hi], best[lo:hi]
        off = np.einsum("ij,ij->i", pb, qt[bb])
        conf[lo:hi] = g[lo:hi] * pb[np.arange(hi - lo), bb] + (1 - g[lo:hi]) * off
    return conf
