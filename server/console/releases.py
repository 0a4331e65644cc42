"""Console: releases (channels, history, promote / roll back / rollout with a confirmation step,
what each release changed) and the model pages (evaluation report, plots, gate verdict, candidate
vs published). Release actions run the publisher in-process (`perform_release`)."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from flask import Blueprint, abort, flash, g, redirect, render_template, send_file, url_for

import publisher
from callmark import exports as layout
from callmark.manifest import Manifest
from callmark.manifest_errors import ManifestError
from server.api.admin_releases import perform_release
from server.console.auth import login_required
from server.console.forms import ReleaseForm
from server.errors import Conflict
from server.web import Ctx

try:                                    # the release diff library (publisher/diff.py) when present
    from publisher.diff import release_diff
except ImportError:                     # pragma: no cover - older publisher: manifest-level diff only
    release_diff = None

MAX_METRICS_BYTES = 4 << 20
SERVED_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".html": "text/html",
                ".md": "text/plain", ".json": "application/json", ".csv": "text/plain"}
REPORT_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"


def load(exports: Path, channel: str, version: int | None = None) -> Manifest | None:
    try:
        return publisher.load_manifest(exports, channel, version)
    except ManifestError:
        return None


def manifest_changes(old: Manifest | None, new: Manifest) -> list[dict]:
    """What a release changed against the one before, from the manifests alone: per pack (region and
    tier) the entries before and after and whether its state changed; the model and its rollout."""
    rows = []
    before = {p.name: p for p in old.packs} if old else {}
    for p in new.packs:
        o = before.pop(p.name, None)
        rows.append({"what": f"pack {p.name}", "region": p.region, "tier": p.tier,
                     "before": f"v{o.version}, {o.entries:,} entries" if o else "–",
                     "after": f"v{p.version}, {p.entries:,} entries",
                     "change": ("unchanged" if o and o.state_hash == p.state_hash else
                                f"{p.entries - o.entries:+,} entries" if o else "added")})
    for name, o in before.items():
        rows.append({"what": f"pack {name}", "region": o.region, "tier": o.tier,
                     "before": f"v{o.version}, {o.entries:,} entries", "after": "–", "change": "removed"})
    om, nm = old.model if old else None, new.model
    if om or nm:
        rows.append({"what": "model", "region": "", "tier": "",
                     "before": f"{om.sha256[:12]} at {om.rollout_percent:g} %" if om else "–",
                     "after": f"{nm.sha256[:12]} at {nm.rollout_percent:g} %" if nm else "–",
                     "change": ("unchanged" if om and nm and (om.sha256, om.rollout_percent) ==
                                (nm.sha256, nm.rollout_percent) else
                                "rollout changed" if om and nm and om.sha256 == nm.sha256 else
                                "new model" if nm else "model removed")})
    return rows


def number_diff(exports: Path, channel: str, old_v: int, new_v: int) -> dict:
    """The release diff (numbers added, removed, relabelled per region and category) from
    publisher/diff.py when it is installed; {'error': …} when it cannot be computed."""
    if release_diff is None:
        return {"error": "the release diff library (publisher/diff.py) is not installed"}
    try:
        d = release_diff(exports / layout.manifest_path(channel, old_v),
                         exports / layout.manifest_path(channel, new_v))
        return {"markdown": d.to_markdown(), "data": d.to_dict()}
    except Exception as e:  # noqa: BLE001 - the page shows why, never crashes
        return {"error": f"{type(e).__name__}: {e}"}


def _artefact(exports: Path, rel: str) -> Path | None:
    name = rel.rsplit("/", 1)[-1]
    p = exports / layout.ARTEFACTS_DIR / name
    return p if layout.is_artefact_name(name) and p.is_file() else None


def model_files(exports: Path, m: Manifest) -> dict:
    """The model's report files: metrics (parsed), report.md text, report.html and plot names."""
    out = {"metrics": {}, "report_md": None, "report_html": None, "plots": [], "files": []}
    if m.model is None:
        return out
    for f in m.model.files:
        name = f.path.rsplit("/", 1)[-1]
        base = f.name or name.split("-", 1)[-1]
        out["files"].append({"name": base, "artefact": name, "length": f.length})
        path = _artefact(exports, f.path)
        if path is None:
            continue
        if base.endswith(("metrics.json",)) and f.length <= MAX_METRICS_BYTES:
            try:
                out["metrics"] = json.loads(path.read_text("utf-8"))
            except ValueError:
                out["metrics"] = {"_error": "metrics.json is not JSON"}
        elif base.endswith("report.md") and f.length <= MAX_METRICS_BYTES:
            out["report_md"] = path.read_text("utf-8", errors="replace")
        elif base.endswith(".html"):
            out["report_html"] = name
        elif base.endswith((".png", ".svg")):
            out["plots"].append({"name": re.sub(r"^[0-9a-f]{16}-", "", base), "artefact": name})
    return out


