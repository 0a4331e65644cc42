"""The one evaluation: flag definition, the phone threshold's FPR budget, the gate's bars, the report
(md + html, content-addressed plots). Synthetic calls and model outputs: no TensorFlow, no LiteRT."""
import hashlib
import re

import numpy as np
import pytest

from callmark import categories
from callmark.rules import FLAGGED_ACTIONS, Policy, label_action
from trainer import evaluate, evaluate_report
from trainer.features import RingEvents
from trainer.holdout import HOLDOUT_SHARE, held_out
from trainer.model.student import CLASSES


def _events(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    harmful = (rng.random(n) < 0.3).astype(np.int64)
    cats = np.where(harmful == 1, rng.choice(["fraud", "harassment", "loans"], n), "legit")
    facts = []
    for i in range(n):
        f = {"number": f"+86138{i:08d}"}
        r = rng.random()
        if harmful[i] and r < 0.4:  # a confident harmful pack label
            f.update(pack_category=str(cats[i]), pack_confidence=0.9, pack_reporters=5)
        elif not harmful[i] and r < 0.1:  # benign labels: delivery is labelled, never flagged
            f.update(pack_category="delivery", pack_confidence=0.95, pack_reporters=8)
        elif not harmful[i] and r < 0.102:  # a wrong harmful label on an honest number
            f.update(pack_category="fraud", pack_confidence=0.95, pack_reporters=3)
        facts.append(f)
    in_pack = np.asarray(["pack_category" in f for f in facts])
    return RingEvents(facts=facts, caller=[f["number"] for f in facts], category=list(cats), harmful=harmful,
                      in_pack=in_pack, day=np.zeros(n, dtype=np.int64), known=np.ones(n, bool))


def _outputs(ev, signal=2.0, seed=1):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1, len(ev.harmful)) + signal * (ev.harmful - 0.5)
    risk = 1 / (1 + np.exp(-z))
    probs = rng.dirichlet(np.ones(len(CLASSES)), len(risk)).astype(np.float32)
    return {"risk": risk.astype(np.float32), "probs": probs, "classes": np.asarray(CLASSES)}


def test_a_flag_is_a_warn_or_block_decision_not_any_pack_hit():
    policy = Policy()
    assert label_action("delivery", 0.99, policy) not in FLAGGED_ACTIONS
    assert label_action("customer_service", 0.99, policy) not in FLAGGED_ACTIONS
    assert label_action("harassment", 0.3, policy) not in FLAGGED_ACTIONS  # below warn_confidence: label only
    assert label_action("harassment", 0.8, policy) in FLAGGED_ACTIONS
    assert label_action("fraud", 0.95, policy) in FLAGGED_ACTIONS
    ev = _events()
    flags = evaluate.pack_flags(ev, policy)
    delivery = np.asarray([f.get("pack_category") == "delivery" for f in ev.facts])
    assert delivery.any() and not flags[delivery].any()
    assert flags[ev.harmful == 1].mean() > 0.3 and 0 < flags[ev.harmful == 0].mean() < 0.01


def test_phone_threshold_keeps_pack_plus_model_within_the_fpr_budget():
    ev = _events()
    out = _outputs(ev)
    m = evaluate.compute_metrics(ev, out, max_fpr=0.005)
    assert m["pack_plus_model"]["fpr"] <= 0.005 + 1e-12
    assert m["pack_alone"]["fpr"] == pytest.approx(evaluate.pack_flags(ev)[ev.harmful == 0].mean())
    assert m["pack_plus_model"]["recall"] >= m["pack_alone"]["recall"]
    assert m["gain_over_pack"] == pytest.approx(m["pack_plus_model"]["recall"] - m["pack_alone"]["recall"])
    assert 0 < m["warn_risk"] <= 1
    # the budget is the count whose 95 % upper bound stays in 0.5 %, and a hair lower exceeds it
    honest = int((ev.harmful == 0).sum())
    allowed = evaluate.allowed_false_positives(honest, 0.005)
    assert 0 <= allowed < np.floor(0.005 * honest)
    assert m["pack_plus_model"]["fpr"] * honest <= allowed + 1e-9
    nip = ~ev.in_pack
    lower = evaluate.pack_flags(ev) | (nip & (out["risk"] >= np.nextafter(np.float32(m["warn_risk"]), 0) - 1e-3))
    assert lower[ev.harmful == 0].sum() > allowed
    cm = np.asarray(m["confusion"]["counts"])
    assert cm.sum() == len(ev.harmful) and len(m["confusion"]["classes"]) == cm.shape[0]


