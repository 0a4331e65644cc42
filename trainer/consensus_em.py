"""Reporter reliability by EM: a one-coin Dawid-Skene model with a shared confusion matrix.

A reporter r is right with probability a_r; when wrong, the category it picks given the true one t
follows a crowd-wide confusion row Q[t, :] (zero diagonal). Each vote enters the likelihood raised to
its weight w_v (time decay x account history x bloc/cohort discount), so discounted votes are weak
evidence rather than simply fewer votes. With `loo`, a reporter's accuracy is scored against the
posterior of the item *without its own unit's votes* (a unit is a reporter or a detected bloc), so a
bloc cannot earn trust by agreeing with itself.

Speed (see docs/consensus.md, "Speed"): the E-step is two weighted bincounts over the votes plus one
(items x classes) @ (classes x classes) product; the per-class vote counts are computed once. The
leave-one-out M-step removes a single vote in probability space: with the item posterior pi,
p_loo(t) ~ pi(t) * Q[t, c]^-w for t != c and pi(c) * ((1 - a) / a)^w, so votes are processed sorted
by their class, in float32 blocks that stay in the CPU cache, without any per-vote softmax. Votes of
multi-vote units (blocs) are removed as a group in log space (float64), as before.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix

from trainer import consensus_confusion as CF

ITEM_CHUNK = 131_072  # items per dense (items x classes) block in the E-step
VOTE_CHUNK = 8_192  # votes per (votes x classes) float32 block in the M-step (fits the L2 cache)
LOG_FLOOR = -60.0  # item log posteriors below max - 60 are floored (e^-60: no effect, no denormals)


@dataclass
class EMResult:
    """Fitted parameters and the per-item log posterior (unnormalised)."""

    log_post: np.ndarray  # float64 (items x classes; a transposed view), log P(class | votes) up to
    # a per-item constant
    accuracy: np.ndarray  # float64 per reporter: probability its vote is right
    prior: np.ndarray  # float64 per class
    confusion: np.ndarray  # float64 (classes x classes), rows sum to 1, zero diagonal
    iterations: int
    reporter_confusion: "CF.Confusions | None" = None  # own matrices of the prolific reporters


def _softmax(s: np.ndarray) -> np.ndarray:
    s = s - s.max(axis=1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=1, keepdims=True)
    return s


class _Votes:
    """Vote columns sorted by item, with the per-chunk boundaries and class counts the E-step uses.

    The E-step works class-major (classes x items): reductions over the 18 classes are then
    element-wise operations on whole rows, much faster than reductions along a short axis."""

    def __init__(self, item, cls, rep, w, n_items, k, conf: "CF.Confusions | None" = None):
        self.item, self.cls, self.rep, self.w, self.n_items, self.k = item, cls, rep, w, n_items, k
        self.conf = conf  # reporters with their own confusion matrix (corrections to one-coin)
        self.heavy = (np.flatnonzero(conf.hid[rep] >= 0) if conf is not None and conf.n
                      else np.zeros(0, np.int64))
        self.bounds = np.searchsorted(item, np.arange(0, n_items + ITEM_CHUNK, ITEM_CHUNK))
        # flat (class, item) cell of each vote within its chunk (int32: < ITEM_CHUNK * k), and the
        # weighted vote count per cell: both constant over the iterations
        self.cells = [(cls[a:b].astype(np.int32) * (hi - lo) + (item[a:b] - lo).astype(np.int32))
                      for lo, hi, a, b in self.chunks()]
        self.counts = [np.bincount(cell, w[a:b], minlength=(hi - lo) * k)
                       .reshape(k, hi - lo).astype(np.float32)
                       for (lo, hi, a, b), cell in zip(self.chunks(), self.cells)]

    def chunks(self):
        for ci, lo in enumerate(range(0, self.n_items, ITEM_CHUNK)):
            yield lo, min(self.n_items, lo + ITEM_CHUNK), self.bounds[ci], self.bounds[ci + 1]

    def _blocks(self, log_acc, log_1acc, log_prior, log_q0, dtype):
        """(lo, hi, S[:, lo:hi]) per item chunk: S[t, i] = log pi_t + sum_v w_v log P(c_v | t).

        `log_acc` / `log_1acc`: log a and log(1 - a) per reporter."""
        k = self.k
        lq = log_q0.astype(dtype)
        lp = log_prior.astype(dtype)[:, None]
        logit = log_acc - log_1acc
        for (lo, hi, a, b), cnt, cell in zip(self.chunks(), self.counts, self.cells):
            m = hi - lo
            r, wv = self.rep[a:b], self.w[a:b]
            # votes for class t when truth is t: log a; votes for c != t: log(1-a) + log Q[t, c]
            o = np.bincount(cell, wv * logit[r], minlength=m * k).reshape(k, m).astype(dtype)
            o += np.bincount(self.item[a:b] - lo, wv * log_1acc[r], minlength=m).astype(dtype)
            o += lp
            o += lq @ (cnt if dtype == np.float32 else cnt.astype(dtype))
            if self.heavy.size:  # own-matrix reporters: log pi_r[t, c] - one-coin log term
                ha, hb = np.searchsorted(self.heavy, (a, b))
                if hb > ha:
                    hv = self.heavy[ha:hb]
                    g = self.conf.ld[self.conf.hid[self.rep[hv]], self.cls[hv]].astype(np.float64)
                    g *= self.w[hv][:, None]
                    ii = self.item[hv] - lo
                    one = csr_matrix((np.ones(hv.size), (ii, np.arange(hv.size))),
                                     shape=(m, hv.size))
                    o += (one @ g).T.astype(dtype)
            yield lo, hi, o

    def log_post_t(self, log_acc, log_1acc, log_prior, log_q0, dtype=np.float64) -> np.ndarray:
        """The log posterior S (classes x items)."""
        out = np.empty((self.k, self.n_items), dtype)
        for lo, hi, o in self._blocks(log_acc, log_1acc, log_prior, log_q0, dtype):
            out[:, lo:hi] = o
        return out

    def posterior(self, log_acc, log_1acc, log_prior, log_q0, rows: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        """(normalised posterior, items x classes float32, floored at e^LOG_FLOOR; the unfloored
        float64 log posterior of the items `rows` (sorted), one row each), block by block."""
        post = np.empty((self.n_items, self.k), np.float32)
        s_rows = np.empty((rows.size, self.k))
        bounds = np.searchsorted(rows, [lo for lo, _, _, _ in self.chunks()] + [self.n_items])
        for ci, (lo, hi, o) in enumerate(self._blocks(log_acc, log_1acc, log_prior, log_q0,
                                                       np.float32)):
            ra, rb = bounds[ci], bounds[ci + 1]
            if rb > ra:
                s_rows[ra:rb] = o[:, rows[ra:rb] - lo].T
            o -= o.max(axis=0)
            np.maximum(o, LOG_FLOOR, out=o)
            np.exp(o, out=o)
            o /= o.sum(axis=0)
            post[lo:hi] = o.T
        return post, s_rows


def fit(item: np.ndarray, rep: np.ndarray, cls: np.ndarray, w: np.ndarray, unit: np.ndarray,
        n_items: int, n_reps: int, k: int, *, prior_accuracy: float, prior_strength: float,
        accuracy_bounds: tuple[float, float], iterations: int, tol: float, loo: bool,
        learn_mask: np.ndarray | None = None, confusion_min_votes: int = 0,
        confusion_strength: float = 10.0, confusion_max_reporters: int = 100_000,
        learn_w: np.ndarray | None = None) -> EMResult:
    """Fit accuracies, confusion and class prior; votes must be sorted by `item`.

    `unit` groups votes for the leave-one-out score (reporter or bloc id); `learn_mask` selects the
    votes that inform accuracies (e.g. items with at least two units). Reporters with at least
    `confusion_min_votes` votes per class in use get their own confusion matrix (consensus_confusion), shrunk toward
    their one-coin row with `confusion_strength` pseudo-votes per true class.

    `w` is each vote's weight as label evidence (E-step: how much it moves its number's posterior);
    `learn_w` (default `w`) its weight as evidence about its reporter (M-step: accuracies,
    confusion counts, Q). They differ when the evidence decays with age but a reporter's record
    does not (consensus_steps.vote_weights)."""
    lo_b, hi_b = accuracy_bounds
    w = np.asarray(w, np.float64)
    lw = w if learn_w is None else np.asarray(learn_w)  # float32 is enough (memory)
    conf = CF.select(rep, unit, n_reps, k, confusion_min_votes, confusion_max_reporters, cls)
    votes = _Votes(item, cls, rep, w, n_items, k, conf)
    acc = np.full(n_reps, prior_accuracy, np.float64)
    q = np.full((k, k), 1.0 / (k - 1))
    np.fill_diagonal(q, 0.0)
    prior = np.bincount(cls, w, minlength=k) + 1.0
    prior /= prior.sum()
    alpha = prior_accuracy * prior_strength
    beta = (1.0 - prior_accuracy) * prior_strength
    learn = np.flatnonzero(np.ones(item.shape[0], bool) if learn_mask is None else learn_mask)
    multi = np.zeros(learn.shape[0], bool)
    l_group = None
    if loo and learn.size and not np.array_equal(unit[learn], rep[learn]):
        gkey = item[learn].astype(np.int64) * (int(unit.max()) + 1) + unit[learn]
        _, l_group, gsize = np.unique(gkey, return_inverse=True, return_counts=True)
        l_group = l_group.ravel()
        multi = gsize[l_group] > 1  # votes whose unit has other votes on the same item (blocs)
    den = np.bincount(rep[learn], lw[learn], minlength=n_reps) + alpha + beta
    m_idx = learn[multi]
    m_group = l_group[multi] if l_group is not None else None
    m_ii = item[m_idx]
    single = learn[~multi] if loo else learn
    del learn, multi, l_group
    h_idx = single[conf.hid[rep[single]] >= 0] if conf.n else np.zeros(0, np.int64)
    if h_idx.size:  # own-matrix reporters' votes are scored by consensus_confusion
        single = single[conf.hid[rep[single]] < 0]
    h_item, h_rep, h_cls, h_w = item[h_idx], rep[h_idx], cls[h_idx].astype(np.int64), w[h_idx]
    h_lw = lw[h_idx].astype(np.float64)
    # single votes sorted by (class, item): each class is one run of cache-sized blocks
    single = single[np.argsort(cls[single].astype(np.int8), kind="stable")]  # radix sort
    s_item, s_rep, s_w = item[single], rep[single], w[single]
    s_w32 = s_w.astype(np.float32)
    s_lw = s_w if lw is w else lw[single]
    s_lw32 = s_w32 if lw is w else s_lw.astype(np.float32, copy=False)
    s_cls = cls[single].astype(np.int8)
    cbound = np.searchsorted(s_cls, np.arange(k + 1))
    del single
    it = 0
    for it in range(1, iterations + 1):
        log_acc, log_1acc = np.log(acc), np.log1p(-acc)
        lq0 = log_q0(q)
        # posterior per item; for bloc votes the unfloored log posterior of their item rows
        post, s_multi = votes.posterior(log_acc, log_1acc, np.log(prior), lq0, m_ii)
        new_prior = post.sum(axis=0, dtype=np.float64) + 1.0
        new_prior /= new_prior.sum()
        qcount = np.zeros((k, k))
        if loo:
            correct_s = _loo_single(post, s_item, s_rep, s_w32, cbound, log_1acc - log_acc,
                                    -lq0, qcount, s_lw32)
        else:
            correct_s = post[s_item, s_cls]
            # mistakes: truth t (row), vote c (column), summed at item level
            cnt = np.bincount(s_item.astype(np.int64) * k + s_cls, s_lw,
                              minlength=n_items * k).reshape(n_items, k)
            qcount += post.T.astype(np.float64) @ cnt
        num = np.full(n_reps, alpha)
        for a in range(0, s_rep.shape[0], 1 << 20):  # blocks: bounded temporaries
            num += np.bincount(s_rep[a:a + (1 << 20)], s_lw[a:a + (1 << 20)] *
                               correct_s[a:a + (1 << 20)], minlength=n_reps)
        if h_idx.size:
            correct_h = CF.loo_heavy(post, h_item, h_rep, h_cls, h_w, conf, log_acc, log_1acc,
                                     lq0, qcount, loo, h_lw)
            num += np.bincount(h_rep, h_lw * correct_h, minlength=n_reps)
        if m_idx.size:
            correct_m = _loo_groups(s_multi, cls[m_idx], w[m_idx], rep[m_idx], m_group,
                                    log_acc, log_1acc, lq0, qcount, lw[m_idx].astype(np.float64))
            num += np.bincount(rep[m_idx], lw[m_idx] * correct_m, minlength=n_reps)
        new_acc = np.clip(num / den, lo_b, hi_b)
        qcount += 0.5  # smoothing so no confusion is impossible
        np.fill_diagonal(qcount, 0.0)
        new_q = qcount / qcount.sum(axis=1, keepdims=True)
        delta = max(float(np.abs(new_acc - acc).max(initial=0.0)), float(np.abs(new_q - q).max()),
                    float(np.abs(new_prior - prior).max()))
        if h_idx.size:
            old = conf.ld.copy() if conf.n else None
            CF.update(conf, new_acc, new_q, confusion_strength, hi_b)
            delta = max(delta, float(np.abs(np.exp(conf.ld) - np.exp(old)).max(initial=0.0)))
            del old
        acc, q, prior = new_acc, new_q, new_prior
        del post, s_multi, correct_s
        if delta < tol:
            break
    del s_item, s_rep, s_w, s_w32, s_lw, s_lw32, s_cls, h_item, h_rep, h_cls, h_w, h_lw  # free the learning copies before the float64 posterior
    log_post = votes.log_post_t(np.log(acc), np.log1p(-acc), np.log(prior), log_q0(q)).T
    return EMResult(log_post, acc, prior, q, it, conf if conf.n else None)


def log_q0(q: np.ndarray) -> np.ndarray:
    """log Q with a zero diagonal (the one-coin row's off-diagonal log terms)."""
    with np.errstate(divide="ignore"):
        log_q0 = np.log(q)
    np.fill_diagonal(log_q0, 0.0)
    return log_q0


def _loo_single(post, s_item, s_rep, s_w32, cbound, log_ratio, neg_log_q0, qcount,
                s_lw32=None) -> np.ndarray:
    """P(vote's class | the item's other votes) for one-vote units, adding the posterior of the
    truth, weighted by the learning weight `s_lw32` (default the evidence weight `s_w32`), to
    qcount[:, c] (mistakes: truth t, vote c)."""
    if s_lw32 is None:
        s_lw32 = s_w32
    k = post.shape[1]
    n = s_item.shape[0]
    correct = np.empty(n, np.float64)
    log_ratio = log_ratio.astype(np.float32)  # per reporter: log((1 - a) / a)
    ones_k = np.ones(k, np.float32)
    buf_e = np.empty((VOTE_CHUNK, k), np.float32)
    buf_p = np.empty((VOTE_CHUNK, k), np.float32)
    for c in range(k):
        a0, b0 = int(cbound[c]), int(cbound[c + 1])
        if a0 == b0:
            continue
        col = neg_log_q0[:, c].astype(np.float32)
        col[c] = 0.0
        qc = np.zeros(k, np.float64)
        for a in range(a0, b0, VOTE_CHUNK):
            b = min(b0, a + VOTE_CHUNK)
            m = b - a
            ww = s_w32[a:b]
            e, p = buf_e[:m], buf_p[:m]
            np.multiply(ww[:, None], col[None, :], out=e)
            np.exp(e, out=e)  # Q[t, c]^-w: removing the vote's own evidence
            e[:, c] = np.exp(ww * log_ratio[s_rep[a:b]])  # ((1 - a) / a)^w
            np.take(post, s_item[a:b], axis=0, out=p)
            e *= p
            z = e @ ones_k
            correct[a:b] = e[:, c] / z
            qc += (s_lw32[a:b] / z) @ e  # weighted posterior of the truth, summed over the block
        qcount[:, c] += qc
    return correct


def _loo_groups(s_rows, cc, ww, rr, group, log_acc, log_1acc, log_q0, qcount, lw=None
                ) -> np.ndarray:
    """Like _loo_single for votes of multi-vote units (blocs): the whole unit's votes are removed
    from the item's log posterior `s_rows` (one row per vote)."""
    n, k = s_rows.shape
    rows = np.arange(n)
    lv = log_1acc[rr][:, None] + log_q0[:, cc].T
    lv[rows, cc] = log_acc[rr]
    lv *= ww[:, None]
    gu, ginv = np.unique(group, return_inverse=True)
    ginv = ginv.ravel()
    gs = np.zeros((gu.size, k))
    for t in range(k):
        gs[:, t] = np.bincount(ginv, lv[:, t], minlength=gu.size)
    p = _softmax(s_rows - gs[ginv])
    correct = p[rows, cc]
    p *= (ww if lw is None else lw)[:, None]
    p[rows, cc] = 0.0
    onehot = csr_matrix((np.ones(n), (rows, cc)), shape=(n, k))
    qcount += np.asarray((onehot.T @ p).T)
    return correct


_log_q0 = log_q0  # the earlier private name
