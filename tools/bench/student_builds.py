"""Student stability across a `callmark demo`'s builds: retrain each build's student on that build's
own inputs and score every retrained student on the same held-out calls (what the release gate does).

  python -m tools.bench.student_builds --demo var/demo --out /tmp/sb                     # defaults
  python -m tools.bench.student_builds --demo var/demo --out /tmp/sb --config '{"learning_rate": 0.003}'

Per build (`DEMO/builds/v*`): the teacher is re-fitted as the build did (`pipeline.teacher_stage`,
same seed, out-of-fold scores), then `train_student` runs on `training/` with the build's student
settings (`distill_weight` 1, `soft_classes`, the seed) plus `--config` overrides, in a child process
(TensorFlow never shares a process with LiteRT). Printed per build: epochs run, best epoch, the
validation callers' risk loss per epoch, size; then for each build's calls, every retrained student's
risk AUC, recall of harmful calls not in the pack at <= 0.5 % FPR, gain of pack + model over the
pack alone and risk ECE, on held-out callers against the simulation's ground truth (`DEMO/sim/
truth.csv`), via `trainer.evaluate.compute_metrics` (LiteRT). The last line is the gate's verdict for
the last build's student against the one before, on the last build's calls (`quality_problems`).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

TRAIN = """
import json, sys
from pathlib import Path
from trainer import features, pipeline
from trainer.model import student
build, out, seed, extra = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
cfg = pipeline.BuildConfig(seed=seed)
table = features.aggregate_calls(build / "training" / "calls.csv")
_, scores = pipeline.teacher_stage(table, build / "labels.csv", Path(out) / "teacher", cfg)
conf = student.StudentConfig.from_dict(dict({"distill_weight": 1.0, "soft_classes": True, "seed": seed}, **extra))
student.train_student(str(build / "training"), out, conf, teacher_scores=scores)
"""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", required=True, type=Path, help="a finished `callmark demo` work directory")
    ap.add_argument("--out", required=True, type=Path, help="directory for the retrained students")
    ap.add_argument("--config", default="{}", help="StudentConfig overrides as JSON")
    ap.add_argument("--seed", type=int, default=7, help="the demo's seed (its builds' seed)")
    args = ap.parse_args(argv)
    builds = sorted((args.demo / "builds").glob("v*"), key=lambda p: int(p.name[1:]))
    if not builds:
        sys.exit(f"{args.demo}/builds has no v* build: run `callmark demo` first")
    json.loads(args.config)  # fail early on bad JSON
    models = {}
    for b in builds:
        out = args.out / b.name
        res = subprocess.run([sys.executable, "-c", TRAIN, str(b), str(out), str(args.seed), args.config],
                             capture_output=True, text=True)
        if res.returncode:
            sys.exit(f"training on {b} failed: {res.stderr.strip().splitlines()[-1:]}")
        m = json.loads((out / "metrics.json").read_text())
        t = m["training"]
        print(json.dumps({"build": b.name, "epochs_run": t["epochs_run"], "best_epoch": t["best_epoch"],
                          "val_risk_loss": t["val_risk_loss"], "size_bytes": m["size_bytes"],
                          "artefact_check": m["artefact_check"]["passed"]}))
        models[b.name] = out

    from trainer import evaluate
    truth = args.demo / "sim" / "truth.csv"
    scored = {}
    for b in builds:
        ev = evaluate.evaluation_events(str(b / "training"), truth_csv=str(truth))
        flags = evaluate.phone_flags(ev)
        for name, model in models.items():
            m = evaluate.compute_metrics(ev, evaluate.score_events(model, ev), pack_flag=flags)
            scored[(b.name, name)] = m
            print(json.dumps({"calls_of": b.name, "student_of": name, "events": m["events"],
                              **{k: round(m[k], 4) for k in ("risk_auc", "recall_not_in_pack", "gain_over_pack",
                                                             "risk_ece", "pack_plus_model_recall")}}))
    if len(builds) > 1:
        last, prev = builds[-1].name, builds[-2].name
        problems, _ = evaluate.quality_problems(scored[(last, last)], scored[(last, prev)], evaluate.GATE_MARGIN,
                                                evaluate.MIN_GAIN)
        print(json.dumps({"gate": f"{last} vs {prev} on {last}'s calls", "accepted": not problems,
                          "reasons": problems}))


if __name__ == "__main__":
    main()