def test_warn_risk_also_keeps_the_budget_on_callers_the_model_trained_on():
    """A student scores callers it trained on from memory: honest ones can score higher than unseen
    ones. The phone hears both, so the threshold must hold on both (the higher one wins)."""
    ev, t_ev = _events(seed=0), _events(seed=3)
    out, t_out = _outputs(ev), _outputs(t_ev, seed=4)
    alone = evaluate.compute_metrics(ev, out, max_fpr=0.005)
    # trained-on honest callers lifted by +2 on the logit scale (memorised noisy targets)
    lifted = dict(t_out, risk=(1 / (1 + np.exp(-(np.log(t_out["risk"] / (1 - t_out["risk"])) + 2.0 * (t_ev.harmful == 0)))))
                  .astype(np.float32))
    m = evaluate.compute_metrics(ev, out, max_fpr=0.005, trained_on=(t_ev, lifted, None))
    assert m["warn_risk_held_out"] == pytest.approx(alone["warn_risk"])
    assert m["warn_risk"] == pytest.approx(m["trained_on"]["warn_risk"]) and m["warn_risk"] > alone["warn_risk"]
    honest = int((t_ev.harmful == 0).sum())
    assert m["trained_on"]["fpr"] * honest <= evaluate.allowed_false_positives(honest, 0.005) + 1e-9
    # the held-out figures are read at the phone's (higher) threshold: fewer honest and harmful flags
    assert m["pack_plus_model"]["fpr"] <= alone["pack_plus_model"]["fpr"]
    assert m["pack_plus_model"]["recall"] < alone["pack_plus_model"]["recall"]
    # trained-on calls scored like held-out ones: the held-out threshold stands
    same = evaluate.compute_metrics(ev, out, max_fpr=0.005, trained_on=(ev, out, None))
    assert same["warn_risk"] == pytest.approx(alone["warn_risk"])


def test_allowed_false_positives_is_the_upper_confidence_bound():
    from scipy.stats import beta
    for n in (2000, 20000, 200000):
        k = evaluate.allowed_false_positives(n, 0.005)
        assert beta.ppf(0.95, k + 1, n - k) <= 0.005 < beta.ppf(0.95, k + 2, n - k - 1)
        assert k < 0.005 * n and k / n > (0.004 if n == 200000 else 0.0)
    assert evaluate.allowed_false_positives(100, 0.005) == -1  # too few honest calls to promise 0.5 %
    assert evaluate.allowed_false_positives(1000, 0.005, confidence=None) == 5


def test_the_phone_chain_allows_contacts_and_counts_the_rules_flags():
    ev = _events(n=20000)
    honest = np.flatnonzero((ev.harmful == 0) & ~ev.in_pack)
    spoofed, contact = honest[:3], honest[3:40]
    for i in spoofed:  # '+86' then a trunk 0: the spoofing rule rejects it on the phone
        ev.facts[i]["number"] = "+86010" + ev.facts[i]["number"][-8:]
    for i in contact:
        ev.facts[i]["in_contacts"] = True
    rules = evaluate.phone_rule_flags(ev)
    assert rules[spoofed].all() and rules.sum() == 3
    out = _outputs(ev)
    out["risk"][contact] = 0.999  # the phone never runs the model on a contact's call
    m = evaluate.compute_metrics(ev, out, max_fpr=0.005)
    base = evaluate.pack_flags(ev) | rules
    assert m["pack_alone"]["fpr"] == pytest.approx(base[ev.harmful == 0].mean())
    assert m["warn_risk"] < 0.999 and m["pack_plus_model"]["fpr"] * (ev.harmful == 0).sum() <= \
        evaluate.allowed_false_positives(int((ev.harmful == 0).sum()), 0.005) + 1e-9


