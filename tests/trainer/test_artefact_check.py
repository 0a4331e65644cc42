"""The Keras-vs-LiteRT artefact check: tolerant of one int8 rounding outlier, strict on a broken export."""
import numpy as np

from trainer.model.convert import OUTLIER_PROB_DIFF, artefact_problems, compare

CFG = {"min_agreement": 0.995, "max_prob_diff": 0.02}


def _outputs(rows=5000, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(4) * 0.3, size=rows)
    risk = rng.random((rows, 1))
    return {"probs": probs, "risk": risk}


def _lite(keras, shift_rows, amount):
    probs = np.round(keras["probs"] * 256) / 256  # int8 output grid
    probs[:shift_rows, :2] += np.array([amount, -amount])
    return {"probs": np.clip(probs, 0, 1), "risk": np.round(keras["risk"] * 256) / 256}


def test_faithful_export_with_one_rounding_outlier_passes():
    keras = _outputs()
    check = compare(keras, _lite(keras, shift_rows=1, amount=0.0224))
    assert check["max_prob_diff"] > CFG["max_prob_diff"]
    assert artefact_problems(check, CFG) == []


def test_export_off_on_many_rows_is_refused():
    keras = _outputs()
    check = compare(keras, _lite(keras, shift_rows=200, amount=0.03))
    problems = artefact_problems(check, CFG)
    assert any("99.9th-percentile" in p for p in problems)


def test_one_row_far_off_is_refused():
    keras = _outputs()
    check = compare(keras, _lite(keras, shift_rows=1, amount=OUTLIER_PROB_DIFF + 0.05))
    assert any("max probability difference" in p for p in artefact_problems(check, CFG))


def test_old_metrics_without_percentile_fall_back_to_the_max():
    check = {"top1_agreement_tie_aware": 1.0, "max_prob_diff": 0.03, "max_risk_diff": 0.0}
    assert any("99.9th-percentile" in p for p in artefact_problems(check, CFG))
