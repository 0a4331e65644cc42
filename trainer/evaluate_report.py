"""The model report a maintainer decides from: `report.md` and `report.html` with the same content.

Built from `metrics.json` (written by `trainer.evaluate.assess`) as a list of blocks rendered twice.
Plots are PNGs named `<first 16 hex of their SHA-256>-<name>.png` beside the report: the name the
exports layout gives every artefact, so the report's relative links work both in the build folder and
in `exports/artefacts/` after publishing. Never imports TensorFlow.
"""
from __future__ import annotations

import hashlib
import html
import io
import re
import time
from pathlib import Path

import numpy as np

from callmark import categories
from callmark.exports import artefact_path

PLOT_NAMES = ("roc_pr.png", "confusion.png", "calibration.png")
TARGETS = {  # the goals the report shows beside each figure (issue 14, docs/models.md)
    "recall_not_in_pack": (">=", 0.5), "gain_over_pack": (">=", 0.10), "risk_ece": ("<=", 0.05),
    "size_bytes": ("<=", 64 * 1024),
}
_HASHED = re.compile(r"^[0-9a-f]{16}-(" + "|".join(re.escape(n) for n in PLOT_NAMES) + r")$")


def truth_kind(truth_csv: Path, gold: bool = False) -> str:
    """What a truth file holds, for the report: a build's release labels (every row's role is
    `label`, written by `training_targets`) or ground truth (a simulation's roles); with `gold`, a
    gold set (only the callers it lists are evaluated)."""
    import csv

    if gold:
        return (f"gold set `{truth_csv}` (only the callers it lists are evaluated; no unlisted caller counts "
                "as honest)")
    try:
        with open(truth_csv, newline="", encoding="utf-8") as f:
            roles = {row.get("role") for row in csv.DictReader(f)}
    except OSError:
        return "unknown (no truth file)"
    if roles <= {"label"}:
        return "release labels (callers nobody tagged count as honest)"
    return "ground truth"


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return "∞" if np.isinf(v) else f"{v:.4f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _goal(key: str) -> str:
    if key not in TARGETS:
        return ""
    op, v = TARGETS[key]
    return f"{'≥' if op == '>=' else '≤'} {v:,}" if isinstance(v, int) else f"{'≥' if op == '>=' else '≤'} {v}"


def _met(key: str, v) -> str:
    if key not in TARGETS or v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    op, goal = TARGETS[key]
    return "yes" if (v >= goal if op == ">=" else v <= goal) else "**no**"


def _difference(d: dict | None) -> str:
    if not d:
        return ""
    text = f"{d['difference']:+.4f}"
    return text + (f" [{d['low']:+.4f}, {d['high']:+.4f}]" if d.get("low") is not None else "")