def test_pack_alone_over_budget_leaves_the_model_nothing():
    ev = _events()
    m = evaluate.compute_metrics(ev, _outputs(ev), max_fpr=0.0001)  # the wrong labels alone exceed it
    assert m["warn_risk"] is None and m["gain_over_pack"] == 0.0
    problems, _ = evaluate.quality_problems(m, None, margin=0.02, min_gain=0.05)
    assert len(problems) == 1 and "already flag" in problems[0] and "over the 0.0% budget" in problems[0]
    trained = dict(m, pack_alone=dict(m["pack_alone"], fpr=0.0), trained_on={"pack_alone_fpr": 0.02})
    problems, _ = evaluate.quality_problems(trained, None, margin=0.02, min_gain=0.05)
    assert "already flag 2.00% of the trained-on callers' calls counted honest" in problems[0]
    fine = evaluate.compute_metrics(ev, _outputs(ev, signal=0.0))  # within budget: the plain reason only
    assert "already flag" not in " ".join(evaluate.quality_problems(fine, None, 0.02, 0.05)[0])


def test_absolute_bar_and_regression_reasons():
    ev = _events()
    good = evaluate.compute_metrics(ev, _outputs(ev, signal=4.0))
    noise = evaluate.compute_metrics(ev, _outputs(ev, signal=0.0))
    problems, _ = evaluate.quality_problems(good, None, margin=0.02, min_gain=0.05)
    assert problems == []
    problems, _ = evaluate.quality_problems(noise, None, margin=0.02, min_gain=0.05)
    assert len(problems) == 1 and "over the pack alone" in problems[0]
    problems, compared = evaluate.quality_problems(noise, good, margin=0.02, min_gain=0.0)
    assert any("risk_auc_callers regressed on the same calls" in p for p in problems)
    assert compared["risk_auc_callers"]["published"] == good["risk_auc_callers"]
    problems, _ = evaluate.quality_problems(good, good, margin=0.0, min_gain=0.05)  # no worse: accepted
    assert problems == []


def test_holdout_is_by_number_key_and_agrees_across_spellings():
    assert held_out("+8613800001234") == held_out("13800001234") == held_out("+86 138 0000 1234")
    share = np.mean([held_out(f"+86139{i:08d}") for i in range(20000)])
    assert abs(share - HOLDOUT_SHARE) < 0.01
    assert held_out("+8613800001234", salt="val:") in (True, False)


