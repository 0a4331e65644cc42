"""On-device call rules and the handset's decision chain: pure functions a phone can run.

Nothing here does I/O. A client gathers what it knows about a ringing (or just finished) call
into a :class:`CallFacts`, looks the number up in its pack, and calls :func:`decide`, which walks
the chain in a fixed order (docs/handset.md):

1. the user's contacts and allow / block lists (final);
2. a verified business name from the pack (final unless caller verification failed);
3. pack exact row, 4. pack range (a whole number block);
5. the on-device model, run only when the pack has nothing;
6. on-device rules: one-ring, call bombing, irregular numbers, spoofed-from-abroad hints, failed
   caller verification. Rules run on every unknown call and may only make the decision stricter.

Actions, mildest first: ``allow`` (ring normally), ``label`` (ring with a label), ``warn`` (ring with
a warning), ``silence`` (do not ring, keep in the call log), ``reject`` (hang up).
"""
from __future__ import annotations

import unicodedata
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

from callmark import categories as _cats
from callmark.errors import CallmarkError
from callmark.labels import FLAG_APPEAL_SUPPRESSED, FLAG_MODEL, FLAG_RANGE, FLAG_VERIFIED

ALLOW, LABEL, WARN, SILENCE, REJECT = "allow", "label", "warn", "silence", "reject"
ACTIONS = (ALLOW, LABEL, WARN, SILENCE, REJECT)
SEVERITY = {a: i for i, a in enumerate(ACTIONS)}
# The one definition of a flagged call (a warn or block decision), used by the handset replay, the
# model evaluation, the release gate and the demo summary. A label alone (delivery, taxi, "suspected
# ...") is not a flag.
FLAGGED_ACTIONS = (WARN, SILENCE, REJECT)


def is_flagged(action: str) -> bool:
    """True when `action` warns, silences or rejects the call (see FLAGGED_ACTIONS)."""
    return action in FLAGGED_ACTIONS


VERIFICATION = ("passed", "failed", "none")


class RulesConfigError(CallmarkError, ValueError):
    """A rules or decision-policy setting is out of its valid range."""


def _config_from_dict(cls, d: dict):
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise RulesConfigError(f"unknown {cls.__name__} keys {sorted(unknown)}; "
                               f"valid: {[f.name for f in fields(cls)]}")
    out = cls(**{k: type(getattr(cls(), k))(v) for k, v in d.items()})
    out.validate()
    return out


