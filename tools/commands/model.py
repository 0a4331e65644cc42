"""`callmark teacher fit/score/cv` and `callmark model train/evaluate/gate/replay`: thin click layer."""
from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import click

from trainer.evaluate import GATE_MARGIN, MIN_GAIN

GOLD_HELP = ("The --truth file is a gold set (audited harmful and honest numbers; columns number,category,"
             "harmful, and first_day for a recycled number's new owner): evaluate only the callers it lists "
             "instead of counting every unlisted caller as honest.")


def _clean_errors(fn):
    """Turn the library's input errors into one-line CLI errors (no tracebacks)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from callmark.errors import CallmarkError
        from trainer.features import FeatureInputError
        from trainer.model.teacher import TeacherError
        from trainer.evaluate import ReleaseGateError

        errors = (CallmarkError, FeatureInputError, TeacherError, ReleaseGateError, OSError)
        try:
            from trainer.model.student import ArtefactCheckError, StudentError
            from trainer.model.convert import ConversionError
            errors += (ArtefactCheckError, StudentError, ConversionError)
        except ImportError:  # pragma: no cover - training extras missing
            pass
        try:
            return fn(*args, **kwargs)
        except errors as exc:
            raise click.ClickException(str(exc)) from None
    return wrapper


@click.group("teacher")
def teacher_group():
    """Server-side call-behaviour teacher (LightGBM blend) on per-number feature tables.

    Example: callmark teacher cv --table ../shared/data/sichuan-cdr/train.csv --id-column phone_no_m --label-column label --folds 3
    """


@teacher_group.command("fit")
@click.option("--table", required=True, type=click.Path(dir_okay=False), help="Per-number CSV (numeric columns = features).")
@click.option("--id-column", required=True, help="Column holding the number / id.")
@click.option("--label-column", required=True, help="Column holding 0/1 (1 = harmful).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory to write the teacher into.")
@click.option("--seed", default=0, show_default=True, help="Random seed.")
@_clean_errors
def teacher_fit(table, id_column, label_column, out, seed):
    """Fit the teacher on a labelled feature table.

    Example: callmark teacher fit --table ../shared/data/sichuan-cdr/train.csv --id-column phone_no_m --label-column label --out var/teacher
    """
    from trainer.model import teacher

    t = teacher.read_table(table, id_column, label_column)
    model = teacher.fit(t, teacher.TeacherConfig(seed=seed))
    model.save(out)
    click.echo(json.dumps({"out": str(out), "features": len(t.names), **model.meta}))


@teacher_group.command("score")
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False), help="Teacher directory from `teacher fit`.")
@click.option("--table", required=True, type=click.Path(dir_okay=False), help="Per-number CSV to score.")
@click.option("--id-column", required=True, help="Column holding the number / id.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output CSV with columns id,score.")
@click.option("--allow-missing-features", is_flag=True,
              help="Score a table lacking some of the teacher's feature columns (as missing values); "
                   "by default such a table is refused with the list of missing columns.")
@_clean_errors
def teacher_score(model_dir, table, id_column, out, allow_missing_features):
    """Score numbers: writes id,score (score = probability of harmful).

    Example: callmark teacher score --model var/teacher --table ../shared/data/sichuan-cdr/train.csv --id-column phone_no_m --out var/scores.csv
    """
    from trainer.model import teacher

    model = teacher.load(model_dir)
    t = teacher.read_table(table, id_column)
    teacher.write_scores(out, t.ids, model.score(t, allow_missing=allow_missing_features))
    click.echo(json.dumps({"out": str(out), "rows": len(t.ids)}))


@teacher_group.command("cv")
@click.option("--table", required=True, type=click.Path(dir_okay=False), help="Labelled per-number CSV.")
@click.option("--id-column", required=True, help="Column holding the number / id.")
@click.option("--label-column", required=True, help="Column holding 0/1 (1 = harmful).")
@click.option("--folds", default=5, show_default=True, help="Cross-validation folds.")
@click.option("--seeds", default="42", show_default=True,
              help="Comma-separated CV seeds; several = repeated K-fold with mean and std (e.g. 42,1,2,3,4).")
@_clean_errors
def teacher_cv(table, id_column, label_column, folds, seeds):
    """Cross-validate the teacher beside logistic regression and a gradient-boosted tree.

    Prints JSON: per-seed AUC and recall at 1 % FPR of every model (same folds within a seed), their
    mean and std over seeds, and teacher minus each baseline seed by seed.

    Example: callmark teacher cv --table ../shared/data/sichuan-cdr/train.csv --id-column phone_no_m --label-column label --folds 3
    """
    from trainer.model import teacher

    try:
        seed_list = tuple(int(x) for x in seeds.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{seeds!r} is not a comma-separated list of integers, e.g. 42,1,2",
                                 param_hint="--seeds") from None
    if not seed_list:
        raise click.BadParameter("give at least one seed, e.g. 42", param_hint="--seeds")
    res = teacher.repeated_cv(teacher.read_table(table, id_column, label_column), folds=folds, seeds=seed_list)
    click.echo(json.dumps(res, indent=2))


@click.group("model")
def model_group():
    """On-device student model: train, evaluate, gate, replay test vectors.

    Example: callmark model replay --model var/demo/builds/v1/model
    """


@model_group.command("train")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False), help="Simulator output directory.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Model directory to write.")
@click.option("--labels", "labels_csv", type=click.Path(dir_okay=False), help="Consensus LABELS.csv used as the pack.")
@click.option("--epochs", default=12, show_default=True, help="Maximum training epochs (early stopping on a validation split).")
@click.option("--no-distill", is_flag=True, help="Train on truth only (no teacher soft scores).")
@click.option("--evaluate/--no-evaluate", "do_eval", default=True, show_default=True, help="Write report.md afterwards.")
@click.option("--published", type=click.Path(file_okay=False), help="Published model directory to compare against.")
@click.option("--calls", "calls_file", type=click.Path(dir_okay=False), help="Call records (CSV or Parquet, schema in "
              "docs/feature-contract.md) instead of DATA/calls.csv; DATA then holds truth.csv (+ tags.jsonl, verified.csv).")
@click.option("--calls-map", default=None, help="Schema name=your column, e.g. caller=other_party,start=begin_time.")
@_clean_errors
def model_train(data_dir, out, labels_csv, epochs, no_distill, do_eval, published, calls_file, calls_map):
    """Train the student, convert to int8 TFLite, check it, emit test vectors (and a report).

    Example: callmark model train --data var/demo/sim --out var/model --epochs 2
    """
    from trainer.model.student import StudentConfig, train_student

    if calls_file or calls_map:
        data_dir = str(_stage_calls(data_dir, calls_file, calls_map, Path(out) / "training"))

    path = train_student(data_dir, out, StudentConfig(epochs=epochs), labels_csv=labels_csv, distill=not no_distill)
    metrics = json.loads((Path(path) / "metrics.json").read_text())
    click.echo(json.dumps({"out": str(path), "size_bytes": metrics["size_bytes"],
                           "artefact_check": metrics["artefact_check"]}))
    if do_eval:  # LiteRT in a fresh process: TensorFlow is loaded in this one
        args = [sys.executable, "-c", "import sys, json; from trainer.evaluate import evaluate; "
                "m = evaluate(sys.argv[1], sys.argv[2], published_dir=sys.argv[3] or None, labels_csv=sys.argv[4] or None); "
                "print(json.dumps({k: m[k] for k in ('risk_auc', 'recall_not_in_pack', 'gain_over_pack', 'risk_ece')}))",
                str(path), str(data_dir), published or "", labels_csv or ""]
        res = subprocess.run(args, capture_output=True, text=True)
        if res.returncode != 0:
            raise click.ClickException(f"evaluation failed: {res.stderr.strip().splitlines()[-1:]}")
        click.echo(res.stdout.strip())


def _stage_calls(data_dir: str, calls_file: str | None, calls_map: str | None, stage: Path) -> Path:
    """A training directory: DATA's truth/tags/verified files beside the records converted to calls.csv."""
    import os

    from trainer import call_records

    stage.mkdir(parents=True, exist_ok=True)
    for name in ("truth.csv", "tags.jsonl", "verified.csv"):
        src, dst = Path(data_dir) / name, stage / name
        if src.is_file() and not dst.exists():
            os.symlink(src.resolve(), dst)
    if not (stage / "truth.csv").exists():
        raise click.ClickException(f"{data_dir} has no truth.csv (number,category,harmful): the student's targets")
    call_records.write_canonical_csv(calls_file or Path(data_dir) / "calls.csv", stage / "calls.csv",
                                     call_records.parse_mapping(calls_map))
    return stage