def test_report_md_and_html_have_the_same_content_and_working_plot_links(tmp_path):
    ev = _events()
    out = _outputs(ev)
    m = evaluate.compute_metrics(ev, out, trained_on=(_events(seed=2), _outputs(_events(seed=2), seed=2), None))
    m["data"] = {"dir": "sim", "truth": "simulation ground truth", "truth_csv": "t", "held_out": "20 %"}
    pub_out = _outputs(ev, signal=1.0, seed=3)
    pub = evaluate.compute_metrics(ev, pub_out)
    m["versus_published"] = evaluate.versus_published(ev, out["risk"], pub_out["risk"], reps=50)
    compared = {"risk_auc_callers": {"candidate": m["risk_auc_callers"], "published": pub["risk_auc_callers"]}}
    verdict = {"accepted": False, "reasons": ["risk_auc_callers regressed on the same calls: x"], "compared": compared,
               "margin": 0.02, "min_gain": 0.05, "published": "pub/model", "at": "now"}
    metrics = {"size_bytes": 50000, "params": 30000, "built_at": "2026-01-01T00:00:00Z", "evaluation": m,
               "evaluation_published": pub, "gate": verdict, "artefact_check": {"rows": 10}}
    md_path, html_path = evaluate_report.write(tmp_path, metrics, ev, out, release="v7")
    md, page = md_path.read_text(), html_path.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(links) == sorted(re.findall(r'<img src="([^"]+)"', page)) and len(links) == 3
    for name in links:  # content-addressed: <sha256[:16]>-<name>.png beside the report
        data = (tmp_path / name).read_bytes()
        assert name.startswith(hashlib.sha256(data).hexdigest()[:16] + "-") and data[:4] == b"\x89PNG"
    d = m["versus_published"]["recall_not_in_pack"]
    assert d["low"] <= d["difference"] <= d["high"] and d["reps"] == 50
    for text in ("release v7", "REFUSED", "risk_auc_callers regressed on the same calls", "published (same calls)",
                 "warn_risk", "pack alone", "callers the model trained on too", "difference (90 % CI)",
                 f"{d['difference']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]", "caller-clustered paired bootstrap",
                 "each held-out caller counted once (gate)", "Rows marked (gate)"):
        assert text in md and text in page.replace("<strong>", "").replace("</strong>", "").replace(
            "<code>", "`").replace("</code>", "`")
    # a second evaluation replaces the plots instead of piling them up
    evaluate_report.write(tmp_path, metrics, ev, _outputs(ev, seed=5), release="v7")
    assert len(list(tmp_path.glob("*.png"))) == 3
    assert categories.by_key("legit").code in CLASSES


def test_one_prolific_honest_caller_counts_as_correlated_evidence():
    """Calls of one caller are not independent trials: when a single honest caller makes up most of
    the high-risk honest calls, the caller-clustered bound keeps the phone's threshold above that
    caller's scores, where a per-call Clopper-Pearson bound would let the caller be flagged."""
    ev = _events(n=20000)
    out = _outputs(ev, signal=4.0)
    honest_free = np.flatnonzero((ev.harmful == 0) & ~ev.in_pack)
    prolific = honest_free[:15]  # one personal number calling 15 times, scored high from memory
    for i in prolific:
        ev.facts[i]["number"] = ev.caller[i] = "+8613912345678"
    out["risk"][prolific] = 0.97
    per_call = evaluate.phone_threshold(ev.harmful, out["risk"], ~ev.in_pack, evaluate.pack_flags(ev), 0.005)
    clustered = evaluate.phone_threshold(ev.harmful, out["risk"], ~ev.in_pack, evaluate.pack_flags(ev), 0.005,
                                         callers=ev.caller)
    assert per_call <= 0.97 < clustered  # the per-call bound flags the caller's 15 calls; clustered does not
    m = evaluate.compute_metrics(ev, out, max_fpr=0.005)
    assert m["warn_risk"] == pytest.approx(clustered)


def test_clustered_bound_is_clopper_pearson_for_one_call_per_caller_and_wider_for_clusters():
    from scipy.stats import beta

    from trainer.fpr_bound import clustered_upper_bounds
    n, base = 5000, np.zeros(5000, bool)
    base[:3] = True
    order = np.arange(3, 40)
    singletons = clustered_upper_bounds(np.arange(n), base, order, 0.95)
    k = np.arange(len(order) + 1) + 3
    assert np.allclose(singletons, beta.ppf(0.95, k + 1, n - k))
    clusters = np.arange(n)
    clusters[3:40] = 7  # the extra flags all fall on one caller (call 7's)
    lumped = clustered_upper_bounds(clusters, base, order, 0.95)
    assert lumped[0] == pytest.approx(singletons[0], rel=1e-3) and (lumped[5:] > singletons[5:]).all()
    assert np.all(np.diff(lumped) > 0)


