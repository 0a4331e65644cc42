"""Tags: batched, idempotent uploads of user tag events, acknowledged only after COMMIT."""
from __future__ import annotations

import functools
from datetime import timezone

from flask import g
from flask_smorest import Blueprint

from callmark.numbers import normalize
from server import metrics
from server.errors import Unprocessable
from server.schemas import TagAck, TagBatch
from server.web import DEVICE_AUTH, Ctx, client_ip, device_key, require_device, require_json


@functools.lru_cache(maxsize=50_000)   # ~10 MB per worker at most
def _facts(raw: str, region: str):
    f = normalize(raw, region)
    return f.key, f.e164, f.irregular


def to_rows(batch: dict) -> list[dict]:
    """Validated events -> store rows (number normalised; irregular numbers kept, flagged)."""
    rows = []
    for ev in batch["events"]:
        key, e164, irregular = _facts(ev["number"], (ev.get("region") or batch["region"]).upper())
        ts = ev["ts"]
        ts = ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)
        rows.append({
            "event_id": ev["event_id"], "number_raw": ev["number"], "number_key": key,
            "e164": e164, "irregular": irregular or ("unreadable" if key is None else None),
            "category": ev["category"], "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "company": ev.get("company"), "note": ev.get("note"), "ring_s": ev.get("ring_s"),
            "talk_s": ev.get("talk_s"),
            "answered": None if ev.get("answered") is None else int(ev["answered"]),
            "direction": ev.get("direction"),
        })
    return rows


def make_blueprint(c: Ctx) -> Blueprint:
    blp = Blueprint("tags", __name__, url_prefix="/v1", description="Tag uploads")
    cfg = c.config

    @blp.route("/tags", methods=["POST"])
    @c.limiter.limit(cfg.tags_limit_device, key_func=device_key)
    @c.limiter.limit(cfg.tags_limit_ip, key_func=client_ip)
    @require_json
    @require_device
    @blp.arguments(TagBatch)
    @blp.response(200, TagAck)
    @blp.alt_response(401, schema=None, description="Missing or unknown device token")
    @blp.alt_response(413, schema=None, description="Body too large")
    @blp.alt_response(415, schema=None, description="Body is not application/json")
    @blp.alt_response(429, schema=None, description="Rate limited: see Retry-After")
    @blp.doc(security=DEVICE_AUTH)
    def upload(batch: dict):
        """Upload a batch of up to 500 tag events; retries with the same event_id are harmless.

        A 200 means every event in the batch is durably stored (or was already). A 422 stores
        nothing; its `errors` name each bad event by index and field."""
        if len(batch["events"]) > cfg.max_batch:
            raise Unprocessable(f"at most {cfg.max_batch} events per batch; split the upload",
                                {"json": {"events": [f"Longer than maximum length {cfg.max_batch}."]}})
        counts = c.store.insert_tags(g.device_id, to_rows(batch), cfg.daily_cap)
        metrics.record_tags(counts)
        return {**counts, **c.sync_hints()}

    return blp
