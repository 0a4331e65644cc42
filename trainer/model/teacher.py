"""Server-side teacher: scores numbers as harmful from per-number call-behaviour features.

An equal-weight blend of two LightGBM models over the table's numeric columns plus engineered
ratio features: a tuned gradient-boosted tree and a random forest of extremely randomised trees.
Missing values are native to LightGBM. Stored as LightGBM text files + `teacher.json` (no pickle).
Never imports TensorFlow.
"""
from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from callmark import safejson
from trainer.features import FeatureTable

FORMAT = 1


class TeacherError(ValueError):
    """Bad teacher input (table, columns, labels) or a teacher directory that cannot be loaded."""


# Engineered ratios: (name, numerator, denominator); used when both columns exist in the table.
RATIOS: tuple[tuple[str, str, str], ...] = (
    # Sichuan operator columns
    ("r_unique_per_call", "opposite_unique", "opposite_count"),
    ("r_days_per_month", "voc_day_nunique", "month_ids"),
    ("r_calls_per_day", "opposite_count", "voc_day_nunique"),
    ("r_unique_per_day", "opposite_unique", "voc_day_nunique"),
    ("r_sms_per_call", "sms_count", "opposite_count"),
    ("r_peak_hour_share", "voc_hour_mode_count", "opposite_count"),
    ("r_peak_day_share", "voc_day_mode_count", "opposite_count"),
    ("r_imeis_per_day", "imeis", "voc_day_nunique"),
    ("r_dur_median_mean", "call_dur_median", "call_dur_mean"),
    ("r_max_pair_share", "phone2opposite_max", "opposite_count"),
    ("r_sms_out_share", "calltype_2", "sms_count"),
    ("r_arpu_per_month", "arpu_sum", "month_ids"),
    ("r_out_per_unique", "voccalltype1", "opposite_unique"),
    # callmark aggregate_calls columns
    ("r_callees_per_day", "distinct_callees", "active_days"),
    ("r_peak_day_share_c", "max_calls_day", "calls"),
    ("r_dialled_by_per_callee", "dialled_by", "distinct_callees"),
)


