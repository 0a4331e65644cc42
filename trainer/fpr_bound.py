"""Upper confidence bounds on the share of honest calls a phone flags, and the flag budget they allow.

Calls of one caller are not independent: a prolific honest caller whose number the model scores high
is flagged on most of its calls, so a sample's flagged calls come in clusters. A Clopper-Pearson bound
that counts calls as independent trials is then too narrow (in `make demo`, 40 of day 1's 100 honest
warnings were one caller's). `clustered_upper_bounds` widens it the way survey statistics do for
proportions estimated from cluster samples: Korn & Graubard (1998), "Confidence intervals for
proportions with small expected number of positive counts estimated from survey data", Survey
Methodology 24(2): the Clopper-Pearson interval computed on the effective sample size
n / deff, where the design effect deff is the ratio of the cluster-robust (ratio-estimator) variance
of the flagged share to the binomial one, floored at 1. With one call per caller it is exactly
Clopper-Pearson. (Korn and Graubard also shrink the degrees of freedom; with thousands of callers
that factor is ~1 and is left out.)
"""
from __future__ import annotations

import numpy as np


def allowed_false_positives(n_honest: int, max_fpr: float, confidence: float | None) -> int:
    """Most honest calls that may be flagged out of `n_honest` so that the one-sided `confidence`
    Clopper-Pearson upper bound of the false-positive rate stays <= `max_fpr` (None: the plain count
    floor(max_fpr * n)). -1 when even zero flags cannot meet it (too few honest calls)."""
    k = int(np.floor(max_fpr * n_honest))
    if confidence is None or n_honest == 0:
        return k
    from scipy.stats import beta

    while k >= 0 and beta.ppf(confidence, k + 1, n_honest - k) > max_fpr:
        k -= 1
    return k


def clustered_upper_bounds(clusters: np.ndarray, base_flag: np.ndarray, order: np.ndarray,
                           confidence: float) -> np.ndarray:
    """Upper `confidence` bounds of the flagged share of calls, for k = 0 .. len(order) extra flags.

    `clusters`: int cluster id per call (the caller), shape [n]; `base_flag`: bool [n], calls flagged
    anyway (pack label, rules); `order`: call indices, not in `base_flag`, in the order a falling
    threshold flags them. Returns float [len(order) + 1]: entry k is the Korn-Graubard bound when the
    base flags and `order[:k]` are flagged. Shares in [0, 1]; n = 0 gives all ones."""
    from scipy.stats import beta

    n = len(clusters)
    if n == 0:
        return np.ones(len(order) + 1)
    ids, cl = np.unique(clusters, return_inverse=True)
    n_c = np.bincount(cl, minlength=len(ids)).astype(np.float64)
    f0 = np.bincount(cl[base_flag], minlength=len(ids)).astype(np.float64)
    # flag j of `order` lands on cluster c_j that already holds prior_j flags (base + earlier in order)
    c_j = cl[order]
    earlier = np.zeros(len(order), dtype=np.float64)
    if len(order):
        sort = np.argsort(c_j, kind="stable")
        run_start = np.r_[0, np.flatnonzero(np.diff(c_j[sort])) + 1]
        rank = np.arange(len(order)) - np.repeat(run_start, np.diff(np.r_[run_start, len(order)]))
        earlier[sort] = rank
    prior = f0[c_j] + earlier
    flagged = f0.sum() + np.r_[0, np.cumsum(np.ones(len(order)))]
    sum_f2 = (f0 ** 2).sum() + np.r_[0, np.cumsum(2 * prior + 1)]
    sum_fn = (f0 * n_c).sum() + np.r_[0, np.cumsum(n_c[c_j])]
    sum_n2 = (n_c ** 2).sum()
    p = flagged / n
    # ratio-estimator variance of p: sum_c (f_c - p n_c)^2 / n^2; binomial: p (1 - p) / n
    ss = np.maximum(sum_f2 - 2 * p * sum_fn + p * p * sum_n2, 0.0)
    binom = p * (1 - p) * n
    deff = np.where(binom > 0, ss / np.where(binom > 0, binom, 1.0), 1.0)
    deff = np.where(deff <= 1 + 1e-9, 1.0, deff)
    n_eff = n / deff
    k_eff = p * n_eff
    upper = beta.ppf(confidence, k_eff + 1, np.maximum(n_eff - k_eff, 1e-12))
    return np.where(p >= 1, 1.0, upper)
