"""Evaluation report for a student model directory, and the release gate.

Runs the exported `.tflite` through `callmark.model.ModelRunner` (LiteRT) on ringing calls from
held-out caller numbers, writes `report.md` + PNG plots into the model directory and an
`evaluation` section into `metrics.json`. Never imports TensorFlow.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from callmark import categories
from callmark import model as cm
from trainer import features

MAX_FPR = 0.005  # honest calls wrongly flagged, for the headline recall
GATE_METRICS = ("risk_auc", "recall_not_in_pack")


class ReleaseGateError(RuntimeError):
    """A candidate model that breaks the feature contract or is worse than the published one."""


def _events(model_dir: Path, data_dir, labels_csv=None, max_events: int = 60_000):
    metrics = _read_metrics(model_dir)
    share = metrics.get("config", {}).get("test_share", 0.2)
    same = str(Path(metrics.get("data", {}).get("dir", "")).resolve()) == str(Path(data_dir).resolve())
    ev = features.ring_events(data_dir, labels_csv=labels_csv, max_events=max_events * (5 if same else 1))
    from trainer.model.student import is_test_number  # no TensorFlow at import time

    keep = np.asarray([is_test_number(c, share) for c in ev.caller]) if same else np.ones(len(ev.caller), bool)
    idx = np.flatnonzero(keep)[:max_events]
    return ev, idx, same


def _read_metrics(model_dir: Path) -> dict:
    try:
        return json.loads((Path(model_dir) / "metrics.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def score_events(model_dir, ev: features.RingEvents, idx: np.ndarray) -> dict[str, np.ndarray]:
    """LiteRT outputs for events `idx` (probs [n, C] in the model's class order, risk [n])."""
    runner = cm.ModelRunner(model_dir)
    tensors = cm.encode_batch([ev.facts[i] for i in idx])
    out = runner.run_batch(tensors)
    return {"probs": out["probs"], "risk": out["risk"].reshape(-1), "classes": np.asarray(runner.contract.classes)}


def recall_at_fpr(y: np.ndarray, s: np.ndarray, max_fpr: float) -> tuple[float, float]:
    """(recall, threshold) of the loosest threshold whose false-positive rate is <= max_fpr."""
    neg = np.sort(s[y == 0])[::-1]
    if len(neg) == 0 or y.sum() == 0:
        return float("nan"), float("nan")
    k = int(np.floor(max_fpr * len(neg)))  # negatives allowed above the threshold
    thr = np.nextafter(neg[k], np.inf) if k < len(neg) else -np.inf
    return float((s[y == 1] >= thr).mean()), float(thr)


def compute_metrics(ev: features.RingEvents, idx: np.ndarray, out: dict, max_fpr: float = MAX_FPR) -> dict:
    """Headline and per-class metrics from model outputs on events `idx`."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = ev.harmful[idx]
    in_pack = ev.in_pack[idx]
    risk = out["risk"]
    classes = list(out["classes"])
    true_code = np.asarray([categories.by_key(ev.category[i]).code for i in idx])
    pack_harm = np.asarray([bool(ev.facts[i].get("pack_category")) and
                            categories.by_key(ev.facts[i]["pack_category"]).harmful
                            if isinstance(ev.facts[i].get("pack_category"), str) else False for i in idx])
    m: dict = {"events": int(len(idx)), "harmful_share": float(y.mean()), "in_pack_share": float(in_pack.mean())}
    m["risk_auc"] = float(roc_auc_score(y, risk)) if 0 < y.sum() < len(y) else float("nan")
    m["risk_ap"] = float(average_precision_score(y, risk)) if y.sum() else float("nan")
    nip = ~in_pack
    rec, thr = recall_at_fpr(y[nip], risk[nip], max_fpr)
    m["recall_not_in_pack"], m["threshold_not_in_pack"] = rec, thr
    m["max_fpr"] = max_fpr
    # pack alone versus pack + model over all calls, at the same honest-call FPR budget
    pack_flag = pack_harm
    m["pack_alone"] = {"recall": float(pack_flag[y == 1].mean()) if y.sum() else float("nan"),
                       "fpr": float(pack_flag[y == 0].mean()) if (y == 0).any() else float("nan")}
    combo_thr = thr if np.isfinite(thr) else 1.01
    combo = pack_flag | (nip & (risk >= combo_thr))
    m["pack_plus_model"] = {"recall": float(combo[y == 1].mean()) if y.sum() else float("nan"),
                            "fpr": float(combo[y == 0].mean()) if (y == 0).any() else float("nan")}
    m["not_in_pack"] = {"events": int(nip.sum()), "harmful": int(y[nip].sum())}
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
    bins = np.linspace(0, 1, 11)
    which = np.clip(np.digitize(risk, bins) - 1, 0, 9)
    ece = sum(abs(risk[which == b].mean() - y[which == b].mean()) * (which == b).mean()
              for b in range(10) if (which == b).any())
    m["risk_ece"] = float(ece)
    m["thresholds"] = [{"threshold": t, "flagged": float((risk >= t).mean()),
                        "recall": float((risk[y == 1] >= t).mean()) if y.sum() else float("nan"),
                        "fpr": float((risk[y == 0] >= t).mean()) if (y == 0).any() else float("nan"),
                        "precision": float(y[risk >= t].mean()) if (risk >= t).any() else float("nan")}
                       for t in (0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)]
    return m


def _plots(out_dir: Path, ev, idx, out, prefix: str = "") -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

    files = []
    classes = list(out["classes"])
    keys = [categories.by_code(c).key for c in classes]
    true_code = np.asarray([categories.by_key(ev.category[i]).code for i in idx])
    y = ev.harmful[idx]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for j, code in enumerate(classes):
        t = true_code == code
        if 0 < t.sum() < len(t):
            f, r, _ = roc_curve(t, out["probs"][:, j])
            axes[0].plot(f, r, lw=1, label=keys[j])
            p, rc, _ = precision_recall_curve(t, out["probs"][:, j])
            axes[1].plot(rc, p, lw=1, label=keys[j])
    if 0 < y.sum() < len(y):
        f, r, _ = roc_curve(y, out["risk"])
        axes[0].plot(f, r, "k", lw=2, label="risk (harmful)")
        p, rc, _ = precision_recall_curve(y, out["risk"])
        axes[1].plot(rc, p, "k", lw=2, label="risk (harmful)")
    axes[0].set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC per class",
                xscale="log", xlim=(1e-3, 1))
    axes[1].set(xlabel="recall", ylabel="precision", title="Precision-recall per class")
    axes[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    files.append(f"{prefix}roc_pr.png")
    fig.savefig(out_dir / files[-1], dpi=90)
    plt.close(fig)

    present = sorted(set(true_code) | set(np.asarray(classes)[out["probs"].argmax(1)]))
    cmx = confusion_matrix(true_code, np.asarray(classes)[out["probs"].argmax(1)], labels=present)
    fig, ax = plt.subplots(figsize=(7, 6))
    norm = cmx / np.maximum(cmx.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    names = [categories.by_code(c).key for c in present]
    ax.set_xticks(range(len(present)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(present)), names, fontsize=7)
    ax.set(xlabel="predicted (top-1)", ylabel="true", title="Confusion matrix (row-normalised)")
    fig.tight_layout()
    files.append(f"{prefix}confusion.png")
    fig.savefig(out_dir / files[-1], dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    bins = np.linspace(0, 1, 11)
    which = np.clip(np.digitize(out["risk"], bins) - 1, 0, 9)
    xs = [out["risk"][which == b].mean() for b in range(10) if (which == b).any()]
    ys = [y[which == b].mean() for b in range(10) if (which == b).any()]
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.plot(xs, ys, "o-")
    ax.set(xlabel="predicted risk", ylabel="observed harmful share", title="Calibration of risk")
    fig.tight_layout()
    files.append(f"{prefix}calibration.png")
    fig.savefig(out_dir / files[-1], dpi=90)
    plt.close(fig)
    return files


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else (f"{v:.4f}" if isinstance(v, float) else str(v))


def evaluate(model_dir, data_dir, *, published_dir=None, labels_csv=None, max_events: int = 60_000,
             max_fpr: float = MAX_FPR, plots: bool = True) -> dict:
    """Evaluate `model_dir` on ringing calls of `data_dir` (simulator output); write report.md,
    PNGs and metrics.json["evaluation"]; compare with `published_dir` when given."""
    model_dir = Path(model_dir)
    t0 = time.time()
    ev, idx, same = _events(model_dir, data_dir, labels_csv, max_events)
    if len(idx) == 0:
        raise features.FeatureInputError(f"no held-out calls to evaluate in {data_dir}")
    out = score_events(model_dir, ev, idx)
    m = compute_metrics(ev, idx, out, max_fpr)
    m["data"] = {"dir": str(data_dir), "held_out_callers_only": same}
    files = _plots(model_dir, ev, idx, out) if plots else []
    pub = None
    if published_dir:
        pout = score_events(published_dir, ev, idx)
        pub = compute_metrics(ev, idx, pout, max_fpr)
    m["published"] = ({"dir": str(published_dir), **{k: pub[k] for k in
                       ("risk_auc", "recall_not_in_pack", "top1_accuracy", "risk_ece")}} if pub else None)
    m["seconds"] = round(time.time() - t0, 1)
    metrics = _read_metrics(model_dir)
    metrics["evaluation"] = m
    (model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (model_dir / "report.md").write_text(_report(model_dir, metrics, m, pub, files))
    return m


def _report(model_dir: Path, metrics: dict, m: dict, pub: dict | None, files: list[str]) -> str:
    ac = metrics.get("artefact_check", {})
    lines = [f"# Model report: {model_dir.name}", "",
             f"Evaluated {m['events']} ringing calls from `{m['data']['dir']}`"
             f"{' (held-out caller numbers only)' if m['data']['held_out_callers_only'] else ''}; "
             f"{m['harmful_share']:.1%} from harmful numbers, {m['in_pack_share']:.1%} from numbers in the pack.",
             "", "## Headline", "",
             "| metric | this model |" + (" published |" if pub else ""),
             "|---|---|" + ("---|" if pub else "")]
    rows = [("risk AUC (harmful vs honest)", "risk_auc"), ("risk average precision", "risk_ap"),
            (f"recall of harmful calls not in pack at ≤ {m['max_fpr']:.1%} FPR", "recall_not_in_pack"),
            ("top-1 category accuracy", "top1_accuracy"), ("risk calibration error (ECE)", "risk_ece")]
    for label, key in rows:
        lines.append(f"| {label} | {_fmt(m.get(key))} |" + (f" {_fmt(pub.get(key))} |" if pub else ""))
    lines += ["", "## Pack alone versus pack + model (all calls)", "",
              "| | recall of harmful calls | FPR on honest calls |", "|---|---|---|",
              f"| pack alone | {_fmt(m['pack_alone']['recall'])} | {_fmt(m['pack_alone']['fpr'])} |",
              f"| pack + model (threshold {_fmt(m['threshold_not_in_pack'])} on numbers not in the pack) | "
              f"{_fmt(m['pack_plus_model']['recall'])} | {_fmt(m['pack_plus_model']['fpr'])} |",
              "", "## Threshold table (risk output)", "",
              "| threshold | flagged | recall | FPR | precision |", "|---|---|---|---|---|"]
    for t in m["thresholds"]:
        lines.append(f"| {t['threshold']} | {_fmt(t['flagged'])} | {_fmt(t['recall'])} | {_fmt(t['fpr'])} | "
                     f"{_fmt(t['precision'])} |")
    lines += ["", "## Per class (one-vs-rest on the `probs` output)", "",
              "| class | support | ROC AUC | average precision |", "|---|---|---|---|"]
    for k, v in sorted(m["per_class"].items(), key=lambda kv: -kv[1]["support"]):
        lines.append(f"| {k} | {v['support']} | {_fmt(v['auc'])} | {_fmt(v['ap'])} |")
    lines += ["", "## Artefact", "",
              f"- model.tflite: {metrics.get('size_bytes', 'n/a')} bytes, {metrics.get('params', 'n/a')} parameters, int8",
              f"- LiteRT vs Keras on {ac.get('rows', 'n/a')} held-out rows: top-1 agreement "
              f"{_fmt(ac.get('top1_agreement'))} (tie-aware {_fmt(ac.get('top1_agreement_tie_aware'))}), "
              f"max probability difference {_fmt(ac.get('max_prob_diff'))}", ""]
    lines += [f"![{f}]({f})" for f in files]
    return "\n".join(lines) + "\n"


def gate(candidate_dir, published_dir, margin: float = 0.01, data_dir=None) -> dict:
    """Refuse a candidate that breaks the published feature contract or regresses by more than
    `margin` on GATE_METRICS; raises ReleaseGateError listing every reason. With `data_dir`, both
    models are evaluated on the same calls first; otherwise their stored evaluations are compared."""
    problems: list[str] = []
    cand, pub = Path(candidate_dir), Path(published_dir)
    try:
        cc = cm.Contract.load(cand)
    except cm.ModelContractError as exc:
        raise ReleaseGateError(f"candidate {cand}: {exc}") from None
    try:
        pc = cm.Contract.load(pub)
    except cm.ModelContractError as exc:
        raise ReleaseGateError(f"published {pub}: {exc} (cannot compare contracts)") from None
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
    cmx = _read_metrics(cand)
    check = cmx.get("artefact_check")
    cfg = cmx.get("config", {})
    if not check:
        problems.append("candidate metrics.json has no artefact_check; rebuild with `callmark model train`")
    else:
        if check.get("top1_agreement_tie_aware", 0) < cfg.get("min_agreement", 0.995):
            problems.append(f"LiteRT/Keras top-1 agreement {check.get('top1_agreement_tie_aware')} too low")
        worst = max(check.get("max_prob_diff", 1), check.get("max_risk_diff", 1))
        if worst > cfg.get("max_prob_diff", 0.02):
            problems.append(f"LiteRT/Keras max probability difference {worst:.4f} > {cfg.get('max_prob_diff', 0.02)}")
    size = (cand / "model.tflite").stat().st_size if (cand / "model.tflite").is_file() else None
    if size is None or size > cfg.get("max_bytes", 64 * 1024):
        problems.append(f"model.tflite size {size} exceeds {cfg.get('max_bytes', 64 * 1024)} bytes")
    if data_dir is not None:
        ce = evaluate(cand, data_dir, plots=False)
        pe = evaluate(pub, data_dir, plots=False)
    else:
        ce, pe = cmx.get("evaluation"), _read_metrics(pub).get("evaluation")
        if not ce or not pe:
            problems.append("no stored evaluation to compare; pass data_dir (`--data`) to evaluate both")
        elif ce.get("data", {}).get("dir") != pe.get("data", {}).get("dir"):
            problems.append("stored evaluations used different data; pass data_dir to evaluate both on the same calls")
    compared = {}
    if ce and pe:
        for key in GATE_METRICS:
            c, p = ce.get(key), pe.get(key)
            compared[key] = {"candidate": c, "published": p}
            if c is None or p is None or np.isnan(c) or (not np.isnan(p) and c < p - margin):
                problems.append(f"{key} regressed: candidate {_fmt(c)} < published {_fmt(p)} - margin {margin}")
    if problems:
        raise ReleaseGateError(f"release gate refused {cand}: " + "; ".join(problems))
    return {"candidate": str(cand), "published": str(pub), "margin": margin, "compared": compared}
