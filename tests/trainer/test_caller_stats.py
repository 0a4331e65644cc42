"""Caller-level statistics: each caller counts once in the gate's AUC, and differences between two
models come with a caller-clustered paired bootstrap interval (trainer/caller_stats.py)."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from trainer import caller_stats


def _heavy_telemarketer():
    """30 harmful callers with one call each, scored 0.4-0.9; one harmful caller with 900 calls scored in
    the middle of the honest calls; 300 honest callers with 3 calls each."""
    rng = np.random.default_rng(0)
    y, score, callers = [], [], []
    for i in range(30):
        y.append(1), score.append(0.4 + 0.5 * rng.random()), callers.append(f"h{i}")
    for _ in range(900):
        y.append(1), score.append(0.3), callers.append("telemarketer")
    for i in range(300):
        s = rng.random() * 0.6
        for _ in range(3):
            y.append(0), score.append(s), callers.append(f"n{i}")
    return np.asarray(y), np.asarray(score), np.asarray(callers)


def test_each_caller_counts_once_whatever_its_number_of_calls():
    y, score, callers = _heavy_telemarketer()
    per_call = roc_auc_score(y, score)
    weighted = caller_stats.caller_weighted_auc(y, score, callers)
    # every caller's calls share one score here, so the weighted AUC is the AUC over one row per caller
    first = np.unique(callers, return_index=True)[1]
    assert weighted == pytest.approx(roc_auc_score(y[first], score[first]))
    assert per_call < 0.6 < 0.85 < weighted  # the one heavy caller decides the per-call figure
    assert np.isnan(caller_stats.caller_weighted_auc(np.zeros(5), np.ones(5), list("abcde")))


def test_paired_bootstrap_interval_is_zero_for_one_model_and_excludes_zero_for_a_better_one():
    y, score, callers = _heavy_telemarketer()
    better = np.where(y == 1, np.minimum(score + 0.3, 1.0), score)

    def diff(cand, pub):
        return lambda idx, cl: (caller_stats.caller_weighted_auc(y[idx], cand[idx], cl)
                                - caller_stats.caller_weighted_auc(y[idx], pub[idx], cl))
    same = caller_stats.paired_difference(diff(score, score), callers, reps=60)
    assert same["difference"] == same["low"] == same["high"] == 0.0 and same["reps"] == 60
    up = caller_stats.paired_difference(diff(better, score), callers, reps=60, seed=1)
    assert 0 < up["low"] <= up["difference"] <= up["high"]


def test_resampling_keeps_a_callers_calls_together_and_counts_a_double_draw_twice():
    callers = np.asarray(["a"] * 5 + ["b"] * 2 + ["c"])
    seen = []

    def record(idx, cluster):
        seen.append((idx.copy(), cluster.copy()))
        return 0.0
    caller_stats.paired_difference(record, callers, reps=30, seed=2)
    for idx, cluster in seen[1:]:
        for draw in np.unique(cluster):  # one draw = all calls of one caller
            assert len(set(callers[idx[cluster == draw]])) == 1
            assert (cluster == draw).sum() == (callers == callers[idx[cluster == draw]][0]).sum()
    assert any(len(np.unique(c)) == 3 and len(set(callers[i])) < 3 for i, c in seen[1:])  # a caller drawn twice
