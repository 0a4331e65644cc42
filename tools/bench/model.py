"""Model benchmarks: teacher vs baselines on real operator data, student size and LiteRT latency,
recall on calls from numbers not in the pack, and aggregation/training cost at scale.

  python -m tools.bench.model --data ../shared/data/sichuan-cdr/train.csv      # teacher 5-fold CV x 5 seeds
  python -m tools.bench.model --model /tmp/model --sim /tmp/sim                 # student figures
  python -m tools.bench.model --scale 1000000,10000000                         # time + peak memory
Parts run only when their argument is given. TensorFlow is never imported here.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def teacher_cv(path: str, folds: int, seeds: list[int]) -> dict:
    """Repeated stratified K-fold CV of the teacher and its baselines (same folds per seed, one run)."""
    from trainer.model import teacher

    table = teacher.read_table(path, "phone_no_m", "label")
    print(f"teacher CV on {path} ({len(table.ids)} numbers, {int(table.y.sum())} fraud, {folds} folds, "
          f"seeds {','.join(map(str, seeds))})")
    print(f"{'seed':>5s} {'model':24s} {'AUC':>7s} {'recall@1%FPR':>13s} {'seconds':>8s}")

    def show(seed, models):
        for name, m in models.items():
            print(f"{seed:5d} {name:24s} {m['auc']:7.4f} {m['recall_at_1pct_fpr']:13.4f} {m['seconds']:8.1f}", flush=True)

    res = teacher.repeated_cv(table, folds=folds, seeds=tuple(seeds), progress=show)
    print("mean +- std over seeds (sample std):")
    for name, m in res["summary"].items():
        print(f"  {name:24s} AUC {m['auc_mean']:.4f} +- {m['auc_std']:.4f}   recall {m['recall_mean']:.4f} +- {m['recall_std']:.4f}")
    for name, d in res["paired"].items():
        print(f"  teacher - {name:22s} AUC {d['auc_diff_mean']:+.4f} +- {d['auc_diff_std']:.4f} "
              f"(higher in {d['auc_wins']}/{len(seeds)} seeds)   recall {d['recall_diff_mean']:+.4f} +- {d['recall_diff_std']:.4f}")
    return res


def student_latency(model_dir: str, runs: int) -> dict:
    from callmark import model as cm

    runner = cm.ModelRunner(model_dir)
    facts = {"number": "+8613912345678", "hour": 14, "verification": "none", "prior_calls": 1}
    tensors = cm.encode(facts)
    for _ in range(200):
        runner.run(tensors)
    invoke = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        runner.run(tensors)
        invoke.append(time.perf_counter_ns() - t0)
    cm.number_facts.cache_clear()
    full = []
    for i in range(runs):
        f = dict(facts, number=f"+86139{i % 5000:08d}")
        t0 = time.perf_counter_ns()
        runner.score(f)
        full.append(time.perf_counter_ns() - t0)
    # the interpreter alone (what a phone's native code pays), without the Python signature runner
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(Path(model_dir) / "model.tflite"), num_threads=1,  # as ModelRunner
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    ids = {d["name"]: d["index"] for d in it.get_input_details()}
    for name, index in ids.items():
        key = next(k for k in tensors if k in name)
        it.set_tensor(index, tensors[key])
    raw = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        it.invoke()
        raw.append(time.perf_counter_ns() - t0)
    size = (Path(model_dir) / "model.tflite").stat().st_size
    out = {"size_bytes": size, "inputs": len(ids)}
    for name, xs in (("invoke_only", raw), ("signature_run", invoke), ("encode_and_run_uncached", full)):
        a = np.asarray(xs) / 1000.0
        out[name] = {"p50_us": float(np.percentile(a, 50)), "p99_us": float(np.percentile(a, 99))}
    print(f"student {model_dir}: {size} bytes ({size / 1024:.1f} KB, goal <= 64 KB)")
    for name in ("invoke_only", "signature_run", "encode_and_run_uncached"):
        print(f"  {name:26s} p50 {out[name]['p50_us']:8.1f} us   p99 {out[name]['p99_us']:8.1f} us")
    print(f"  ratio signature_run / invoke_only p50: {out['signature_run']['p50_us'] / out['invoke_only']['p50_us']:.1f}x")
    return out


def student_quality(model_dir: str, sim: str) -> dict:
    from trainer.evaluate import evaluate

    m = evaluate(model_dir, sim, plots=False)
    print(f"on {sim}: {m['events']} calls from held-out callers; not in pack: {m['not_in_pack']}")
    print(f"  risk AUC {m['risk_auc']:.4f}; recall of harmful calls not in pack at <= {m['max_fpr']:.1%} FPR: "
          f"{m['recall_not_in_pack']:.4f}")
    print(f"  pack alone:   recall {m['pack_alone']['recall']:.4f}  FPR {m['pack_alone']['fpr']:.4f}")
    print(f"  pack + model: recall {m['pack_plus_model']['recall']:.4f}  FPR {m['pack_plus_model']['fpr']:.4f}")
    return m


_SIM_CHILD = """
import sys
from tools.simulate import simulate
simulate(sys.argv[1], days=14, users=max(300, int(sys.argv[2]) // 400), seed=5, calls_per_day=int(sys.argv[2]) // 14)
"""

# aggregation + teacher fit in their own process, so peak RSS excludes the simulator
_SCALE_CHILD = """
import json, resource, sys, time
from trainer.features import aggregate_calls, number_labels
from trainer.model import teacher
out, t_sim = sys.argv[1], float(sys.argv[2])
t0 = time.time(); table = aggregate_calls(out + "/calls.csv"); t_agg = time.time() - t0
table.y = number_labels(table, out + "/truth.csv")
t0 = time.time(); teacher.fit(table); t_fit = time.time() - t0
print(json.dumps({"calls": table.meta["rows"], "numbers": table.meta["numbers"], "pairs": table.meta["pairs"],
                  "simulate_s": round(t_sim, 1), "aggregate_s": round(t_agg, 1), "teacher_fit_s": round(t_fit, 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def scale(sizes: list[int]) -> list[dict]:
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            res = subprocess.run([sys.executable, "-c", _SIM_CHILD, tmp, str(n)], capture_output=True, text=True)
            t_sim = time.time() - t0
            if res.returncode == 0:
                res = subprocess.run([sys.executable, "-c", _SCALE_CHILD, tmp, str(t_sim)], capture_output=True, text=True)
            if res.returncode != 0:
                print(f"{n}: failed: {res.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(f"{r['calls']:>11,} calls  {r['numbers']:>8,} numbers  aggregate {r['aggregate_s']:7.1f} s "
                  f"({r['calls'] / max(r['aggregate_s'], 1e-9) / 1e3:.0f} k rows/s)  teacher fit {r['teacher_fit_s']:6.1f} s  "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="Sichuan per-number table (teacher CV)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", default="42,1,2,3,4", help="comma-separated CV seeds (repeated K-fold, with --data)")
    ap.add_argument("--model", help="student model directory (size, latency)")
    ap.add_argument("--sim", help="simulator output for recall on numbers not in the pack (with --model)")
    ap.add_argument("--runs", type=int, default=20000)
    ap.add_argument("--scale", help="comma-separated call counts for aggregation/teacher cost")
    ap.add_argument("--json-out", help="write all figures as JSON")
    args = ap.parse_args(argv)
    out: dict = {}
    if args.data:
        out["teacher_cv"] = teacher_cv(args.data, args.folds, [int(x) for x in args.seeds.split(",")])
    if args.model:
        out["student_latency"] = student_latency(args.model, args.runs)
        if args.sim:
            q = student_quality(args.model, args.sim)
            out["student_quality"] = {k: q[k] for k in ("risk_auc", "recall_not_in_pack", "pack_alone",
                                                         "pack_plus_model", "not_in_pack", "events")}
    if args.scale:
        out["scale"] = scale([int(s) for s in args.scale.split(",")])
    if not out:
        ap.error("give at least one of --data, --model, --scale")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
