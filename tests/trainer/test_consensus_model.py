"""The reporter model on its own: per-reporter confusion, bloc detection without timing, memory."""
import numpy as np

from callmark.categories import by_key
from trainer import consensus_confusion as CF
from trainer import consensus_defences as D
from trainer import consensus_em as E
from trainer.consensus import CODE_TO_CLASS, ConsensusConfig, run
from trainer.ingest import TagEvents

DAY = 86400
T0 = 1_772_409_600
HARASS = int(CODE_TO_CLASS[by_key("harassment").code])
FRAUD = int(CODE_TO_CLASS[by_key("fraud").code])
SALES = int(CODE_TO_CLASS[by_key("telemarketing").code])


def _fit(item, rep, cls, n_items, n_reps, **kw):
    order = np.argsort(item, kind="stable")
    item, rep, cls = item[order], rep[order], cls[order]
    return E.fit(item, rep, cls, np.ones(item.size), rep.astype(np.int64), n_items, n_reps, 18,
                 prior_accuracy=0.75, prior_strength=4.0, accuracy_bounds=(0.34, 0.95),
                 iterations=30, tol=1e-4, loo=True, learn_mask=np.ones(item.size, bool), **kw)


def test_a_reporter_who_calls_everything_harassment_is_read_correctly():
    rng = np.random.default_rng(0)
    n_items, n_honest = 600, 30
    classes = np.array([HARASS, FRAUD, SALES])
    truth = classes[rng.integers(0, 3, n_items)]
    items, reps, cls = [], [], []
    for i in range(n_items):
        for r in rng.choice(n_honest, 3, replace=False):
            items.append(i)
            reps.append(r)
            cls.append(truth[i] if rng.random() < 0.8 else classes[rng.integers(0, 3)])
        items.append(i)  # reporter n_honest says harassment about every number
        reps.append(n_honest)
        cls.append(HARASS)
    item, rep, c = np.array(items), np.array(reps), np.array(cls)
    full = _fit(item, rep, c, n_items, n_honest + 1, confusion_min_votes=10)
    conf = full.reporter_confusion
    assert conf is not None and conf.hid[n_honest] >= 0
    # its learned matrix (log-ratio to its one-coin row): harassment whatever the truth, never
    # fraud when it is fraud
    h = conf.hid[n_honest]
    assert conf.ld[h, HARASS, FRAUD] > 0.3 and conf.ld[h, HARASS, SALES] > 0.3
    assert conf.ld[h, FRAUD, FRAUD] < -1.0 and conf.ld[h, SALES, SALES] < -1.0
    # so its vote carries no evidence: the honest votes decide, and no better than without it
    post = full.log_post.argmax(1)
    order = np.argsort(item, kind="stable")
    one_coin = _fit(item, rep, c, n_items, n_honest + 1, confusion_min_votes=0)
    acc_full = (post == truth).mean()
    acc_one = (one_coin.log_post.argmax(1) == truth).mean()
    assert acc_full >= acc_one + 0.02 and acc_full > 0.9
    # the numbers where the honest reporters do not say harassment are not pulled to harassment
    honest_h = np.zeros(n_items, int)
    m = (rep[order] < n_honest) & (c[order] == HARASS)
    np.add.at(honest_h, item[order][m], 1)
    assert (post[(honest_h == 0) & (truth != HARASS)] == HARASS).mean() < 0.05