def test_a_gold_set_evaluates_only_the_callers_it_lists(tmp_path):
    """Without ground truth a build's release labels count every untagged caller as honest; a gold set
    (audited numbers) is read as a sample instead: callers it does not list are left out, not honest."""
    import csv

    from tools.simulate import simulate

    sim = tmp_path / "sim"
    simulate(str(sim), days=3, users=200, seed=1)
    rows = list(csv.DictReader(open(sim / "truth.csv", newline="")))
    every = evaluate.evaluation_events(str(sim))
    held = sorted(set(every.caller))
    listed = set(held[::2])  # half of the held-out callers, whatever their class
    others = sorted({r["number"] for r in rows} - set(held))[::3]  # and a third of the other numbers
    gold = tmp_path / "gold.csv"
    with open(gold, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(r for r in rows if r["number"] in listed or r["number"] in others)
    plain = evaluate.evaluation_events(str(sim), truth_csv=str(gold))
    audited = evaluate.evaluation_events(str(sim), truth_csv=str(gold), gold=True)
    assert set(plain.caller) == set(held)  # without --gold every held-out caller is scored ...
    assert not plain.known.all()  # ... and the unlisted ones count as honest
    assert set(audited.caller) == set(held) & listed and audited.known.all()
    trained = evaluate.trained_on_events(str(sim), truth_csv=str(gold), gold=True)
    assert trained.known.all() and set(trained.caller) <= set(others)
    assert evaluate.truth_kind(gold, gold=True).startswith("gold set")


@pytest.mark.parametrize("rows, message", [
    ("number,category\n+8613800000001,fraud\n", "lacks the column(s) harmful"),
    ("number,category,harmful\n+8613800000001,fraud,yes\n", "line 2: harmful must be 1 or 0, got 'yes'"),
    ("number,category,harmful\n+8613800000001,scam,1\n", "line 2: unknown category 'scam'"),
    ("number,category,harmful\n,fraud,1\n", "line 2: empty number"),
    ("number,category,harmful,first_day\n+8613800000001,fraud,1,monday\n", "first_day must be a day number"),
])
def test_a_bad_truth_row_is_named_with_its_line_and_fix(tmp_path, rows, message):
    from trainer.features import FeatureInputError, read_truth

    path = tmp_path / "gold.csv"
    path.write_text(rows)
    with pytest.raises(FeatureInputError, match=re.escape(message)):
        read_truth(path)


def test_a_gold_set_that_cannot_measure_says_why(tmp_path):
    import csv

    from tools.simulate import simulate
    from trainer.features import FeatureInputError
    from trainer.pipeline import BuildConfig, BuildError

    sim = tmp_path / "sim"
    simulate(str(sim), days=3, users=200, seed=1)
    rows = list(csv.DictReader(open(sim / "truth.csv", newline="")))
    held = set(evaluate.evaluation_events(str(sim)).caller)

    def gold(keep):
        path = tmp_path / "gold.csv"
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["number", "category", "harmful"])
            w.writeheader()
            w.writerows({k: r[k] for k in w.fieldnames} for r in rows if keep(r))
        return str(path)
    with pytest.raises(FeatureInputError, match="lists none of the callers held out"):
        evaluate.evaluation_events(str(sim), truth_csv=gold(lambda r: r["number"] not in held), gold=True)
    with pytest.raises(FeatureInputError, match="are all harmful"):
        evaluate.evaluation_events(str(sim), truth_csv=gold(lambda r: r["harmful"] == "1"), gold=True)
    with pytest.raises(FeatureInputError, match="pass it"):
        evaluate.evaluation_events(str(sim), gold=True)  # --gold without a truth file
    with pytest.raises(BuildError, match="eval_gold needs eval_truth"):
        BuildConfig.from_dict({"eval_gold": True})
    with pytest.raises(BuildError, match="true or false"):
        BuildConfig.from_dict({"eval_truth": "gold.csv", "eval_gold": "false"})


def test_a_figure_neither_model_can_show_is_refused_with_that_reason():
    ev = _events()
    m = evaluate.compute_metrics(ev, _outputs(ev, signal=4.0))
    blind = dict(m, recall_not_in_pack=float("nan"))
    problems, _ = evaluate.quality_problems(blind, blind, margin=0.02, min_gain=0.0)
    assert problems == ["recall_not_in_pack cannot be read on these calls (no harmful or no honest calls where "
                        "it applies): the truth needs both"]
