"""Source profiles: what kind of reporting stands behind a tag event, and how consensus treats it.

Every tag event carries a `source` (the profile name; events without one are `app`). The profile
says who the reporters are and which consensus policy `callmark build` applies to that source's
events, so no hidden setting decides what gets published:

| profile | reporters | policy |
|---|---|---|
| `app` | app accounts with history (one vote per account per number) | `crowd`: full consensus (EM with every defence) |
| `ftc-dnc` | one-off complainants: every row a distinct person, no account history | `crowd` with the history defences off (a new account's vote weighs fully) |
| `phoneblock` | a published community list: one row per number, its net votes | `list`: no re-voting; confidence = Wilson 95 % lower bound of the net votes, published at >= `min_votes` |
| `csv` / `jsonl` | a generic file import; `--profile` picks one of the above | as the chosen profile |

Events from several inputs are one event when they share `(source, event_id)`.
This module is data only (no trainer import): `trainer/pipeline.py` reads `consensus` as
ConsensusConfig overrides, `tools/commands/importer.py` writes `source`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from callmark.errors import CallmarkError

DEFAULT_SOURCE = "app"
POLICIES = ("crowd", "list")
MAX_SOURCE_CHARS = 40


class SourceProfileError(CallmarkError, ValueError):
    """An unknown source profile name."""


@dataclass(frozen=True)
class SourceProfile:
    """One kind of reporting: its name, who reports, and the consensus policy for its events."""

    name: str
    reporters: str  # who stands behind one event (for people reading build.json / docs)
    policy: str  # "crowd" (consensus over votes) or "list" (pre-aggregated list rows)
    consensus: dict = field(default_factory=dict)  # ConsensusConfig overrides (crowd policy)
    min_votes: int = 10  # list policy: net votes needed to publish (PhoneBlock publishes at 10)
    default_category: str | None = None  # category when the source has none

    def to_dict(self) -> dict:
        return {"name": self.name, "reporters": self.reporters, "policy": self.policy,
                "consensus": dict(self.consensus), "min_votes": self.min_votes,
                "default_category": self.default_category}


# One-off complainants: history-based defences (new-account weight, maturity, young-account cohort
# cap) would see only brand-new accounts and discount every vote; the reporters-count rule stays.
# Measured on the FTC stream (docs/real-data.md, 333,389 complaints): 556 numbers published with
# the app defaults, 4,583 with these overrides.
ONE_OFF_REPORTERS = {"new_account_weight": 1.0, "maturity_days": 0.0, "cohort_cap": 0.0}

PROFILES: dict[str, SourceProfile] = {p.name: p for p in (
    SourceProfile("app", "app accounts with history", "crowd"),
    SourceProfile("ftc-dnc", "one-off complainants (a distinct person per row, no history)", "crowd",
                  dict(ONE_OFF_REPORTERS), default_category="telemarketing"),
    SourceProfile("phoneblock", "a published community blocklist (net votes per number)", "list",
                  min_votes=10, default_category="harassment"),
)}


def profile(name: str | None) -> SourceProfile:
    """The profile named `name` (None or empty: `app`); raises SourceProfileError naming the
    known profiles."""
    key = (name or DEFAULT_SOURCE).strip()
    try:
        return PROFILES[key]
    except KeyError:
        raise SourceProfileError(f"unknown source profile {name!r}; use one of: "
                                 f"{', '.join(PROFILES)}") from None


def wilson_lower(votes: int, z: float = 1.96) -> float:
    """Wilson score 95 % lower bound of `votes` agreeing votes out of `votes` (PhoneBlock's
    confidence for a net-vote count; 10 votes -> 0.722, 100 -> 0.963). 0 for no votes."""
    n = max(0, int(votes))
    if n == 0:
        return 0.0
    return n / (n + z * z)  # the bound at an observed share of 1: n / (n + z^2)
