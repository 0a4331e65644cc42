"""What the models learn from a release's labels (there is no ground truth in production).

`consensus_targets` gives the teacher its 1 / 0 / -1 (left out) target per number; `training_dir`
writes the student's training folder (call records, tags, verified businesses, class targets). Both
leave weak labels out (`is_weak_label`; docs/models.md, "Fix 5").
"""
from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

from callmark.labels import FLAG_MODEL, read_labels
from trainer import consensus as consensus_lib

# unpublished harmful crowd labels below this consensus confidence are no training targets
# (`is_weak_label`); one reporter's tag on a number scores below it unless the reporter is reliable
WEAK_LABEL_MIN_CONFIDENCE = 0.2


def is_weak_label(row: dict, min_confidence: float = WEAK_LABEL_MIN_CONFIDENCE) -> bool:
    """A labels.csv row that is no training target: an unpublished harmful crowd label whose
    confidence is below `min_confidence`. Most of them are one reporter's tag; in the demo's
    simulation (9 days, 3,000 users, build of day 1) half of the one-reporter harmful labels were on
    honest numbers (147 of 293: couriers, shops, personal callers), so as hard positives they taught
    the teacher and the student that ordinary honest callers are harmful."""
    from callmark.categories import HARMFUL_KEYS

    return (row["category"] in HARMFUL_KEYS and not row.get("published")
            and float(row.get("confidence") or 0.0) < min_confidence)


def consensus_targets(ids: list[str], labels_csv: Path, region: str,
                      min_confidence: float = WEAK_LABEL_MIN_CONFIDENCE):
    """int64 per number id from labels.csv: 1 when the number's leading category is harmful
    (published, or unpublished at confidence >= `min_confidence`), 0 for benign labels and untagged
    numbers, -1 for weak labels (`is_weak_label`: left out of the teacher's fit and scored by it
    like an untagged number, see teacher_stage)."""
    import numpy as np

    from callmark.categories import HARMFUL_KEYS
    from callmark.numbers import key_of

    state = {}
    for row in read_labels(str(labels_csv)):
        key = int(row["key"]) if row.get("key") else key_of(row["number"], region)
        if is_weak_label(row, min_confidence):
            state[key] = -1
        else:
            state[key] = 1 if row["category"] in HARMFUL_KEYS else 0
    return np.asarray([state.get(key_of(i, region), 0) for i in ids], dtype=np.int64)


def training_dir(cfg, labels_csv: Path, events, side: dict, build_dir: Path,
                 event_sources: list | None = None) -> Path:
    """The student's training data: call records, tags, verified businesses and targets derived
    from the release's labels. `cfg` is the build's BuildConfig (calls, as_of,
    weak_label_min_confidence are read); returns `build_dir/training`."""
    from callmark.categories import HARMFUL_KEYS, by_code
    from callmark.numbers import format_key

    d = build_dir / "training"
    d.mkdir(exist_ok=True)
    calls = d / "calls.csv"
    if not calls.exists():
        os.symlink(os.path.abspath(cfg.calls), calls)
    as_of = consensus_lib.parse_as_of(cfg.as_of) if cfg.as_of else None
    # the source profile of each event (events are the sources' groups in order; see sources.py)
    names = [name for name, n in (event_sources or [("app", len(events))]) for _ in range(n)]
    with open(d / "tags.jsonl", "w", encoding="utf-8") as f:
        for i in range(len(events)):
            if as_of is not None and int(events.ts[i]) > as_of:
                continue
            f.write(json.dumps({"source": names[i] if i < len(names) else "app",
                                "number": format_key(int(events.key[i])),
                                "reporter": events.reporters[int(events.reporter[i])],
                                "category": by_code(int(events.category[i])).key,
                                "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(events.ts[i])))})
                    + "\n")
    with open(d / "verified.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["number", "company"])
        for key, company in side["verified"].items():
            w.writerow([format_key(key), company])
    with open(d / "truth.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["number", "role", "category", "harmful", "first_day", "last_day", "company"])
        for row in read_labels(labels_csv):  # published and unsettled crowd labels
            if int(row.get("flags") or 0) & FLAG_MODEL:
                continue  # the teacher's own labels: its scores already are the student's targets
            if is_weak_label(row, cfg.weak_label_min_confidence):
                continue  # no class target: the caller's targets follow the teacher's score
            harmful = int(row["category"] in HARMFUL_KEYS)
            w.writerow([row["number"], "label", row["category"], harmful, 0, 10**6, row.get("company", "")])
    return d
