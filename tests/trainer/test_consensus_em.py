"""The fast EM pieces against direct (slow, float64, log-space) formulas on small random data."""
import numpy as np

from trainer import consensus_defences as D
from trainer import consensus_em as E


def _problem(seed=0, n_items=300, n_reps=60, k=18, votes=2000):
    rng = np.random.default_rng(seed)
    item = np.sort(rng.integers(0, n_items, votes))
    cls = rng.integers(0, k, votes)
    rep = rng.integers(0, n_reps, votes)
    w = rng.uniform(0.05, 1.0, votes)
    acc = rng.uniform(0.34, 0.95, n_reps)
    q = rng.uniform(0.01, 1.0, (k, k))
    np.fill_diagonal(q, 0)
    q /= q.sum(1, keepdims=True)
    return rng, item, cls, rep, w, acc, q


def _log_post_ref(item, cls, rep, w, acc, q, prior, n_items):
    k = q.shape[0]
    s = np.tile(np.log(prior), (n_items, 1))
    for i, c, r, wv in zip(item, cls, rep, w):
        lv = np.log1p(-acc[r]) + np.log(np.where(np.arange(k) == c, 1.0, q[:, c]))
        lv[c] = np.log(acc[r])
        s[i] += wv * lv
    return s


def test_e_step_matches_the_direct_sum():
    _, item, cls, rep, w, acc, q = _problem()
    prior = np.full(18, 1 / 18)
    votes = E._Votes(item, cls, rep, w, 300, 18)
    got = votes.log_post_t(np.log(acc), np.log1p(-acc), np.log(prior), E._log_q0(q),
                           dtype=np.float64).T
    assert np.allclose(got, _log_post_ref(item, cls, rep, w, acc, q, prior, 300), atol=1e-9)


def test_leave_one_out_in_probability_space_matches_log_space_softmax():
    rng, item, cls, rep, w, acc, q = _problem(seed=1)
    prior = rng.dirichlet(np.ones(18))
    s = _log_post_ref(item, cls, rep, w, acc, q, prior, 300)
    post = np.exp(s - s.max(1, keepdims=True))
    post /= post.sum(1, keepdims=True)
    order = np.argsort(cls, kind="stable")
    ii, cc, ww, rr = item[order], cls[order], w[order], rep[order]
    cbound = np.searchsorted(cc, np.arange(19))
    qcount = np.zeros((18, 18))
    log_q0 = E._log_q0(q)
    correct = E._loo_single(post.astype(np.float32), ii, rr, ww.astype(np.float32), cbound,
                            np.log1p(-acc) - np.log(acc), -log_q0, qcount)
    # reference: remove the vote's own log-likelihood from the item's log posterior, softmax
    ref_q = np.zeros((18, 18))
    for j, (i, c, wv, r) in enumerate(zip(ii, cc, ww, rr)):
        lv = np.log1p(-acc[r]) + log_q0[:, c]
        lv[c] = np.log(acc[r])
        p = np.exp(s[i] - wv * lv - (s[i] - wv * lv).max())
        p /= p.sum()
        assert abs(correct[j] - p[c]) < 2e-5
        ref_q[:, c] += wv * p
    np.fill_diagonal(ref_q, 0)
    np.fill_diagonal(qcount, 0)
    assert np.allclose(qcount, ref_q, rtol=1e-4, atol=1e-5)


def test_fit_converges_early_and_ranks_reliable_reporters_higher():
    rng = np.random.default_rng(3)
    n_items, n_reps, k = 400, 40, 18
    truth = rng.integers(0, k, n_items)
    acc = np.where(np.arange(n_reps) < 20, 0.9, 0.4)
    item = np.repeat(np.arange(n_items), 6)
    rep = np.concatenate([rng.choice(n_reps, 6, replace=False) for _ in range(n_items)])
    right = rng.random(item.size) < acc[rep]
    cls = np.where(right, truth[item], rng.integers(0, k, item.size))
    w = np.ones(item.size)
    res = E.fit(item, rep, cls, w, rep.astype(np.int64), n_items, n_reps, k, prior_accuracy=0.75,
                prior_strength=4.0, accuracy_bounds=(0.34, 0.95), iterations=50, tol=1e-3,
                loo=True)
    assert res.iterations < 50  # the convergence check stops it
    assert res.accuracy[:20].mean() > res.accuracy[20:].mean() + 0.2
    assert (res.log_post.argmax(1) == truth).mean() > 0.9