@dataclass
class TeacherConfig:
    """Hyper-parameters of the teacher blend (found by 5-fold CV on the Sichuan data)."""

    gbdt_trees: int = 600
    gbdt_learning_rate: float = 0.02
    gbdt_leaves: int = 15
    gbdt_min_child: int = 10  # rows per leaf
    gbdt_colsample: float = 0.5
    gbdt_subsample: float = 0.8
    rf_trees: int = 300
    rf_leaves: int = 127
    rf_min_child: int = 3
    rf_colsample: float = 0.5
    rf_subsample: float = 0.632
    gbdt_engineered: bool = False  # give the GBDT the engineered ratios too
    rf_engineered: bool = True
    seed: int = 0
    threads: int = 1  # LightGBM threads (OpenMP spin-waits badly on a busy machine)

    @classmethod
    def from_dict(cls, d: dict) -> "TeacherConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise TeacherError(f"unknown teacher config keys {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def read_table(path, id_column: str, label_column: str | None = None) -> FeatureTable:
    """Read a per-number CSV: numeric columns become features, others are ignored; empty = missing."""
    path = Path(path)
    if not path.is_file():
        raise TeacherError(f"table {path} not found")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            if not header:
                raise TeacherError(f"table {path} is empty")
            rows = [r for r in reader if r]
        except csv.Error as exc:       # e.g. a field over 128 KiB, a NUL byte
            raise TeacherError(f"{path} line {reader.line_num}: not readable CSV ({exc})") from None
        except UnicodeDecodeError as exc:
            raise TeacherError(f"{path} near line {reader.line_num + 1}: not UTF-8 ({exc.reason}); "
                               "save the table as UTF-8") from None
    if id_column not in header:
        raise TeacherError(f"id column {id_column!r} not in {path}; columns are: {', '.join(header[:20])}")
    if label_column is not None and label_column not in header:
        raise TeacherError(f"label column {label_column!r} not in {path}; columns are: {', '.join(header[:20])}")
    if not rows:
        raise TeacherError(f"table {path} has a header but no rows")
    width = len(header)
    bad = next((i for i, r in enumerate(rows) if len(r) != width), None)
    if bad is not None:
        raise TeacherError(f"{path} row {bad + 2} has {len(rows[bad])} fields, header has {width}")
    cols = list(zip(*rows))
    ids = list(cols[header.index(id_column)])
    names, columns = [], []
    for j, name in enumerate(header):
        if name in (id_column, label_column):
            continue
        parsed = _numeric(cols[j])
        if parsed is not None:
            names.append(name)
            columns.append(parsed)
    if not names:
        raise TeacherError(f"{path} has no numeric feature columns besides {id_column!r}")
    y = None
    if label_column is not None:
        y = _labels(cols[header.index(label_column)], label_column)
    return FeatureTable(ids=ids, names=names, X=np.column_stack(columns), y=y)


def _numeric(values) -> np.ndarray | None:
    out = np.empty(len(values))
    seen = False
    for i, v in enumerate(values):
        v = v.strip()
        if v == "" or v.lower() in ("nan", "na", "null", "none"):
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
            seen = True
        except ValueError:
            return None
    out[~np.isfinite(out)] = np.nan
    return out if seen else None


def _labels(values, name: str) -> np.ndarray:
    mapping = {"1": 1, "0": 0, "1.0": 1, "0.0": 0, "true": 1, "false": 0}
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        key = v.strip().lower()
        if key not in mapping:
            raise TeacherError(f"label column {name!r} row {i + 2} is {v!r}; labels must be 0 or 1 "
                               "(drop unlabelled rows before fitting)")
        out[i] = mapping[key]
    if out.min() == out.max():
        raise TeacherError(f"label column {name!r} holds only {out[0]}s; need both 0 and 1 to fit")
    return out


def engineer(X: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Append the engineered ratios whose inputs exist (x / y, missing when y <= 0)."""
    extra, extra_names = [], []
    for name, num, den in RATIOS:
        if num in names and den in names:
            a, b = X[:, names.index(num)], X[:, names.index(den)]
            with np.errstate(divide="ignore", invalid="ignore"):
                extra.append(np.where(b > 0, a / b, np.nan))
            extra_names.append(name)
    extra.append(np.isnan(X).sum(1).astype(float))
    extra_names.append("n_missing")
    return np.column_stack([X] + extra), names + extra_names


def _align(table: FeatureTable, names: list[str]) -> np.ndarray:
    """Columns of `table` in the order of `names`; absent ones are missing (NaN)."""
    X = np.full((len(table.ids), len(names)), np.nan)
    index = {n: j for j, n in enumerate(table.names)}
    for j, n in enumerate(names):
        if n in index:
            X[:, j] = table.X[:, index[n]]
    return X


def _gbdt(cfg: TeacherConfig):
    import lightgbm as lgb
    return lgb.LGBMClassifier(n_estimators=cfg.gbdt_trees, learning_rate=cfg.gbdt_learning_rate,
                              num_leaves=cfg.gbdt_leaves, min_child_samples=cfg.gbdt_min_child,
                              colsample_bytree=cfg.gbdt_colsample, subsample=cfg.gbdt_subsample,
                              subsample_freq=1, random_state=cfg.seed, n_jobs=cfg.threads, verbose=-1)


def _rf(cfg: TeacherConfig):
    import lightgbm as lgb
    return lgb.LGBMClassifier(boosting_type="rf", extra_trees=True, n_estimators=cfg.rf_trees,
                              num_leaves=cfg.rf_leaves, min_child_samples=cfg.rf_min_child,
                              colsample_bytree=cfg.rf_colsample, subsample=cfg.rf_subsample,
                              subsample_freq=1, random_state=cfg.seed, n_jobs=cfg.threads, verbose=-1)


@dataclass
class Teacher:
    """A fitted teacher: base feature names + two LightGBM boosters."""

    base_names: list[str]
    config: TeacherConfig
    gbdt: object  # lightgbm.Booster
    rf: object  # lightgbm.Booster
    meta: dict = field(default_factory=dict)

    def _matrices(self, X: np.ndarray):
        Xe, _ = engineer(X, self.base_names)
        return (Xe if self.config.gbdt_engineered else X), (Xe if self.config.rf_engineered else X)

    def score_matrix(self, X: np.ndarray) -> np.ndarray:
        """Probability of harmful for rows of X (columns = `base_names`)."""
        Xg, Xr = self._matrices(X)
        return 0.5 * (self.gbdt.predict(Xg) + self.rf.predict(Xr))

    def score(self, table: FeatureTable, allow_missing: bool = False) -> np.ndarray:
        """Probability of harmful per row of `table` (columns matched by name; empty cells = missing).

        Raises TeacherError listing the model's feature columns the table lacks: a table without
        them would score every row alike (the model's base rate), silently. With `allow_missing`
        absent columns are scored as missing values, but at least one must be present."""
        have = set(table.names)
        missing = [n for n in self.base_names if n not in have]
        if missing and (not allow_missing or len(missing) == len(self.base_names)):
            shown = ", ".join(missing[:20]) + (f" … ({len(missing)} in all)" if len(missing) > 20 else "")
            raise TeacherError(f"the table lacks {len(missing)} of the teacher's {len(self.base_names)} "
                               f"feature columns: {shown}; build it with the same feature columns "
                               "(numeric) as the table the teacher was fitted on")
        return self.score_matrix(_align(table, self.base_names))

    def save(self, out_dir) -> Path:
        """Write teacher.json + gbdt.txt + rf.txt into `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.gbdt.save_model(str(out / "gbdt.txt"))
        self.rf.save_model(str(out / "rf.txt"))
        (out / "teacher.json").write_text(json.dumps(
            {"format": FORMAT, "kind": "teacher", "features": self.base_names,
             "config": self.config.to_dict(), "meta": self.meta}, indent=2))
        return out


def load(model_dir) -> Teacher:
    """Load a teacher directory written by `Teacher.save`; raises TeacherError if it is not one."""
    import lightgbm as lgb

    d = Path(model_dir)
    try:
        meta = safejson.load_path(d / "teacher.json", max_bytes=1 << 20)
    except FileNotFoundError:
        raise TeacherError(f"{d} holds no teacher.json; fit one with `callmark teacher fit`") from None
    except (safejson.JSONInputError, OSError) as exc:
        raise TeacherError(f"{d}/teacher.json is not a teacher file: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("kind") != "teacher":
        meta = meta if isinstance(meta, dict) else {}
        raise TeacherError(f"{d}/teacher.json has format {meta.get('format')!r}, expected {FORMAT}")
    try:
        gbdt = lgb.Booster(model_file=str(d / "gbdt.txt"))
        rf = lgb.Booster(model_file=str(d / "rf.txt"))
    except lgb.basic.LightGBMError as exc:
        raise TeacherError(f"{d}: model files unreadable: {exc}") from None
    cfg = TeacherConfig.from_dict(meta["config"])
    names = list(meta["features"])
    t = Teacher(base_names=names, config=cfg, gbdt=gbdt, rf=rf, meta=meta.get("meta", {}))
    want = len(t._matrices(np.zeros((1, len(names))))[0][0])
    if gbdt.num_feature() != want:
        raise TeacherError(f"{d}: gbdt.txt expects {gbdt.num_feature()} features, teacher.json implies {want}")
    return t


def fit(table: FeatureTable, config: TeacherConfig | None = None) -> Teacher:
    """Fit the teacher on a labelled table (`table.y` = 0/1 harmful)."""
    cfg = config or TeacherConfig()
    if table.y is None:
        raise TeacherError("the table has no labels; pass --label-column")
    if len(np.unique(table.y)) < 2:
        raise TeacherError("labels must contain both classes (0 and 1)")
    t0 = time.time()
    X = table.X
    Xe, _ = engineer(X, table.names)
    g = _gbdt(cfg).fit(Xe if cfg.gbdt_engineered else X, table.y)
    r = _rf(cfg).fit(Xe if cfg.rf_engineered else X, table.y)
    meta = {"rows": len(table.ids), "positives": int(table.y.sum()), "fit_seconds": round(time.time() - t0, 2)}
    return Teacher(base_names=list(table.names), config=cfg, gbdt=g.booster_, rf=r.booster_, meta=meta)


def recall_at_fpr(y: np.ndarray, score: np.ndarray, fpr: float = 0.01) -> float:
    """Recall (TPR) at the given false-positive rate, read off the ROC curve."""
    from sklearn.metrics import roc_curve
    f, t, _ = roc_curve(y, score)
    return float(np.interp(fpr, f, t))


def signed_log1p(X: np.ndarray) -> np.ndarray:
    """sign(x) * log(1 + |x|), elementwise; NaN stays NaN (heavy-tailed counts -> near-normal scale)."""
    return np.sign(X) * np.log1p(np.abs(X))


def _baselines():
    """Reference models for CV, each a fresh scikit-learn estimator per fold (never saved).

    - logistic_regression: signed log1p of every column (calls, SMS, data, ARPU are heavy-tailed),
      median imputation plus one missing-indicator per column with gaps (no voice, no billing or no
      data records are informative on the Sichuan data), standardised, L2 (C = 0.3, fixed a priori).
    - gradient_boosted_tree: scikit-learn defaults after median imputation (the FACTS.md reference)."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler
    return {
        "logistic_regression": lambda: make_pipeline(
            FunctionTransformer(signed_log1p), SimpleImputer(strategy="median", add_indicator=True),
            StandardScaler(), LogisticRegression(C=0.3, max_iter=3000)),
        "gradient_boosted_tree": lambda: make_pipeline(SimpleImputer(strategy="median"),
                                                       GradientBoostingClassifier(random_state=0)),
    }


def cross_validate(table: FeatureTable, config: TeacherConfig | None = None, folds: int = 5, seed: int = 42,
                   baselines: bool = True) -> dict:
    """K-fold CV of the teacher (and baselines on the same folds): AUC, recall at 1 % FPR, oof scores."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    if table.y is None:
        raise TeacherError("cross-validation needs labels")
    cfg = config or TeacherConfig()
    y = table.y
    models = {"teacher": None}
    if baselines:
        models.update(_baselines())
    oof = {k: np.zeros(len(y)) for k in models}
    secs = {k: 0.0 for k in models}
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(table.X, y):
        sub = FeatureTable(ids=[table.ids[i] for i in tr], names=table.names, X=table.X[tr], y=y[tr])
        t0 = time.time()
        oof["teacher"][te] = fit(sub, cfg).score_matrix(table.X[te])
        secs["teacher"] += time.time() - t0
        for name, make in models.items():
            if make is None:
                continue
            t0 = time.time()
            oof[name][te] = make().fit(table.X[tr], y[tr]).predict_proba(table.X[te])[:, 1]
            secs[name] += time.time() - t0
    result = {name: {"auc": float(roc_auc_score(y, s)), "recall_at_1pct_fpr": recall_at_fpr(y, s),
                     "seconds": round(secs[name], 2)} for name, s in oof.items()}
    return {"folds": folds, "rows": len(y), "positives": int(y.sum()), "models": result, "oof": oof}


def repeated_cv(table: FeatureTable, config: TeacherConfig | None = None, folds: int = 5,
                seeds: tuple[int, ...] = (42, 1, 2, 3, 4), baselines: bool = True, progress=None) -> dict:
    """Repeated stratified K-fold CV: one `cross_validate` per seed (new folds and, for the teacher,
    a new LightGBM seed), every model on the same folds within a seed.

    Returns {"folds", "rows", "positives", "seeds", "per_seed": {model: [{"seed", "auc",
    "recall_at_1pct_fpr", "seconds"}, ...]}, "summary": {model: {"auc_mean", "auc_std",
    "recall_mean", "recall_std"}}, "paired": {model: {"auc_diff_mean", "auc_diff_std",
    "recall_diff_mean", "recall_diff_std", "auc_wins"}}} where "paired" is teacher minus that model,
    seed by seed (same folds), std = sample standard deviation over seeds (0 with one seed).
    On the Sichuan data a model's 5-fold AUC moves by 0.0003-0.0006 (sample std) with the seed alone,
    so single-seed gains of that size are noise.
    `progress(seed, models)` is called after each seed."""
    if not seeds:
        raise TeacherError("repeated_cv needs at least one seed")
    base = config or TeacherConfig()
    per_seed: dict[str, list[dict]] = {}
    for s in seeds:
        cfg = TeacherConfig.from_dict({**base.to_dict(), "seed": int(s)})
        res = cross_validate(table, cfg, folds=folds, seed=int(s), baselines=baselines)
        for name, m in res["models"].items():
            per_seed.setdefault(name, []).append({"seed": int(s), **m})
        if progress is not None:
            progress(int(s), res["models"])

    def std(a):
        return float(np.std(a, ddof=1)) if len(a) > 1 else 0.0

    summary, paired = {}, {}
    t_auc = np.array([r["auc"] for r in per_seed["teacher"]])
    t_rec = np.array([r["recall_at_1pct_fpr"] for r in per_seed["teacher"]])
    for name, rows in per_seed.items():
        auc = np.array([r["auc"] for r in rows])
        rec = np.array([r["recall_at_1pct_fpr"] for r in rows])
        summary[name] = {"auc_mean": float(auc.mean()), "auc_std": std(auc),
                         "recall_mean": float(rec.mean()), "recall_std": std(rec)}
        if name != "teacher":
            paired[name] = {"auc_diff_mean": float((t_auc - auc).mean()), "auc_diff_std": std(t_auc - auc),
                            "recall_diff_mean": float((t_rec - rec).mean()), "recall_diff_std": std(t_rec - rec),
                            "auc_wins": int((t_auc > auc).sum())}
    return {"folds": folds, "rows": len(table.ids), "positives": int(table.y.sum()), "seeds": [int(s) for s in seeds],
            "per_seed": per_seed, "summary": summary, "paired": paired}


def oof_scores(table: FeatureTable, config: TeacherConfig | None = None, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold teacher scores for the labelled rows (soft targets that never saw their own label)."""
    return cross_validate(table, config, folds=folds, seed=seed, baselines=False)["oof"]["teacher"]


def write_scores(path, ids: list[str], scores: np.ndarray, id_column: str = "id") -> Path:
    """Write `id,score` CSV (score = probability of harmful)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([id_column, "score"])
        for i, s in zip(ids, scores):
            w.writerow([i, "" if math.isnan(s) else f"{s:.6f}"])
    return path
