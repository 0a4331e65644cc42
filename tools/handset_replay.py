"""`Handset.replay`: label a stream of calls (the simulator's calls.csv) and summarise the decisions,
their timings and, given truth.csv, their accuracy against ground truth."""
from __future__ import annotations

import csv
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any


from callmark.rules import FLAGGED_ACTIONS as FLAGGED  # the one definition of a flagged call
from tools.handset_store import HandsetError

CALLS_COLUMNS = ("caller", "callee_hash", "start", "ring_s", "talk_s", "answered", "direction",
                 "presentation", "verification")


def _float(v: str) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def read_truth(path: str | Path) -> dict[str, tuple[str, bool]]:
    """truth.csv -> {E.164: (category key, harmful)}."""
    out = {}
    with open(path, newline="", encoding="utf-8") as f:
        r = csv.DictReader(f)
        if not r.fieldnames or not {"number", "category", "harmful"} <= set(r.fieldnames):
            raise HandsetError(f"{path}: expected columns number,category,harmful (simulator truth.csv)")
        for row in r:
            out[row["number"]] = (row["category"], row["harmful"] in ("1", "true", "True"))
    return out


def percentiles_us(ns: list[int]) -> dict:
    """p50 / p99 / max of nanosecond timings, in microseconds."""
    if not ns:
        return {"p50_us": None, "p99_us": None, "max_us": None}
    a = [v / 1000.0 for v in ns]
    q = statistics.quantiles(a, n=100, method="inclusive") if len(a) > 1 else a * 99  # = numpy's linear
    return {"p50_us": round(q[49], 1), "p99_us": round(q[98], 1), "max_us": round(max(a), 1)}


def path_of(d) -> str:
    """Which lookup path a decision took: lists, pack, model or rules-only."""
    steps = {r.step for r in d.reasons}
    if steps & {"contacts", "allow_list", "block_list"}:
        return "lists"
    if steps & {"pack_exact", "pack_range", "verified_business"}:
        return "pack"
    if "model" in steps:
        return "model"
    return "no_pack_no_model"


