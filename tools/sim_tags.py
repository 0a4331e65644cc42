"""Simulated handset users who tag calls, fake-account blocs, and appeals (tools/simulate.py).

Assumptions are documented in docs/simulator.md.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np

from callmark.categories import HARMFUL_KEYS, KEYS
from tools.sim_population import (ABROAD, BOMBER, COURIER, CS, DEBT, FRAUD, HARASSER, N400,
                                  ONE_RING, PERSON, TAXI, TELE, Population, mix64)

DAY_S = 86400
# probability that an app user tags an incoming, answered call, by caller role
_P_TAG = {PERSON: 0.0003, COURIER: 0.004, TAXI: 0.003, CS: 0.004, TELE: 0.05, DEBT: 0.06,
          FRAUD: 0.07, ABROAD: 0.06, ONE_RING: 0.05, BOMBER: 0.06, HARASSER: 0.08}
_UNANSWERED = {ONE_RING: 1.0, BOMBER: 1.0}  # factor for unanswered calls (default 0.5)
_P_TAG_OUT = {ONE_RING: 0.25, FRAUD: 0.05}  # after the user dialled the number (default 0.001)
_SECTOR_CONFUSION = {"harassment": .38, "telemarketing": .14, "fraud": .04, "legit": .02}
# what a careful user picks for a number whose true category is the key
CONFUSION = {
    "fraud": {"fraud": .68, "harassment": .14, "loans": .05, "telemarketing": .06, "spoofed": .02,
              "customer_service": .02, "legit": .03},
    "spoofed": {"fraud": .5, "spoofed": .3, "harassment": .15, "one_ring": .03, "legit": .02},
    "one_ring": {"one_ring": .5, "fraud": .22, "harassment": .22, "call_bombing": .03,
                 "telemarketing": .03},
    "call_bombing": {"call_bombing": .5, "harassment": .45, "fraud": .05},
    "harassment": {"harassment": .85, "fraud": .06, "call_bombing": .04, "telemarketing": .05},
    "debt_collection": {"debt_collection": .55, "harassment": .3, "loans": .1, "fraud": .05},
    "delivery": {"delivery": .6, "legit": .15, "harassment": .1, "telemarketing": .08, "fraud": .04,
                 "taxi": .03},
    "taxi": {"taxi": .6, "legit": .15, "delivery": .08, "harassment": .1, "fraud": .04,
             "telemarketing": .03},
    "customer_service": {"customer_service": .45, "legit": .2, "telemarketing": .15,
                         "harassment": .1, "fraud": .05, "loans": .05},
    "legit": {"harassment": .4, "legit": .25, "telemarketing": .15, "fraud": .15,
              "real_estate": .05},
}
NOTES = {"fraud": ("冒充客服退款", "自称公检法", "刷单返利", "冒充领导借钱"),
         "harassment": ("骚扰", "天天打", "推销烦人"), "telemarketing": ("推销", "广告"),
         "loans": ("推销贷款", "问要不要贷款"), "real_estate": ("问买房吗", "房产中介"),
         "insurance": ("推销保险",), "education": ("课程推销", "辅导班"), "healthcare": ("医美推销",),
         "recruitment": ("招聘兼职",), "travel": ("机票改签",), "debt_collection": ("催收", "催债"),
         "one_ring": ("响一声就挂", "回拨扣费"), "call_bombing": ("一直打", "呼死你"),
         "spoofed": ("境外来电",), "delivery": ("快递员", "外卖"), "taxi": ("司机",),
         "customer_service": ("银行客服", "客服回访"), "legit": ("正常来电", "认识的人")}


def _event_id(seed: int, n: int) -> str:
    return hashlib.blake2b(f"{seed}:{n}".encode(), digest_size=10).hexdigest()


def _iso(ts: float) -> str:
    return f"{np.datetime64(int(ts), 's')}Z"


class Tagger:
    """Decides which calls users tag (and how), adds fake-account bursts, tracks appeal triggers."""

    def __init__(self, config, population: Population):
        self.config, self.pop = config, population
        self.U = config.n_users
        self.seed = config.seed
        rng = np.random.default_rng([config.seed, 3])
        self.accuracy = rng.beta(9, 2, self.U)
        self.careless = rng.random(self.U) < 0.06
        self.accuracy[self.careless] = 0.25
        self.activity = np.exp(0.7 * rng.standard_normal(self.U)) * config.tag_scale
        self.colluder = np.zeros(self.U, bool)
        self._ids = mix64(np.arange(self.U, dtype=np.uint64) ^ np.uint64(config.seed * 31 + 5)) >> np.uint64(16)
        self.count = 0
        self.by_category: Counter = Counter()
        self.seen: set[tuple[int, int]] = set()
        self.stats: dict[int, list] = {}  # caller id -> [harmful tags, ts of 3rd, Counter of cats]
        self.carry: list[tuple[float, str, dict]] = []
        self.fake_ids: list[str] = []
        self.blocs = self._plan_blocs(rng)
        self.fake_accounts = len(self.fake_ids)
        roles = population.role.astype(np.int64)
        self._p_in = np.array([_P_TAG[r] for r in range(len(_P_TAG))])[roles]
        self._p_out = np.array([_P_TAG_OUT.get(r, 0.001) for r in range(len(_P_TAG))])[roles]
        self._p_unans = np.array([_UNANSWERED.get(r, 0.5) for r in range(len(_P_TAG))])[roles]

    def reporter(self, user: int) -> str:
        return f"r{int(self._ids[user]):012x}"

    # -- coordinated blocs ---------------------------------------------------------------------
    def _plan_blocs(self, rng) -> list[dict]:
        pop, cfg = self.pop, self.config
        honest = [pop.by_role[COURIER], pop.by_role[TAXI],
                  np.array([i for i in pop.by_role[CS] if pop.kind[i] == N400]),
                  pop.by_role[PERSON][pop.by_role[PERSON] < pop.S]]
        honest = [h for h in honest if len(h)]
        blocs = []
        for b in range(cfg.fake_blocs + cfg.colluder_blocs):
            fake = b < cfg.fake_blocs
            if fake:
                size = cfg.fake_bloc_size
                accounts = [f"r{int(h):012x}" for h in mix64(
                    np.arange(size, dtype=np.uint64) + np.uint64((b + 1) << 32)
                    ^ np.uint64(cfg.seed * 131 + 7)) >> np.uint64(16)]
                self.fake_ids.extend(accounts)
                day = int(rng.integers(min(1, cfg.days - 1), cfg.days))
            else:
                members = rng.choice(self.U, min(self.U, cfg.colluder_bloc_size), replace=False)
                self.colluder[members] = True
                accounts = [self.reporter(int(u)) for u in members]
                day = int(rng.integers(cfg.days // 2, cfg.days))
            targets = []
            for _ in range(cfg.fake_targets):
                group = honest[int(rng.integers(len(honest)))]
                targets.append(int(group[rng.integers(len(group))]))
            category = str(rng.choice(["fraud", "harassment", "telemarketing"]))
            blocs.append(dict(day=day, t0=float(rng.uniform(9, 22) * 3600), accounts=accounts,
                              targets=targets, category=category, fake=fake))
        return blocs

    def _bloc_events(self, day: int, day_start: int, rng) -> list:
        events = []
        for bloc in self.blocs:
            if bloc["day"] != day:
                continue
            for target in bloc["targets"]:
                for account in bloc["accounts"]:
                    ts = day_start + bloc["t0"] + float(rng.uniform(0, 3600))
                    code = self.pop.variant_codes(np.array([target]), rng)[0]
                    events.append((ts, target, {"number": self.pop.presentation(target, code),
                                                "reporter": account, "category": bloc["category"]}))
        return events

    # -- honest tagging ------------------------------------------------------------------------
    def tag_day(self, day: int, batch: dict, day_start: int, handle) -> None:
        """Tags for one day's calls (plus bloc bursts); writes those due before the day ends."""
        rng = np.random.default_rng([self.seed, 4, day])
        callee, caller = batch["callee"], batch["caller"]
        is_user = callee < self.U
        users = np.where(is_user, callee, 0)
        p = np.where(batch["incoming"], self._p_in[caller], self._p_out[caller])
        p = p * np.where(batch["answered"] | ~batch["incoming"], 1.0, self._p_unans[caller])
        p = p * self.activity[users] * is_user
        events = self._bloc_events(day, day_start, rng)
        for i in np.flatnonzero(rng.random(len(p)) < p).tolist():
            event = self._tag(i, batch, day_start, rng)
            if event:
                events.append(event)
        events.extend(self.carry)
        events.sort(key=lambda e: (e[0], e[2]["reporter"]))
        end = day_start + DAY_S
        due = events if day == self.config.days - 1 else [e for e in events if e[0] < end]
        self.carry = events[len(due):] if len(due) < len(events) else []
        self._write(due, handle)

    def _tag(self, i: int, batch: dict, day_start: int, rng):
        u, c = int(batch["callee"][i]), int(batch["caller"][i])
        if (u, c) in self.seen and rng.random() > 0.05:  # one vote per user per number, mostly
            return None
        self.seen.add((u, c))
        pop = self.pop
        true = pop.cat[c]
        if rng.random() < self.accuracy[u]:
            table = CONFUSION.get(true)
            if table is None:  # telemarketing sectors
                table = dict(_SECTOR_CONFUSION)
                table[true] = table.get(true, 0) + .42
            keys = list(table)
            probs = np.array([table[k] for k in keys])
            category = keys[int(rng.choice(len(keys), p=probs / probs.sum()))]
        else:
            category = KEYS[int(rng.integers(len(KEYS)))]
        end = batch["t"][i] + batch["ring"][i] + batch["talk"][i]
        delay = rng.uniform(3600, 30 * 3600) if rng.random() < 0.05 else rng.lognormal(np.log(90), 1.2)
        ts = day_start + float(end + delay)
        code = 0 if rng.random() < 0.7 else pop.variant_codes(np.array([c]), rng)[0]
        event = {"number": pop.presentation(c, code), "reporter": self.reporter(u),
                 "category": category}
        if category == true and pop.company[c] and rng.random() < 0.3:
            event["company"] = pop.company[c]
        if rng.random() < 0.15:
            notes = NOTES[category]
            event["note"] = notes[int(rng.integers(len(notes)))]
        if rng.random() < 0.85:
            event.update(ring_s=round(float(batch["ring"][i]), 1), talk_s=int(batch["talk"][i]),
                         answered=bool(batch["answered"][i]),
                         direction="in" if batch["incoming"][i] else "out")
        return ts, c, event

    def _write(self, events, handle) -> None:
        lines = []
        for ts, caller, event in events:
            record = {"event_id": _event_id(self.seed, self.count), "number": event["number"],
                      "reporter": event["reporter"], "category": event["category"], "ts": _iso(ts)}
            record.update((k, v) for k, v in event.items() if k not in record)
            lines.append(json.dumps(record, ensure_ascii=False))
            self.count += 1
            self.by_category[event["category"]] += 1
            if event["category"] in HARMFUL_KEYS:
                st = self.stats.setdefault(caller, [0, None, Counter()])
                st[0] += 1
                st[2][event["category"]] += 1
                if st[0] == 3:
                    st[1] = ts
        if lines:
            handle.write("\n".join(lines) + "\n")

    def finish(self, handle, day0_utc: int) -> None:
        """Flush tags still queued after the last day."""
        self._write(self.carry, handle)
        self.carry = []

    # -- appeals and reporters -----------------------------------------------------------------
    def appeal_rows(self, day0_utc: int):
        pop, rng = self.pop, np.random.default_rng([self.seed, 5])
        window_end = day0_utc + self.config.days * DAY_S
        rows = []
        for c in sorted(self.stats):
            count, third, cats = self.stats[c]
            role = int(pop.role[c])
            honest = pop.cat[c] in ("legit", "delivery", "taxi", "customer_service")
            if count < 3:
                continue
            if honest:
                p, p_accept = (0.4 if role == PERSON else 0.8), 0.95
            elif role in (TELE, DEBT):
                p, p_accept = 0.1, 0.1
            else:
                continue
            filed = third + rng.uniform(1, 3) * DAY_S
            if rng.random() < p and filed < window_end:
                rows.append((filed, pop.e164[c], ";".join(sorted(cats)), int(rng.random() < p_accept)))
        for old, new in pop.recycled:  # new owners of recycled numbers appeal the old labels
            if old in self.stats and rng.random() < 0.6:
                filed = day0_utc + int(pop.first[new]) * DAY_S + rng.uniform(1, 5) * DAY_S
                if filed < window_end:
                    rows.append((filed, pop.e164[new], ";".join(sorted(self.stats[old][2])), 1))
        rows.sort()
        for filed, number, cats, accepted in rows:
            yield number, cats, _iso(filed), accepted

    def reporter_rows(self):
        """(reporter, kind, callee_hash of the user's own line; empty for fake accounts)."""
        hashes = self.pop.callee_hash
        for u in range(self.U):
            kind = "colluder" if self.colluder[u] else "careless" if self.careless[u] else "honest"
            yield self.reporter(u), kind, f"{int(hashes[u]):016x}"
        for rid in self.fake_ids:
            yield rid, "fake", ""
