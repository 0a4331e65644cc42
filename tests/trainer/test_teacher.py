"""Teacher: fit/score round trip, stable CLI, missing values, baselines in CV."""
import csv

import numpy as np
import pytest
from click.testing import CliRunner

from trainer.model import teacher
from trainer.model.teacher import TeacherConfig, TeacherError

FAST = TeacherConfig(gbdt_trees=60, gbdt_learning_rate=0.1, rf_trees=30)


def _table(path, n=400, seed=0, label=True):
    """Harmful numbers call many distinct people briefly; ~10 % missing cells; a text column."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    calls = rng.lognormal(4 + y, 0.6)
    unique = calls * np.clip(rng.normal(0.2 + 0.6 * y, 0.15), 0.01, 1)
    dur = rng.lognormal(4 - 0.7 * y, 0.5)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["number", "opposite_count", "opposite_unique", "call_dur_mean", "city"] + (["label"] if label else []))
        for i in range(n):
            cells = [f"{calls[i]:.1f}", f"{unique[i]:.1f}", f"{dur[i]:.1f}"]
            cells = ["" if rng.random() < 0.1 else c for c in cells]
            w.writerow([f"n{i}", *cells, rng.choice(["成都", "绵阳"])] + ([y[i]] if label else []))
    return y


def test_fit_save_load_score_round_trip(tmp_path):
    y = _table(tmp_path / "train.csv")
    t = teacher.read_table(tmp_path / "train.csv", "number", "label")
    assert t.names == ["opposite_count", "opposite_unique", "call_dur_mean"]  # text column ignored
    assert np.isnan(t.X).any()
    model = teacher.fit(t, FAST)
    model.save(tmp_path / "m")
    back = teacher.load(tmp_path / "m")
    np.testing.assert_allclose(back.score(t), model.score(t))
    # learns the signal: held-out AUC on fresh data from the same process
    y2 = _table(tmp_path / "test.csv", seed=1)
    from sklearn.metrics import roc_auc_score
    s = back.score(teacher.read_table(tmp_path / "test.csv", "number", "label"))
    assert ((0 <= s) & (s <= 1)).all()
    assert roc_auc_score(y2, s) > 0.85
    assert y.sum() > 0


def test_score_table_with_missing_and_extra_columns(tmp_path):
    _table(tmp_path / "train.csv")
    model = teacher.fit(teacher.read_table(tmp_path / "train.csv", "number", "label"), FAST)
    (tmp_path / "partial.csv").write_text("id,opposite_count,note\nx,100,hi\ny,,\n")
    partial = teacher.read_table(tmp_path / "partial.csv", "id")
    with pytest.raises(teacher.TeacherError, match=r"lacks \d+ of the teacher's \d+ feature columns: opposite_unique, call_dur_mean"):
        model.score(partial)
    s = model.score(partial, allow_missing=True)
    assert len(s) == 2 and np.isfinite(s).all()
    (tmp_path / "none.csv").write_text("id,unrelated\nx,1\ny,2\n")
    with pytest.raises(teacher.TeacherError, match="lacks"):
        model.score(teacher.read_table(tmp_path / "none.csv", "id"), allow_missing=True)


def test_cli_fit_and_score_write_id_score(tmp_path):
    from tools.commands.model import COMMANDS

    _table(tmp_path / "train.csv")
    _table(tmp_path / "new.csv", seed=2, label=False)
    runner = CliRunner()
    res = runner.invoke(COMMANDS["teacher"], ["fit", "--table", str(tmp_path / "train.csv"), "--id-column", "number",
                                              "--label-column", "label", "--out", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(COMMANDS["teacher"], ["score", "--model", str(tmp_path / "t"), "--table",
                                              str(tmp_path / "new.csv"), "--id-column", "number",
                                              "--out", str(tmp_path / "s.csv")])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert list(rows[0]) == ["id", "score"] and len(rows) == 400
    assert all(0 <= float(r["score"]) <= 1 for r in rows)
    # bad input: a clear one-line error, not a traceback
    res = runner.invoke(COMMANDS["teacher"], ["fit", "--table", str(tmp_path / "new.csv"), "--id-column", "number",
                                              "--label-column", "label", "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "label column 'label' not in" in res.output


def test_bad_labels_are_explained(tmp_path):
    (tmp_path / "t.csv").write_text("id,a,label\n1,2,yes\n2,3,0\n")
    with pytest.raises(TeacherError, match="labels must be 0 or 1"):
        teacher.read_table(tmp_path / "t.csv", "id", "label")
    (tmp_path / "u.csv").write_text("id,a,label\n1,2,0\n2,3,0\n")
    with pytest.raises(TeacherError, match="only 0s"):
        teacher.read_table(tmp_path / "u.csv", "id", "label")
    with pytest.raises(TeacherError, match="no teacher.json"):
        teacher.load(tmp_path)


def test_cross_validation_reports_teacher_and_baselines(tmp_path):
    _table(tmp_path / "train.csv", n=300)
    res = teacher.cross_validate(teacher.read_table(tmp_path / "train.csv", "number", "label"), FAST, folds=3)
    assert set(res["models"]) == {"teacher", "logistic_regression", "gradient_boosted_tree"}
    for m in res["models"].values():
        assert 0.5 < m["auc"] <= 1 and 0 <= m["recall_at_1pct_fpr"] <= 1
    assert len(res["oof"]["teacher"]) == 300


def test_engineered_ratios_only_when_inputs_exist():
    X = np.array([[10.0, 5.0], [0.0, 1.0]])
    Xe, names = teacher.engineer(X, ["opposite_count", "opposite_unique"])
    assert "r_unique_per_call" in names and "r_sms_per_call" not in names
    col = Xe[:, names.index("r_unique_per_call")]
    assert col[0] == 0.5 and np.isnan(col[1])  # zero denominator -> missing


def test_repeated_cv_per_seed_figures_summary_and_paired_differences(tmp_path):
    _table(tmp_path / "train.csv", n=300)
    t = teacher.read_table(tmp_path / "train.csv", "number", "label")
    seen = []
    res = teacher.repeated_cv(t, FAST, folds=3, seeds=(7, 8), progress=lambda s, m: seen.append(s))
    assert seen == [7, 8] and res["seeds"] == [7, 8]
    for name in ("teacher", "logistic_regression", "gradient_boosted_tree"):
        rows = res["per_seed"][name]
        assert [r["seed"] for r in rows] == [7, 8]
        aucs = [r["auc"] for r in rows]
        assert aucs[0] != aucs[1]  # different folds per seed
        # the summary is computed from the per-seed rows
        assert res["summary"][name]["auc_mean"] == pytest.approx(np.mean(aucs))
        assert res["summary"][name]["auc_std"] == pytest.approx(np.std(aucs, ddof=1))
    # seed 7 alone reproduces the first row exactly (same folds, same LightGBM seed)
    one = teacher.cross_validate(t, TeacherConfig(**{**FAST.to_dict(), "seed": 7}), folds=3, seed=7)
    assert res["per_seed"]["teacher"][0]["auc"] == one["models"]["teacher"]["auc"]
    d = res["paired"]["gradient_boosted_tree"]
    diffs = [a["auc"] - b["auc"] for a, b in zip(res["per_seed"]["teacher"], res["per_seed"]["gradient_boosted_tree"])]
    assert d["auc_diff_mean"] == pytest.approx(np.mean(diffs)) and d["auc_wins"] == sum(x > 0 for x in diffs)
    assert "teacher" not in res["paired"]
    with pytest.raises(TeacherError, match="at least one seed"):
        teacher.repeated_cv(t, FAST, seeds=())


def test_logistic_baseline_handles_all_missing_columns_and_heavy_tails():
    X = np.column_stack([np.r_[np.full(50, np.nan), np.arange(50.0)] * 1e6,  # half missing, huge values
                         np.r_[np.zeros(50), np.ones(50)]])
    y = np.r_[np.zeros(50), np.ones(50)].astype(int)
    m = teacher._baselines()["logistic_regression"]().fit(X, y)
    p = m.predict_proba(X)[:, 1]
    assert np.isfinite(p).all() and p[y == 1].min() > p[y == 0].max()
    np.testing.assert_array_equal(teacher.signed_log1p(np.array([-np.e + 1, 0, np.nan])), [-1, 0, np.nan])


def test_cli_cv_seeds(tmp_path):
    import json

    from tools.commands.model import COMMANDS

    _table(tmp_path / "train.csv", n=200)
    runner = CliRunner()
    args = ["cv", "--table", str(tmp_path / "train.csv"), "--id-column", "number", "--label-column", "label", "--folds", "2"]
    res = runner.invoke(COMMANDS["teacher"], args + ["--seeds", "3,4"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["seeds"] == [3, 4] and len(out["per_seed"]["teacher"]) == 2
    res = runner.invoke(COMMANDS["teacher"], args + ["--seeds", "a,b"])
    assert res.exit_code != 0 and "comma-separated list of integers" in res.output