@model_group.command("evaluate")
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False), help="Model directory.")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Calls to score: calls.csv (+ truth.csv, tags.jsonl, verified.csv), e.g. a build's training/.")
@click.option("--published", type=click.Path(file_okay=False), help="Published model directory to compare against.")
@click.option("--labels", "labels_csv", type=click.Path(dir_okay=False), help="Consensus LABELS.csv used as the pack.")
@click.option("--truth", "truth_csv", type=click.Path(dir_okay=False), help="Truth file instead of DATA/truth.csv.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Write into a copy of the model here (replaced on a rerun) instead of the model dir itself.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--gold", is_flag=True, help=GOLD_HELP)
@_clean_errors
def model_evaluate(model_dir, data_dir, published, labels_csv, truth_csv, out, as_json, gold):
    """Write report.md + PNGs (ROC/PR per class, confusion, calibration, thresholds) and the phone's
    warn threshold into the model dir, or into a copy of it with --out (a build's own report and
    contract stay as the build left them). With a build's training folder and the simulation's truth
    (the example) the calls and figures are the build's own; without --truth, DATA/truth.csv (a
    build's release labels: untagged callers count as honest).

    Example: callmark model evaluate --model var/demo/builds/v2/model --data var/demo/builds/v2/training --truth var/demo/sim/truth.csv --published var/demo/builds/v1/model --out var/eval/v2
    """
    from trainer.evaluate import evaluate

    target = _working_copy(model_dir, out)
    m = evaluate(target, data_dir, published_dir=published, labels_csv=labels_csv, truth_csv=truth_csv, gold=gold)
    if as_json:
        click.echo(json.dumps({k: m[k] for k in ("events", "risk_auc", "risk_auc_callers", "recall_not_in_pack",
                                                 "gain_over_pack", "risk_ece", "warn_risk", "pack_alone", "pack_plus_model", "published")}))
        return
    click.echo(f"{m['events']:,} held-out calls, scored against {m['data']['truth']}: " + _figures(m))
    if m.get("published"):
        click.echo(f"published model on the same calls: risk AUC {_num(m['published']['risk_auc'])} per call, "
                   f"{_num(m['published']['risk_auc_callers'])} per caller, recall not in "
                   f"pack {_num(m['published']['recall_not_in_pack'])}, risk ECE {_num(m['published']['risk_ece'])}")
    click.echo(f"report: {Path(target) / 'report.md'} (+ report.html)")


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _figures(m: dict) -> str:
    gain = m.get("gain_over_pack")
    return (f"risk AUC {_num(m.get('risk_auc'))} per call, {_num(m.get('risk_auc_callers'))} per caller, "
            f"recall not in pack {_num(m.get('recall_not_in_pack'))} at "
            f"<= {m.get('max_fpr', 0.005):.1%} FPR, pack + model adds {'n/a' if gain is None else f'{gain:+.3f}'} "
            f"recall over the pack alone, risk ECE {_num(m.get('risk_ece'))}, warn_risk {_num(m.get('warn_risk'))}")


