"""Crowd consensus: tag events -> one calibrated label per number (see docs/consensus.md).

`run(events, config, as_of, verified=None, appeals=None, recycled=None) -> ConsensusResult`.
Steps (trainer.consensus_steps): window (as_of, reissues) -> effective votes (daily caps, latest
vote per reporter and number, appeals) -> vote weights (time decay where a number's votes show a
change x account history; blocs and young-account cohorts collapsed; influence bounded) ->
reporter model (Dawid-Skene with shrunk per-reporter confusion, tempered posterior) -> best
category and a careful reviewer's confidence -> publication (thresholds, appeals, verified
businesses) -> rows and ranges (consensus_output).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone

import numpy as np

from callmark.categories import by_key
from trainer import consensus_steps as S
from trainer.consensus_output import ConsensusResult
from trainer.consensus_steps import (CODE_TO_CLASS, CODES, HARMFUL, K, LEGIT,  # noqa: F401
                                     calibrate)
from trainer.ingest import Appeal, TagEvents

METHODS = ("em", "majority")


class ConsensusConfigError(ValueError):
    """A consensus configuration value that is out of range or unknown."""


@dataclass
class ConsensusConfig:
    """Every knob of the consensus; `from_dict` validates. Units in the comments."""

    half_life_days: float = 125.0  # days; evidence weight halves every half-life (PhoneBlock: 125)
    decay_from: str = "latest"  # age of a vote for the decay: "as_of" (run time) or "latest" (the
    # number's own latest vote: a number's old burst still counts among itself; staleness is last_ts)
    decay_when: str = "change"  # "change": decay a number's votes only when they show a change of
    # category over time (consensus_change, level change_alpha); "always": every number (the
    # earlier rule)
    change_alpha: float = 0.05  # false-alarm rate per number of that change test (0..1)
    reliability_half_life_days: float | None = None  # decay of a vote as evidence about its
    # *reporter* (accuracy, confusion); None: none (a reporter's record does not go stale)
    min_reporters: int = 3  # distinct independent reporters needed to publish (blocs count once)
    min_confidence: float = 0.5  # confidence (a careful reviewer's, see `confidence`) to publish
    min_reporters_by_category: dict[str, int] = field(default_factory=dict)  # per-category overrides
    min_confidence_by_category: dict[str, float] = field(default_factory=dict)
    method: str = "em"  # "em" (reliability-weighted) or "majority" (baseline, same thresholds)
    defences: bool = True  # False: plain EM / plain majority (no caps, history, blocs, cohorts)
    daily_cap: int = 20  # tag events per reporter per UTC day that count
    influence_budget: float | None = None  # max total (decayed) weight of one reporter across all
    # numbers, in votes; None: daily_cap x half_life_days / ln 2, the most an account within the
    # daily cap can ever hold (so it binds on accounts that evade the cap); 0: no bound
    new_account_weight: float = 0.2  # weight of a vote cast by a brand-new account (0..1]
    maturity_days: float = 3.0  # days of account age until its votes weigh fully
    cohort_cap: float = 1.0  # max total weight of young accounts on one number per UTC day (votes)
    bloc_neighbours: int = 8  # votes paired per vote on a number when looking for blocs
    bloc_min_shared: int = 4  # numbers a pair must share to be linked
    bloc_min_agreement: float = 0.9  # share of those on which the pair voted alike
    bloc_min_overlap: float = 0.25  # agreements covering that share of the smaller one's votes
    bloc_max_kappa: float = 0.0  # a linked group is a bloc when, where it acts together, its
    # chance-corrected agreement (Cohen's kappa) with everyone else is below this
    prior_accuracy: float = 0.75  # prior mean of a reporter's accuracy
    prior_strength: float = 4.0  # prior weight in votes
    accuracy_min: float = 0.34  # clip of learned accuracy
    accuracy_max: float = 0.95  # bounds one vote's likelihood ratio
    confusion_min_votes: int = 10  # votes per class in use a reporter needs for its own confusion
    # matrix (10 x 18 = 180 when all categories are used; 20 on a 2-class crowd); 0: none
    confusion_strength: float = 10.0  # pseudo-votes per true class pulling it to its one-coin row
    confusion_max_reporters: int = 100_000  # most prolific reporters with a matrix (memory bound)
    em_iterations: int = 10
    em_tol: float = 1e-3  # stop when no accuracy / confusion / prior moves more than this
    confidence: str = "reviewer"  # "reviewer": P(a careful person picks the label), the person
    # right on a number as often as its careful reporters agree (prior accuracy_max, prior_strength
    # votes; consensus_calibration.Reviewer); "posterior": P(label is true)
    temper: bool = True  # posterior tempered, tau chosen by predicting held-out
    # reports (consensus_calibration); False: the plain posterior
    calibration: tuple[float, float, float] = (1.0, 0.0, 0.0)  # (a, b, c): optional Platt map,
    # confidence = sigmoid(a * logit(p) + b * log(1 + independent reporters) + c) of the posterior
    # p, e.g. fitted on audited labels; (1, 0, 0) = none
    appeal_min_reporters: int = 0  # post-appeal reporters to lift a suppression; 0: min_reporters
    ranges: bool = True
    range10_min: int = 4  # published harmful numbers in a block of 10 to label the block
    range100_min: int = 8  # ... in a block of 100
    range100_min_blocks: int = 4  # spread over at least this many blocks of 10

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ConsensusConfigError naming the first bad value."""
        def bad(name, why):
            raise ConsensusConfigError(f"consensus config {name}={getattr(self, name)!r}: {why}")
        for name in ("half_life_days", "maturity_days", "prior_strength",
                     "confusion_strength"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                bad(name, "must be a non-negative number")
        rh = self.reliability_half_life_days
        if rh is not None and (isinstance(rh, bool) or not isinstance(rh, (int, float))
                               or not math.isfinite(rh) or rh <= 0):
            bad("reliability_half_life_days", "must be > 0 (days), or null (no decay)")
        if self.decay_from not in ("as_of", "latest"):
            bad("decay_from", "use as_of or latest")
        if self.confidence not in ("reviewer", "posterior"):
            bad("confidence", "use reviewer or posterior")
        if self.decay_when not in ("change", "always"):
            bad("decay_when", "use change or always")
        ib = self.influence_budget
        if ib is not None and (isinstance(ib, bool) or not isinstance(ib, (int, float))
                               or not math.isfinite(ib) or ib < 0):
            bad("influence_budget", "must be a non-negative number of votes, or null (auto)")
        if self.half_life_days <= 0:
            bad("half_life_days", "must be > 0 (days)")
        for name in ("min_reporters", "daily_cap", "bloc_neighbours", "bloc_min_shared",
                     "em_iterations", "appeal_min_reporters", "confusion_min_votes",
                     "confusion_max_reporters", "range10_min", "range100_min",
                     "range100_min_blocks"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                bad(name, "must be a non-negative integer")
        for name in ("min_confidence", "new_account_weight", "change_alpha", "bloc_min_overlap",
                     "bloc_min_agreement", "prior_accuracy",
                     "accuracy_min", "accuracy_max"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v <= 1:
                bad(name, "must be within 0..1")
        if not isinstance(self.bloc_max_kappa, (int, float)) or not -1 <= self.bloc_max_kappa <= 1:
            bad("bloc_max_kappa", "must be within -1..1")
        if not 0 < self.accuracy_min < self.accuracy_max < 1:
            bad("accuracy_max", "need 0 < accuracy_min < accuracy_max < 1")
        cal = self.calibration
        if (not isinstance(cal, (list, tuple)) or len(cal) != 3
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in cal)):
            bad("calibration", "must be three finite numbers (a, b, c)")
        self.calibration = tuple(float(v) for v in cal)
        if self.method not in METHODS:
            bad("method", f"use one of {', '.join(METHODS)}")
        for name, lo, hi in (("min_reporters_by_category", 0, None),
                             ("min_confidence_by_category", 0, 1)):
            d = getattr(self, name)
            if not isinstance(d, dict):
                bad(name, "must be a mapping of category key -> value")
            for k, v in d.items():
                try:
                    by_key(k)
                except ValueError as exc:
                    bad(name, str(exc))
                if not isinstance(v, (int, float)) or v < lo or (hi is not None and v > hi):
                    bad(name, f"value for {k} out of range")

    def influence(self) -> float:
        """The influence budget in votes (resolving None to the daily-cap steady state)."""
        if self.influence_budget is not None:
            return float(self.influence_budget)
        return self.daily_cap * self.half_life_days / math.log(2) if self.daily_cap else 0.0

    def thresholds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min reporters, min confidence) per class index."""
        mr = np.full(K, self.min_reporters, np.int64)
        mc = np.full(K, float(self.min_confidence))
        for k, v in self.min_reporters_by_category.items():
            mr[CODE_TO_CLASS[by_key(k).code]] = int(v)
        for k, v in self.min_confidence_by_category.items():
            mc[CODE_TO_CLASS[by_key(k).code]] = float(v)
        return mr, mc

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ConsensusConfig":
        """Build from a mapping, rejecting unknown keys."""
        if not isinstance(d, dict):
            raise ConsensusConfigError("consensus config must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConsensusConfigError(f"unknown consensus config keys {unknown}; known: "
                                       f"{', '.join(sorted(known))}")
        return cls(**d)


def parse_as_of(value) -> int:
    """Epoch seconds from an ISO-8601 string (naive = UTC), epoch number or datetime."""
    if isinstance(value, datetime):
        d = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return int(d.timestamp())
    if isinstance(value, (int, float, np.integer)):
        return int(value)
    from trainer.ingest import parse_ts
    t = parse_ts(value)
    if t is None:
        raise ConsensusConfigError(f"as_of {value!r} is not a time; use ISO-8601 like "
                                   f"2026-03-16T00:00:00Z or epoch seconds")
    return t


def run(events: TagEvents, config: ConsensusConfig | None = None, as_of=None,
        verified: dict[int, str] | None = None, appeals: dict[int, list[Appeal]] | None = None,
        recycled: dict[int, int] | None = None, first_seen: np.ndarray | None = None,
        tagged_keys: np.ndarray | None = None) -> ConsensusResult:
    """Labels for every number with a tag at or before `as_of` (default: the latest tag).

    The steps of docs/consensus.md, in order (trainer.consensus_steps). For engines that reduce
    the events before the model (trainer/spark_engine.py): `first_seen` (int64 per reporter
    index) is each reporter's first event time at or before `as_of` and `tagged_keys` (sorted
    int64) every number tagged at or before `as_of`, both over the events *before* the reduction
    (which drops superseded and over-cap events)."""
    cfg = config or ConsensusConfig()
    verified, appeals, recycled = verified or {}, appeals or {}, recycled or {}
    stats: dict[str, float] = {"events": len(events)}
    as_of = int(events.ts.max()) if as_of is None and len(events) else parse_as_of(as_of or 0)
    win = S.window(events, as_of, recycled, stats, first_seen=first_seen, tagged_keys=tagged_keys)
    votes = S.effective_votes(win, cfg, recycled, appeals, stats)
    weights = S.vote_weights(votes, win.first_ts, cfg, as_of, stats)
    post, accuracy, reviewer = S.reporter_model(votes, weights, len(events.reporters), cfg, stats)
    best, conf = S.best_category(post, votes, weights, reviewer)
    cols = S.publication(post, best, conf, votes, weights, cfg, verified, events.companies)
    return S.assemble(win, votes, cols, cfg, verified, as_of, stats, accuracy, events.reporters)
