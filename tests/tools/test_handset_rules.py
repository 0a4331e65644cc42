"""The decision chain and the on-device rules (callmark/rules.py): pure, no files, no network."""
from __future__ import annotations

import pytest

from callmark.numbers import normalize
from callmark.pack import Label
from callmark.rules import (
    CallFacts, Decision, Policy, RecentCalls, RuleConfig, RulesConfigError, decide, evaluate_rules,
    spoofed_from_abroad,
)

T0 = 1_772_000_000.0


def call(raw="+8613812345678", **kw) -> CallFacts:
    kw.setdefault("time", T0)
    return CallFacts.from_number_facts(normalize(raw), "CN", **kw)


def label(cat="fraud", conf=0.97, source="exact", flags=0, company=None, code=1, action="block"):
    return Label(8613812345678, code, cat, action, conf, 20, flags, 20500, source,
                 8613812345600 if source == "range" else None, 100 if source == "range" else None, company)


def steps(d: Decision) -> list[str]:
    return [r.step for r in d.reasons]


def test_user_lists_come_first_and_are_final():
    d = decide(call(), user_list="block", label=label("delivery", 0.99, code=15, action="label"))
    assert (d.action, d.source) == ("reject", "block_list")
    d = decide(call(ring_s=1.0, answered=False), user_list="contact", label=label(),
               rules=evaluate_rules(call(ring_s=1.0, answered=False), False, 1, 1))
    assert (d.action, d.source, steps(d)) == ("allow", "contacts", ["contacts"])
    assert decide(call(), user_list="allow", label=label()).action == "allow"


def test_verified_business_labels_unless_verification_failed():
    lab = label("customer_service", 0.99, flags=1, company="中国工商银行", code=17, action="label")
    d = decide(call("95588"), label=lab)
    assert (d.action, d.company, d.source) == ("label", "中国工商银行", "verified_business")
    d = decide(call("95588", verification="failed"), label=lab)
    assert (d.action, d.category) == ("warn", "spoofed") and d.offer_tag
    assert steps(d) == ["verified_business", "rule:failed_verification"]


@pytest.mark.parametrize("conf,want", [(0.97, "reject"), (0.7, "warn"), (0.3, "label")])
def test_pack_exact_confidence_sets_the_action(conf, want):
    d = decide(call(), label=label("fraud", conf))
    assert (d.action, d.category, d.source) == (want, "fraud", "pack_exact")
    assert d.confidence == pytest.approx(conf)


def test_range_labels_are_capped_and_benign_labels_only_label():
    d = decide(call(), label=label("fraud", 0.99, source="range", flags=2))
    assert (d.action, d.source) == ("warn", "pack_range")
    assert "block of 100" in d.reasons[0].detail
    d = decide(call(), label=label("delivery", 0.99, code=15, action="label"))
    assert (d.action, d.category) == ("label", "delivery") and not d.offer_tag
    d = decide(call(), label=label("fraud", 0.99, flags=8))  # appeal-suppressed
    assert d.action == "label"


def test_model_runs_only_on_a_pack_miss():
    calls = []

    def model():
        calls.append(1)
        return {"risk": 0.9, "probs": {"legit": 0.1, "fraud": 0.7, "telemarketing": 0.2}}
    decide(call(), label=label(), model=model)
    assert calls == []
    d = decide(call(), label=None, model=model)
    assert calls == [1]
    assert (d.action, d.category, d.source) == ("warn", "fraud", "model")
    d = decide(call(), model=lambda: {"risk": 0.6, "probs": {"telemarketing": 0.6}})
    assert (d.action, d.category) == ("label", "telemarketing")
    d = decide(call(), model=lambda: {"risk": 0.1, "probs": {"fraud": 0.1, "legit": 0.9}})
    assert (d.action, d.category, steps(d)) == ("allow", None, ["model"])


def test_one_ring_warns_not_to_call_back():
    cfg = RuleConfig()
    hits = evaluate_rules(call(ring_s=1.5, answered=False), False, 1, 1, cfg)
    assert [h.step for h in hits] == ["rule:one_ring"]
    d = decide(call(ring_s=1.5, answered=False), rules=hits)
    assert (d.action, d.category, d.offer_tag) == ("warn", "one_ring", True)
    assert "do not call back" in d.reasons[0].detail
    for c, known in ((call(ring_s=1.5, answered=True), False), (call(ring_s=5.0, answered=False), False),
                     (call(ring_s=1.5, answered=False), True), (call(), False)):
        assert evaluate_rules(c, known, 1, 1, cfg) == []