def blocks(metrics: dict, files: list[str], release: str | None) -> list[tuple]:
    """The report as ("h1"|"h2"|"p"|"ul"|"table"|"img", payload) blocks."""
    c, p, g = metrics["evaluation"], metrics.get("evaluation_published"), metrics.get("gate")
    ac = metrics.get("artefact_check", {})
    out: list[tuple] = [("h1", f"Model report: release {release or '(unreleased)'}"),
                        ("p", f"Evaluated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; model built "
                              f"{metrics.get('built_at', 'n/a')}.")]
    out.append(("h2", "Release gate verdict"))
    if g is None:
        out.append(("p", "No gate run (report only)."))
    else:
        word = "ACCEPTED: this model ships" if g["accepted"] else "REFUSED: this model does not ship"
        against = f"against the published model `{g['published']}`" if g["published"] else \
            "as a first model (no published model: the absolute bar alone applies)"
        out.append(("p", f"**{word}**, {against}. Bar: pack + model must add ≥ {g['min_gain']} recall over the "
                         f"pack alone at ≤ {c['max_fpr']:.1%} FPR on honest calls; no gate metric may fall more "
                         f"than {g['margin']} below the published model's on the same calls."))
        out.append(("ul", g["reasons"] or ["every check passed"]))
    d = c["data"]
    out += [("h2", "Calls evaluated"),
            ("p", f"{c['events']:,} ringing calls from held-out caller numbers ({d['held_out']}; no compared "
                  f"model trained on them) in `{d['dir']}`. Truth: {d['truth']}. {c['harmful_share']:.1%} of the "
                  f"calls are from harmful numbers, {c['in_pack_share']:.1%} from numbers with a pack label; "
                  f"{c['not_in_pack']['events']:,} calls ({c['not_in_pack']['harmful']:,} harmful) have no pack "
                  "label, so the phone asks the model."),
            ("p", "A call counts as flagged when the phone warns, silences or rejects it (a label alone, e.g. "
                  "delivery, is not a flag): for pack labels the handset policy's action, for the model "
                  "`risk ≥ warn_risk`.")]
    versus = c.get("versus_published") or {}
    gate_metrics = set((g or {}).get("compared") or {})
    head = ["figure", "candidate"] + (["published (same calls)", "difference (90 % CI)"] if p else []) \
        + ["goal", "met"]
    rows = []
    for label, key in (("recall of harmful calls not in the pack, ≤ 0.5 % FPR", "recall_not_in_pack"),
                       ("pack + model recall minus pack alone (same FPR budget)", "gain_over_pack"),
                       ("pack + model recall", "pack_plus_model_recall"),
                       ("risk ROC AUC, each held-out caller counted once", "risk_auc_callers"),
                       ("risk ROC AUC (all held-out calls)", "risk_auc"),
                       ("risk ROC AUC (calls not in the pack)", "risk_auc_not_in_pack"),
                       ("risk calibration error (ECE, 10 bins)", "risk_ece"),
                       ("top-1 category accuracy", "top1_accuracy"),
                       ("warn threshold for the phone (`warn_risk`)", "warn_risk")):
        if p and key in gate_metrics:
            label += " (gate)"
        rows.append([label, _fmt(c.get(key))] + ([_fmt(p.get(key)), _difference(versus.get(key))] if p else [])
                    + [_goal(key), _met(key, c.get(key))])
    size = metrics.get("size_bytes")
    rows.append(["model.tflite bytes (int8, built-in ops)", _fmt(size)] + (["–", ""] if p else [])
                + [_goal("size_bytes"), _met("size_bytes", size)])
    out += [("h2", "Candidate and published model on the same calls"), ("table", head, rows)]
    if versus:
        out.append(("p", f"Differences are candidate minus published; the interval resamples the {c['callers']:,} "
                         "held-out callers with replacement (a caller-clustered paired bootstrap), so a heavy "
                         "caller's calls move together. An interval that holds 0 is within that noise. Rows "
                         "marked (gate) are the figures the gate compares with its margin; the per-call AUC is "
                         "shown, not compared, because it weights each caller by its number of calls, so a "
                         "few heavy callers can decide it (ADR 0010)."))
    head = ["", "recall of harmful calls", "FPR on honest calls"]
    rows = [["pack alone", _fmt(c["pack_alone"]["recall"]), _fmt(c["pack_alone"]["fpr"])],
            [f"pack + candidate (warn_risk {_fmt(c['warn_risk'])})", _fmt(c["pack_plus_model"]["recall"]),
             _fmt(c["pack_plus_model"]["fpr"])]]
    if p:
        rows.append([f"pack + published (warn_risk {_fmt(p['warn_risk'])})", _fmt(p["pack_plus_model"]["recall"]),
                     _fmt(p["pack_plus_model"]["fpr"])])
    out += [("h2", "Pack alone versus pack + model"), ("table", head, rows),
            ("p", f"The phone's threshold `warn_risk` = {_fmt(c['warn_risk'])} is the lowest model risk at which "
                  f"pack + model keeps the {c.get('fpr_confidence', 0.95):.0%} upper bound of honest calls flagged "
                  f"within {c['max_fpr']:.1%}; it is written into this model's `contract.json` and the handset "
                  "warns at or above it.")]
    t = c.get("trained_on")
    if t:
        at = ("At it" if c.get("warn_risk") is not None else
              "No threshold keeps it, so the phone would not run the model; without it")
        out.append(("p", f"It must hold on callers the model trained on too (most callers a phone hears): on "
                         f"{t['events']:,} of their calls the threshold would be {_fmt(t['warn_risk'])}, on the "
                         f"held-out calls {_fmt(c.get('warn_risk_held_out'))}; the higher one is used. {at}, "
                         f"the trained-on calls have recall {_fmt(t['recall'])} and FPR {_fmt(t['fpr'])}."))
    out += [("h2", "Risk threshold table (all held-out calls)"),
            ("table", ["threshold", "flagged", "recall", "FPR", "precision"],
             [[str(t["threshold"]), _fmt(t["flagged"]), _fmt(t["recall"]), _fmt(t["fpr"]), _fmt(t["precision"])]
              for t in c["thresholds"]])]
    out += [("h2", "Per class (one-vs-rest on the `probs` output)"),
            ("table", ["class", "support", "ROC AUC", "average precision"],
             [[k, _fmt(v["support"]), _fmt(v["auc"]), _fmt(v["ap"])]
              for k, v in sorted(c["per_class"].items(), key=lambda kv: -kv[1]["support"])])]
    out += [("h2", "Artefact"),
            ("ul", [f"model.tflite: {_fmt(size)} bytes, {_fmt(metrics.get('params'))} parameters, int8 full-integer",
                    f"LiteRT vs Keras on {_fmt(ac.get('rows'))} held-out rows: top-1 agreement "
                    f"{_fmt(ac.get('top1_agreement'))} (tie-aware {_fmt(ac.get('top1_agreement_tie_aware'))}), "
                    f"max probability difference {_fmt(ac.get('max_prob_diff'))}, max risk difference "
                    f"{_fmt(ac.get('max_risk_diff'))}"])]
    if files:
        out.append(("h2", "Plots"))
        out += [("img", f, f.split("-", 1)[1]) for f in files]
    return out