@dataclass
class RuleConfig:
    """Thresholds of the on-device rules."""

    one_ring_max_s: float = 3.0  # seconds: an unanswered unknown call that rang shorter is one-ring
    bombing_window_s: float = 600.0  # seconds of recent incoming calls looked at
    bombing_same_number: int = 4  # calls from one unknown number inside the window -> call bombing
    bombing_unknown_calls: int = 8  # calls from any unknown numbers inside the window -> call bombing
    history_max: int = 64  # recent calls remembered per callee (bounds memory)

    def validate(self) -> "RuleConfig":
        if self.one_ring_max_s <= 0 or self.bombing_window_s <= 0:
            raise RulesConfigError("one_ring_max_s and bombing_window_s must be > 0 seconds")
        if self.bombing_same_number < 2 or self.bombing_unknown_calls < 2:
            raise RulesConfigError("bombing thresholds must be >= 2 calls")
        if self.history_max < max(self.bombing_same_number, self.bombing_unknown_calls):
            raise RulesConfigError("history_max must be >= the bombing thresholds")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "RuleConfig":
        return _config_from_dict(cls, d)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Policy:
    """How pack labels and model scores turn into actions."""

    reject_confidence: float = 0.9  # 0..1: a 'block' category at this confidence is rejected
    warn_confidence: float = 0.5  # 0..1: harmful labels below this only label the call
    range_max_action: str = WARN  # a range-derived label never acts stronger than this
    model_warn_risk: float = 0.8  # 0..1: model risk at or above this warns
    model_label_risk: float = 0.5  # 0..1: model risk at or above this labels ("suspected …")

    def validate(self) -> "Policy":
        for name in ("reject_confidence", "warn_confidence", "model_warn_risk", "model_label_risk"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise RulesConfigError(f"{name} must lie in [0, 1], got {v}")
        if self.range_max_action not in ACTIONS:
            raise RulesConfigError(f"range_max_action must be one of {ACTIONS}")
        if self.model_label_risk > self.model_warn_risk:
            raise RulesConfigError("model_label_risk must be <= model_warn_risk")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "Policy":
        return _config_from_dict(cls, d)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CallFacts:
    """What the phone knows about one incoming call (after normalising the caller string)."""

    raw: str  # the caller string as presented
    key: int | None  # canonical number key (None: unreadable)
    e164: str | None
    region: str | None  # ISO country of the number
    country_code: int | None
    type: str  # numbers.TYPES
    valid: bool
    irregular: str | None  # why the number is not valid in its numbering plan
    home_region: str = "CN"  # the phone's own region
    time: float = 0.0  # epoch seconds when the call rang
    ring_s: float | None = None  # seconds it rang (None: still ringing / unknown)
    answered: bool | None = None  # None: unknown (decision while ringing)
    verification: str = "none"  # network caller verification: passed | failed | none

    @classmethod
    def from_number_facts(cls, nf: Any, home_region: str = "CN", **call) -> "CallFacts":
        """Build from callmark.numbers.NumberFacts plus call fields (time, ring_s, answered, verification)."""
        v = call.get("verification") or "none"
        if v not in VERIFICATION:
            raise RulesConfigError(f"verification must be one of {VERIFICATION}, got {v!r}")
        call["verification"] = v
        return cls(nf.input, nf.key, nf.e164, nf.region, nf.country_code, nf.type, nf.valid,
                   nf.irregular, home_region, **call)


@dataclass(frozen=True)
class Reason:
    """One link in the chain of reasons behind a decision."""

    step: str  # contacts | allow_list | block_list | verified_business | pack_exact | pack_range |
    #            model | rule:one_ring | rule:call_bombing | rule:irregular | rule:spoofed |
    #            rule:failed_verification | default
    detail: str  # human-readable, English
    action: str | None = None  # what this step alone would do
    category: str | None = None  # category key it points to
    confidence: float | None = None  # 0..1

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Decision:
    """What the phone does with a call, and why."""

    action: str  # allow | label | warn | silence | reject
    category: str | None = None  # category key shown to the user (None: no label)
    confidence: float = 0.0  # 0..1 of the step that decided
    reasons: list[Reason] = field(default_factory=list)
    company: str | None = None  # verified business name, when known
    source: str = "default"  # the step that set the action
    offer_tag: bool = False  # ask the user to tag the number after the call

    def to_dict(self) -> dict:
        return {"action": self.action, "category": self.category, "confidence": round(self.confidence, 4),
                "company": self.company, "source": self.source, "offer_tag": self.offer_tag,
                "reasons": [r.to_dict() for r in self.reasons]}

    @classmethod
    def from_dict(cls, d: dict) -> "Decision":
        if d.get("action") not in ACTIONS:
            raise RulesConfigError(f"decision action must be one of {ACTIONS}, got {d.get('action')!r}")
        return cls(d["action"], d.get("category"), float(d.get("confidence", 0.0)),
                   [Reason(**r) for r in d.get("reasons", [])], d.get("company"), d.get("source", "default"),
                   bool(d.get("offer_tag", False)))


# ---------------------------------------------------------------- recent calls (for call bombing)

class RecentCalls:
    """Recent incoming calls per callee, bounded; counts what call bombing looks at."""

    def __init__(self, config: RuleConfig | None = None):
        self.config = config or RuleConfig()
        self._calls: dict[str, deque] = {}

    def add(self, callee: str, t: float, key: int | None, unknown: bool) -> None:
        """Remember one incoming call at epoch second `t`."""
        q = self._calls.get(callee)
        if q is None:
            q = self._calls[callee] = deque(maxlen=self.config.history_max)
        q.append((t, key, unknown))

    def counts(self, callee: str, t: float, key: int | None) -> tuple[int, int]:
        """(calls from `key`, calls from any unknown number) in the window ending at `t`, excluding now."""
        q = self._calls.get(callee)
        if not q:
            return 0, 0
        lo, same, unknown = t - self.config.bombing_window_s, 0, 0
        for ct, ck, cu in reversed(q):
            if ct < lo:
                break
            if ct > t:
                continue
            if ck is not None and ck == key:
                same += 1
            if cu:
                unknown += 1
        return same, unknown

    def items(self):
        """(callee, t, key, unknown) of every remembered call (for persistence)."""
        for callee, q in self._calls.items():
            for t, k, u in q:
                yield callee, t, k, u


# ---------------------------------------------------------------- the rules

_HOME_CC = {"CN": "86"}  # regions whose '+<cc>' presentation the spoofing hints understand


def one_ring(call: CallFacts, known: bool, cfg: RuleConfig) -> Reason | None:
    """Unknown caller, rang under `one_ring_max_s`, not answered: warn not to call back."""
    if known or call.ring_s is None or call.answered is None or call.answered:
        return None
    if call.ring_s >= cfg.one_ring_max_s:
        return None
    return Reason("rule:one_ring", f"unknown caller hung up after {call.ring_s:.1f} s ring: do not call "
                  "back (paid line risk); tag it?", WARN, "one_ring", 0.7)


def call_bombing(same: int, unknown: int, cfg: RuleConfig) -> Reason | None:
    """Silence when too many unknown calls arrive in the window (counts include this call)."""
    mins = cfg.bombing_window_s / 60
    if same >= cfg.bombing_same_number:
        return Reason("rule:call_bombing", f"{same} calls from this number in {mins:g} min", SILENCE,
                      "call_bombing", 0.8)
    if unknown >= cfg.bombing_unknown_calls:
        return Reason("rule:call_bombing", f"{unknown} calls from unknown numbers in {mins:g} min",
                      SILENCE, "call_bombing", 0.7)
    return None


def spoofed_from_abroad(call: CallFacts) -> Reason | None:
    """Hints that a '+86' caller string was forged abroad: trunk 0 after the country code, an
    international-format home number that is invalid, or one the network failed to verify."""
    raw = call.raw.lstrip()
    if not raw.startswith(("+", "00", "\uff0b", "\uff10\uff10")):  # + / 00, also full-width
        return None
    home_cc = _HOME_CC.get(call.home_region)
    if home_cc is None:
        return None
    digits = "".join(ch for ch in unicodedata.normalize("NFKC", raw) if ch.isdigit() or ch == "+")
    intl = digits.startswith("+" + home_cc) or digits.startswith("00" + home_cc)
    if not intl:
        return None
    body = digits[len(home_cc) + (1 if digits.startswith("+") else 2):]
    if body.startswith("0"):
        return Reason("rule:spoofed", f"'+{home_cc}' followed by a trunk 0: not how a domestic "
                      "network presents a number (forged abroad)", REJECT, "spoofed", 0.9)
    if call.irregular and (call.country_code in (None, int(home_cc))):
        return Reason("rule:spoofed", f"international-format '+{home_cc}' number that is not valid "
                      f"({call.irregular}): likely forged abroad", WARN, "spoofed", 0.75)
    if call.verification == "failed":
        return Reason("rule:spoofed", f"'+{home_cc}' number whose caller verification failed: likely "
                      "forged abroad", WARN, "spoofed", 0.7)
    return None


def irregular_number(call: CallFacts) -> Reason | None:
    """A caller string that is not valid in the numbering plan (不规范主叫号码)."""
    if call.valid or call.type == "short_service":
        return None
    return Reason("rule:irregular", f"irregular caller number ({call.irregular or 'invalid'})", WARN,
                  None, 0.6)


def failed_verification(call: CallFacts) -> Reason | None:
    """The network could not verify the caller ID (STIR/SHAKEN-style 'failed')."""
    if call.verification != "failed":
        return None
    return Reason("rule:failed_verification", "the network failed to verify this caller ID", WARN, None, 0.6)


def evaluate_rules(call: CallFacts, known: bool, same: int, unknown: int,
                   cfg: RuleConfig | None = None) -> list[Reason]:
    """Every rule that fires for `call`; `same` / `unknown` are RecentCalls counts including it."""
    cfg = cfg or RuleConfig()
    hits = [call_bombing(same, unknown, cfg) if not known else None, one_ring(call, known, cfg)]
    spoof = spoofed_from_abroad(call)
    hits.append(spoof)
    if spoof is None:
        hits.append(irregular_number(call))
        hits.append(failed_verification(call))
    return [h for h in hits if h is not None]


# ---------------------------------------------------------------- the decision chain

def label_action(category_key: str | None, confidence: float, policy: Policy) -> str:
    """The action an exact pack label of `category_key` at `confidence` (0..1) takes under `policy`:
    benign categories only label; harmful ones warn (or reject at high confidence for block
    categories); below `policy.warn_confidence` they only label."""
    if category_key is None or not _cats.is_key(category_key):
        return LABEL
    cat = _cats.by_key(category_key)
    if not cat.harmful:
        return LABEL
    if cat.action == _cats.BLOCK:
        if confidence >= policy.reject_confidence:
            return REJECT
        return WARN if confidence >= policy.warn_confidence else LABEL
    if cat.action == _cats.WARN:
        return WARN if confidence >= policy.warn_confidence else LABEL
    return LABEL


def _cap(action: str, cap: str) -> str:
    return action if SEVERITY[action] <= SEVERITY[cap] else cap


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def decide(call: CallFacts, *, user_list: str | None = None, label: Any = None,
           model: Callable[[], dict | None] | None = None, rules: list[Reason] | None = None,
           policy: Policy | None = None) -> Decision:
    """Walk the chain for one call and return the decision with its reasons.

    user_list: "contact" | "allow" | "block" | None (the user's own lists, by number key).
    label: a callmark.pack.Label (or any object with its fields) for the number, or None.
    model: called only when `label` is None; returns {"risk": 0..1, "probs": {key: p}} or None.
    rules: evaluate_rules(...) hits for this call.
    """
    policy = policy or Policy()
    if user_list == "block":
        return Decision(REJECT, None, 1.0, [Reason("block_list", "on your block list", REJECT)],
                        source="block_list")
    if user_list in ("contact", "allow"):
        step = "contacts" if user_list == "contact" else "allow_list"
        what = "in your contacts" if user_list == "contact" else "on your allow list"
        return Decision(ALLOW, None, 1.0, [Reason(step, what, ALLOW)], source=step)

    reasons: list[Reason] = []
    d = Decision(ALLOW, None, 0.0, reasons)
    if label is not None:
        flags = int(getattr(label, "flags", 0))
        ck = getattr(label, "category_key", None)
        if ck is None and getattr(label, "category", 0):
            try:
                ck = _cats.by_code(label.category).key
            except CallmarkError:
                ck = None
        conf = float(getattr(label, "confidence", 0.0))
        company = getattr(label, "company", None)
        if flags & FLAG_VERIFIED and company and getattr(label, "source", "exact") == "exact":
            reasons.append(Reason("verified_business", f"verified business: {company}", LABEL, ck, conf))
            d = Decision(LABEL, ck, conf, reasons, company, "verified_business")
            if call.verification != "failed":
                return d
            reasons.append(Reason("rule:failed_verification", f"the number belongs to {company} but the "
                                  "network failed to verify this call: it may be spoofed", WARN, "spoofed", 0.8))
            d.action, d.category, d.source, d.offer_tag = WARN, "spoofed", "rule:failed_verification", True
            return d
        is_range = getattr(label, "source", "exact") == "range" or bool(flags & FLAG_RANGE)
        step = "pack_range" if is_range else "pack_exact"
        action = label_action(ck, conf, policy)
        if flags & FLAG_APPEAL_SUPPRESSED:
            action = _cap(action, LABEL)
        if is_range:
            action = _cap(action, policy.range_max_action)
        rep = int(getattr(label, "reporters", 0))
        if is_range:
            size = getattr(label, "range_size", None)
            detail = f"number block{f' of {size}' if size else ''} labelled {ck} ({_pct(conf)}, {rep} numbers)"
        else:
            detail = f"labelled {ck} by {rep}+ users ({_pct(conf)})"
        if flags & FLAG_MODEL:
            detail += ", model-derived"
        reasons.append(Reason(step, detail, action, ck, conf))
        d = Decision(action, ck, conf, reasons, company, step)
    elif model is not None:
        out = model()
        if out is not None:
            risk = float(out.get("risk", 0.0))
            probs = out.get("probs") or {}
            harmful = {k: p for k, p in probs.items() if k in _cats.HARMFUL_KEYS}
            ck = max(harmful, key=harmful.get) if harmful else None
            if risk >= policy.model_warn_risk:
                action = WARN
            elif risk >= policy.model_label_risk:
                action = LABEL
            else:
                action = ALLOW
            detail = f"model risk {risk:.2f}" + (f", most likely {ck}" if ck and action != ALLOW else "")
            reasons.append(Reason("model", detail, action, ck if action != ALLOW else None, risk))
            if action != ALLOW:
                d = Decision(action, ck, risk, reasons, None, "model")
            else:
                d.confidence = 1.0 - risk
    for hit in rules or ():
        reasons.append(hit)
        if SEVERITY[hit.action] > SEVERITY[d.action]:
            d.action, d.source, d.confidence = hit.action, hit.step, hit.confidence or d.confidence
            if hit.category:
                d.category = hit.category
        elif hit.category and d.category is None:
            d.category = hit.category
    if not reasons:
        reasons.append(Reason("default", "no label, no rule fired", ALLOW))
    if d.action in (WARN, SILENCE, REJECT) or any(r.step == "rule:one_ring" for r in reasons):
        d.offer_tag = True
    return d