def test_call_bombing_silences_a_flood_of_unknown_calls():
    cfg = RuleConfig(bombing_window_s=600, bombing_same_number=4, bombing_unknown_calls=8)
    rc = RecentCalls(cfg)
    actions = []
    for i in range(10):  # ten different unknown numbers, 30 s apart, at one victim
        t = T0 + 30 * i
        key = 8613900000000 + i
        same, unknown = rc.counts("victim", t, key)
        hits = evaluate_rules(call(f"+86139{i:08d}", time=t), False, same + 1, unknown + 1, cfg)
        actions.append(decide(call(time=t), rules=hits).action)
        rc.add("victim", t, key, True)
    assert actions[:7] == ["allow"] * 7 and actions[7:] == ["silence"] * 3
    assert rc.counts("other", T0 + 300, 1) == (0, 0)
    # one number redialling: the 4th call inside the window is silenced, an hour later it is not
    rc = RecentCalls(cfg)
    for i in range(3):
        rc.add("me", T0 + 60 * i, 42, True)
    same, unknown = rc.counts("me", T0 + 200, 42)
    assert (same, unknown) == (3, 3)
    assert evaluate_rules(call(time=T0 + 200), False, same + 1, unknown + 1, cfg)[0].action == "silence"
    same, unknown = rc.counts("me", T0 + 3600, 42)
    assert (same, unknown) == (0, 0)


def test_rules_only_escalate_a_pack_label():
    hits = evaluate_rules(call(), False, 4, 4)
    d = decide(call(), label=label("delivery", 0.9, code=15, action="label"), rules=hits)
    assert (d.action, d.category, d.source) == ("silence", "call_bombing", "rule:call_bombing")
    assert steps(d) == ["pack_exact", "rule:call_bombing"]
    d = decide(call(ring_s=1.0, answered=False), label=label("fraud", 0.97),
               rules=evaluate_rules(call(ring_s=1.0, answered=False), False, 1, 1))
    assert (d.action, d.category) == ("reject", "fraud")  # the stronger pack decision stays


@pytest.mark.parametrize("raw,want", [
    ("+86 0755 1234 5678", ("reject", "spoofed")),  # trunk 0 after +86
    ("+86138123456", ("warn", "spoofed")),  # +86 and too short
    ("0086013812345678", ("reject", "spoofed")),
])
def test_spoofed_from_abroad_hints(raw, want):
    c = call(raw)
    hits = evaluate_rules(c, False, 1, 1)
    d = decide(c, rules=hits)
    assert (d.action, d.category) == want
    assert "rule:irregular" not in steps(d)  # the more specific hint wins


def test_failed_verification_and_irregular_numbers():
    d = decide(call("+8613812345678", verification="failed"),
               rules=evaluate_rules(call("+8613812345678", verification="failed"), False, 1, 1))
    assert (d.action, d.category, d.source) == ("warn", "spoofed", "rule:spoofed")
    c = call("13812345678", verification="failed")  # domestic form: only the verification rule
    d = decide(c, rules=evaluate_rules(c, False, 1, 1))
    assert (d.action, d.source) == ("warn", "rule:failed_verification")
    c = call("1381234")  # not valid in the numbering plan
    d = decide(c, rules=evaluate_rules(c, False, 1, 1))
    assert (d.action, d.source) == ("warn", "rule:irregular")
    assert evaluate_rules(call("95588"), False, 1, 1) == []  # short service numbers are regular
    assert spoofed_from_abroad(call("+1 202 555 0143")) is None


def test_configs_validate_and_round_trip():
    assert Policy.from_dict(Policy().to_dict()) == Policy()
    assert RuleConfig.from_dict({"one_ring_max_s": 2}).one_ring_max_s == 2.0
    with pytest.raises(RulesConfigError, match="unknown"):
        RuleConfig.from_dict({"one_ring": 2})
    with pytest.raises(RulesConfigError, match=r"\[0, 1\]"):
        Policy.from_dict({"reject_confidence": 1.5})
    with pytest.raises(RulesConfigError, match="verification"):
        call(verification="maybe")
    d = decide(call("+8613812345678", verification="failed"),
               rules=evaluate_rules(call(verification="failed"), False, 1, 1))
    assert Decision.from_dict(d.to_dict()).to_dict() == d.to_dict()