def _crowd_events(answers, n_reps, per_day=20, history=True):
    """(item, reporter, class) answers -> tag events: accounts with history, <= per_day a day."""
    rng = np.random.default_rng(1)
    key, rep, cat, ts = [], [], [], []
    codes = np.array([c for c in range(CODE_TO_CLASS.size) if CODE_TO_CLASS[c] >= 0])
    code_of = np.zeros(18, int)
    code_of[CODE_TO_CLASS[codes]] = codes
    seen = np.zeros(n_reps, int)
    for i, r, c in answers:
        key.append(8613900000000 + i)
        rep.append(r)
        cat.append(code_of[c])
        ts.append(T0 + (seen[r] // per_day) * DAY + int(rng.integers(0, DAY)))
        seen[r] += 1
    if history:  # one tag each on a number of its own, 40 days before
        for r in range(n_reps):
            key.append(8613800000000 + r)
            rep.append(r)
            cat.append(code_of[FRAUD])
            ts.append(T0 - 40 * DAY)
    return TagEvents.from_arrays(key, rep, cat, ts)


def test_27_of_39_against_12_and_no_collapse_onto_one_category():
    """The issue's example: 39 reporters answer all 108 numbers (60 real_estate, 48
    telemarketing); a number tagged real_estate by 27 and telemarketing by 12 is real_estate."""
    rng = np.random.default_rng(2)
    est = int(CODE_TO_CLASS[by_key("real_estate").code])
    truth = np.array([est] * 60 + [SALES] * 48)
    acc = rng.uniform(0.55, 0.9, 39)
    answers = []
    for i in range(108):
        for r in range(39):
            right = rng.random() < acc[r]
            answers.append((i, r, truth[i] if right else (SALES if truth[i] == est else est)))
    answers = [a for a in answers if a[0] != 0]
    answers += [(0, r, est if r < 27 else SALES) for r in range(39)]
    ev = _crowd_events(answers, 39)
    res = run(ev, ConsensusConfig(), as_of=int(ev.ts.max()) + 1)
    keys = 8613900000000 + np.arange(108)
    pos = np.searchsorted(res.key, keys)
    got = CODE_TO_CLASS[res.category[pos]]
    assert got[0] == est
    assert (got == truth).mean() >= 0.95
    assert np.bincount(got).max() < 0.8 * 108  # not everything one category


def _bloc_setup(seed=0, colluders=10, experts=0):
    rng = np.random.default_rng(seed)
    n_items, n_honest, k = 1500, 150, 4
    truth = rng.integers(0, k, n_items)
    item, rep, cls = [], [], []
    acc = rng.uniform(0.6, 0.9, n_honest)
    for i in range(n_items):
        for r in rng.choice(n_honest, 8, replace=False):
            item.append(i)
            rep.append(r)
            cls.append(truth[i] if rng.random() < acc[r] else rng.integers(0, k))
    expert_ids = list(range(n_honest, n_honest + experts))
    for r in expert_ids:  # prolific and nearly always right: they agree with each other a lot
        for i in range(n_items):
            item.append(i)
            rep.append(r)
            cls.append(truth[i] if rng.random() < 0.98 else rng.integers(0, k))
    col_ids = list(range(n_honest + experts, n_honest + experts + colluders))
    targets = rng.choice(n_items, 300, replace=False)
    for r in col_ids:  # the same wrong label on 30 % of the numbers, no timing involved
        for i in targets:
            item.append(i)
            rep.append(r)
            cls.append((truth[i] + 1) % k)
    item, rep, cls = np.array(item), np.array(rep), np.array(cls)
    o = np.lexsort((rep, item))
    n_reps = n_honest + experts + colluders
    return item[o], rep[o], cls[o], n_reps, n_honest, expert_ids, col_ids


def _blocs(item, rep, cls, n_reps):
    c = ConsensusConfig()
    return D.find_blocs(item, rep, cls, n_reps, neighbours=c.bloc_neighbours,
                        min_shared=c.bloc_min_shared, min_overlap=c.bloc_min_overlap,
                        min_agreement=c.bloc_min_agreement, max_kappa=c.bloc_max_kappa)


def test_colluders_form_a_bloc_without_any_timing():
    item, rep, cls, n_reps, n_honest, _, col_ids = _bloc_setup()
    bloc, n = _blocs(item, rep, cls, n_reps)  # find_blocs has no time input at all
    assert n == 1 and len(set(bloc[col_ids].tolist())) == 1
    assert (bloc[:n_honest] == np.arange(n_honest)).all()


def test_prolific_honest_reporters_who_agree_with_the_truth_are_not_caught():
    item, rep, cls, n_reps, n_honest, experts, col_ids = _bloc_setup(seed=1, experts=6)
    bloc, n = _blocs(item, rep, cls, n_reps)
    assert (bloc[experts] == np.array(experts)).all()  # each its own unit
    assert (bloc[:n_honest] == np.arange(n_honest)).all()
    assert len(set(bloc[col_ids].tolist())) == 1 and n == 1
    # and with no colluders at all nobody is a bloc
    item, rep, cls, n_reps, *_ = _bloc_setup(seed=2, colluders=0, experts=6)
    assert _blocs(item, rep, cls, n_reps)[1] == 0


def test_own_confusion_matrices_are_sparse_and_bounded():
    rng = np.random.default_rng(0)
    # 100 prolific reporters (400 votes) and 200,000 with 2 votes each, over 18 classes
    rep = np.concatenate([np.repeat(np.arange(100), 400), 100 + np.repeat(np.arange(200_000), 2)])
    cls = rng.integers(0, 18, rep.size)
    conf = CF.select(rep, rep, 200_100, 18, 10, 100_000, cls)
    assert conf.n == 100 and conf.ld.shape == (100, 18, 18)  # 10 x 18 = 180 votes needed
    assert (conf.hid[:100] >= 0).all() and (conf.hid[100:] == -1).all()
    assert conf.ld.nbytes + conf.counts.nbytes < 1_000_000  # not 200,100 x 18 x 18
    capped = CF.select(rep, rep, 200_100, 18, 10, 10, cls)  # the memory bound: most prolific
    assert capped.n == 10
    # on a 2-class crowd 20 votes suffice; reporters in a bloc never get one
    two = rng.integers(0, 2, rep.size)
    unit = rep.copy()
    unit[rep == 5] = 4
    conf2 = CF.select(rep, unit, 200_100, 18, 10, 100_000, two)
    assert conf2.n == 98 and conf2.hid[4] == -1 and conf2.hid[5] == -1


def test_tempering_shrinks_the_evidence_of_correlated_reports_only():
    """Held-out report prediction picks tau near 1 for independent reporters and well below 1
    when every report is echoed by two copies (errors that are not independent)."""
    from trainer import consensus_calibration as CAL
    rng = np.random.default_rng(5)
    n_items, k = 800, 18
    truth = rng.integers(0, 3, n_items)

    def tau_for(copies):
        item, rep, cls = [], [], []
        for i in range(n_items):
            for j in range(4):
                c = truth[i] if rng.random() < 0.7 else rng.integers(0, 3)
                for m in range(copies):  # the copies repeat the same report
                    item.append(i)
                    rep.append((4 * (i % 25) + j) * copies + m)
                    cls.append(c)
        item, rep, cls = np.array(item), np.array(rep), np.array(cls)
        n_reps = int(rep.max()) + 1
        res = _fit(item, rep, cls, n_items, n_reps, confusion_min_votes=0)
        order = np.argsort(item, kind="stable")
        item, rep, cls = item[order], rep[order], cls[order]
        lv = CAL.vote_loglik(rep, cls, np.log(res.accuracy), E.log_q0(res.confusion))
        tau, loss = CAL.choose_tau(res.log_post, np.log(res.prior), item, lv, np.ones(item.size))
        return tau

    independent, echoed = tau_for(1), tau_for(3)
    assert independent >= 0.6 and echoed <= independent - 0.2
