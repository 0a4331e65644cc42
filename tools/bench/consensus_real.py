"""Consensus on real crowd-labelling data: callmark vs textbook aggregation, attacks, calibration.

    python -m tools.bench.consensus_real --data ../shared/data/crowd

Each folder of `--data` holds `answer.csv` (question,worker,answer) and `truth.csv`
(question,truth) (see that folder's README). A set becomes a tag stream: every question is a phone
number, the dataset's classes are mapped onto distinct harmful categories, every worker is an
established account (one history tag on a number of its own 30-60 days before its first answer)
whose answers are spread at random over the run at <= 20 tags per UTC day (`--layout spread`,
default) or who answers items from the day they appear (each on a random day of the first 60) at
<= 20 a day, working through a backlog (`--layout backlog`: the votes on an item are close in time). Attack variants add 10 colluding
accounts voting one shared wrong label on 30 % of the gold items:
- fresh: accounts created within the last 2 days, all their votes in those 2 days;
- patient: aged accounts with their own history, each voting at its own times at <= 15 a day.

Printed per set and on average: accuracy over every gold item (published or not) of majority vote,
Dawid-Skene, GLAD and MACE (crowd-kit, the optional `bench` extra: `pip install crowd-kit`),
callmark clean and under each attack, the expected calibration error of callmark's confidence
(10 equal-width bins, confidence of the chosen category vs accuracy), and callmark's events/s.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callmark.categories import CATEGORIES
from trainer import consensus
from trainer.ingest import TagEvents

DAY = 86400
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
BASE = 8613900000000  # number keys count up from here (CN mobile-like)
HISTORY_BASE = 8613800000000  # each account's history tag is on a number of its own
HARMFUL_CODES = np.array([c.code for c in CATEGORIES if c.harmful], np.int16)
SETS = ("rte", "temp", "sp", "adult2", "labelme", "ws_amt")
COLLUDERS = 10
ATTACK_SHARE = 0.30
HONEST_PER_DAY, PATIENT_PER_DAY = 20, 15
RELEASE_DAYS = 60  # items appear over this many days


@dataclass
class CrowdSet:
    """One dataset as integer columns (answers in file order)."""

    name: str
    item: np.ndarray  # int64 question index
    worker: np.ndarray  # int64 worker index
    label: np.ndarray  # int64 class index
    gold_item: np.ndarray  # int64 questions with a gold label
    gold: np.ndarray  # int64 their class
    n_items: int
    n_workers: int
    n_classes: int


def load_set(folder: Path) -> CrowdSet:
    """Read one set; classes are the sorted distinct answer/truth values."""
    def rows(p):
        with open(p, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    ans = rows(folder / "answer.csv")
    tru = rows(folder / "truth.csv")
    values = sorted({r["answer"] for r in ans} | {r["truth"] for r in tru})
    if len(values) > HARMFUL_CODES.size:
        raise SystemExit(f"{folder}: {len(values)} classes, at most {HARMFUL_CODES.size} map onto "
                         "harmful categories")
    vi = {v: i for i, v in enumerate(values)}
    qi: dict[str, int] = {}
    wi: dict[str, int] = {}
    item = np.array([qi.setdefault(r["question"], len(qi)) for r in ans], np.int64)
    worker = np.array([wi.setdefault(r["worker"], len(wi)) for r in ans], np.int64)
    label = np.array([vi[r["answer"]] for r in ans], np.int64)
    gold = [(qi[r["question"]], vi[r["truth"]]) for r in tru if r["question"] in qi]
    g = np.array(gold, np.int64).reshape(-1, 2)
    return CrowdSet(folder.name, item, worker, label, g[:, 0], g[:, 1], len(qi), len(wi),
                    len(values))


def _spread(rng, n: int, per_day: int, days: int) -> np.ndarray:
    """Epoch offsets (s) of n events over `days` days, at most `per_day` on any day."""
    slots = np.sort(rng.choice(days * per_day, n, replace=False))
    return (slots // per_day) * DAY + rng.integers(0, DAY, n)


def _honest_times(s: CrowdSet, rng) -> np.ndarray:
    """Epoch seconds of each answer: every item appears on a random day of the first
    RELEASE_DAYS; a worker answers items in the order they appear, from that day on, at most
    HONEST_PER_DAY a day (a prolific worker works through a backlog)."""
    release = rng.integers(0, RELEASE_DAYS, s.n_items)
    day = np.empty(s.item.size, np.int64)
    order = np.lexsort((rng.random(s.item.size), release[s.item], s.worker))
    wk, rel = s.worker[order].tolist(), release[s.item[order]].tolist()
    prev_w, d, used = -1, 0, 0
    out = []
    for w, r in zip(wk, rel):
        if w != prev_w:
            prev_w, d, used = w, r, 0
        if r > d:
            d, used = r, 0
        elif used >= HONEST_PER_DAY:
            d, used = d + 1, 0
        used += 1
        out.append(d)
    day[order] = out
    return T0 + day * DAY + rng.integers(0, DAY, s.item.size)


def tag_stream(s: CrowdSet, attack: str | None = None, seed: int = 0, layout: str = "spread"
               ) -> tuple[TagEvents, int]:
    """(tag events, as_of) for a set, optionally with 10 'fresh' or 'patient' colluders.

    `layout`: "spread" (each worker's answers at random times over the run, <= 20 a day) or
    "backlog" (items appear over 60 days; workers answer them from then on, <= 20 a day)."""
    rng = np.random.default_rng(seed)
    n_target = int(round(ATTACK_SHARE * s.gold_item.size))
    if layout == "backlog":
        t_ans = _honest_times(s, rng)
        days = max(RELEASE_DAYS, int((t_ans.max() - T0) // DAY) + 2,
                   int(np.ceil(n_target / PATIENT_PER_DAY)) + 1)
    elif layout == "spread":
        n_ans = np.bincount(s.worker, minlength=s.n_workers)
        days = max(RELEASE_DAYS, int(np.ceil(n_ans.max() / HONEST_PER_DAY)) + 1,
                   int(np.ceil(n_target / PATIENT_PER_DAY)) + 1)
        t_ans = np.empty(s.item.size, np.int64)
        order = np.argsort(s.worker, kind="stable")
        bounds = np.concatenate(([0], np.cumsum(n_ans)))
        for w in range(s.n_workers):
            idx = order[bounds[w]:bounds[w + 1]]
            t_ans[idx] = T0 + _spread(rng, idx.size, HONEST_PER_DAY, days)[
                rng.permutation(idx.size)]
    else:
        raise ValueError(f"unknown layout {layout!r}: use spread or backlog")
    keys, reps, cats, ts = [], [], [], []
    keys.append(BASE + s.item)
    reps.append(s.worker)
    cats.append(HARMFUL_CODES[s.label])
    ts.append(t_ans)
    # history: one tag per account on a number of its own, 30-60 days before the run
    keys.append(HISTORY_BASE + np.arange(s.n_workers))
    reps.append(np.arange(s.n_workers))
    cats.append(HARMFUL_CODES[rng.integers(0, s.n_classes, s.n_workers)])
    ts.append(T0 - rng.integers(30 * DAY, 60 * DAY, s.n_workers))
    as_of = T0 + days * DAY
    if attack:
        tg = rng.choice(s.gold_item.size, n_target, replace=False)
        wrong = HARMFUL_CODES[(s.gold[tg] + 1) % s.n_classes]  # one shared wrong label per item
        for j in range(COLLUDERS):
            rid = s.n_workers + j
            if attack == "fresh":
                t = as_of - 2 * DAY + rng.integers(0, 2 * DAY, n_target)
            elif attack == "patient":
                keys.append(np.array([HISTORY_BASE + rid]))
                reps.append(np.array([rid]))
                cats.append(HARMFUL_CODES[:1])
                ts.append(np.array([T0 - rng.integers(30 * DAY, 60 * DAY)]))
                t = T0 + _spread(rng, n_target, PATIENT_PER_DAY, days)[rng.permutation(n_target)]
            else:
                raise ValueError(f"unknown attack {attack!r}: use fresh or patient")
            keys.append(BASE + s.gold_item[tg])
            reps.append(np.full(n_target, rid))
            cats.append(wrong)
            ts.append(t)
    key, rep, cat, t = (np.concatenate(x) for x in (keys, reps, cats, ts))
    o = np.argsort(t, kind="stable")
    n_rep = int(rep.max()) + 1
    ev = TagEvents.from_arrays(key[o], rep[o], cat[o], t[o],
                               reporters=[f"w{i}" for i in range(n_rep)])
    return ev, as_of


def score(res, s: CrowdSet) -> tuple[float, float, float]:
    """(accuracy over gold items, ECE with 10 equal-width bins, share of the most common label)."""
    cls_of = np.full(int(HARMFUL_CODES.max()) + 1, -1)
    cls_of[HARMFUL_CODES] = np.arange(HARMFUL_CODES.size)
    pos = np.searchsorted(res.key, BASE + s.gold_item)
    pos = np.clip(pos, 0, len(res) - 1)
    found = res.key[pos] == BASE + s.gold_item
    pred = np.where(found, cls_of[np.clip(res.category[pos], 0, cls_of.size - 1)], -1)
    conf = np.where(found, res.confidence[pos], 0.0)
    ok = pred == s.gold
    return float(ok.mean()), ece(conf, ok), float(np.bincount(pred[pred >= 0]).max() / pred.size)


def ece(conf: np.ndarray, ok: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: sum over equal-width bins of |accuracy - confidence| x share."""
    b = np.clip((conf * bins).astype(int), 0, bins - 1)
    tot = 0.0
    for j in range(bins):
        m = b == j
        if m.any():
            tot += abs(ok[m].mean() - conf[m].mean()) * m.sum() / conf.size
    return float(tot)


def baselines(s: CrowdSet) -> dict[str, float]:
    """Accuracy of crowd-kit's MV, DS, GLAD and MACE on the raw answers (empty without crowd-kit)."""
    try:
        import pandas as pd
        from crowdkit.aggregation import GLAD, MACE, DawidSkene, MajorityVote
    except ImportError:
        return {}
    df = pd.DataFrame({"task": s.item, "worker": s.worker, "label": s.label})
    gold = pd.Series(s.gold, index=s.gold_item)
    out = {}
    for name, algo in (("MV", MajorityVote()), ("DS", DawidSkene(n_iter=100)),
                       ("GLAD", GLAD(n_iter=100, silent=True)), ("MACE", MACE(random_state=0))):
        try:
            pred = algo.fit_predict(df)
        except Exception as exc:  # a baseline failing must not hide the others
            print(f"  {s.name}: {name} failed: {exc}", file=sys.stderr)
            continue
        out[name] = float((pred.reindex(gold.index).to_numpy() == gold.to_numpy()).mean())
    return out


def run_set(s: CrowdSet, config: consensus.ConsensusConfig, with_baselines: bool = True,
            seed: int = 0, layout: str = "spread") -> dict:
    """All figures of one set."""
    row: dict = dict(baselines(s)) if with_baselines else {}
    ev, as_of = tag_stream(s, None, seed, layout)
    t = time.perf_counter()
    res = consensus.run(ev, config, as_of=as_of)
    dt = time.perf_counter() - t
    row["clean"], row["ece"], row["top_share"] = score(res, s)
    row["events"], row["seconds"] = len(ev), dt
    for attack in ("fresh", "patient"):
        ev, as_of = tag_stream(s, attack, seed, layout)
        row[attack] = score(consensus.run(ev, config, as_of=as_of), s)[0]
    return row


COLS = ("MV", "DS", "GLAD", "MACE", "clean", "fresh", "patient", "ece")


def report(rows: dict[str, dict]) -> str:
    """The table (per set, then the mean) and the 'done when' checks."""
    lines = [f"{'set':8s} " + " ".join(f"{c:>7s}" for c in COLS) + "  best-clean  top-share"]
    for name, r in rows.items():
        best = max((r[c] for c in ("MV", "DS", "GLAD", "MACE") if c in r), default=float("nan"))
        lines.append(f"{name:8s} " + " ".join(f"{r.get(c, float('nan')):7.3f}" for c in COLS)
                     + f"  {best - r['clean']:+9.3f}  {r['top_share']:9.3f}")
    mean = {c: float(np.mean([r[c] for r in rows.values() if c in r])) for c in COLS
            if any(c in r for r in rows.values())}
    best = [max((r[c] for c in ("MV", "DS", "GLAD", "MACE") if c in r), default=np.nan)
            for r in rows.values()]
    gap = np.array(best) - np.array([r["clean"] for r in rows.values()])
    lines.append(f"{'mean':8s} " + " ".join(f"{mean.get(c, float('nan')):7.3f}" for c in COLS)
                 + f"  {float(np.mean(gap)):+9.3f}")
    ev = sum(r["events"] for r in rows.values())
    sec = sum(r["seconds"] for r in rows.values())
    clean = np.array([r["clean"] for r in rows.values()])
    lines.append(f"best - clean: mean {np.mean(gap):+.4f}, worst {np.max(gap):+.4f}; "
                 f"fresh cost {np.mean(clean - [r['fresh'] for r in rows.values()]):+.4f}, "
                 f"patient cost {np.mean(clean - [r['patient'] for r in rows.values()]):+.4f}; "
                 f"ECE {mean['ece']:.4f}; consensus {ev / max(sec, 1e-9):,.0f} events/s "
                 f"({ev:,} events in {sec:.2f} s)")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Consensus on real crowd data vs MV/DS/GLAD/MACE, with colluder attacks.",
        epilog="example: python -m tools.bench.consensus_real --data ../shared/data/crowd "
               "--sets rte,temp")
    ap.add_argument("--data", required=True, help="folder holding one sub-folder per set")
    ap.add_argument("--sets", default=",".join(SETS), help="comma list of sub-folders")
    ap.add_argument("--config", default=None, help="JSON consensus config overrides")
    ap.add_argument("--no-baselines", action="store_true", help="skip crowd-kit (faster)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layout", choices=("spread", "backlog"), default="spread",
                    help="when honest workers answer (see the module docstring)")
    a = ap.parse_args(argv)
    import json
    cfg = consensus.ConsensusConfig.from_dict(json.loads(a.config) if a.config else {})
    root = Path(a.data)
    rows = {}
    for name in a.sets.split(","):
        folder = root / name
        if not (folder / "answer.csv").is_file():
            print(f"{folder}: no answer.csv; skipped", file=sys.stderr)
            continue
        rows[name] = run_set(load_set(folder), cfg, not a.no_baselines, a.seed, a.layout)
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in rows[name].items()
                                      if isinstance(v, float)), file=sys.stderr, flush=True)
    if not rows:
        print(f"no crowd sets under {root}", file=sys.stderr)
        return 2
    print(report(rows))
    if not a.no_baselines and not any("MV" in r for r in rows.values()):
        print("baselines are nan: crowd-kit is not installed (pip install -e '.[bench]'), or pass "
              "--no-baselines", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