def _num(v) -> str:
    if isinstance(v, bool) or v is None:
        return "–" if v is None else str(v)
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def headline(metrics: dict) -> dict[str, object]:
    """The evaluation's scalar figures (numbers only, nested sections left out)."""
    ev = metrics.get("evaluation") if isinstance(metrics.get("evaluation"), dict) else {}
    if isinstance(ev.get("candidate"), dict):        # {candidate, published} layouts
        ev = ev["candidate"]
    return {k: v for k, v in ev.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def gate_verdict(metrics: dict) -> dict:
    """The gate's verdict as recorded in metrics.json, normalised for display."""
    gate = metrics.get("gate")
    if not isinstance(gate, dict):
        return {"state": "not recorded", "reasons": [], "compared": {},
                "note": "this model's metrics.json carries no verdict; a model the gate refuses never "
                        "reaches a manifest, so a published model passed it at build time"}
    accepted = gate.get("accepted", gate.get("verdict") in ("passed", "accepted"))
    return {"state": "accepted" if accepted else "refused", "reasons": gate.get("reasons") or [],
            "compared": gate.get("compared") or {}, "note": "",
            "margin": gate.get("margin")}


def register(bp: Blueprint, c: Ctx) -> None:
    exports = Path(c.config.exports_dir)

    def channel_rows() -> list[dict]:
        rows = []
        for ch in layout.channels(exports):
            m = load(exports, ch)
            rows.append({"channel": ch, "m": m, "versions": layout.channel_versions(exports, ch)})
        return rows

    @bp.route("/releases", methods=["GET"])
    @login_required("releases")
    def releases():
        try:
            hist = list(reversed(publisher.history(exports)))[:100]
        except ManifestError as e:
            hist, flash_msg = [], str(e)
            flash(f"history.jsonl unreadable: {flash_msg}", "error")
        return render_template("console/releases.html", channels=channel_rows(), history=hist,
                               form=ReleaseForm())

    @bp.route("/releases/<channel>/<int:version>", methods=["GET"])
    @login_required("releases")
    def release(channel: str, version: int):
        if not layout.is_channel(channel):
            abort(404)
        m = load(exports, channel, version)
        if m is None:
            abort(404)
        versions = [v for v in layout.channel_versions(exports, channel) if v < version]
        old = load(exports, channel, versions[-1]) if versions else None
        diff = number_diff(exports, channel, versions[-1], version) if versions else None
        return render_template("console/release.html", m=m, old=old, changes=manifest_changes(old, m),
                               diff=diff)

    def describe(form: ReleaseForm) -> tuple[str, dict]:
        """What the action will do (for the confirmation page) and the publisher request."""
        ch, action = form.channel.data.strip(), form.action.data
        if not layout.is_channel(ch):
            raise Conflict(f"{ch!r} is not a channel name")
        cur = load(exports, ch)
        now = f"{ch} is at v{cur.version} ({cur.release})" if cur else f"{ch} has nothing published"
        if action == "promote":
            src = (form.from_channel.data or "").strip()
            sm = load(exports, src) if layout.is_channel(src) else None
            if sm is None:
                raise Conflict(f"channel {src!r} has nothing published to promote")
            if src == ch:
                raise Conflict("promote from another channel (from and to are the same)")
            pct = None if form.percent.data is None else float(form.percent.data)
            return (f"{now}. Promote {src} v{sm.version} ({sm.release}): {ch} gets a new signed version "
                    f"v{(cur.version if cur else 0) + 1} with {src}'s packs and model"
                    + (f" at {pct:g} % rollout" if pct is not None else "") + ".",
                    {"from_channel": src, "to_channel": ch, "percent": pct})
        if cur is None:
            raise Conflict(f"channel {ch} has nothing published")
        if action == "rollback":
            to = form.to_version.data
            return (f"{now}. Roll back to "
                    + (f"v{to}'s artefacts" if to else "the newest earlier release that differs")
                    + f", published as the new version v{cur.version + 1}.", {"channel": ch, "to_version": to})
        if form.percent.data is None:
            raise Conflict("give the rollout percentage (0 halts the new model)")
        pct = float(form.percent.data)
        if cur.model is None:
            raise Conflict(f"channel {ch} v{cur.version} has no model to roll out")
        return (f"{now}; its model {cur.model.sha256[:12]} goes to {cur.model.rollout_percent:g} % of "
                f"devices. Change that to {pct:g} % as new version v{cur.version + 1}.",
                {"channel": ch, "percent": pct})

    @bp.route("/releases/action", methods=["POST"])
    @login_required("releases")
    def release_action():
        form = ReleaseForm()
        if not form.validate():
            msg = "; ".join(f"{k}: {', '.join(v)}" for k, v in form.errors.items())
            flash(f"Release action refused: {msg}", "error")
            return redirect(url_for("console.releases"))
        try:
            summary, req = describe(form)
            if form.confirm.data != "yes" or not form.acknowledge.data:
                if form.confirm.data == "yes":
                    flash("Tick the box to confirm.", "error")
                form.confirm.data = "yes"
                return render_template("console/confirm.html", form=form, summary=summary)
            m = perform_release(c, g.actor, form.action.data, req)
        except Conflict as e:
            flash(str(e.message), "error")
            return redirect(url_for("console.releases"))
        flash(f"Done: {m.channel} is now v{m.version} ({m.release}).", "ok")
        return redirect(url_for("console.releases"))

    # ---------------------------------------------------------------------------- model
    @bp.route("/model", methods=["GET"])
    @login_required("model")
    def model_index():
        rows = []
        for r in channel_rows():
            entries = []
            for v in reversed(r["versions"][-30:]):
                m = load(exports, r["channel"], v)
                if m is not None and m.model is not None:
                    entries.append({"version": v, "sha": m.model.sha256[:12], "created": m.created,
                                    "rollout": m.model.rollout_percent})
            rows.append({"channel": r["channel"], "m": r["m"], "models": entries})
        return render_template("console/model_index.html", rows=rows)

    @bp.route("/model/<channel>/<int:version>", methods=["GET"])
    @login_required("model")
    def model_page(channel: str, version: int):
        if not layout.is_channel(channel):
            abort(404)
        m = load(exports, channel, version)
        if m is None or m.model is None:
            abort(404)
        files = model_files(exports, m)
        mine = headline(files["metrics"])
        ev = files["metrics"].get("evaluation") or {}
        cols = {f"{channel} v{version}": mine}
        pub = files["metrics"].get("evaluation_published")           # scored on the same calls
        if not isinstance(pub, dict):
            pub = ev.get("published") if isinstance(ev, dict) else None  # older metrics.json layout
        if isinstance(pub, dict):
            cols["published when built"] = {k: v for k, v in pub.items()
                                             if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for other in layout.channels(exports):
            om = load(exports, other)
            if om is None or om.model is None or (other == channel and om.version == version):
                continue
            if om.model.sha256 == m.model.sha256:
                continue
            cols[f"{other} now (v{om.version})"] = headline(model_files(exports, om)["metrics"])
        keys = list(dict.fromkeys(k for col in cols.values() for k in col))
        return render_template("console/model.html", m=m, files=files, gate=gate_verdict(files["metrics"]),
                               cols=cols, keys=keys, fmt=_num)

    @bp.route("/artefact/<name>", methods=["GET"])
    @login_required("model")
    def artefact(name: str):
        """A model report file from exports/artefacts with its own type (plots, report.html)."""
        suffix = Path(name).suffix.lower()
        if not layout.is_artefact_name(name) or suffix not in SERVED_TYPES:
            abort(404)
        path = exports / layout.ARTEFACTS_DIR / name
        if not path.is_file():
            abort(404)
        resp = send_file(path, mimetype=SERVED_TYPES[suffix], max_age=3600)
        if suffix in (".html", ".svg"):
            resp.headers["Content-Security-Policy"] = REPORT_CSP
        return resp

