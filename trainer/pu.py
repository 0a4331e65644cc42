"""Positive-unlabelled (PU) correction of a classifier trained on "tagged vs untagged".

Elkan & Noto, "Learning classifiers from only positive and unlabeled data", KDD 2008: when the
labelled examples are selected completely at random from the positives (SCAR), a classifier g(x)
of P(labelled | x) relates to the wanted f(x) = P(positive | x) by f(x) = g(x) / c, with the label
frequency c = P(labelled | positive) estimated as the mean of g over held-out labelled examples
(their estimator e1).

In callmark this was measured as a fix for the student's risk calibration (issue 14) and NOT adopted
in the build: the crowd's harmful labels are not a subset of the harmful callers (weak labels sit
on honest couriers and customer-service lines) and the teacher's out-of-fold scores already
over-state risk in the middle, so g / c made the risk ECE worse on both demo days (docs/models.md,
"Positive-unlabelled correction"; figures from `python -m tools.bench.pu_calibration`).
"""
from __future__ import annotations

import numpy as np


def label_frequency(scores: np.ndarray, labelled: np.ndarray, floor: float = 1e-3) -> float:
    """Elkan & Noto's e1 estimate of c = P(labelled | positive): mean of `scores` (float [n], the
    classifier's held-out or out-of-fold P(labelled | x)) over the rows where `labelled` (bool [n])
    is true, clipped to [floor, 1]. Raises ValueError when no row is labelled."""
    scores, labelled = np.asarray(scores, dtype=np.float64), np.asarray(labelled, dtype=bool)
    if scores.shape != labelled.shape:
        raise ValueError(f"scores {scores.shape} and labelled {labelled.shape} differ in shape")
    if not labelled.any():
        raise ValueError("no labelled row: c = P(labelled | positive) cannot be estimated")
    return float(np.clip(scores[labelled].mean(), floor, 1.0))


def correct(scores: np.ndarray, c: float) -> np.ndarray:
    """P(positive | x) = P(labelled | x) / c, clipped to [0, 1] (float [n]). `c` in (0, 1]."""
    if not 0.0 < c <= 1.0:
        raise ValueError(f"label frequency c must be in (0, 1], got {c}")
    return np.clip(np.asarray(scores, dtype=np.float64) / c, 0.0, 1.0)
