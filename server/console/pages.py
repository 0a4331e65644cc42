"""Console pages: home, number search and a number's page, health."""
from __future__ import annotations

import os
import threading
import time
from collections import deque

from flask import Blueprint, g, render_template, request

from callmark import categories
from callmark.exports import ARTEFACTS_DIR, channel_versions
from callmark.labels import FLAG_NAMES
from callmark.numbers import lookup_hash, normalize
from server import metrics
from server.api.lookup import max_prefix
from server.console import queries as q
from server.console.auth import login_required
from server.console.charts import evidence_chart
from server.console.forms import SearchForm
from server.web import Ctx

RATE_WINDOW_S = 15 * 60     # rates are computed over at most the last 15 minutes of samples
_samples: deque = deque(maxlen=256)
_samples_lock = threading.Lock()


def flag_names(flags: int | None) -> list[str]:
    return [name for bit, name in sorted(FLAG_NAMES.items()) if (flags or 0) & bit]


def category_name(key: str | None) -> str:
    if key and categories.is_key(key):
        c = categories.by_key(key)
        return f"{c.en} ({c.zh}) – {c.action}"
    return key or "–"


def rates() -> dict:
    """Per-minute request and tag rates from two samples of the metrics' counters (summed over
    workers): now, and this process's oldest sample of the last RATE_WINDOW_S (else its latest older
    one; the first sample is taken when the app starts)."""
    now, tot = time.time(), metrics.totals()
    with _samples_lock:
        while len(_samples) > 1 and now - _samples[1][0] > RATE_WINDOW_S:
            _samples.popleft()          # keep one sample older than the window as a fallback base
        base = next((smp for smp in _samples if now - smp[0] <= RATE_WINDOW_S and now - smp[0] >= 5), None)
        if base is None and _samples and now - _samples[-1][0] >= 5:
            base = _samples[-1]
        _samples.append((now, tot))
    out = {"totals": tot, "window_s": None, "per_minute": {}}
    if base is not None:
        dt = now - base[0]
        out["window_s"] = round(dt)
        out["per_minute"] = {k: round(60 * max(tot[k] - base[1].get(k, 0), 0) / dt, 1) for k in tot}
    return out


def exports_health(root) -> dict:
    """Channels with their versions, and the artefact count and bytes under exports/."""
    chans = {}
    from callmark.exports import channels
    for ch in channels(root):
        chans[ch] = channel_versions(root, ch)
    n = size = 0
    art = root / ARTEFACTS_DIR
    if art.is_dir():
        with os.scandir(art) as it:
            for e in it:
                if e.is_file():
                    n, size = n + 1, size + e.stat().st_size
    return {"root": str(root), "readable": os.access(root, os.R_OK), "channels": chans,
            "artefact_count": n, "artefact_bytes": size}


def register(bp: Blueprint, c: Ctx) -> None:
    store, cfg = c.store, c.config
    rates()                             # the first sample of the counters: rates since start

    @bp.route("/", methods=["GET"])
    @login_required()
    def home():
        counts = q.count_appeals(store)
        chans = {ch: channel_versions(c.exports.root, ch)[-1:] for ch in c.exports.channels()}
        return render_template("console/home.html", appeals=counts, channels=chans,
                               lookup=store.lookup_meta(), form=SearchForm(request.args))

    @bp.route("/numbers", methods=["GET"])
    @login_required("numbers")
    def numbers():
        form = SearchForm(request.args)
        if not request.args.get("q"):
            return render_template("console/numbers.html", form=form, n=None)
        if not form.validate():
            return render_template("console/numbers.html", form=form, n=None), 400
        raw, region = form.q.data.strip(), (form.region.data or "CN").upper()
        facts = normalize(raw, region)
        e164 = facts.e164
        n: dict = {"facts": facts.to_dict(), "e164": e164, "raw": raw}
        summary = q.number_summary(store, e164, raw)
        n.update(summary=summary, chart=evidence_chart(summary["per_day"]),
                 tags=q.number_tags(store, e164, raw))
        if e164:
            h = lookup_hash(e164)
            label = q.lookup_label(store, h)
            entries = int(store.lookup_meta().get("lookup_count", 0))
            plen = max_prefix(entries, cfg.lookup_k, cfg.lookup_min_prefix, cfg.lookup_max_prefix)
            n.update(label=label, flags=flag_names(label["flags"]) if label else [],
                     category=category_name(label["category"]) if label else None,
                     appeals=q.number_appeals(store, e164), verified=q.verified_company(store, e164),
                     bucket={"hash": h, "prefix": h[:plen], "size": q.bucket_size(store, h[:plen]),
                             "k": cfg.lookup_k})
        store.audit(g.actor, "console.number_view", e164 or raw[:64], "")
        return render_template("console/numbers.html", form=form, n=n, category_name=category_name)

    @bp.route("/health", methods=["GET"])
    @login_required("health")
    def health():
        try:
            st, st_error = q.store_health(store), None
        except Exception as e:  # noqa: BLE001 - the health page reports, never crashes
            st, st_error = None, f"{type(e).__name__}: {e}"
        return render_template("console/health.html", store=st, store_error=st_error,
                               exports=exports_health(c.exports.root), rates=rates())
