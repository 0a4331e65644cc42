"""Consensus behaviour on small synthetic streams (votes, decay, thresholds, defences, overrides)."""
import numpy as np
import pytest

from callmark.categories import by_code, by_key
from tools.bench.consensus import T0, evaluate, synth_stream
from trainer.consensus import ConsensusConfig, ConsensusConfigError, run
from trainer.ingest import Appeal, TagEvents

DAY = 86400
FRAUD, LEGIT, HARASS = (by_key(k).code for k in ("fraud", "legit", "harassment"))
NUM = 8613912345670


def background(seed=0):
    """Honest traffic so reporters have history and EM has something to learn from."""
    s = synth_stream(n_harmful=120, n_honest=600, n_users=400, days=30, seed=seed,
                     base=8618800000000)
    return s.events


def add(ev: TagEvents, rows) -> TagEvents:
    """Append (key, reporter name, category code, ts) rows to a stream."""
    names = list(ev.reporters)
    index = {n: i for i, n in enumerate(names)}
    reps = []
    for _, r, _, _ in rows:
        if r not in index:
            index[r] = len(names)
            names.append(r)
        reps.append(index[r])
    key = np.concatenate([ev.key, [r[0] for r in rows]])
    return TagEvents.from_arrays(key, np.concatenate([ev.reporter, reps]),
                                 np.concatenate([ev.category, [r[2] for r in rows]]),
                                 np.concatenate([ev.ts, [r[3] for r in rows]]), reporters=names)


def row(res, key):
    i = int(np.searchsorted(res.key, key))
    assert res.key[i] == key
    return dict(category=by_code(int(res.category[i])).key, confidence=float(res.confidence[i]),
                reporters=int(res.reporters[i]), published=bool(res.published[i]),
                flags=int(res.flags[i]), company=res.company[i], last_ts=int(res.last_ts[i]))


def honest_users(ev, n, start=0):
    """Names of background reporters with history (first tag well before T0 + 20 days)."""
    first = np.full(len(ev.reporters), np.iinfo(np.int64).max)
    np.minimum.at(first, ev.reporter, ev.ts)
    old = np.flatnonzero(first < T0 + 10 * DAY)
    return [ev.reporters[i] for i in old[start:start + n]]


def test_latest_vote_wins_and_legit_counts_against_harmful():
    ev = background()
    users = honest_users(ev, 6)
    t = T0 + 25 * DAY
    rows = [(NUM, u, FRAUD, t + i * 600) for i, u in enumerate(users)]
    res = run(add(ev, rows), as_of=t + DAY)
    assert row(res, NUM)["category"] == "fraud" and row(res, NUM)["published"]
    # every reporter changes its mind later: one effective vote each, the latest
    rows += [(NUM, u, LEGIT, t + DAY + i * 600) for i, u in enumerate(users)]
    res = run(add(ev, rows), as_of=t + 2 * DAY)
    r = row(res, NUM)
    assert r["category"] == "legit" and r["reporters"] == 6 and not r["published"] is None
    # as_of before the change: the old votes again
    res = run(add(ev, rows), as_of=t + DAY)
    assert row(res, NUM)["category"] == "fraud"


def test_time_decay_half_life():
    ev = background()
    users = honest_users(ev, 7)
    t = T0 + 20 * DAY
    rows = [(NUM, u, FRAUD, t - 100 * DAY) for u in users[:4]]
    rows += [(NUM, u, LEGIT, t) for u in users[4:]]
    slow = run(add(ev, rows), ConsensusConfig(half_life_days=10_000, defences=False,
                                              method="majority"), as_of=t)
    fast = run(add(ev, rows), ConsensusConfig(half_life_days=10, defences=False,
                                              method="majority"), as_of=t)
    assert row(slow, NUM)["category"] == "fraud" and row(fast, NUM)["category"] == "legit"