EVALUATION_COPY = ".callmark-evaluation-copy"  # marks a directory `--out` made (safe to replace)


def _working_copy(model_dir: str, out: str | None) -> str:
    """The directory evaluate/gate write into: MODEL itself, or a fresh copy of it at OUT. An OUT
    that exists and was not made by --out is refused (it may be a build's own model)."""
    import shutil

    if out is None:
        return model_dir
    src, dst = Path(model_dir), Path(out)
    if not (src / "contract.json").is_file():
        raise click.ClickException(f"{src}/contract.json is missing; is {src} a model directory?")
    if dst.resolve() == src.resolve():
        raise click.ClickException("--out must differ from the model directory (leave --out out to write into it)")
    if dst.exists() and any(dst.iterdir()) and not (dst / EVALUATION_COPY).is_file():
        raise click.ClickException(f"{dst} exists and was not made by --out; pass a new directory")
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    (dst / EVALUATION_COPY).write_text(f"copy of {src} for an evaluation; safe to delete\n")
    return str(dst)


@model_group.command("gate")
@click.option("--candidate", required=True, type=click.Path(file_okay=False), help="Candidate model directory.")
@click.option("--published", type=click.Path(file_okay=False), help="Published model directory (none: first model).")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Both models are scored on this directory's held-out calls, in this run.")
@click.option("--truth", "truth_csv", type=click.Path(dir_okay=False), help="Truth file instead of DATA/truth.csv.")
@click.option("--margin", default=GATE_MARGIN, show_default=True,
              help="Allowed drop against the published model (the margin `callmark build` uses).")
