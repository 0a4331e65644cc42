"""Elkan & Noto's positive-unlabelled correction against ground truth on a `callmark demo` output.

  python -m tools.bench.pu_calibration --demo var/demo            # every build under var/demo/builds

Per build: re-fits the teacher exactly as the build did (`pipeline.teacher_stage`, same seed,
out-of-fold scores), estimates c = P(tagged | harmful) as the mean teacher score over the callers it was fitted
on as harmful (all, held-out only, published only), and prints the risk ECE on held-out callers'
calls against the simulation's ground truth before and after g / c, for the teacher (per caller,
weighted by calls) and for the build's student (LiteRT, the evaluation's calls). Also prints how
far the data are from the PU assumption (labelled callers that are honest) and, as a diagnostic
bound only, the ECE of a Platt map fitted on the ground truth itself and of an isotonic map
cross-fitted on it by caller. TensorFlow is not imported
here (the student runs on LiteRT; the teacher is a tree model).
"""
from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np


def truth_by_number(truth_csv: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(truth_csv, newline="") as f:
        for row in csv.DictReader(f):
            out[row["number"]] = max(out.get(row["number"], 0), int(row["harmful"]))
    return out


def run_build(build: Path, truth_csv: Path, seed: int) -> None:
    from callmark.categories import HARMFUL_KEYS
    from trainer import evaluate, features, pipeline, pu, training_targets
    from trainer.holdout import held_out

    truth = truth_by_number(truth_csv)
    cfg = pipeline.BuildConfig(seed=seed)
    table = features.aggregate_calls(build / "training" / "calls.csv")
    y = training_targets.consensus_targets(table.ids, build / "labels.csv", cfg.region,
                                          cfg.weak_label_min_confidence)
    with tempfile.TemporaryDirectory() as tmp:
        _, scores = pipeline.teacher_stage(table, build / "labels.csv", Path(tmp), cfg)
    s = np.asarray([scores[i] for i in table.ids])
    gt = np.asarray([truth.get(i, 0) for i in table.ids])
    ho = np.asarray([held_out(i) for i in table.ids])
    calls = table.column("calls").astype(int)
    with open(build / "labels.csv", newline="") as f:
        published = {r["number"] for r in csv.DictReader(f) if r.get("published") == "1"
                     and r["category"] in HARMFUL_KEYS}
    pub = np.asarray([i in published for i in table.ids])

    def t_ece(p):  # teacher: held-out callers, each weighted by its calls
        return evaluate.ece(np.repeat(gt[ho], calls[ho]).astype(float), np.repeat(p[ho], calls[ho]))

    pos = y == 1
    print(f"\n{build.name}: callers {len(y)}, fitted as harmful {int(pos.sum())} (of them honest in truth "
          f"{int((pos & (gt == 0)).sum())}), harmful in truth {int(gt.sum())} (fitted as harmful "
          f"{int((pos & (gt == 1)).sum())})")
    ev = evaluate.evaluation_events(str(build / "training"), truth_csv=str(truth_csv))
    r = evaluate.score_events(str(build / "model"), ev)["risk"]
    yc = ev.harmful.astype(float)
    print(f"  {'c estimated on':34s} {'c':>6s} {'teacher ECE':>18s} {'student ECE':>18s}")
    print(f"  {'(no correction)':34s} {1.0:6.3f} {t_ece(s):18.4f} {evaluate.ece(yc, r):18.4f}")
    for name, lab in [("callers fitted as harmful", pos), ("held-out callers fitted as harmful", pos & ho),
                      ("published harmful callers", pos & pub)]:
        c = pu.label_frequency(s, lab)
        print(f"  {name:34s} {c:6.3f} {t_ece(pu.correct(s, c)):18.4f} {evaluate.ece(yc, pu.correct(r, c)):18.4f}")
    from sklearn.linear_model import LogisticRegression
    z = np.log(np.clip(r, 1e-4, 1 - 1e-4) / np.clip(1 - r, 1e-4, 1)).reshape(-1, 1)
    lr = LogisticRegression(C=1e6).fit(z, yc)
    print(f"  diagnostic only: Platt map of the student's risk fitted on these calls' ground truth "
          f"(a={lr.coef_[0, 0]:.2f}, c={lr.intercept_[0]:+.2f}): ECE {evaluate.ece(yc, lr.predict_proba(z)[:, 1]):.4f}")
    import zlib

    from sklearn.isotonic import IsotonicRegression
    fold = np.asarray([zlib.crc32(c.encode()) % 2 for c in ev.caller])
    iso = np.zeros_like(r)
    for k in (0, 1):  # cross-fitted by caller: a caller's calls are mapped by a fit without them
        fit = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(r[fold != k], yc[fold != k])
        iso[fold == k] = fit.predict(r[fold == k])
    print(f"  diagnostic only: isotonic map on the ground truth, cross-fitted by caller (2 folds): "
          f"ECE {evaluate.ece(yc, iso):.4f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", default="var/demo", help="a `callmark demo` output folder (builds/, sim/truth.csv)")
    ap.add_argument("--seed", type=int, default=7, help="the build's seed (`callmark demo --seed`, default 7)")
    args = ap.parse_args(argv)
    demo = Path(args.demo)
    truth_csv = demo / "sim" / "truth.csv"
    builds = sorted((b for b in (demo / "builds").glob("v*") if (b / "model" / "model.tflite").exists()),
                    key=lambda b: int(b.name[1:]))
    if not truth_csv.exists() or not builds:
        raise SystemExit(f"{demo}: no sim/truth.csv or no builds/v*/model; run `callmark demo` first")
    for b in builds:
        run_build(b, truth_csv, args.seed)


if __name__ == "__main__":
    main()