def render_md(bl: list[tuple]) -> str:
    lines: list[str] = []
    for b in bl:
        kind = b[0]
        if kind == "h1":
            lines += [f"# {b[1]}", ""]
        elif kind == "h2":
            lines += [f"## {b[1]}", ""]
        elif kind == "p":
            lines += [b[1], ""]
        elif kind == "ul":
            lines += [f"- {x}" for x in b[1]] + [""]
        elif kind == "table":
            lines += ["| " + " | ".join(b[1]) + " |", "|" + "---|" * len(b[1])]
            lines += ["| " + " | ".join(r) + " |" for r in b[2]] + [""]
        elif kind == "img":
            lines += [f"![{b[2]}]({b[1]})", ""]
    return "\n".join(lines)


def _inline(text: str) -> str:
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def render_html(bl: list[tuple]) -> str:
    body: list[str] = []
    title = next((b[1] for b in bl if b[0] == "h1"), "Model report")
    for b in bl:
        kind = b[0]
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{_inline(b[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline(b[1])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in b[1]) + "</ul>")
        elif kind == "table":
            body.append("<table><thead><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in b[1]) + "</tr></thead><tbody>"
                        + "".join("<tr>" + "".join(f"<td>{_inline(x)}</td>" for x in r) + "</tr>" for r in b[2])
                        + "</tbody></table>")
        elif kind == "img":
            body.append(f'<figure><img src="{html.escape(b[1])}" alt="{html.escape(b[2])}">'
                        f"<figcaption>{html.escape(b[2])}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.25em .6em;"
             "text-align:left}th{background:#eee}img{max-width:100%}code{background:#f4f4f4}")
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _save(fig, out_dir: Path, name: str) -> str:
    """Save a figure under its content-addressed name; returns the file name."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    data = buf.getvalue()
    fname = artefact_path(hashlib.sha256(data).hexdigest(), name).rsplit("/", 1)[-1]  # the exports name
    (out_dir / fname).write_bytes(data)
    return fname


def make_plots(out_dir: Path, ev, out: dict, metrics: dict) -> list[str]:
    """ROC/PR per class, confusion matrix (counts + colour bar), calibration; returns file names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    for old in out_dir.iterdir():  # plots of an earlier evaluation of this model
        if _HASHED.match(old.name) or old.name in PLOT_NAMES:
            old.unlink()
    files = []
    classes = list(out["classes"])
    true_code = np.asarray([categories.by_key(c).code for c in ev.category])
    y, risk = ev.harmful, out["risk"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for j, code in enumerate(classes):
        t = true_code == code
        if 0 < t.sum() < len(t):
            f, r, _ = roc_curve(t, out["probs"][:, j])
            axes[0].plot(f, r, lw=1, label=categories.by_code(code).key)
            pr, rc, _ = precision_recall_curve(t, out["probs"][:, j])
            axes[1].plot(rc, pr, lw=1, label=categories.by_code(code).key)
    if 0 < y.sum() < len(y):
        f, r, _ = roc_curve(y, risk)
        axes[0].plot(f, r, "k", lw=2, label="risk (harmful)")
        pr, rc, _ = precision_recall_curve(y, risk)
        axes[1].plot(rc, pr, "k", lw=2, label="risk (harmful)")
    axes[0].axvline(metrics["max_fpr"], color="r", ls=":", lw=1)
    axes[0].set(xlabel="false-positive rate (log)", ylabel="true-positive rate", title="ROC per class",
                xscale="log", xlim=(1e-3, 1))
    axes[1].set(xlabel="recall", ylabel="precision", title="Precision-recall per class")
    axes[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    files.append(_save(fig, out_dir, "roc_pr.png"))

    cmx = np.asarray(metrics["confusion"]["counts"])
    names = metrics["confusion"]["classes"]
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * len(names), 0.9 + 0.5 * len(names)))
    norm = cmx / np.maximum(cmx.sum(1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class's calls")
    for i in range(len(names)):
        for j in range(len(names)):
            if cmx[i, j]:
                ax.text(j, i, f"{cmx[i, j]:,}", ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set(xlabel="predicted (top-1 of probs)", ylabel="true", title="Confusion matrix (calls; colour = row share)")
    fig.tight_layout()
    files.append(_save(fig, out_dir, "confusion.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    bins = np.linspace(0, 1, 11)
    which = np.clip(np.digitize(risk, bins) - 1, 0, 9)
    xs = [risk[which == b].mean() for b in range(10) if (which == b).any()]
    ys = [y[which == b].mean() for b in range(10) if (which == b).any()]
    ns = [int((which == b).sum()) for b in range(10) if (which == b).any()]
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    ax.plot(xs, ys, "o-", label=f"risk (ECE {metrics['risk_ece']:.3f})")
    for x, yy, n in zip(xs, ys, ns):
        ax.annotate(f"{n:,}", (x, yy), fontsize=6, xytext=(3, -8), textcoords="offset points")
    ax.set(xlabel="predicted risk (bin mean)", ylabel="observed harmful share", title="Calibration of risk",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7)
    fig.tight_layout()
    files.append(_save(fig, out_dir, "calibration.png"))
    return files


def write(model_dir, metrics: dict, ev, out: dict, *, release: str | None = None,
          plots: bool = True) -> tuple[Path, Path]:
    """Write report.md and report.html (and the plots) into `model_dir`; returns both paths."""
    d = Path(model_dir)
    files = make_plots(d, ev, out, metrics["evaluation"]) if plots else []
    bl = blocks(metrics, files, release)
    md, page = d / "report.md", d / "report.html"
    md.write_text(render_md(bl), encoding="utf-8")
    page.write_text(render_html(bl), encoding="utf-8")
    return md, page