@click.option("--min-gain", default=MIN_GAIN, show_default=True, help="Recall over pack alone a model must add.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Write the verdict into a copy of the candidate here (replaced on a rerun), not the candidate.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.option("--gold", is_flag=True, help=GOLD_HELP)
@_clean_errors
def model_gate(candidate, published, data_dir, truth_csv, margin, min_gain, out, as_json, gold):
    """Refuse a candidate that breaks the feature contract, adds too little over the pack alone, or
    regresses beyond --margin against the published model on the same calls (exit 1 with every
    reason). The verdict and report are written into the candidate (or its copy at --out) only.
    The example repeats the demo build's own gate (its calls, the simulation's truth).

    Example: callmark model gate --candidate var/demo/builds/v2/model --published var/demo/builds/v1/model --data var/demo/builds/v2/training --truth var/demo/sim/truth.csv --out var/eval/v2-gate
    """
    from trainer.evaluate import GATE_METRIC_NAMES, ReleaseGateError, gate

    target = _working_copy(candidate, out)
    try:
        verdict = gate(target, published, margin, data_dir, truth_csv=truth_csv, min_gain=min_gain, gold=gold)
    except ReleaseGateError as exc:
        if exc.verdict is None:
            raise
        if as_json:
            click.echo(json.dumps(exc.verdict))
        where = "" if str(target) == str(candidate) else f" (verdict and report in {target})"
        raise ReleaseGateError(f"release gate refused {candidate}{where}: " + "; ".join(exc.verdict["reasons"]),
                               exc.verdict) from None
    if as_json:
        click.echo(json.dumps(verdict))
        return
    compared = "; ".join(f"{GATE_METRIC_NAMES.get(k, k)} {_num(v['candidate'])} vs published {_num(v['published'])}"
                         + (f", 90 % CI of the difference [{v['low']:+.3f}, {v['high']:+.3f}]" if v.get("low") is not None
                            else "")
                         for k, v in verdict["compared"].items())
    click.echo(f"accepted: {candidate}" + (f" ({compared}; margin {margin})" if compared else
                                           " (no published model: the absolute bar only)")
               + f"; verdict and report in {target}")


@model_group.command("replay")
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False), help="Model directory.")
@click.option("--atol", default=0.02, show_default=True, help="Largest allowed difference per output.")
@click.option("--json", "as_json", is_flag=True, help="Print {\"vectors\": N, \"max_diff\": D} instead of a sentence.")
@_clean_errors
def model_replay(model_dir, atol, as_json):
    """Replay test_vectors.json through LiteRT, as a phone would; exit 1 naming the first vector that
    differs by more than --atol.

    Example: callmark model replay --model var/demo/builds/v1/model
    """
    from callmark.model import replay_test_vectors

    r = replay_test_vectors(model_dir, atol=atol)
    click.echo(json.dumps(r) if as_json else
               f"{r['vectors']} test vectors match through LiteRT (largest difference {r['max_diff']:.4f}, "
               f"allowed {atol})")


COMMANDS = {"teacher": teacher_group, "model": model_group}
