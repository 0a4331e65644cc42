"""callmark.model: raw facts -> tensors (fast, no model needed) and ModelRunner on a built model (slow)."""
import json
import shutil

import numpy as np
import pytest

from callmark import model as cm


def test_encode_fills_contract_tensors():
    t = cm.encode({"number": "+86 138 0013 8000", "hour": 23, "weekday": 6, "verification": "failed",
                   "pack_category": "fraud", "pack_confidence": 0.87, "pack_reporters": 12,
                   "prior_calls": 2, "days_since_last": 1.5, "in_contacts": True})
    assert {k: v.dtype for k, v in t.items()} == {"digits": np.int32, "codes": np.int32, "facts": np.int32}
    assert t["digits"].shape == (1, cm.DIGITS)
    assert t["digits"][0, :13].tolist() == [8, 6, 1, 3, 8, 0, 0, 1, 3, 8, 0, 0, 0]
    assert t["digits"][0, 13:].tolist() == [cm.DIGIT_PAD] * 3
    assert t["codes"][0].tolist() == [1, 23, 6, 2, cm.NUMBER_TYPES.index("mobile")]
    facts = dict(zip([n for n, _, _ in cm.FACT_FIELDS], t["facts"][0].tolist()))
    assert facts["pack_confidence"] == 870 and facts["pack_reporters"] == 12
    assert facts["days_since_last"] == 36 and facts["in_contacts"] == 1  # hours; bool -> 1
    assert facts["hidden"] == 0 and facts["international"] == 0


def test_encode_derives_presentation_flags():
    hidden = cm.encode({"number": ""})
    assert dict(zip([n for n, _, _ in cm.FACT_FIELDS], hidden["facts"][0]))["hidden"] == 1
    us = cm.encode({"number": "+12025550123"})
    assert dict(zip([n for n, _, _ in cm.FACT_FIELDS], us["facts"][0]))["international"] == 1
    same = [cm.encode({"number": s})["digits"][0].tolist() for s in ("13800138000", "+8613800138000", "0086 138-0013-8000")]
    assert same[0] == same[1] == same[2]


@pytest.mark.parametrize("facts, message", [
    ({"hour": 3}, "at least a 'number'"),
    ({"number": "1", "hour": 24}, "hour must be 0..23"),
    ({"number": "1", "verification": "maybe"}, "verification must be one of"),
    ({"number": "1", "pack_category": "spam-ish"}, "unknown category"),
    ({"number": "1", "prior_calls": "many"}, "must be a number"),
    ({"number": "1", "prior_calls": -1}, "must not be negative"),
])
def test_bad_raw_facts_are_explained(facts, message):
    with pytest.raises(ValueError, match=message):
        cm.encode(facts)


def test_contract_mismatch_is_refused(tmp_path):
    good = cm.Contract(inputs=cm.input_specs(), outputs=[{"name": "probs"}, {"name": "risk"}], classes=[1, 18])
    d = good.to_dict()
    assert cm.Contract.from_dict(d).classes == [1, 18]
    d["inputs"][0]["shape"] = [1, 12]
    with pytest.raises(cm.ModelContractError, match="inputs differ"):
        cm.Contract.from_dict(d)
    with pytest.raises(cm.ModelContractError, match="format"):
        cm.Contract.from_dict({**good.to_dict(), "format": 99})
    with pytest.raises(cm.ModelContractError, match="missing"):
        cm.ModelRunner(tmp_path)


@pytest.mark.slow
def test_runner_scores_and_replays_built_model(tmp_path_factory, tmp_path):
    from tests.trainer.test_student import build_tiny_model

    model, _ = build_tiny_model(tmp_path_factory)
    runner = cm.ModelRunner(model)
    out = runner.score({"number": "+8613912345678", "hour": 14, "pack_category": "fraud",
                        "pack_confidence": 0.9, "pack_reporters": 30})
    assert 0 <= out["risk"] <= 1
    assert set(out["probs"]) == set(runner.keys) and abs(sum(out["probs"].values()) - 1) < 0.02
    friend = runner.score({"number": "+8613800138000", "hour": 19, "in_contacts": True, "prior_calls": 30,
                           "prior_answered": 30, "last_talk_s": 600, "days_since_last": 1, "verification": "passed"})
    assert friend["risk"] < out["risk"]  # a verified contact is safer than a packed fraud number
    assert cm.replay_test_vectors(model)["vectors"] > 0
    # a tampered expectation is caught
    broken = tmp_path / "m"
    shutil.copytree(model, broken)
    vec = json.loads((broken / "test_vectors.json").read_text())
    vec["vectors"][0]["expected"]["risk"] += 0.5
    (broken / "test_vectors.json").write_text(json.dumps(vec))
    with pytest.raises(cm.ModelContractError, match="test vector 0"):
        cm.replay_test_vectors(broken)