def _warm_up(h: Any, history_csv: str | Path, dialled: set) -> int:
    """Give the handset the local history a phone has: its call log of the earlier incoming calls
    (`Handset.remember`: recorded, not decided) and whom each subscriber dialled (the contacts proxy
    the model is trained with, `trainer.features.ring_events`). Returns the incoming calls remembered."""
    n = 0
    with open(history_csv, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["direction"] != "in":
                dialled.add((row["callee_hash"], row["caller"]))
                continue
            try:
                h.remember(row["presentation"] or row["caller"], time=row["start"], callee=row["callee_hash"],
                           answered=row["answered"] in ("1", "true", "True"), talk_s=_float(row["talk_s"]),
                           in_contacts=(row["callee_hash"], row["caller"]) in dialled)
                n += 1
            except HandsetError:
                continue
    return n


def replay_calls(h: Any, calls_csv: str | Path, limit: int | None = None, incoming_only: bool = True,
                 truth_csv: str | Path | None = None, history_csv: str | Path | None = None) -> dict:
    """Label every (incoming) call of `calls_csv` in order with handset `h`; returns a summary.

    With `history_csv` (earlier calls of the same subscribers) the handset first builds its local call
    history from it, unscored. A number the subscriber dialled before counts as a contact."""
    path = Path(calls_csv)
    if not path.is_file():
        raise HandsetError(f"no calls file at {path}; pass the calls.csv written by `callmark simulate`")
    # the contacts proxy, kept for the handset's session (a later replay continues the same phone)
    dialled: set = h.__dict__.setdefault("replay_dialled", set())
    warmed = _warm_up(h, history_csv, dialled) if history_csv else 0
    truth = read_truth(truth_csv) if truth_csv else None
    actions, cats, sources = Counter(), Counter(), Counter()
    timings: list[int] = []
    by_source: dict[str, list[int]] = {}
    acc = Counter()
    n = skipped = 0
    t0 = time.perf_counter()
    with open(path, newline="", encoding="utf-8") as f:
        r = csv.DictReader(f)
        if not r.fieldnames or not set(CALLS_COLUMNS) <= set(r.fieldnames):
            raise HandsetError(f"{path}: expected columns {','.join(CALLS_COLUMNS)} (simulator calls.csv)")
        for row in r:
            if row["direction"] != "in":
                dialled.add((row["callee_hash"], row["caller"]))
                if incoming_only:
                    continue
            if limit is not None and n >= limit:
                break
            try:
                start = time.perf_counter_ns()
                d = h.label(row["presentation"] or row["caller"], ring_s=_float(row["ring_s"]),
                            answered=row["answered"] in ("1", "true", "True"), time=row["start"],
                            verification=row["verification"] or "none", callee=row["callee_hash"],
                            talk_s=_float(row["talk_s"]),
                            in_contacts=(row["callee_hash"], row["caller"]) in dialled)
                ns = time.perf_counter_ns() - start
            except HandsetError:
                skipped += 1
                continue
            n += 1
            timings.append(ns)
            by_source.setdefault(path_of(d), []).append(ns)
            actions[d.action] += 1
            sources[d.source] += 1
            if d.category:
                cats[d.category] += 1
            if truth is not None:
                _score(acc, truth.get(row["caller"]), d, row["caller"])
    h.flush()
    wall = time.perf_counter() - t0
    out = {"calls": n, "skipped": skipped, "history_calls": warmed, "seconds": round(wall, 2),
           "calls_per_s": round(n / wall, 1) if wall > 0 else None,
           "actions": dict(actions.most_common()), "sources": dict(sources.most_common()),
           "categories": dict(cats.most_common(12)), "latency": percentiles_us(timings),
           "latency_by_source": {k: percentiles_us(v) for k, v in sorted(by_source.items())}}
    if truth is not None:
        out["accuracy"] = _accuracy(acc)
    return out


def _score(acc: Counter, truth: tuple[str, bool] | None, d, caller: str) -> None:
    if truth is None:
        acc["unknown_truth"] += 1
        return
    cat, harmful = truth
    flagged = d.action in FLAGGED
    if harmful:
        acc["harmful"] += 1
        acc["harmful_flagged"] += flagged
        acc["harmful_labelled"] += d.action != "allow"
        acc["harmful_right_category"] += bool(d.category == cat)
    else:
        acc["benign"] += 1
        acc["benign_flagged"] += flagged
        if flagged:  # what warned honest callers, and how many callers that was
            acc["benign_flagged_by:" + d.source] += 1
            acc["benign_flagged_caller:" + caller] += 1
        acc["benign_blocked"] += d.action in ("silence", "reject")


def _accuracy(acc: Counter) -> dict:
    def share(a, b):
        return round(acc[a] / acc[b], 4) if acc[b] else None
    return {"harmful_calls": acc["harmful"], "benign_calls": acc["benign"],
            "harmful_flagged": share("harmful_flagged", "harmful"),  # warned, silenced or rejected
            "harmful_labelled": share("harmful_labelled", "harmful"),
            "harmful_right_category": share("harmful_right_category", "harmful"),
            "benign_flagged": share("benign_flagged", "benign"),  # false warnings
            "benign_blocked": share("benign_blocked", "benign"),  # silenced or rejected wrongly
            "benign_flagged_by": {k.split(":", 1)[1]: v for k, v in acc.most_common()
                                  if k.startswith("benign_flagged_by:")},
            "benign_flagged_callers": sum(1 for k in acc if k.startswith("benign_flagged_caller:")),
            "benign_flagged_top_caller": max((v for k, v in acc.items() if k.startswith("benign_flagged_caller:")),
                                             default=0),
            "unknown_truth": acc["unknown_truth"]}
