"""A small self-contained synthetic tag stream with truth, for consensus tests and throughput runs.

Honest reporters are right with a per-reporter accuracy; harmful numbers draw reports over days;
honest numbers draw a few mistaken or "legit" tags. Optional attacks: K fresh fake accounts tagging
honest targets in a burst, and a bloc of history-bearing accounts colluding on honest targets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from callmark.categories import CATEGORIES, by_key
from trainer.ingest import TagEvents

DAY = 86400
T0 = 1_772_409_600  # 2026-03-02T00:00:00Z
HARMFUL_CODES = np.array([c.code for c in CATEGORIES if c.harmful], np.int16)
BENIGN_CODES = np.array([c.code for c in CATEGORIES if not c.harmful and c.key != "legit"],
                        np.int16)
LEGIT = by_key("legit").code
FRAUD = by_key("fraud").code


@dataclass
class Synth:
    events: TagEvents
    truth_key: np.ndarray  # int64 every number that exists (tagged or not)
    truth_code: np.ndarray  # int16 true category (legit for honest)
    attacked: np.ndarray  # int64 honest keys targeted by fakes / colluders
    fake_reporters: np.ndarray  # int32 reporter ids of attackers
    as_of: int


def synth_stream(n_harmful: int = 300, n_honest: int = 3000, n_users: int = 2000, days: int = 30,
                 reports_per_harmful: float = 8.0, honest_tag_rate: float = 0.3,
                 fakes: int = 0, fake_targets: int = 3, colluders: int = 0,
                 collude_targets: int = 5, seed: int = 0, base: int = 8613900000000) -> Synth:
    """Generate a tag stream (keys are E.164 integers counting up from `base`)."""
    rng = np.random.default_rng(seed)
    n_num = n_harmful + n_honest
    keys = base + rng.choice(n_num * 7, n_num, replace=False).astype(np.int64)
    keys.sort()
    is_h = np.zeros(n_num, bool)
    is_h[rng.choice(n_num, n_harmful, replace=False)] = True
    truth = np.where(is_h, rng.choice(HARMFUL_CODES, n_num), LEGIT).astype(np.int16)
    benign = ~is_h & (rng.random(n_num) < 0.2)
    truth[benign] = rng.choice(BENIGN_CODES, int(benign.sum()))
    acc = rng.beta(8, 2, n_users)
    start_day = rng.integers(0, days, n_users)  # when each user joined
    k, r, c, t = [], [], [], []
    for i in range(n_num):
        lam = reports_per_harmful if is_h[i] else honest_tag_rate
        n = rng.poisson(lam * (rng.pareto(2.5) + 0.5) if is_h[i] else lam)
        if n == 0:
            continue
        users = rng.choice(n_users, min(n, n_users), replace=False)
        first = rng.integers(0, days)
        when = np.maximum(start_day[users], first) * DAY + rng.integers(0, DAY * 3, users.size)
        right = rng.random(users.size) < acc[users]
        if is_h[i]:
            wrong = rng.choice(HARMFUL_CODES, users.size)
        else:
            wrong = rng.choice(np.array([2, 3, 1], np.int16), users.size)
        votes = np.where(right, truth[i], wrong)
        if not is_h[i]:  # honest numbers: most tags say "legit" or the benign category
            votes = np.where(right, truth[i], wrong)
        k.append(np.full(users.size, keys[i]))
        r.append(users)
        c.append(votes)
        t.append(when)
    honest_idx = np.flatnonzero(~is_h)
    attacked = []
    fake_ids = []
    next_id = n_users
    if fakes:
        tg = rng.choice(honest_idx, fake_targets, replace=False)
        attacked.extend(keys[tg])
        t_att = T0 + (days - 2) * DAY
        for j in range(fakes):
            for ti in tg:
                k.append(np.array([keys[ti]]))
                r.append(np.array([next_id]))
                c.append(np.array([FRAUD]))
                t.append(np.array([(days - 2) * DAY + rng.integers(0, 3600)]))
            fake_ids.append(next_id)
            next_id += 1
        del t_att
    if colluders:
        tg = rng.choice(np.setdiff1d(honest_idx, np.searchsorted(keys, attacked)), collude_targets,
                        replace=False)
        attacked.extend(keys[tg])
        bloc = rng.choice(n_users, colluders, replace=False)  # aged, honest-looking accounts
        for u in bloc:
            for ti in tg:
                k.append(np.array([keys[ti]]))
                r.append(np.array([u]))
                c.append(np.array([FRAUD]))
                t.append(np.array([(days - 3) * DAY + rng.integers(0, 7200)]))
        fake_ids.extend(bloc.tolist())
    key = np.concatenate(k) if k else np.zeros(0, np.int64)
    rep = np.concatenate(r).astype(np.int32)
    cat = np.concatenate(c).astype(np.int16)
    ts = T0 + np.concatenate(t).astype(np.int64)
    order = np.argsort(ts, kind="stable")
    ev = TagEvents.from_arrays(key[order], rep[order], cat[order], ts[order],
                               reporters=[f"u{i}" for i in range(next_id)])
    return Synth(ev, keys, truth, np.array(attacked, np.int64), np.array(fake_ids, np.int32),
                 int(T0 + (days + 3) * DAY))


# --- evaluation against simulator truth --------------------------------------------------------

def load_truth(sim_dir) -> tuple[dict[int, int], set[int]]:
    """(number key -> true category code of the current owner, keys of attacked honest numbers)."""
    import csv
    from pathlib import Path

    from callmark.numbers import key_of
    sim_dir = Path(sim_dir)
    truth: dict[int, tuple[int, int]] = {}
    with open(sim_dir / "truth.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            k = key_of(row["number"])
            if k is None:
                continue
            day = int(row["first_day"])
            if k not in truth or day >= truth[k][0]:  # recycled: the newest owner counts
                truth[k] = (day, by_key(row["category"]).code)
    bad = set()
    with open(sim_dir / "reporters.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["kind"] in ("fake", "colluder"):
                bad.add(row["reporter"])
    attacked = set()
    import json
    with open(sim_dir / "tags.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d["reporter"] in bad:
                k = key_of(d["number"])
                if k is not None and k in truth and not _harmful_code(truth[k][1]):
                    attacked.add(k)
    return {k: v[1] for k, v in truth.items()}, attacked


def _harmful_code(code: int) -> bool:
    from callmark.categories import by_code
    return by_code(int(code)).harmful


def evaluate(res, truth: dict[int, int], attacked: set[int] = frozenset()) -> dict:
    """Published-label quality against truth: precision/recall per category, FPR on honest
    numbers, expected calibration error, attacked honest numbers published as harmful."""
    from callmark.categories import by_code
    harm_of = np.zeros(256, bool)
    for c in CATEGORIES:
        harm_of[c.code] = c.harmful
    tk = np.array(sorted(truth), np.int64)
    tc = np.array([truth[k] for k in tk], np.int16)
    pos = np.clip(np.searchsorted(tk, res.key), 0, max(tk.size - 1, 0))
    known = tk[pos] == res.key
    rk, rc, rconf, rpub = res.key[known], res.category[known], res.confidence[known], \
        res.published[known]
    t = tc[pos[known]]
    pub_h = rpub & harm_of[rc]
    honest_all = int((~harm_of[tc]).sum())
    honest_tagged = int((~harm_of[t]).sum())
    fp = int((pub_h & ~harm_of[t]).sum())
    per_cat = {}
    for c in CATEGORIES:
        pub_c = rpub & (rc == c.code)
        n_true = int((tc == c.code).sum())
        if not pub_c.any() and not n_true:
            continue
        per_cat[c.key] = {"published": int(pub_c.sum()),
                          "precision": _ratio((pub_c & (t == c.code)).sum(), pub_c.sum()),
                          "recall": _ratio((pub_c & (t == c.code)).sum(), n_true),
                          "true_numbers": n_true}
    harm_true = int(harm_of[tc].sum())
    correct = rc == t
    # calibration over numbers with evidence that the consensus scored (not verified overrides)
    cm = (res.last_ts[known] > 0) & ((res.flags[known] & 1) == 0)
    correct, rconf_c = correct[cm], rconf[cm]
    bins = np.clip((rconf_c * 10).astype(int), 0, 9)
    ece = 0.0
    curve = []
    for b in range(10):
        m = bins == b
        if m.any():
            ece += abs(correct[m].mean() - rconf_c[m].mean()) * m.sum() / max(1, m.size)
            curve.append((round(float(rconf_c[m].mean()), 3), round(float(correct[m].mean()), 3),
                          int(m.sum())))
    att = np.isin(rk, np.array(sorted(attacked), np.int64)) if attacked else np.zeros(rk.size, bool)
    del by_code
    return {"numbers": int(res.key.size), "with_truth": int(known.sum()),
            "published": int(rpub.sum()), "published_harmful": int(pub_h.sum()),
            "precision_harmful": _ratio((pub_h & harm_of[t]).sum(), pub_h.sum()),
            "recall_harmful": _ratio((pub_h & harm_of[t]).sum(), harm_true),
            "recall_harmful_tagged": _ratio((pub_h & harm_of[t]).sum(), harm_of[t].sum()),
            "category_precision": _ratio((rpub & (rc == t)).sum(), rpub.sum()),
            "fp_honest": fp, "fpr_honest": _ratio(fp, honest_all),
            "fpr_honest_tagged": _ratio(fp, honest_tagged),
            "ece": round(float(ece), 4), "calibration": curve,
            "attacked": int(att.sum()), "attacked_published_harmful": int((att & pub_h).sum()),
            "per_category": per_cat}


def _ratio(a, b) -> float:
    return round(float(a) / float(b), 4) if b else float("nan")


# --- the benchmark -------------------------------------------------------------------------------

METHODS = {"defended EM": {}, "plain EM": {"defences": False},
           "majority": {"method": "majority", "defences": False}}


def _side(sim_dir):
    from trainer import ingest as I
    return dict(verified=I.read_verified(f"{sim_dir}/verified.csv")[0],
                appeals=I.read_appeals(f"{sim_dir}/appeals.csv")[0],
                recycled=I.read_recycled(f"{sim_dir}/recycled.csv")[0])


def run_sim(sim_dir, config_overrides: dict | None = None) -> dict:
    """Every method on one simulator output directory: metrics per method."""
    from trainer import consensus as C
    from trainer import ingest as I
    ev, _ = I.read_tags(f"{sim_dir}/tags.jsonl")
    truth, attacked = load_truth(sim_dir)
    side = _side(sim_dir)
    out = {}
    for name, over in METHODS.items():
        cfg = C.ConsensusConfig.from_dict({**(config_overrides or {}), **over})
        out[name] = evaluate(C.run(ev, cfg, **side), truth, attacked)
    return out


def fit_calibration(sim_dir) -> tuple[float, float, float]:
    """Fit the Platt map (a, b, c) of ConsensusConfig.calibration on one simulator run."""
    from sklearn.linear_model import LogisticRegression

    from trainer import consensus as C
    from trainer import ingest as I
    ev, _ = I.read_tags(f"{sim_dir}/tags.jsonl")
    truth, _ = load_truth(sim_dir)
    cfg = C.ConsensusConfig(calibration=(1.0, 0.0, 0.0))
    feats = {}
    orig = C.calibrate

    def capture(p, units, coef):
        feats["p"], feats["u"] = p.copy(), units.copy()
        return orig(p, units, coef)
    C.calibrate = capture
    try:
        res = C.run(ev, cfg, **_side(sim_dir))
    finally:
        C.calibrate = orig
    items = np.unique(res.key[res.last_ts > 0])  # numbers with evidence, same order as the run
    pos = np.searchsorted(res.key, items)
    t = np.array([truth.get(int(k), -1) for k in items])
    m = (t >= 0) & ((res.flags[pos] & 1) == 0)
    p = np.clip(feats["p"][m], 1e-9, 1 - 1e-9)
    x = np.stack([np.log(p / (1 - p)), np.log1p(feats["u"][m])], 1)
    y = (res.category[pos][m] == t[m]).astype(int)
    lr = LogisticRegression(C=100.0).fit(x, y)
    return (round(float(lr.coef_[0][0]), 4), round(float(lr.coef_[0][1]), 4),
            round(float(lr.intercept_[0]), 4))


def _timed(fn):
    """(result, wall seconds, CPU seconds of this process)."""
    import time
    t, c = time.perf_counter(), time.process_time()
    r = fn()
    return r, time.perf_counter() - t, time.process_time() - c


def write_stream(path, n_events: int, seed: int = 0) -> list[str]:
    """A synthetic tags CSV of n_events (n/8 numbers, n/20 reporters, 18 categories, 60 days);
    returns the distinct raw numbers."""
    from callmark.numbers import format_key
    rng = np.random.default_rng(seed)
    n_num = max(1000, n_events // 8)
    n_rep = max(1000, n_events // 20)
    keys = 8613000000000 + rng.choice(10**9, n_num, replace=False)
    raw = [format_key(int(k)) for k in keys]
    cats = [by_code_key(int(c.code)) for c in CATEGORIES]
    with open(path, "w") as f:
        f.write("number,reporter,category,ts\n")
        for a in range(0, n_events, 500_000):
            m = min(500_000, n_events - a)
            ki = rng.integers(0, n_num, m)
            ri = rng.integers(0, n_rep, m)
            ci = rng.integers(0, len(cats), m)
            ti = T0 + rng.integers(0, 60 * DAY, m)
            f.write("".join(f"{raw[k]},u{r},{cats[c]},{t}\n"
                            for k, r, c, t in zip(ki.tolist(), ri.tolist(), ci.tolist(),
                                                  ti.tolist())))
    return raw


def throughput(n_events: int, seed: int = 0) -> dict:
    """Ingest (CSV) + consensus speed on a synthetic stream of n_events, with majority vote on the
    same events as the baseline measured in the same run. Number normalisation (libphonenumber,
    once per distinct number, cached) is timed on its own before the ingest."""
    import os
    import resource
    import tempfile

    from callmark.numbers import key_of
    from trainer import consensus as C
    from trainer import ingest as I
    out = {"events": n_events, "load_before": round(os.getloadavg()[0], 1)}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "tags.csv")
        raw = write_stream(path, n_events, seed)
        _, wn, cn = _timed(lambda: [key_of(r) for r in raw])
        (ev, _), wi, ci = _timed(lambda: I.read_tags(path))
        res, wc, cc = _timed(lambda: C.run(ev, C.ConsensusConfig()))
        _, wm, cm = _timed(lambda: C.run(ev, C.ConsensusConfig(method="majority",
                                                               defences=False)))
        _, ww, _ = _timed(lambda: res.write_csv(os.path.join(d, "LABELS.csv")))
    e2e_w, e2e_c = wi + wc, ci + cc
    out.update(distinct_numbers=len(raw), reporters=max(1000, n_events // 20),
               em_iterations=res.stats.get("em_iterations"),
               normalise_s=round(wn, 2), normalise_per_s=int(len(raw) / wn),
               ingest_s=round(wi, 2), ingest_cpu_s=round(ci, 2),
               consensus_s=round(wc, 2), consensus_cpu_s=round(cc, 2),
               majority_s=round(wm, 2), majority_cpu_s=round(cm, 2),
               consensus_vs_majority=round(wc / wm, 1), write_s=round(ww, 2),
               events_per_s_ingest=int(n_events / wi),
               events_per_s_consensus=int(n_events / wc),
               events_per_s_e2e=int(n_events / e2e_w), events_per_s_e2e_cpu=int(n_events / e2e_c),
               load_after=round(os.getloadavg()[0], 1),
               peak_rss_mb=int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    return out


def measure_file(path) -> dict:
    """Ingest + consensus + write of one tags CSV in this process, with its peak RSS (run in a
    child process by `memory`, so the generator's memory does not count)."""
    import os
    import resource
    import tempfile

    from trainer import consensus as C
    from trainer import ingest as I
    (ev, rep), wi, ci = _timed(lambda: I.read_tags(path))
    rss_ingest = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = len(ev)
    res, wc, cc = _timed(lambda: C.run(ev, C.ConsensusConfig()))
    with tempfile.TemporaryDirectory() as d:
        _, ww, _ = _timed(lambda: res.write_csv(os.path.join(d, "LABELS.csv")))
    return {"events": n, "bad_rows": rep.bad, "numbers": len(res), "ingest_s": round(wi, 1),
            "ingest_cpu_s": round(ci, 1), "consensus_s": round(wc, 1),
            "consensus_cpu_s": round(cc, 1), "write_s": round(ww, 1),
            "events_bytes_mb": int(ev.nbytes / 2**20), "peak_rss_after_ingest_mb": int(rss_ingest),
            "peak_rss_mb": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def memory(n_events: int, seed: int = 0) -> dict:
    """Peak memory of ingest + consensus + write for n_events, measured in a child process."""
    import json
    import os
    import subprocess
    import sys
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "tags.csv")
        write_stream(path, n_events, seed)
        size = os.path.getsize(path)
        p = subprocess.run([sys.executable, "-m", "tools.bench.consensus", "--measure-file", path],
                           capture_output=True, text=True, check=True)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["csv_mb"] = int(size / 2**20)
    return out


def by_code_key(code: int) -> str:
    from callmark.categories import by_code
    return by_code(code).key


def ftc(path, days_limit: int | None = None) -> dict:
    """The FTC complaint stream: each row one report by a distinct reporter; labels per day.

    Times reported separately: reading the file, number normalisation (libphonenumber, once per
    distinct number, cached), ingest of the rows (with warm normalisation cache), and one
    consensus run per day (as of noon UTC that day, over every complaint up to then), with majority
    vote on the same events as the same-run baseline."""
    import csv
    import gzip
    import os

    from callmark.numbers import key_of
    from trainer import consensus as C
    from trainer import ingest as I

    def read():
        with gzip.open(path, "rt", newline="") as f:
            r = csv.reader(f)
            header = next(r)
            i_num, i_day = header.index("company_phone_number"), header.index("snapshot_date_utc")
            return [(row[i_num], row[i_day]) for row in r if len(row) > max(i_num, i_day)]
    rows, w_read, _ = _timed(read)
    distinct = list(dict.fromkeys(n for n, _ in rows))
    _, w_norm, c_norm = _timed(lambda: [key_of(x, "US") for x in distinct])

    def events():
        for i, (num, day) in enumerate(rows):
            day = "2025-10-28" if day.startswith("backfill") else day
            yield {"number": num, "reporter": f"ftc{i}", "category": "telemarketing",
                   "ts": day + "T12:00:00Z"}
    (ev, rep), w_ing, c_ing = _timed(lambda: I.read_tags(events(), region="US"))
    days = np.unique(ev.ts)
    out = {"rows": rep.rows, "bad_rows": rep.to_dict()["counts"], "events": len(ev),
           "distinct_raw": len(distinct), "distinct_numbers": int(np.unique(ev.key).size),
           "read_s": round(w_read, 2), "normalise_s": round(w_norm, 2),
           "normalise_cpu_s": round(c_norm, 2), "normalise_per_s": int(len(distinct) / w_norm),
           "ingest_s": round(w_ing, 2), "ingest_cpu_s": round(c_ing, 2),
           "load": round(os.getloadavg()[0], 1), "per_day": []}
    # every complainant is a distinct one-off reporter: the `ftc-dnc` source profile
    # (callmark/sources.py) turns the history defences off, as `callmark build` does
    from trainer.consensus_sources import config_for
    cfg = config_for("ftc-dnc")
    maj = config_for("ftc-dnc", {"method": "majority", "defences": False})
    for d in days[-(days_limit or len(days)):]:
        as_of = int(d) + 43200
        res, w, c = _timed(lambda: C.run(ev, cfg, as_of=as_of))
        mres, wm, _ = _timed(lambda: C.run(ev, maj, as_of=as_of))
        n_ev = int((ev.ts <= as_of).sum())
        out["per_day"].append({"as_of": str(np.datetime64(int(d), "s"))[:10], "events": n_ev,
                               "numbers": len(res), "published": int(res.published.sum()),
                               "published_majority": int(mres.published.sum()),
                               "ranges": len(res.ranges), "seconds": round(w, 2),
                               "cpu_s": round(c, 2), "majority_s": round(wm, 2),
                               "events_per_s": int(n_ev / w)})
    return out


def _fmt_row(name, e):
    return (f"| {name} | {e['published_harmful']} | {e['precision_harmful']} | "
            f"{e['recall_harmful']} | {e['recall_harmful_tagged']} | {e['category_precision']} | "
            f"{e['fp_honest']} ({e['fpr_honest'] * 100:.3f} %) | {e['ece']} | "
            f"{e['attacked_published_harmful']} / {e['attacked']} |")


HEADER = ("| method | published harmful | precision | recall (all harmful) | recall (tagged) | "
          "category precision | honest published harmful (FPR) | ECE | attacked honest published "
          "|\n|---|---|---|---|---|---|---|---|---|")


def main(argv=None):
    import argparse
    import json
    import tempfile
    import time

    ap = argparse.ArgumentParser(description="Consensus benchmark: simulator truth, attacks, "
                                 "majority/plain-EM baselines, throughput, FTC data. Example: "
                                 "python -m tools.bench.consensus --data ../shared/data/ftc-dnc/"
                                 "complaint_numbers_by_day.csv.gz")
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--users", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--attacks", default="10,100,1000")
    ap.add_argument("--events", type=int, default=1_000_000, help="throughput stream size")
    ap.add_argument("--data", default=None, help="FTC complaint_numbers_by_day.csv.gz")
    ap.add_argument("--fit-calibration", action="store_true",
                    help="fit ConsensusConfig.calibration on simulator seed 2 and print it")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: sim,attacks,speed,ftc")
    ap.add_argument("--memory-events", type=int, default=0,
                    help="also measure peak RSS of ingest + consensus of this many events")
    ap.add_argument("--measure-file", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.measure_file:  # child process of --memory-events
        print(json.dumps(measure_file(a.measure_file)))
        return {}
    from tools.simulate import simulate
    skip = set(a.skip.split(","))
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        def sim(name, **kw):
            d = f"{tmp}/{name}"
            simulate(d, days=a.days, users=a.users, seed=a.seed, **kw)
            return d
        if a.fit_calibration:
            d = f"{tmp}/cal"
            simulate(d, days=a.days, users=a.users, seed=2)
            print("calibration (a, b, c):", fit_calibration(d))
        if "sim" not in skip:
            t = time.perf_counter()
            report["base"] = run_sim(sim("base", fake_blocs=2, fake_bloc_size=30,
                                         colluder_blocs=1))
            print(f"\n## Simulator (days={a.days}, users={a.users}, seed={a.seed}, 2 fake blocs of "
                  f"30 + 1 colluding bloc of 10) [{time.perf_counter() - t:.1f}s]\n{HEADER}")
            for name, e in report["base"].items():
                print(_fmt_row(name, e))
            e = report["base"]["defended EM"]
            print("\ncalibration (mean confidence, observed accuracy, numbers):", e["calibration"])
            print("per category (defended EM):")
            for k, v in e["per_category"].items():
                print(f"  {k}: {v}")
        if "attacks" not in skip:
            for k in [int(x) for x in a.attacks.split(",") if x]:
                r = run_sim(sim(f"fake{k}", fake_blocs=1, fake_bloc_size=k, colluder_blocs=0))
                report[f"fake{k}"] = r
                print(f"\n## Attack: K={k} fresh fake accounts, 2 honest targets\n{HEADER}")
                for name, e in r.items():
                    print(_fmt_row(name, e))
            r = run_sim(sim("colluders", fake_blocs=0, colluder_blocs=3, colluder_bloc_size=10))
            report["colluders"] = r
            print(f"\n## Attack: 3 colluding blocs of 10 aged accounts, 2 honest targets each\n"
                  f"{HEADER}")
            for name, e in r.items():
                print(_fmt_row(name, e))
    if "speed" not in skip:
        report["throughput"] = t = throughput(a.events)
        print(f"\n## Throughput (CSV ingest + consensus; load average {t['load_before']} -> "
              f"{t['load_after']})\n", t)
        print(f"end to end (ingest + consensus): {t['events_per_s_e2e']:,} events/s wall, "
              f"{t['events_per_s_e2e_cpu']:,} events/s of CPU time; consensus "
              f"{t['consensus_vs_majority']}x the time of majority vote on the same events")
    if a.memory_events:
        report["memory"] = mem = memory(a.memory_events)
        print(f"\n## Memory ({a.memory_events:,} events, child process)\n", mem)
    if a.data and "ftc" not in skip:
        report["ftc"] = f = ftc(a.data)
        print(f"\n## FTC complaints: {f['rows']} rows, {f['events']} events, "
              f"{f['distinct_numbers']} numbers; read {f['read_s']} s, normalise "
              f"{f['distinct_raw']} distinct {f['normalise_s']} s ({f['normalise_per_s']}/s), "
              f"ingest {f['ingest_s']} s; load {f['load']}; bad rows {f['bad_rows']}")
        for d in f["per_day"]:
            print(f"  {d}")
    return report


if __name__ == "__main__":
    main()
