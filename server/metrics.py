"""Prometheus metrics. Multiprocess-safe: when PROMETHEUS_MULTIPROC_DIR is set before the first
import (`callmark serve` does this for gunicorn), every worker writes its own files and /metrics
aggregates them with MultiProcessCollector."""
from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter,
                               Histogram, generate_latest)

REQUESTS = Counter("callmark_http_requests_total", "HTTP requests", ["endpoint", "method", "status"])
LATENCY = Histogram("callmark_http_request_seconds", "HTTP request latency", ["endpoint"],
                    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
TAGS = Counter("callmark_tags_total", "Tag events acknowledged", ["result"])


def record_tags(counts: dict) -> None:
    TAGS.labels("stored").inc(counts["stored"] - counts["flagged"])
    TAGS.labels("duplicate").inc(counts["duplicates"])
    TAGS.labels("flagged").inc(counts["flagged"])


def install(app: Flask) -> None:
    """Time every request and count it by endpoint and status."""
    @app.before_request
    def _start():
        g._t0 = time.perf_counter()

    @app.after_request
    def _done(resp):
        ep = request.endpoint or "unknown"
        t0 = g.get("_t0")
        if t0 is not None:
            LATENCY.labels(ep).observe(time.perf_counter() - t0)
        REQUESTS.labels(ep, request.method, str(resp.status_code)).inc()
        return resp


def render() -> Response:
    mp = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if mp and os.path.isdir(mp):
        from prometheus_client import multiprocess
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        data = generate_latest(registry)
    else:
        data = generate_latest(REGISTRY)
    return Response(data, mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                    headers={"Cache-Control": "no-store"})


def _registry():
    mp = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if mp and os.path.isdir(mp):
        from prometheus_client import multiprocess
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def totals() -> dict[str, float]:
    """Counter totals summed over workers: requests (all, 4xx, 5xx, 429) and tag events by result
    ('tags_stored', 'tags_duplicate', 'tags_flagged'). The console turns two samples into rates."""
    out = {"requests": 0.0, "requests_4xx": 0.0, "requests_5xx": 0.0, "requests_429": 0.0,
           "tags_stored": 0.0, "tags_duplicate": 0.0, "tags_flagged": 0.0}
    for fam in _registry().collect():
        for s in fam.samples:
            if s.name == "callmark_http_requests_total":
                status = s.labels.get("status", "")
                out["requests"] += s.value
                if status.startswith("4"):
                    out["requests_4xx"] += s.value
                if status.startswith("5"):
                    out["requests_5xx"] += s.value
                if status == "429":
                    out["requests_429"] += s.value
            elif s.name == "callmark_tags_total":
                key = "tags_" + s.labels.get("result", "")
                if key in out:
                    out[key] += s.value
    return out
