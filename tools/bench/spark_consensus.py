"""Consensus on N synthetic events: numpy engine vs Spark engine (local[2]), time and peak memory.

Both engines read the same tags CSV (`tools.bench.consensus.write_stream`: N events, N/8 numbers,
N/20 reporters, 18 categories, 60 days) and write LABELS.csv, each in a fresh child process. Peak
memory is the largest sum of RSS over the child's whole process tree (for Spark: the Python driver,
the JVM and its Python workers), sampled every 0.2 s from /proc. Wall time includes the Spark
session start (reported separately). The run ends with the labels' agreement between the engines.
`--inputs DIR` keeps the generated streams there (DIR/tags-<N>.csv) and reuses them on the next run
(10 M events: a 0.5 GB CSV that takes minutes to write).

Example: python -m tools.bench.spark_consensus --events 1000000 --events 10000000 --inputs /tmp/cm
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[2]


def _tree(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _rss_mib(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_child(args: list[str], timeout_s: float | None = None) -> dict:
    """Run `python -m tools.bench.spark_consensus --child ...`; its last JSON line plus peak tree
    RSS. After `timeout_s` the child's whole process group is killed and the result says so (with
    the last phase the child reported)."""
    proc = subprocess.Popen([sys.executable, "-m", "tools.bench.spark_consensus", *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    peak, stop = [0.0], threading.Event()
    t0 = time.perf_counter()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_mib(_tree(proc.pid)))
            time.sleep(0.2)
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)   # the JVM and Python workers too
        out, _ = proc.communicate()
    stop.set()
    t.join()
    lines = [json.loads(x) for x in out.strip().splitlines() if x.startswith("{")]
    if timed_out:
        res = {"engine": args[-3], "timed_out": True, "wall_s": round(time.perf_counter() - t0, 1),
               "last_phase": lines[-1] if lines else None}
    elif proc.returncode:
        raise RuntimeError(f"child {args} failed ({proc.returncode})")
    else:
        res = lines[-1]
    res["peak_tree_rss_mib"] = round(peak[0])
    return res


def child(engine: str, tags: str, out: str, master: str, driver_memory: str) -> dict:
    from trainer import consensus as C
    from trainer import ingest as I
    t0 = time.perf_counter()
    if engine == "numpy":
        events, _ = I.read_tags(tags)
        t1 = time.perf_counter()
        res = C.run(events, C.ConsensusConfig())
        start_s = 0.0
    else:
        from trainer import spark_engine as S
        spark = S.spark_session(master, driver_memory=driver_memory)
        t1 = time.perf_counter()
        start_s = t1 - t0
        print(json.dumps({"phase": "session started", "at_s": round(start_s, 1)}), flush=True)
        cfg = C.ConsensusConfig()
        red = S.reduce_events(S.parse_events(S.read_events(spark, [tags])), cfg, row_offset=2)
        t_red = time.perf_counter()
        print(json.dumps({"phase": "votes on the driver", "at_s": round(t_red - t0, 1)}), flush=True)
        res = S.run_reduced(red, cfg)
        phases = {"spark_jobs_s": round(t_red - t1, 1),
                  "driver_model_s": round(time.perf_counter() - t_red, 1)}
    if engine == "numpy":
        phases = {"ingest_s": round(t1 - t0, 1), "model_s": round(time.perf_counter() - t1, 1)}
    res.write_csv(out)
    t2 = time.perf_counter()
    return {"engine": engine, "wall_s": round(t2 - t0, 1), "spark_start_s": round(start_s, 1),
            **phases, "numbers": len(res), "published": int(res.published.sum())}


def agreement(a_csv: str, b_csv: str) -> dict:
    import csv
    a = {r["number"]: r for r in csv.DictReader(open(a_csv))}
    b = {r["number"]: r for r in csv.DictReader(open(b_csv))}
    same = sum(1 for k, r in a.items() if k in b and r["category"] == b[k]["category"]
               and r["published"] == b[k]["published"])
    gap = max((abs(float(r["confidence"]) - float(b[k]["confidence"])) for k, r in a.items()
               if k in b), default=0.0)
    return {"numbers_a": len(a), "numbers_b": len(b), "same_share": round(same / max(len(a), 1), 6),
            "max_conf_gap": gap}


@click.command()
@click.option("--events", "sizes", multiple=True, type=int, default=[1_000_000], show_default=True,
              help="events per run (repeat the option for several sizes)")
@click.option("--master", default="local[2]", show_default=True, help="Spark master")
@click.option("--driver-memory", default="6g", show_default=True, help="spark.driver.memory")
@click.option("--inputs", "inputs_dir", default=None, type=click.Path(file_okay=False),
              help="keep the generated tags CSVs here and reuse them (default: a temporary dir)")
@click.option("--spark-timeout", default=0, type=float,
              help="kill a Spark run after this many seconds and report it as unfinished (0: none)")
@click.option("--child", "child_args", nargs=3, default=None, hidden=True)
def main(sizes, master, driver_memory, inputs_dir, spark_timeout, child_args):
    """numpy vs Spark consensus: time and peak memory on synthetic streams.

    Example: python -m tools.bench.spark_consensus --events 200000
    """
    if child_args:
        engine, tags, out = child_args
        print(json.dumps(child(engine, tags, out, master, driver_memory)))
        return
    from tools.bench.consensus import write_stream
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as d:
            tags = os.path.join(inputs_dir or d, f"tags-{n}.csv")
            if inputs_dir:
                os.makedirs(inputs_dir, exist_ok=True)
            if not os.path.exists(tags):
                write_stream(tags + ".part", n, seed=1)
                os.replace(tags + ".part", tags)
            size = os.path.getsize(tags) / 2**20
            load0 = os.getloadavg()[0]
            a = run_child(["--child", "numpy", tags, os.path.join(d, "a.csv")])
            print(json.dumps({"events": n, "numpy": a}), flush=True)
            b = run_child(["--master", master, "--driver-memory", driver_memory,
                           "--child", "spark", tags, os.path.join(d, "b.csv")],
                          timeout_s=spark_timeout or None)
            agree = ({"same_share": float("nan"), "max_conf_gap": float("nan")}
                     if b.get("timed_out") else
                     agreement(os.path.join(d, "a.csv"), os.path.join(d, "b.csv")))
            rows.append((n, size, a, b, agree, load0, os.getloadavg()[0]))
            print(json.dumps({"events": n, "csv_mib": round(size), "numpy": a, "spark": b,
                              "agreement": agree}), flush=True)
    print(f"\n{'events':>11} {'CSV MiB':>8} {'numpy s':>8} {'numpy MiB':>10} {'spark s':>8} "
          f"{'(start)':>8} {'spark MiB':>10} {'time x':>7} {'same':>8} {'max gap':>8}")
    for n, size, a, b, agree, l0, l1 in rows:
        late = ">" if b.get("timed_out") else " "
        print(f"{n:11,d} {size:8.0f} {a['wall_s']:8.1f} {a['peak_tree_rss_mib']:10d} "
              f"{late}{b['wall_s']:7.1f} {b.get('spark_start_s', float('nan')):8.1f} "
              f"{b['peak_tree_rss_mib']:10d} "
              f"{late}{b['wall_s'] / a['wall_s']:6.1f} {agree['same_share']:8.4f} "
              f"{agree['max_conf_gap']:8.1e}   (load {l0:.1f} -> {l1:.1f} on {os.cpu_count()} cpus)")


if __name__ == "__main__":
    main()
