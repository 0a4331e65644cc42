"""Model-derived labels: numbers the teacher scores as harmful from strong call evidence, few tags.

Such labels enter packs flagged model-derived (flag 4) with a discounted confidence. They never
override a published crowd label, a verified business or an accepted appeal.
"""
from __future__ import annotations

from dataclasses import dataclass

from callmark.categories import HARMFUL_KEYS
from callmark.labels import (FLAG_APPEAL_SUPPRESSED, FLAG_MODEL, FLAG_VERIFIED, label_columns, read_labels,
                             write_labels)
from callmark.numbers import format_key, key_of


@dataclass
class ModelLabelConfig:
    """When a teacher score becomes a published label."""

    min_score: float = 0.97  # teacher probability of harmful needed
    min_calls: int = 30  # call records of the number needed ("strong call evidence")
    max_reporters: int = 2  # only numbers the crowd has not already settled (fewer reporters)
    confidence_scale: float = 0.8  # published confidence = score x this (below crowd labels)
    default_category: str = "harassment"  # when no harmful tag names a category


def merge_model_labels(labels_csv: str, scores: dict[int, float], calls: dict[int, int],
                       config: ModelLabelConfig, verified: dict | None = None,
                       appeals: dict | None = None, as_of_ts: int = 0) -> dict:
    """Rewrite `labels_csv` in place with model-derived labels; returns counts.

    `scores` and `calls` map number keys to the teacher's harmful probability and the number's
    call-record count.
    """
    verified, appeals = verified or {}, appeals or {}
    fields = label_columns(labels_csv)
    rows = list(read_labels(labels_csv))
    by_key = {}
    for row in rows:
        k = int(row["key"]) if row.get("key") else key_of(row["number"])
        if k is not None:
            by_key[k] = row
    upgraded = added = 0
    for k, score in scores.items():
        if score < config.min_score or calls.get(k, 0) < config.min_calls:
            continue
        if k in verified or k in appeals:
            continue
        row = by_key.get(k)
        confidence = f"{score * config.confidence_scale:.4f}"
        if row is None:
            by_key[k] = {"number": format_key(k), "category": config.default_category,
                         "confidence": confidence, "reporters": 0, "published": True, "key": k,
                         "flags": FLAG_MODEL, "last_ts": as_of_ts, "company": ""}
            added += 1
        elif not row["published"] and int(row.get("reporters") or 0) <= config.max_reporters:
            flags = int(row.get("flags") or 0)
            if flags & (FLAG_VERIFIED | FLAG_APPEAL_SUPPRESSED):
                continue
            if row["category"] not in HARMFUL_KEYS:
                row["category"] = config.default_category
            row.update(confidence=confidence, published=True, flags=flags | FLAG_MODEL)
            upgraded += 1
    write_labels(labels_csv, (by_key[k] for k in sorted(by_key)), fields)
    return {"model_labels_added": added, "model_labels_upgraded": upgraded}