def test_min_reporters_per_category():
    ev = background()
    users = honest_users(ev, 4)
    t = T0 + 25 * DAY
    rows = [(NUM, u, FRAUD, t + i * DAY // 4) for i, u in enumerate(users)]
    e = add(ev, rows)
    assert row(run(e, ConsensusConfig(min_reporters=4), as_of=t + 2 * DAY), NUM)["published"]
    assert not row(run(e, ConsensusConfig(min_reporters=5), as_of=t + 2 * DAY), NUM)["published"]
    cfg = ConsensusConfig(min_reporters=2, min_reporters_by_category={"fraud": 9})
    assert not row(run(e, cfg, as_of=t + 2 * DAY), NUM)["published"]


def test_daily_cap_ignores_a_flooding_reporter():
    ev = background()
    t = T0 + 25 * DAY
    rows = [(NUM + 100 + i, "flooder", FRAUD, t + i) for i in range(50)]
    res = run(add(ev, rows), ConsensusConfig(daily_cap=20), as_of=t + DAY)
    assert res.stats["over_daily_cap"] == 30
    evidence = [row(res, NUM + 100 + i)["last_ts"] > 0 for i in range(50)]
    assert evidence == [True] * 20 + [False] * 30  # the first 20 of the day count


@pytest.mark.parametrize("k", [10, 100])
def test_fresh_fake_accounts_cannot_label_an_honest_number(k):
    s = synth_stream(n_harmful=150, n_honest=800, n_users=500, fakes=k, fake_targets=2, seed=3)
    defended = evaluate(run(s.events, as_of=s.as_of), dict(zip(s.truth_key.tolist(),
                                                               s.truth_code.tolist())),
                        set(s.attacked.tolist()))
    plain = evaluate(run(s.events, ConsensusConfig(defences=False), as_of=s.as_of),
                     dict(zip(s.truth_key.tolist(), s.truth_code.tolist())),
                     set(s.attacked.tolist()))
    assert defended["attacked"] == 2 and defended["attacked_published_harmful"] == 0
    assert plain["attacked_published_harmful"] == 2  # the defences are what stops it
    assert defended["recall_harmful_tagged"] > 0.3 and defended["fp_honest"] == 0


def test_colluding_bloc_with_history_is_counted_once():
    s = synth_stream(n_harmful=150, n_honest=800, n_users=500, colluders=12, collude_targets=4,
                     seed=4)
    truth = dict(zip(s.truth_key.tolist(), s.truth_code.tolist()))
    res = run(s.events, as_of=s.as_of)
    ev = evaluate(res, truth, set(s.attacked.tolist()))
    assert ev["attacked"] == 4 and ev["attacked_published_harmful"] == 0
    assert res.stats["blocs"] >= 1
    plain = evaluate(run(s.events, ConsensusConfig(defences=False), as_of=s.as_of), truth,
                     set(s.attacked.tolist()))
    assert plain["attacked_published_harmful"] == 4


def test_verified_business_never_harmful_and_no_range_covers_it():
    ev = background()
    users = honest_users(ev, 40)
    t = T0 + 25 * DAY
    block = NUM - NUM % 10
    rows = [(block + j, u, FRAUD, t + i * 60) for j in range(6) for i, u in
            enumerate(users[j * 6:(j + 1) * 6])]
    e = add(ev, rows)
    res = run(e, as_of=t + DAY)
    assert len(res.ranges) == 1 and res.ranges.start[0] == block and res.ranges.size[0] == 10
    res = run(e, as_of=t + DAY, verified={block + 2: "ACME Bank"})
    r = row(res, block + 2)
    assert r["flags"] & 1 and r["company"] == "ACME Bank"
    assert not by_key(r["category"]).harmful and r["published"]
    assert len(res.ranges) == 0 and not res.ranges.covers(block + 2)
    assert row(res, block + 3)["category"] == "fraud" and row(res, block + 3)["published"]


def test_accepted_appeal_suppresses_until_new_evidence():
    ev = background()
    users = honest_users(ev, 12)
    t = T0 + 20 * DAY
    rows = [(NUM, u, HARASS, t + i * 3600) for i, u in enumerate(users[:5])]
    appeal = {NUM: [Appeal(frozenset({HARASS}), t + 2 * DAY)]}
    res = run(add(ev, rows), as_of=t + 3 * DAY, appeals=appeal)
    r = row(res, NUM)
    assert r["flags"] & 8 and not (r["category"] == "harassment" and r["published"])
    rows += [(NUM, u, HARASS, t + 3 * DAY + i * 3 * 3600) for i, u in enumerate(users[5:10])]
    res = run(add(ev, rows), as_of=t + 5 * DAY, appeals=appeal)
    r = row(res, NUM)
    assert r["category"] == "harassment" and r["published"] and r["reporters"] == 5


def test_recycled_number_drops_evidence_before_reissue():
    ev = background()
    users = honest_users(ev, 6)
    t = T0 + 20 * DAY
    rows = [(NUM, u, FRAUD, t + i * 3600) for i, u in enumerate(users)]
    e = add(ev, rows)
    assert row(run(e, as_of=t + 5 * DAY), NUM)["published"]
    r = row(run(e, as_of=t + 5 * DAY, recycled={NUM: t + 2 * DAY}), NUM)
    assert not r["published"] and r["reporters"] == 0 and r["category"] == "legit"


def test_config_validation_and_round_trip():
    cfg = ConsensusConfig(min_confidence_by_category={"fraud": 0.8})
    assert ConsensusConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConsensusConfigError, match="unknown consensus config keys"):
        ConsensusConfig.from_dict({"half_life": 3})
    with pytest.raises(ConsensusConfigError, match="half_life_days"):
        ConsensusConfig(half_life_days=0)
    with pytest.raises(ConsensusConfigError, match="unknown category"):
        ConsensusConfig(min_reporters_by_category={"martian": 3})
    with pytest.raises(ConsensusConfigError, match="method"):
        ConsensusConfig(method="vote")


def test_empty_stream():
    ev = TagEvents.from_arrays([], [], [], [])
    res = run(ev, as_of=T0)
    assert len(res) == 0 and len(res.ranges) == 0


def test_decay_from_the_numbers_latest_vote_keeps_an_old_burst_and_its_age():
    ev = background()
    users = honest_users(ev, 4)
    t = T0 + 25 * DAY
    rows = [(NUM, u, FRAUD, t + i * 600) for i, u in enumerate(users)]
    e = add(ev, rows)
    late = t + 400 * DAY  # a year later, nobody has tagged the number since
    fresh = row(run(e, ConsensusConfig(decay_from="latest"), as_of=t + DAY), NUM)
    old = row(run(e, ConsensusConfig(decay_from="latest"), as_of=late), NUM)
    # absolute decay applied to every number (the earlier rule): the calendar shrinks the burst
    absolute = row(run(e, ConsensusConfig(decay_from="as_of", decay_when="always"), as_of=late),
                   NUM)
    # relative decay: the burst still counts among itself; its age is carried by last_ts
    assert old["category"] == "fraud" and old["last_ts"] == rows[-1][3]
    assert absolute["confidence"] < old["confidence"] - 0.05
    assert old["confidence"] > 0.5 and abs(old["confidence"] - fresh["confidence"]) < 0.1


def test_decay_from_latest_still_lets_new_evidence_replace_old():
    ev = background()
    users = honest_users(ev, 7)
    t = T0 + 20 * DAY
    rows = [(NUM, u, FRAUD, t - 100 * DAY) for u in users[:4]]
    rows += [(NUM, u, LEGIT, t) for u in users[4:]]
    cfg = dict(defences=False, method="majority", decay_from="latest")
    # as of a year later: still the newer evidence wins, as with the absolute decay
    late = t + 365 * DAY
    assert row(run(add(ev, rows), ConsensusConfig(half_life_days=10, **cfg), as_of=late),
               NUM)["category"] == "legit"
    assert row(run(add(ev, rows), ConsensusConfig(half_life_days=10_000, **cfg), as_of=late),
               NUM)["category"] == "fraud"


def test_reliability_decay_config_is_validated():
    for bad in (0, -1, float("nan"), True):
        with pytest.raises(ConsensusConfigError, match="reliability_half_life_days"):
            ConsensusConfig(reliability_half_life_days=bad)
    with pytest.raises(ConsensusConfigError, match="decay_from"):
        ConsensusConfig(decay_from="now")


def test_change_test_flags_a_change_of_category_not_a_stationary_mix(monkeypatch):
    from trainer.consensus_change import changed_items
    A, B = 1, 2
    seqs = [[A] * 6 + [B] * 4,  # a change: the number moved on
            [A, B] * 5,  # the same mix all along
            [A] * 8,  # one category
            [A, B],  # too few votes to tell
            [A] * 3 + [B] + [A] * 4 + [B] + [A] * 3]  # a dissenter now and then
    item = np.concatenate([np.full(len(q), i) for i, q in enumerate(seqs)])
    cls = np.concatenate([np.array(q) for q in seqs])
    ts = np.concatenate([T0 + np.arange(len(q)) * DAY for q in seqs])
    rev = np.arange(item.size)[::-1]  # the votes' row order must not matter, only their times
    order = np.lexsort((rev, item))
    got = changed_items(item[order], ts[order], cls[order], len(seqs), alpha=0.05)
    assert got.tolist() == [True, False, False, False, False]
    monkeypatch.setattr("trainer.consensus_change.BLOCK", 7)  # numbers split over many blocks
    assert changed_items(item[order], ts[order], cls[order], len(seqs), 0.05).tolist() == \
        got.tolist()
    assert not changed_items(item, ts, cls, len(seqs), alpha=0.0).any()


def test_age_alone_does_not_forget_a_vote():
    """Decay only where the number's votes show a change: a stationary mix keeps its old votes."""
    ev = background()
    users = honest_users(ev, 5)
    t = T0 + 20 * DAY
    rows = [(NUM, u, FRAUD, t - 200 * DAY) for u in users[:3]]
    rows += [(NUM, users[3], LEGIT, t - 100 * DAY), (NUM, users[4], FRAUD, t)]
    cfg = dict(defences=False, method="majority", half_life_days=10)
    e = add(ev, rows)
    kept = run(e, ConsensusConfig(**cfg), as_of=t)
    forgot = run(e, ConsensusConfig(decay_when="always", **cfg), as_of=t)
    assert row(kept, NUM)["category"] == "fraud"
    assert abs(row(kept, NUM)["confidence"] - 0.8) < 1e-6  # 4 of 5 votes, all at full weight
    assert row(forgot, NUM)["confidence"] > 0.99  # the earlier rule: only the latest vote counts
    with pytest.raises(ConsensusConfigError, match="decay_when"):
        ConsensusConfig(decay_when="sometimes")
    with pytest.raises(ConsensusConfigError, match="change_alpha"):
        ConsensusConfig(change_alpha=1.5)


def test_confidence_is_a_careful_reviewers_choice_not_certainty():
    """Where careful reporters split, a careful reviewer may well side with the minority: the
    confidence drops well below the posterior; where they agree it stays high."""
    ev = background()
    users = honest_users(ev, 24)
    t = T0 + 25 * DAY
    other = NUM + 1
    rows = [(NUM, u, FRAUD, t + i * 600) for i, u in enumerate(users[:12])]
    rows += [(other, u, FRAUD if i < 7 else HARASS, t + i * 600)
             for i, u in enumerate(users[12:])]
    e = add(ev, rows)
    res_rev = run(e, as_of=t + DAY)
    res_post = run(e, ConsensusConfig(confidence="posterior"), as_of=t + DAY)
    una, split = row(res_rev, NUM), row(res_rev, other)
    assert una["category"] == split["category"] == "fraud"
    assert row(res_post, NUM)["category"] == row(res_post, other)["category"] == "fraud"
    assert una["published"] and una["confidence"] > 0.9
    assert una["confidence"] <= row(res_post, NUM)["confidence"] + 1e-9
    # 7 against 5: the posterior is sure (independent reporters), a reviewer much less so
    assert split["confidence"] < row(res_post, other)["confidence"] - 0.15
    assert split["confidence"] < una["confidence"] - 0.1
    with pytest.raises(ConsensusConfigError, match="confidence"):
        ConsensusConfig(confidence="gold")


def test_reviewer_confidence_formula():
    from trainer.consensus_calibration import Reviewer, reviewer_confidence
    k = 3
    q = np.full((k, k), 0.5)
    rv = Reviewer.from_model(q, np.array([0.9, 0.5, 0.75]), accuracy=0.95, strength=4.0)
    assert np.allclose(np.diag(rv.q), 0) and rv.log_odds[1] == 0  # a coin carries no weight
    post = np.array([[1.0, 0, 0], [0.5, 0.5, 0]])
    best = np.array([0, 0])
    item = np.array([0, 0, 0, 1])
    cls = np.array([0, 0, 1, 0])
    rep = np.array([0, 1, 2, 2])
    w = np.array([1.0, 1.0, 0.5, 1.0])
    conf = reviewer_confidence(post, best, item, cls, rep, w, rv)
    lo0, lo2 = np.log(9), np.log(3)
    g0 = (4 * 0.95 + lo0) / (4 + lo0 + 0.5 * lo2)  # reporter 2 disagreed at half weight
    g1 = (4 * 0.95 + lo2) / (4 + lo2)
    assert np.isclose(conf[0], g0)
    assert np.isclose(conf[1], g1 * 0.5 + (1 - g1) * 0.5 * 0.5)  # truth 1 -> picks 0 w.p. Q=.5
