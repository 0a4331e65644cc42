"""The one evaluation of an on-device model, used by the report, the release gate and the demo summary.

- **Calls**: ringing calls (`features.ring_events`) from callers held out of every build's training by
  a hash of their number key (`trainer.holdout`), so a candidate and the published model are scored
  on calls neither was trained on.
- **Flagged call** (`callmark.rules.FLAGGED_ACTIONS`): a warn, silence or reject decision. A pack label
  flags a call when its action under the handset policy (`callmark.rules.label_action`) is one of
  those: benign labels (delivery, taxi, verified businesses) and low-confidence labels do not. The
  model runs only for calls without a pack label (as on the phone) and flags at `risk >= warn_risk`.
- **The phone's chain** (`callmark.rules.decide` order): calls from contacts (the "dialled before"
  proxy) are allowed; otherwise the pack label, then the model (no pack label) and the stateless
  on-device rules (spoofed, irregular number, failed verification: `phone_rule_flags`) may flag.
  "Pack alone" is that phone without the model (pack + rules), so the gain is what the model adds.
  One-ring and call bombing need the call's outcome and the handset's recent calls; they are not
  replayed here (the demo's handset replay counts them).
- **Threshold for the phone** (`warn_risk`): the lowest risk at which the whole chain keeps the
  one-sided `CONFIDENCE` (95 %) Clopper-Pearson upper bound of honest calls flagged within `max_fpr`
  (0.5 %): the phone promises the budget on calls it has not seen, not only on this sample; written
  into the candidate's `contract.json`. Most callers a phone hears are callers the model trained on
  (80 %), and a student scores them from memory (higher on honest callers whose targets were noisy,
  and the calibration fitted on unseen callers lifts them further), so the threshold must keep the
  bound on those calls too (`trained_on_events`): `warn_risk` is the higher of the two thresholds.
  Every other figure is read on the held-out callers.
- **Gate** (`assess`): contract and artefact checks, an absolute bar (the model must add at least
  `min_gain` recall over "pack alone" within the same FPR budget) and, when a model is published, no
  regression beyond `margin` against it on the same calls, scored in the same run, on `GATE_METRICS`.
  The ranking figure the gate compares is the caller-weighted risk AUC (`caller_stats`: each held-out
  caller counts once), because a per-call AUC follows one or two heavy callers (day 2 of `make demo`:
  one telemarketer holds 20 % of the harmful calls without a pack label, and the per-call verdict
  flipped with the student's seed); the per-call AUC stays in the report. Each compared difference
  carries a 90 % interval from a caller-clustered paired bootstrap (`versus_published`). The verdict goes
  into the candidate's `metrics.json` and report; the published model's files are only read.

Runs the `.tflite` through LiteRT (`callmark.model.ModelRunner`). Never imports TensorFlow.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from callmark import categories
from callmark import model as cm
from callmark.numbers import normalize
from callmark.rules import CallFacts, Policy, evaluate_rules, is_flagged, label_action
from trainer import caller_stats, evaluate_report, features, fpr_bound
from trainer.evaluate_report import TARGETS  # noqa: F401  (the report's goals; re-exported)
from trainer.evaluate_report import truth_kind
from trainer.holdout import HOLDOUT_SHARE, held_out
from trainer.model.convert import artefact_problems

MAX_FPR = 0.005  # honest calls flagged: the budget every recall figure is read at
CONFIDENCE = 0.95  # one-sided level of the upper bound on honest calls flagged that warn_risk keeps in MAX_FPR
MIN_GAIN = 0.05  # recall pack + model must add over pack alone (same FPR budget) to ship at all
GATE_MARGIN = 0.02  # how much worse than the published model a candidate may be on GATE_METRICS
GATE_METRICS = ("risk_auc_callers", "recall_not_in_pack", "pack_plus_model_recall")
GATE_METRIC_NAMES = {"risk_auc_callers": "risk AUC per caller", "recall_not_in_pack": "recall not in pack",
                     "pack_plus_model_recall": "pack + model recall"}  # in sentences
BOOTSTRAP_REPS = 200  # caller-clustered paired bootstrap replicates behind each compared difference


class ReleaseGateError(RuntimeError):
    """A candidate model that breaks the feature contract, adds too little, or is worse than the
    published one; the message lists every reason, `verdict` holds the refused verdict (if any)."""

    def __init__(self, message: str, verdict: dict | None = None):
        super().__init__(message)
        self.verdict = verdict


def read_metrics(model_dir) -> dict:
    try:
        return json.loads((Path(model_dir) / "metrics.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _callers(data_dir, truth_csv, gold: bool, held: bool):
    """The caller filter of an evaluation: held-out callers (or the others), and with `gold` only
    the callers the truth file lists."""
    if not gold:
        return held_out if held else (lambda number: not held_out(number))
    if truth_csv is None:
        raise features.FeatureInputError("a gold set is a truth file of audited numbers: pass it (--truth FILE "
                                          "--gold, or eval_truth with eval_gold)")
    listed = set(features.read_truth(truth_csv))
    if not listed:
        raise features.FeatureInputError(f"gold set {truth_csv} lists no number")
    return lambda number: number in listed and held_out(number) == held


def evaluation_events(data_dir, *, truth_csv=None, labels_csv=None, max_events: int = 60_000,
                      seed: int = 0, gold: bool = False) -> features.RingEvents:
    """Ringing calls of `data_dir` from held-out callers only (at most `max_events`, reservoir sample).

    `truth_csv` overrides `data_dir/truth.csv` (a simulation's ground truth); `labels_csv` is the
    pack instead of the rolling tag pack. `gold`: the truth file is a gold set (numbers audited as
    harmful or honest, e.g. an operator's confirmed fraud cases and verified subscribers), so only
    the callers it lists are evaluated; otherwise a caller it does not list counts as honest.
    Raises FeatureInputError when no held-out call is left."""
    keep = _callers(data_dir, truth_csv, gold, held=True)
    try:
        ev = features.ring_events(data_dir, labels_csv=labels_csv, truth_csv=truth_csv, max_events=max_events,
                                  seed=seed, caller_filter=keep)
    except features.FeatureInputError:
        if not gold:
            raise
        raise features.FeatureInputError(
            f"gold set {truth_csv} lists none of the callers held out in {Path(data_dir) / 'calls.csv'} (a "
            f"{HOLDOUT_SHARE:.0%} share of numbers, chosen by a hash of the number key): write its numbers as the "
            "call records do (e.g. +8613812345678) and list enough of them") from None
    if gold and not 0 < ev.harmful.sum() < len(ev.harmful):
        kind = "harmful" if ev.harmful.sum() else "honest"
        raise features.FeatureInputError(
            f"gold set {truth_csv}: its {len(set(ev.caller))} held-out callers are all {kind}, so neither "
            "recall nor false positives can be read; list audited harmful and honest numbers")
    return ev


def trained_on_events(data_dir, *, labels_csv=None, truth_csv=None, max_events: int = 60_000,
                      seed: int = 0, gold: bool = False) -> features.RingEvents:
    """Ringing calls of `data_dir` from the callers every build may train on (not `held_out`): the
    calls a phone mostly hears, on which `warn_risk` must keep its promise as well. `gold` as in
    `evaluation_events`."""
    return features.ring_events(data_dir, labels_csv=labels_csv, truth_csv=truth_csv, max_events=max_events,
                                seed=seed, caller_filter=_callers(data_dir, truth_csv, gold, held=False))


def phone_flags(ev: features.RingEvents, policy: Policy | None = None) -> np.ndarray:
    """bool per event: the phone without the model flags it (pack label or stateless rule; calls
    from contacts are allowed first). "Pack alone"."""
    return (pack_flags(ev, policy) | phone_rule_flags(ev)) & ~contact_calls(ev)


def score_events(model_dir, ev: features.RingEvents, idx: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """LiteRT outputs for events `idx` (probs [n, C] in the model's class order, risk [n])."""
    idx = np.arange(len(ev.facts)) if idx is None else idx
    runner = cm.ModelRunner(model_dir)
    out = runner.run_batch(cm.encode_batch([ev.facts[i] for i in idx]))
    return {"probs": out["probs"], "risk": out["risk"].reshape(-1), "classes": np.asarray(runner.contract.classes)}


def pack_flags(ev: features.RingEvents, policy: Policy | None = None) -> np.ndarray:
    """bool per event: the pack label alone makes the phone warn or block (FLAGGED_ACTIONS)."""
    policy = policy or Policy()
    out = np.zeros(len(ev.facts), dtype=bool)
    for i, f in enumerate(ev.facts):
        cat = f.get("pack_category")
        if isinstance(cat, str) and cat and categories.is_key(cat):
            out[i] = is_flagged(label_action(cat, float(f.get("pack_confidence") or 0.0), policy))
    return out


def phone_rule_flags(ev: features.RingEvents, region: str = "CN") -> np.ndarray:
    """bool per event: a stateless on-device rule (`callmark.rules.evaluate_rules`: spoofed from
    abroad, irregular number, failed verification) warns or blocks the call, as on the phone. Calls
    from contacts are never flagged (the phone allows them first)."""
    out = np.zeros(len(ev.facts), dtype=bool)
    for i, f in enumerate(ev.facts):
        if f.get("in_contacts") or not isinstance(f.get("number"), str):
            continue
        ver = f.get("verification") if f.get("verification") in ("passed", "failed", "none") else "none"
        call = CallFacts.from_number_facts(normalize(f["number"], region), region, verification=ver)
        cat = f.get("pack_category")
        known = isinstance(cat, str) and categories.is_key(cat) and not categories.by_key(cat).harmful
        out[i] = any(is_flagged(r.action) for r in evaluate_rules(call, known, 1, int(not known)))
    return out


def contact_calls(ev: features.RingEvents) -> np.ndarray:
    """bool per event: the callee dialled the caller before (the phone's contacts proxy: allowed)."""
    return np.asarray([bool(f.get("in_contacts")) for f in ev.facts], dtype=bool)


def recall_at_fpr(y: np.ndarray, s: np.ndarray, max_fpr: float) -> tuple[float, float]:
    """(recall, threshold) of the loosest threshold whose false-positive rate is <= max_fpr."""
    neg = np.sort(s[y == 0])[::-1]
    if len(neg) == 0 or y.sum() == 0:
        return float("nan"), float("nan")
    k = int(np.floor(max_fpr * len(neg)))  # negatives allowed at or above the threshold
    thr = np.nextafter(neg[k], np.inf) if k < len(neg) else -np.inf
    return float((s[y == 1] >= thr).mean()), float(thr)


def allowed_false_positives(n_honest: int, max_fpr: float, confidence: float | None = CONFIDENCE) -> int:
    """`fpr_bound.allowed_false_positives` at this evaluation's `CONFIDENCE` by default."""
    return fpr_bound.allowed_false_positives(n_honest, max_fpr, confidence)


def phone_threshold(y: np.ndarray, risk: np.ndarray, model_runs: np.ndarray, pack_flag: np.ndarray,
                    max_fpr: float, confidence: float | None = CONFIDENCE, callers=None) -> float:
    """Lowest risk threshold at which the phone (pack + rules `pack_flag`, + model) flags few enough
    honest calls; inf when the phone without the model already uses the budget. `model_runs`: calls
    the model scores (no pack label, not a contact). "Few enough": at most `allowed_false_positives`
    and, given `callers` (one id per call), the caller-clustered upper bound
    (`fpr_bound.clustered_upper_bounds`, Korn-Graubard) of the flagged share stays <= `max_fpr`, so
    one prolific caller's calls count as the correlated evidence they are."""
    honest = y == 0
    budget = allowed_false_positives(int(honest.sum()), max_fpr, confidence) - int((pack_flag & honest).sum())
    runs = np.flatnonzero(honest & model_runs & ~pack_flag)
    order = runs[np.argsort(-risk[runs], kind="stable")]
    cand = risk[order]
    if budget < 0 or len(cand) == 0:
        return float("inf")
    # k flags are reachable by a threshold only where no tie straddles position k
    reachable = np.r_[True, cand[:-1] > cand[1:], True]
    reachable[budget + 1:] = False
    if callers is not None and confidence is not None:
        ids = caller_stats.caller_groups(np.asarray(callers)[honest])[0]
        pos = np.full(len(y), -1)
        pos[np.flatnonzero(honest)] = np.arange(int(honest.sum()))
        bounds = fpr_bound.clustered_upper_bounds(ids, (pack_flag & honest)[honest], pos[order], confidence)
        reachable &= bounds <= max_fpr
    if not reachable.any():
        return float("inf")
    k = int(np.flatnonzero(reachable)[-1])
    return float(np.nextafter(cand[k], np.inf)) if k < len(cand) else float(cand[-1])


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _rate(flag: np.ndarray, mask: np.ndarray) -> float:
    return float(flag[mask].mean()) if mask.any() else float("nan")


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: sum over equal-width bins of |mean p - share of y| x bin share."""
    which = np.clip(np.digitize(p, np.linspace(0, 1, bins + 1)) - 1, 0, bins - 1)
    return float(sum(abs(p[which == b].mean() - y[which == b].mean()) * (which == b).mean()
                     for b in range(bins) if (which == b).any()))


def compute_metrics(ev: features.RingEvents, out: dict, max_fpr: float = MAX_FPR,
                    policy: Policy | None = None, pack_flag: np.ndarray | None = None,
                    trained_on: tuple | None = None) -> dict:
    """Every figure of the report from one model's outputs on `ev` (see the module docstring).

    `trained_on` = (events, outputs, pack_flag or None) of calls from callers the model trained on:
    `warn_risk` then also keeps the honest-flag bound on them (the higher threshold wins) and
    `phone_honest_flagged` gives the share of honest calls the phone flags on both."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, risk = ev.harmful, out["risk"]
    nip = ~ev.in_pack
    contact = contact_calls(ev)
    if pack_flag is None:  # the phone without the model: pack labels and stateless rules, contacts allowed
        pack_flag = (pack_flags(ev, policy) | phone_rule_flags(ev)) & ~contact
    classes = list(out["classes"])
    true_code = np.asarray([categories.by_key(c).code for c in ev.category])
    both = 0 < y.sum() < len(y)
    m: dict = {"events": int(len(y)), "harmful_share": float(y.mean()), "in_pack_share": float(ev.in_pack.mean()),
               "max_fpr": max_fpr, "not_in_pack": {"events": int(nip.sum()), "harmful": int(y[nip].sum())}}
    m["risk_auc"] = float(roc_auc_score(y, risk)) if both else float("nan")
    m["risk_auc_callers"] = caller_stats.caller_weighted_auc(y, risk, ev.caller)
    m["callers"] = int(len(set(ev.caller)))
    m["risk_ap"] = float(average_precision_score(y, risk)) if y.sum() else float("nan")
    m["risk_auc_not_in_pack"] = (float(roc_auc_score(y[nip], risk[nip])) if 0 < y[nip].sum() < nip.sum()
                                 else float("nan"))
    m["recall_not_in_pack"], m["threshold_not_in_pack"] = recall_at_fpr(y[nip], risk[nip], max_fpr)
    runs = nip & ~contact  # where the phone runs the model
    thr = thr_held_out = phone_threshold(y, risk, runs, pack_flag, max_fpr, callers=ev.caller)
    if trained_on is not None:
        t_ev, t_out, t_flag = trained_on
        t_flag = phone_flags(t_ev, policy) if t_flag is None else t_flag
        t_runs = ~t_ev.in_pack & ~contact_calls(t_ev)
        thr_trained = phone_threshold(t_ev.harmful, t_out["risk"], t_runs, t_flag, max_fpr, callers=t_ev.caller)
        thr = max(thr_held_out, thr_trained)
        t_combo = t_flag | (t_runs & (t_out["risk"] >= thr))
        m["trained_on"] = {"events": int(len(t_ev.harmful)), "warn_risk": _finite(thr_trained),
                           "recall": _rate(t_combo, t_ev.harmful == 1), "fpr": _rate(t_combo, t_ev.harmful == 0),
                           "pack_alone_fpr": _rate(t_flag, t_ev.harmful == 0)}
    combo = pack_flag | (runs & (risk >= thr))
    m["fpr_confidence"] = CONFIDENCE
    m["warn_risk"] = _finite(thr)
    m["warn_risk_held_out"] = _finite(thr_held_out)
    m["pack_alone"] = {"recall": _rate(pack_flag, y == 1), "fpr": _rate(pack_flag, y == 0)}
    m["pack_plus_model"] = {"recall": _rate(combo, y == 1), "fpr": _rate(combo, y == 0)}
    m["pack_plus_model_recall"] = m["pack_plus_model"]["recall"]
    m["gain_over_pack"] = m["pack_plus_model"]["recall"] - m["pack_alone"]["recall"]
    m["risk_ece"] = ece(y.astype(float), risk)
    top = np.asarray(classes)[out["probs"].argmax(1)]
    m["top1_accuracy"] = float((top == true_code).mean())
    per = {}
    for j, code in enumerate(classes):
        t = true_code == code
        if 0 < t.sum() < len(t):
            per[categories.by_code(code).key] = {
                "support": int(t.sum()), "auc": float(roc_auc_score(t, out["probs"][:, j])),
                "ap": float(average_precision_score(t, out["probs"][:, j]))}
    m["per_class"] = per
    m["thresholds"] = [{"threshold": t, "flagged": float((risk >= t).mean()),
                        "recall": _rate(risk >= t, y == 1), "fpr": _rate(risk >= t, y == 0),
                        "precision": float(y[risk >= t].mean()) if (risk >= t).any() else float("nan")}
                       for t in (0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)]
    present = sorted(set(true_code.tolist()) | set(top.tolist()))
    cmx = np.zeros((len(present), len(present)), dtype=np.int64)
    pos = {c: i for i, c in enumerate(present)}
    np.add.at(cmx, ([pos[c] for c in true_code], [pos[c] for c in top]), 1)
    m["confusion"] = {"classes": [categories.by_code(int(c)).key for c in present], "counts": cmx.tolist()}
    return m


# ------------------------------------------------------------------------------------------ the gate

def contract_problems(cand: Path, pub: Path | None) -> list[str]:
    """Feature-contract, test-vector and artefact-check problems of the candidate (against `pub`)."""
    problems: list[str] = []
    try:
        cc = cm.Contract.load(cand)
    except cm.ModelContractError as exc:
        return [f"candidate {cand}: {exc}"]
    if pub is not None:
        try:
            pc = cm.Contract.load(pub)
        except cm.ModelContractError as exc:
            return [f"published {pub}: {exc} (cannot compare contracts)"]
        strip = lambda c: [(i["name"], i["dtype"], i["shape"], i.get("fields")) for i in c.inputs]  # noqa: E731
        if strip(cc) != strip(pc):
            problems.append("feature contract inputs changed (names, dtypes, shapes or fields); "
                            "a phone with the published encoder would feed it wrong tensors")
        dropped = [categories.by_code(c).key for c in pc.classes if c not in cc.classes]
        if dropped:
            problems.append(f"output classes dropped: {', '.join(dropped)}")
        if cc.classes[:len(pc.classes)] != pc.classes:
            problems.append("output class order changed; phones map probs by position")
    try:
        cm.replay_test_vectors(cand, atol=float(cc.extra.get("test_vector_atol", 0.02)))
    except cm.ModelContractError as exc:
        problems.append(f"test vectors fail: {exc}")
    cmx = read_metrics(cand)
    check, cfg = cmx.get("artefact_check"), cmx.get("config", {})
    if not check:
        problems.append("candidate metrics.json has no artefact_check; rebuild with `callmark model train`")
    else:
        problems.extend(artefact_problems(check, cfg))
    size = (cand / "model.tflite").stat().st_size if (cand / "model.tflite").is_file() else None
    if size is None or size > cfg.get("max_bytes", 64 * 1024):
        problems.append(f"model.tflite size {size} exceeds {cfg.get('max_bytes', 64 * 1024)} bytes")
    return problems


def quality_problems(c: dict, p: dict | None, margin: float, min_gain: float) -> tuple[list[str], dict]:
    """The absolute bar and the comparison with the published model (both scored on the same calls)."""
    problems, compared = [], {}
    gain = c.get("gain_over_pack", float("nan"))
    if not gain >= min_gain:  # NaN fails too
        reason = (f"adds {_fmt(gain)} recall over the pack alone at <= {c['max_fpr']:.1%} FPR on honest "
                  f"calls; a model must add >= {min_gain} to ship")
        pack_fpr = c.get("pack_alone", {}).get("fpr")
        trained_fpr = (c.get("trained_on") or {}).get("pack_alone_fpr")
        which = "calls counted honest"
        if (pack_fpr is None or pack_fpr <= c["max_fpr"]) and trained_fpr is not None and trained_fpr > c["max_fpr"]:
            pack_fpr, which = trained_fpr, "trained-on callers' calls counted honest"
        if pack_fpr is not None and pack_fpr > c["max_fpr"]:
            reason += (f" (the pack and the on-device rules alone already flag {pack_fpr:.2%} of the {which}, "
                       f"over the {c['max_fpr']:.1%} budget, so no threshold leaves the model any; with release "
                       "labels as the truth every untagged caller counts as honest: evaluate on a gold set of "
                       "audited numbers instead, `model gate --truth FILE --gold` or the build's `eval_truth` + "
                       "`eval_gold`; in a gold set, give a recycled number's new owner its own row with "
                       "first_day)")
        problems.append(reason)
    if p is not None:
        for key in GATE_METRICS:
            cv, pv = c.get(key), p.get(key)
            compared[key] = {"candidate": cv, "published": pv, **c.get("versus_published", {}).get(key, {})}
            if (cv is None or np.isnan(cv)) and (pv is None or np.isnan(pv)):
                problems.append(f"{key} cannot be read on these calls (no harmful or no honest calls where it "
                                "applies): the truth needs both")
            elif cv is None or np.isnan(cv) or (pv is not None and not np.isnan(pv) and cv < pv - margin):
                problems.append(f"{key} regressed on the same calls: candidate {_fmt(cv)} < published "
                                f"{_fmt(pv)} - margin {margin}")
    return problems, compared


def assess(candidate_dir, data_dir, *, published_dir=None, truth_csv=None, labels_csv=None,
           margin: float = GATE_MARGIN, min_gain: float = MIN_GAIN, max_fpr: float = MAX_FPR,
           max_events: int = 60_000, gate: bool = True, release: str | None = None, plots: bool = True,
           policy: Policy | None = None, gold: bool = False) -> dict:
    """Evaluate the candidate (and the published model, on the same held-out calls in the same run),
    decide the gate's verdict, and write `metrics.json["evaluation"|"gate"]`, `contract.json
    ["warn_risk"]`, `report.md`, `report.html` and content-addressed plots into the candidate.

    Returns {"candidate": metrics, "published": metrics | None, "verdict": {...}}. Never writes to
    `published_dir`."""
    cand = Path(candidate_dir)
    pub = Path(published_dir) if published_dir else None
    t0 = time.time()
    ev = evaluation_events(data_dir, truth_csv=truth_csv, labels_csv=labels_csv, max_events=max_events, gold=gold)
    pack_flag = phone_flags(ev, policy)
    try:
        t_ev = trained_on_events(data_dir, truth_csv=truth_csv, labels_csv=labels_csv, max_events=max_events,
                                 gold=gold)
    except features.FeatureInputError:  # every caller held out (a tiny set): the threshold reads them alone
        t_ev = None
    t_flag = phone_flags(t_ev, policy) if t_ev is not None else None

    def on_trained(model):
        return (t_ev, score_events(model, t_ev), t_flag) if t_ev is not None else None
    try:
        out = score_events(cand, ev)
    except cm.ModelContractError as exc:  # a phone could not run it: refused without figures
        if not gate:
            raise
        problems = contract_problems(cand, pub) or [f"cannot run the candidate: {exc}"]
        verdict = {"accepted": False, "reasons": problems, "compared": {}, "margin": margin, "min_gain": min_gain,
                   "published": str(pub) if pub else None, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        metrics = read_metrics(cand)
        metrics["gate"] = verdict
        (cand / "metrics.json").write_text(json.dumps(metrics, indent=2))
        return {"candidate": None, "published": None, "verdict": verdict}
    c = compute_metrics(ev, out, max_fpr, policy, pack_flag, trained_on=on_trained(cand))
    pub_out = score_events(pub, ev) if pub else None
    p = compute_metrics(ev, pub_out, max_fpr, policy, pack_flag, trained_on=on_trained(pub)) if pub else None
    if pub_out is not None:
        c["versus_published"] = versus_published(ev, out["risk"], pub_out["risk"], max_fpr)
    truth_path = Path(truth_csv) if truth_csv else Path(data_dir) / "truth.csv"
    c["data"] = {"dir": str(data_dir), "truth": truth_kind(truth_path, gold), "truth_csv": str(truth_path),
                 "held_out": f"callers whose number-key hash falls in the first {HOLDOUT_SHARE:.0%}"}
    verdict = None
    if gate:
        problems = contract_problems(cand, pub)
        qp, compared = quality_problems(c, p, margin, min_gain)
        problems += qp
        verdict = {"accepted": not problems, "reasons": problems, "compared": compared, "margin": margin,
                   "min_gain": min_gain, "published": str(pub) if pub else None,
                   "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    c["seconds"] = round(time.time() - t0, 1)
    metrics = read_metrics(cand)
    metrics["evaluation"] = c
    metrics["evaluation_published"] = p
    metrics["gate"] = verdict
    (cand / "metrics.json").write_text(json.dumps(metrics, indent=2))
    _write_warn_risk(cand, c["warn_risk"])
    evaluate_report.write(cand, metrics, ev, out, release=release, plots=plots)
    return {"candidate": c, "published": p, "verdict": verdict}


def versus_published(ev: features.RingEvents, cand_risk: np.ndarray, pub_risk: np.ndarray,
                     max_fpr: float = MAX_FPR, reps: int = BOOTSTRAP_REPS) -> dict:
    """Candidate minus published on the same calls, per figure read from the risk alone
    (`risk_auc_callers`, `risk_auc`, `recall_not_in_pack`), each with the 90 % interval of a
    caller-clustered paired bootstrap (`caller_stats.paired_difference`). A difference whose interval
    holds 0 is within what resampling the callers moves; `pack_plus_model_recall` needs the phone
    threshold per replicate and has no interval."""
    from sklearn.metrics import roc_auc_score

    y, nip, callers = ev.harmful, ~ev.in_pack, np.asarray(ev.caller)

    def auc(idx, cluster, weighted):
        yy = y[idx]
        if not 0 < yy.sum() < len(yy):
            return float("nan")
        if weighted:
            return (caller_stats.caller_weighted_auc(yy, cand_risk[idx], cluster)
                    - caller_stats.caller_weighted_auc(yy, pub_risk[idx], cluster))
        return float(roc_auc_score(yy, cand_risk[idx]) - roc_auc_score(yy, pub_risk[idx]))

    def recall(idx, _cluster):
        idx = idx[nip[idx]]
        return recall_at_fpr(y[idx], cand_risk[idx], max_fpr)[0] - recall_at_fpr(y[idx], pub_risk[idx], max_fpr)[0]

    figures = {"risk_auc_callers": lambda idx, cl: auc(idx, cl, True),
               "risk_auc": lambda idx, cl: auc(idx, cl, False),
               "recall_not_in_pack": recall}
    return {k: caller_stats.paired_difference(f, callers, reps=reps) for k, f in figures.items()}


def _write_warn_risk(model_dir: Path, warn_risk: float | None) -> None:
    """Record the phone's warn threshold in the candidate's contract (read by the handset)."""
    path = model_dir / "contract.json"
    try:
        contract = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return
    if warn_risk is None or warn_risk > 1.0:
        contract.pop("warn_risk", None)
    else:
        contract["warn_risk"] = round(float(warn_risk), 6)
    path.write_text(json.dumps(contract, indent=2, ensure_ascii=False))


def evaluate(model_dir, data_dir, *, published_dir=None, labels_csv=None, truth_csv=None,
             max_events: int = 60_000, max_fpr: float = MAX_FPR, plots: bool = True, gold: bool = False) -> dict:
    """Report only (no verdict): `assess(..., gate=False)`; returns the candidate's metrics with a
    `published` summary of the published model on the same calls."""
    res = assess(model_dir, data_dir, published_dir=published_dir, labels_csv=labels_csv, truth_csv=truth_csv,
                 max_events=max_events, max_fpr=max_fpr, gate=False, plots=plots, gold=gold)
    m = dict(res["candidate"])
    p = res["published"]
    m["published"] = {"dir": str(published_dir), **{k: p[k] for k in GATE_METRICS + ("risk_auc", "risk_ece", "top1_accuracy")}} \
        if p else None
    return m


def gate(candidate_dir, published_dir=None, margin: float = GATE_MARGIN, data_dir=None, *, truth_csv=None,
         labels_csv=None, min_gain: float = MIN_GAIN, release: str | None = None, gold: bool = False) -> dict:
    """`assess` with the verdict enforced: raises ReleaseGateError listing every reason when refused,
    else returns the verdict. `data_dir` is required: both models are scored on its held-out calls."""
    if data_dir is None:
        raise ReleaseGateError("the gate scores both models on the same calls: pass data_dir (`--data`)")
    res = assess(candidate_dir, data_dir, published_dir=published_dir, truth_csv=truth_csv, labels_csv=labels_csv,
                 margin=margin, min_gain=min_gain, release=release, gold=gold)
    verdict = res["verdict"]
    if not verdict["accepted"]:
        raise ReleaseGateError(f"release gate refused {candidate_dir}: " + "; ".join(verdict["reasons"]), verdict)
    return verdict


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "n/a"
    return f"{v:.4f}" if isinstance(v, float) else str(v)