def test_latest_vote_and_daily_cap_on_duplicates_and_ties():
    rep = np.array([0, 0, 1, 0, 1, 0])
    item = np.array([5, 5, 5, 5, 2, 2])
    ts = np.array([10, 30, 20, 30, 5, 1])
    sel = D.latest_vote(rep, item, ts, 2)
    # (2,0): row 5; (2,1): row 4; (5,0): rows 1 and 3 tie at ts 30 -> the later row 3; (5,1): row 2
    assert sel.tolist() == [5, 4, 3, 2]
    assert D.daily_cap_mask(rep, ts, 10, 2) is None  # nobody over the cap: nothing to mask
    keep = D.daily_cap_mask(rep, ts, 2, 2)
    # reporter 0 has 4 events on the day: the first two by time (ts 1, 10) count
    assert keep.tolist() == [True, False, True, False, True, True]


def test_daily_cap_sorted_path_equals_direct_counts(monkeypatch):
    rng = np.random.default_rng(0)
    rep = rng.integers(0, 300, 20_000)
    ts = 1772409600 + rng.integers(0, 30 * 86400, 20_000)
    rep[:500], ts[:500] = 7, 1772409600 + rng.integers(0, 86400, 500)  # one flooding reporter
    direct = D.daily_cap_mask(rep, ts, 20, 300)
    monkeypatch.setattr(D, "CAP_BINS_MIN", 0)
    assert np.array_equal(D.daily_cap_mask(rep, ts, 20, 300), direct)
    assert (~direct).sum() >= 480 and set(rep[~direct].tolist()) == {7}


def test_blockwise_posterior_matches_the_full_log_posterior(monkeypatch):
    monkeypatch.setattr(E, "ITEM_CHUNK", 64)  # several item blocks
    _, item, cls, rep, w, acc, q = _problem(seed=2)
    prior = np.full(18, 1 / 18)
    votes = E._Votes(item, cls, rep, w, 300, 18)
    args = (np.log(acc), np.log1p(-acc), np.log(prior), E._log_q0(q))
    s = votes.log_post_t(*args).T
    rows = np.array([0, 5, 5, 63, 64, 200, 299])
    post, s_rows = votes.posterior(*args, rows)
    assert np.allclose(s_rows, s[rows], rtol=1e-5, atol=1e-3)
    ref = np.exp(s - s.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    assert post.dtype == np.float32 and np.allclose(post, ref, atol=1e-6)


def _two_crowds(seed=5):
    """(item, rep, cls, n_items, n_reps, k, truth): 20 good and 20 poor reporters, 6 votes/item."""
    rng = np.random.default_rng(seed)
    n_items, n_reps, k = 400, 40, 5
    truth = rng.integers(0, k, n_items)
    acc = np.where(np.arange(n_reps) < 20, 0.9, 0.45)
    item = np.repeat(np.arange(n_items), 6)
    rep = np.concatenate([rng.choice(n_reps, 6, replace=False) for _ in range(n_items)])
    right = rng.random(item.size) < acc[rep]
    cls = np.where(right, truth[item], rng.integers(0, k, item.size))
    return item, rep, cls, n_items, n_reps, k, truth


def _fit(item, rep, cls, w, n_items, n_reps, k, **kw):
    return E.fit(item, rep, cls, w, rep.astype(np.int64), n_items, n_reps, k, prior_accuracy=0.75,
                 prior_strength=4.0, accuracy_bounds=(0.34, 0.95), iterations=30, tol=1e-4,
                 loo=True, **kw)


def test_learning_weights_default_to_the_evidence_weights_and_steer_the_m_step():
    item, rep, cls, n_items, n_reps, k, _ = _two_crowds()
    rng = np.random.default_rng(1)
    w = rng.uniform(0.1, 1.0, item.size)
    a = _fit(item, rep, cls, w, n_items, n_reps, k)
    b = _fit(item, rep, cls, w, n_items, n_reps, k, learn_w=w.copy())
    assert np.array_equal(a.accuracy, b.accuracy) and np.array_equal(a.log_post, b.log_post)
    # a reporter's record counted in full although its votes are weak evidence (old): its
    # accuracy has as many votes behind it as if its votes were fresh
    weak = np.where(rep == 0, 1e-3, 1.0)
    shrunk = _fit(item, rep, cls, weak, n_items, n_reps, k)
    full = _fit(item, rep, cls, weak, n_items, n_reps, k, learn_w=np.ones(item.size))
    fresh = _fit(item, rep, cls, np.ones(item.size), n_items, n_reps, k)
    assert shrunk.accuracy[0] < 0.78  # ~ the 0.75 prior: 1e-3 x 60 votes is no record
    assert abs(full.accuracy[0] - fresh.accuracy[0]) < 0.03 and full.accuracy[0] > 0.8
