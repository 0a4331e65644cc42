"""The simulated population: numbers, callers by role, their daily calls (tools/simulate.py).

Assumptions are documented in docs/simulator.md; figures quoted there come from ../shared/FACTS.md.
"""
from __future__ import annotations

import math
import os

import numpy as np

ROLES = ("person", "courier", "taxi", "customer_service", "telemarketer", "debt_collector",
         "fraud", "fraud_abroad", "one_ring", "call_bomber", "harasser")
(PERSON, COURIER, TAXI, CS, TELE, DEBT, FRAUD, ABROAD, ONE_RING, BOMBER, HARASSER) = range(len(ROLES))
HARMFUL_ROLES = frozenset((TELE, DEBT, FRAUD, ABROAD, ONE_RING, BOMBER, HARASSER))
MOBILE, FIXED, N400, SHORT, SPOOF = range(5)
CALLS_PER_SUBSCRIBER_DAY = 6.7  # measured mean of the default mix (docs/simulator.md)


class SimulationError(ValueError):
    """The simulator was given an impossible configuration."""


# -- role parameters ---------------------------------------------------------------------------
# rate: median calls a day per number; sigma: lognormal spread of rates between numbers
# p_ans: answer probability; talk: lognormal (median seconds, sigma) of answered talk time
# p_in: share of rows where the number rang the subscriber (rest: subscriber dialled it)
# verif: probabilities of (none, passed, failed) caller verification
_P = {
    PERSON: dict(rate=1.8, sigma=1.1, p_ans=0.82, talk=(45, 1.0), p_in=0.52, verif=(.15, .85, 0)),
    COURIER: dict(rate=40, sigma=0.4, p_ans=0.85, talk=(25, 0.6), p_in=0.88, verif=(.15, .85, 0)),
    TAXI: dict(rate=12, sigma=0.5, p_ans=0.9, talk=(30, 0.6), p_in=0.8, verif=(.3, .7, 0)),
    CS: dict(rate=0, sigma=0, p_ans=0.93, talk=(180, 0.8), p_in=0.25, verif=(.5, .5, 0)),
    TELE: dict(rate=800, sigma=0.3, p_ans=0.42, talk=(25, 1.0), p_in=0.99, verif=(.2, .8, 0)),
    DEBT: dict(rate=120, sigma=0.4, p_ans=0.35, talk=(60, 0.9), p_in=0.97, verif=(.2, .8, 0)),
    FRAUD: dict(rate=30, sigma=0.8, p_ans=0.5, talk=(20, 0.8), p_in=0.98, verif=(.4, .6, 0)),
    ABROAD: dict(rate=60, sigma=0.6, p_ans=0.45, talk=(20, 0.8), p_in=1.0, verif=(.2, 0, .8)),
    ONE_RING: dict(rate=300, sigma=0.6, p_ans=0.0, talk=(1, 0.1), p_in=1.0, verif=(.5, .5, 0)),
    BOMBER: dict(rate=0, sigma=0, p_ans=0.15, talk=(3, 0.5), p_in=1.0, verif=(.3, .7, 0)),
    HARASSER: dict(rate=6, sigma=0.5, p_ans=0.5, talk=(15, 1.0), p_in=0.97, verif=(.2, .8, 0)),
}
# unwanted-call volume shares by harmful role (per subscriber-day budget `unwanted_per_day`)
_UNWANTED_SHARE = {TELE: 0.45, DEBT: 0.12, FRAUD: 0.15, ABROAD: 0.05, ONE_RING: 0.12,
                   BOMBER: 0.06, HARASSER: 0.05}
# telemarketing sectors: shares of seats (12321 report shares + Tencent marks, FACTS.md)
SECTORS = {"loans": 0.30, "real_estate": 0.16, "telemarketing": 0.14, "insurance": 0.12,
           "education": 0.10, "healthcare": 0.07, "recruitment": 0.06, "travel": 0.05}
_SECTOR_FIRMS = {
    "loans": ("易融贷金融", "速贷通", "宏信理财"), "real_estate": ("安居房产", "恒达地产中介"),
    "telemarketing": ("优品商城", "康源保健品", "金鼎证券咨询", "家美家政"),
    "insurance": ("平顺保险代理", "安盛保险经纪"), "education": ("启航教育", "学霸辅导"),
    "healthcare": ("美丽人生医美", "贝贝母婴"), "recruitment": ("才聚人力", "优职猎头"),
    "travel": ("环球签证", "畅游旅行社")}
BUSINESS_HOURS = np.array([0, 0, 0, 0, 0, 0, 0, .2, .6, 3, 4, 4, 1.5, 2, 4, 4, 4, 3.5, 1.5, .6, .3,
                           0, 0, 0], float)
_HOURS = {
    PERSON: [.3, .15, .1, .08, .08, .2, .5, 1.5, 3, 4, 4.5, 4.5, 4, 3.5, 4, 4.5, 4.5, 4.5, 4.5, 5, 5,
             4, 2.5, 1],
    COURIER: [0, 0, 0, 0, 0, 0, .1, .8, 3, 4, 4, 4, 3, 3, 4, 4, 4, 4, 3.5, 2.5, 1.5, .8, .2, 0],
    TAXI: [.5, .4, .3, .2, .2, .4, 1.5, 4, 4, 3, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 3, 4, 4.5, 4, 3, 2.5,
           2, 1],
    CS: list(BUSINESS_HOURS + np.array([0] * 9 + [.5] * 12 + [.3] * 3)),
    TELE: list(BUSINESS_HOURS), DEBT: list(BUSINESS_HOURS + np.array([0] * 18 + [.5, .5, .2, 0, 0, 0])),
    ONE_RING: [4, 4, 3.5, 3, 2.5, 1.5, .6, .3, .2, .2, .2, .2, .2, .2, .2, .2, .2, .2, .3, .5, 1, 2,
               3, 4],
    ABROAD: [1.5, 1, .8, .6, .6, .8, 1, 1.5, 2.5, 3, 3, 3, 2.5, 2.5, 3, 3, 3, 3, 2.5, 2.5, 2.5, 2.5,
             2, 2],
    HARASSER: [2, 1.5, 1, .6, .4, .4, .6, 1, 1.5, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2.5, 3, 3, 3, 3, 2.5],
}
_HOURS[FRAUD] = _HOURS[ABROAD]
_HOURS[BOMBER] = _HOURS[HARASSER]
_WEEKEND = {CS: 0.5, TELE: 0.35, DEBT: 0.5, COURIER: 0.8}
CUSTOMER_SERVICE = (  # well-known short service numbers and who answers them
    ("95588", "中国工商银行"), ("95533", "中国建设银行"), ("95599", "中国农业银行"),
    ("95566", "中国银行"), ("95555", "招商银行"), ("95559", "交通银行"), ("95511", "中国平安"),
    ("95519", "中国人寿"), ("95188", "支付宝"), ("95017", "财付通"), ("95516", "中国银联"),
    ("95338", "顺丰速运"), ("95530", "东方航空"), ("95539", "南方航空"), ("95583", "中国国航"),
    ("10086", "中国移动"), ("10010", "中国联通"), ("10000", "中国电信"), ("12306", "中国铁路"))
_CS_400 = ("家电售后服务中心", "宽带报修中心", "电商平台客服", "汽车4S店服务", "物业服务中心",
           "燃气服务热线", "快递投诉中心", "酒店预订中心", "手机售后服务")
COURIER_FIRMS = ("顺丰速运", "中通快递", "圆通速递", "韵达快递", "京东物流", "美团外卖", "饿了么")
TAXI_FIRMS = ("滴滴出行", "高德打车", "曹操出行", "出租车")
AREA_CODES = ("010", "021", "022", "023", "020", "024", "025", "027", "028", "029", "0755", "0571",
              "0512", "0731", "0532", "0871", "0851", "0591", "0531", "0371", "0311", "0351",
              "0471", "0431", "0451", "0551", "0791", "0771", "0898", "0931", "0951", "0991")
_U64 = np.uint64


def mix64(x) -> np.ndarray:
    """SplitMix64 finaliser: a fast, well-spread deterministic hash of uint64 values."""
    with np.errstate(over="ignore"):
        x = np.asarray(x, dtype=np.uint64) + _U64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
        return x ^ (x >> _U64(31))


def _mobile_prefixes() -> tuple[np.ndarray, np.ndarray]:
    """7-digit mobile prefixes (carrier, virtual operator) from the `phone` package's data."""
    import phone

    path = os.path.join(os.path.dirname(phone.__file__), "phone.dat")
    with open(path, "rb") as f:
        buf = f.read()
    first = int(np.frombuffer(buf, "<i4", 1, 4)[0])
    dt = np.dtype([("pre", "<i4"), ("off", "<i4"), ("typ", "u1")])
    rec = np.frombuffer(buf, dt, (len(buf) - first) // dt.itemsize, first)
    seg = rec["pre"] // 10000
    big = np.isin(seg, [130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155,
                        156, 157, 158, 159, 166, 173, 175, 176, 177, 178, 180, 181, 182, 183, 184,
                        185, 186, 187, 188, 189, 191, 198, 199])
    carrier = np.sort(rec["pre"][big & np.isin(rec["typ"], [1, 2, 3])])
    mvno = np.sort(rec["pre"][np.isin(seg, [162, 165, 167, 170, 171]) & np.isin(rec["typ"],
                                                                             [4, 5, 6, 8])])
    if len(carrier) < 1000 or len(mvno) < 100:
        raise SimulationError("the `phone` package's prefix data looks broken; reinstall `phone`")
    return carrier, mvno


class NumberFactory:
    """Unique, realistic Chinese numbers (national digit strings)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.used: set[str] = set(n for n, _ in CUSTOMER_SERVICE)
        self.carrier, self.mvno = _mobile_prefixes()

    def _unique(self, make) -> str:
        for _ in range(1000):
            number = make()
            if number not in self.used:
                self.used.add(number)
                return number
        raise SimulationError("number space exhausted; lower the population size")

    def mobile(self, mvno_share: float = 0.0) -> str:
        pool = self.mvno if self.rng.random() < mvno_share else self.carrier
        return self._unique(lambda: f"{pool[self.rng.integers(len(pool))]}"
                                    f"{self.rng.integers(10000):04d}")

    def fixed(self) -> str:
        def make():
            area = AREA_CODES[min(int(self.rng.pareto(1.2)), len(AREA_CODES) - 1)]
            digits = 8 if len(area) == 3 or self.rng.random() < 0.7 else 7
            return f"{area}{self.rng.integers(2, 9)}{self.rng.integers(10 ** (digits - 1)):0{digits - 1}d}"
        return self._unique(make)

    def batch(self, block: str | None, make) -> tuple[str, str]:
        """A number in the same 100-block as earlier ones (SIM cards bought in batches, PBX trunks).

        `block` is the number minus its last two digits, or None to start one with `make()`;
        returns (number, block); a full block starts a new one.
        """
        for _ in range(3):
            if block is None:
                number = make()
                return number, number[:-2]
            free = [f"{block}{i:02d}" for i in range(100) if f"{block}{i:02d}" not in self.used]
            if free:
                number = free[int(self.rng.integers(len(free)))]
                self.used.add(number)
                return number, block
            block = None
        raise SimulationError("number space exhausted; lower the population size")

    def n400(self) -> str:
        return self._unique(lambda: f"400{self.rng.integers(10 ** 7):07d}")

    def short96(self) -> str:
        return self._unique(lambda: f"96{self.rng.integers(1000):03d}")

    def spoof(self) -> str:
        """A '+86…' string as presented by a call spoofed from abroad (often irregular)."""
        u = self.rng.random()
        if u < 0.5:
            body = self.mobile(0.0)
        elif u < 0.7:  # wrong length
            n = int(self.rng.choice([9, 10, 12, 13]))
            body = self._unique(lambda: f"1{self.rng.integers(3, 10)}{self.rng.integers(10 ** (n - 2)):0{n - 2}d}")
        elif u < 0.85:  # trunk 0 kept after +86
            body = "0" + self.fixed().lstrip("0")
        else:
            body = self.fixed().lstrip("0")
        return "+86" + body


def _national_to_e164(national: str, kind: int) -> str:
    if kind == SPOOF:
        return national
    if kind == FIXED:
        return "+86" + national[1:]
    return "+86" + national


_FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
# variant code probabilities per number kind (see _format): 0 as displayed, 1 +86, 2 0086,
# 3 +86 grouped, 4 dashed, 5 spaced, 6 IP-dial 17951, 7 full-width, 8 (area)local / 86 prefix
_VARIANT_P = {
    MOBILE: [.80, .08, .02, .03, .02, .025, .015, .002, .008],
    FIXED: [.60, .08, .02, .04, .18, .03, .01, .002, .038],
    N400: [.60, .02, 0, .02, .26, .10, 0, 0, 0],
    SHORT: [.97, .03, 0, 0, 0, 0, 0, 0, 0],
    SPOOF: [.85, 0, 0, .15, 0, 0, 0, 0, 0],
}


def format_variant(national: str, kind: int, code: int) -> str:
    """The raw string a phone shows or sends for `national` in variant `code`."""
    if code == 0 or kind == SHORT and code != 1:
        return national
    if kind == SPOOF:
        return "+86 " + national[3:]
    if kind == FIXED:
        area = national[:3] if national[1] in "12" else national[:4]
        local, nsn = national[len(area):], national[1:]
        g = f"{local[:-4]} {local[-4:]}"
        return (national, "+86" + nsn, "0086" + nsn, f"+86 {area[1:]} {g}", f"{area}-{local}",
                f"{area} {g}", "17951" + national, national.translate(_FULLWIDTH),
                f"({area}){local}")[code]
    if kind == N400:
        return (national, "+86" + national, "0086" + national, f"+86 {national}",
                f"{national[:3]}-{national[3:6]}-{national[6:]}",
                f"{national[:3]} {national[3:6]} {national[6:]}", national, national,
                national)[code]
    if kind == SHORT:
        return "+86" + national
    return (national, "+86" + national, "0086" + national,
            f"+86 {national[:3]} {national[3:7]} {national[7:]}",
            f"{national[:3]}-{national[3:7]}-{national[7:]}",
            f"{national[:3]} {national[3:7]} {national[7:]}", "17951" + national,
            national.translate(_FULLWIDTH), "86" + national)[code]


class Population:
    """All callers (with ground truth and lifetimes) and the per-day call generator."""

    def __init__(self, config):
        self.config = config
        self.S = config.n_subscribers
        self.days = config.days
        self.seed = config.seed
        rng = np.random.default_rng([config.seed, 1])
        self.rng = rng
        self.factory = NumberFactory(rng)
        self.N = max(self.S, int(round(self.S * config.network_factor)))  # lines in the network
        self.cap = max(20.0, config.rate_cap_share * self.N)
        self._cols = {k: [] for k in ("national", "kind", "role", "cat", "first", "last", "rate",
                                      "company", "h0", "hw", "p_in", "talk_x")}
        self.recycled: list[tuple[int, int]] = []  # (old caller id, new caller id)
        self.campaigns: list[tuple] = []  # call bombing: (day, victim, first id, n ids, calls, t0)
        self._build()
        c = self._cols
        self.national = c["national"]
        self.kind = np.array(c["kind"], np.int8)
        self.role = np.array(c["role"], np.int8)
        self.cat = c["cat"]
        self.first = np.array(c["first"], np.int32)
        self.last = np.array(c["last"], np.int32)
        self.rate = np.array(c["rate"], np.float64)
        self.company = c["company"]
        self.h0 = np.array(c["h0"], np.int16)
        self.hw = np.array(c["hw"], np.int16)
        self.p_in = np.array(c["p_in"], np.float64)
        self.talk_x = np.array(c["talk_x"], np.float64)
        self.e164 = [_national_to_e164(n, k) for n, k in zip(self.national, c["kind"])]
        self.display = [format_variant(n, k, 0) for n, k in zip(self.national, c["kind"])]
        self.e164_array = np.array(self.e164, dtype=object)
        self.display_array = np.array(self.display, dtype=object)
        self.callee_hash = mix64(np.arange(self.N, dtype=np.uint64)
                                 ^ _U64(mix64(_U64(config.seed + 0xCA11EE))))
        self.by_role = {r: np.flatnonzero(self.role == r) for r in range(len(ROLES))}
        self._variant_cdf = np.cumsum(np.array([_VARIANT_P[k] for k in range(5)]), axis=1)
        self._variant_cdf /= self._variant_cdf[:, -1:]
        self._hour_cdf = {r: np.cumsum(np.asarray(h, float)) / np.sum(h) for r, h in _HOURS.items()}

    # -- building ------------------------------------------------------------------------------
    def _add(self, national, kind, role, cat, first, last, rate=0.0, company="", h0=0, hw=24):
        p_in, talk_x = _P[role]["p_in"], 1.0
        if role == PERSON:  # people differ in how much they call versus get called, and talk
            p_in, talk_x = float(self.rng.beta(2.2, 2.0)), float(self.rng.lognormal(0, 0.45))
        elif role in (FRAUD, ABROAD):
            talk_x = float(self.rng.lognormal(0, 0.8))
        self._cols["national"].append(national)
        for key, value in (("kind", kind), ("role", role), ("cat", cat), ("first", first),
                           ("last", last), ("rate", rate), ("company", company), ("h0", h0),
                           ("hw", hw), ("p_in", p_in), ("talk_x", talk_x)):
            self._cols[key].append(value)
        return len(self._cols["national"]) - 1

    def _rate(self, role) -> float:
        p = _P[role]
        return float(min(self.cap, p["rate"] * math.exp(p["sigma"] * self.rng.standard_normal())))

    def _mean_rate(self, role) -> float:
        p = _P[role]
        return min(self.cap, p["rate"] * math.exp(p["sigma"] ** 2 / 2))

    def _lifetimes(self, median: float, sigma: float):
        """(first, last) day spans of numbers a rotating slot uses, covering the whole window."""
        day = -float(self.rng.uniform(0, median))
        while day < self.days:
            life = max(1.0, median * math.exp(sigma * self.rng.standard_normal()))
            first, last = max(0, int(day)), min(self.days - 1, int(day + life) - 1)
            if last >= first:
                yield first, last
            day += life

    def _slots(self, role, minimum=1) -> int:
        if self.config.unwanted_per_day <= 0:
            return 0
        lines = self.S if role in (DEBT, HARASSER) else self.N  # these target modelled people
        volume = self.config.unwanted_per_day * lines * _UNWANTED_SHARE[role]
        return max(minimum, int(round(volume / self._mean_rate(role))))

    def _build(self):
        f, rng, D = self.factory, self.rng, self.days
        last = D - 1
        for _ in range(self.S):  # ordinary people: every subscriber has a number
            self._add(f.mobile(0.03), MOBILE, PERSON, "legit", 0, last, self._rate(PERSON))
        for _ in range(max(2, round(0.3 * self.N / self._mean_rate(COURIER)))):
            firm = COURIER_FIRMS[min(int(rng.pareto(1.0)), len(COURIER_FIRMS) - 1)]
            self._add(f.mobile(0.1), MOBILE, COURIER, "delivery", 0, last, self._rate(COURIER), firm)
        for _ in range(max(2, round(0.1 * self.N / self._mean_rate(TAXI)))):
            firm = TAXI_FIRMS[min(int(rng.pareto(1.0)), len(TAXI_FIRMS) - 1)]
            self._add(f.mobile(0.6), MOBILE, TAXI, "taxi", 0, last, self._rate(TAXI), firm)
        cs = [(n, SHORT, firm) for n, firm in CUSTOMER_SERVICE]
        cs += [(f.n400(), N400, _CS_400[i % len(_CS_400)]) for i in range(max(3, self.S // 2000))]
        cs += [(f.fixed(), FIXED, "市民服务热线") for _ in range(max(2, self.S // 5000))]
        weights = 1.0 / np.arange(1, len(cs) + 1) ** 0.8
        weights = 0.15 * self.N * weights / weights.sum()
        for (number, kind, firm), w in zip(cs, rng.permutation(weights)):
            self._add(number, kind, CS, "customer_service", 0, last, float(w), firm)
        self.verified_ids = list(range(len(self._cols["role"]) - len(cs), len(self._cols["role"])))
        seats = self._slots(TELE, minimum=0)
        trunks: dict[str, str | None] = {}  # a firm's fixed lines share a PBX 100-block
        for sector, share in SECTORS.items():
            for _ in range(max(1, round(seats * share)) if seats else 0):
                firm = _SECTOR_FIRMS[sector][int(rng.integers(len(_SECTOR_FIRMS[sector])))]
                for first, end in self._lifetimes(20, 0.6):
                    u = rng.random()
                    if u < 0.55:
                        number, kind = f.mobile(0.15), MOBILE
                    elif u < 0.8:
                        (number, trunks[firm]), kind = f.batch(trunks.get(firm), f.fixed), FIXED
                    elif u < 0.96:
                        number, kind = f.n400(), N400
                    else:
                        number, kind = f.short96(), SHORT
                    self._add(number, kind, TELE, sector, first, end, self._rate(TELE), firm)
        for _ in range(self._slots(DEBT)):
            for first, end in self._lifetimes(30, 0.5):
                number, kind = (f.fixed(), FIXED) if rng.random() < 0.5 else (f.mobile(0.1), MOBILE)
                self._add(number, kind, DEBT, "debt_collection", first, end, self._rate(DEBT))
        slots = self._slots(FRAUD)
        while slots > 0:  # fraud rings: SIM cards bought in batches, each living days
            ring = min(slots, int(rng.integers(2, 9)))
            slots -= ring
            u = rng.random()
            kind, make = (FIXED, f.fixed) if u < 0.15 else (MOBILE, (
                lambda: f.mobile(1.0)) if u < 0.62 else (lambda: f.mobile(0.0)))
            block, h0 = None, int(rng.integers(7, 13))  # the ring works one shift
            for _ in range(ring):
                for first, end in self._lifetimes(7, 0.9):
                    number, block = f.batch(block, make) if rng.random() < 0.8 else (make(), block)
                    self._add(number, kind, FRAUD, "fraud", first, end, self._rate(FRAUD), "",
                              h0, int(rng.integers(5, 25 - h0)))
        for _ in range(self._slots(ABROAD)):  # spoofed '+86' numbers rotate daily or faster
            for first, end in self._lifetimes(1.5, 0.5):
                self._add(f.spoof(), SPOOF, ABROAD, "spoofed", first, end, self._rate(ABROAD))
        for _ in range(self._slots(ONE_RING)):
            for first, end in self._lifetimes(3, 0.6):
                u = rng.random()
                number, kind = (f.fixed(), FIXED) if u < 0.5 else (f.mobile(0.6), MOBILE)
                self._add(number, kind, ONE_RING, "one_ring", first, end, self._rate(ONE_RING))
        for _ in range(self._slots(HARASSER)):
            first = int(rng.integers(0, D))
            self._add(f.mobile(0.2), MOBILE, HARASSER, "harassment", first, last,
                      self._rate(HARASSER))
        self._build_bombing()
        self._build_recycling()

    def _build_bombing(self):
        rng, f = self.rng, self.factory
        per_day = self.config.unwanted_per_day * self.S * _UNWANTED_SHARE[BOMBER] / 100.0
        counts = rng.poisson(per_day, self.days)
        if counts.sum() == 0 and self.config.unwanted_per_day > 0:
            counts[min(1, self.days - 1)] = 1
        users = max(1, self.config.n_users)
        for day, n in enumerate(counts.tolist()):
            for _ in range(n):
                victim = int(rng.integers(users)) if rng.random() < 0.7 else int(rng.integers(self.S))
                pool = int(rng.integers(3, 21))
                calls = int(min(600, 100 * math.exp(0.7 * rng.standard_normal())))
                first_id = len(self._cols["role"])
                for _ in range(pool):
                    u = rng.random()
                    number, kind = (f.fixed(), FIXED) if u < 0.3 else (f.mobile(0.15), MOBILE)
                    self._add(number, kind, BOMBER, "call_bombing", day, day)
                self.campaigns.append((day, victim, first_id, pool, calls,
                                       float(rng.uniform(8, 22) * 3600)))

    def _build_recycling(self):
        rng, freeze = self.rng, self.config.freeze_days
        c = self._cols
        for i in range(self.S, len(c["role"])):
            if c["role"][i] not in (TELE, DEBT, FRAUD, ONE_RING, HARASSER) or c["kind"][i] != MOBILE:
                continue
            reissue = c["last"][i] + freeze + 1
            if reissue <= self.days - 1 and rng.random() < self.config.recycle_share:
                new = self._add(c["national"][i], MOBILE, PERSON, "legit", reissue, self.days - 1,
                                self._rate(PERSON))
                self.recycled.append((i, new))

    # -- outputs -------------------------------------------------------------------------------
    def truth_rows(self):
        for i, national in enumerate(self.national):
            role = int(self.role[i])
            yield (self.e164[i], ROLES[role], self.cat[i], int(role in HARMFUL_ROLES),
                   int(self.first[i]), int(self.last[i]), self.company[i])

    def harmful_count(self) -> int:
        return int(np.isin(self.role, list(HARMFUL_ROLES)).sum())

    def verified_rows(self):
        for i in self.verified_ids:
            yield self.e164[i], self.company[i]

    def recycled_rows(self, day0_utc: int):
        for _, new in self.recycled:
            ts = np.datetime64(int(day0_utc + int(self.first[new]) * 86400), "s")
            yield self.e164[new], f"{ts}Z"

    def variant_codes(self, callers: np.ndarray, rng) -> list[int]:
        """Per-call presentation styles (see format_variant); fraud gateways favour '+86…'."""
        cdf = self._variant_cdf[self.kind[callers]]
        u = rng.random((len(callers), 2))
        codes = (u[:, :1] >= cdf).sum(axis=1).clip(0, 8)
        codes[(self.role[callers] == FRAUD) & (u[:, 1] < 0.3)] = 1
        return codes.tolist()

    def presentation(self, caller: int, code: int) -> str:
        if code == 0:
            return self.display[caller]
        return format_variant(self.national[caller], int(self.kind[caller]), code)

    # -- calls ---------------------------------------------------------------------------------
    def contacts(self, who: np.ndarray, rank: np.ndarray) -> np.ndarray:
        """Subscriber index of `who`'s contact number `rank` (a fixed hash, no storage)."""
        key = (who.astype(np.uint64) << _U64(20)) | rank.astype(np.uint64)
        out = (mix64(key ^ _U64(self.seed * 7919 + 17)) % _U64(self.S)).astype(np.int64)
        return np.where(out == who, (out + 1) % self.S, out)

    def day_calls(self, day: int) -> dict:
        """All call records of local day `day` (unsorted) as numpy arrays."""
        rng = np.random.default_rng([self.seed, 2, day])
        weekend = (np.datetime64(self.config.start, "D") + day).astype("datetime64[D]").view(
            "int64") % 7 in (2, 3)  # 1970-01-01 was a Thursday
        parts = []
        for role, ids in self.by_role.items():
            if role == BOMBER or len(ids) == 0:
                continue
            ids = ids[(self.first[ids] <= day) & (self.last[ids] >= day)]
            factor = _WEEKEND.get(role, 1.0) if weekend else 1.0
            counts = rng.poisson(self.rate[ids] * factor)
            caller = np.repeat(ids, counts)
            if len(caller):
                parts.append(self._calls(role, caller, rng))
        parts.extend(self._bombing(day, rng))
        keys = ("caller", "callee", "t", "ring", "talk", "answered", "incoming", "verification")
        if not parts:
            return {k: np.zeros(0, np.int64 if k in ("caller", "callee") else float) for k in keys}
        return {k: np.concatenate([p[k] for p in parts]) for k in keys}

    def _hours(self, role, caller, rng) -> np.ndarray:
        n = len(caller)
        if role == FRAUD:
            h = self.h0[caller] + (rng.random(n) * self.hw[caller]).astype(np.int16)
        else:
            h = np.searchsorted(self._hour_cdf[role], rng.random(n), side="right")
        return np.minimum(h, 23) * 3600.0 + rng.random(n) * 3600.0

    def _calls(self, role, caller, rng) -> dict:
        p, n, S = _P[role], len(caller), self.S
        if role == PERSON:
            who = np.where(caller < S, caller, caller + S * 7)
            size = 10 + (mix64(who.astype(np.uint64) ^ _U64(self.seed + 99)) % _U64(70)).astype(np.int64)
            k = (rng.random(n) ** 4 * size).astype(np.int64)  # a few close contacts dominate
            callee = self.contacts(who, k)
        elif role == DEBT:  # a debtor list per collector, plus the debtors' contacts
            debtor = self.contacts(caller + S * 3, rng.integers(0, 50, n))
            to_contact = rng.random(n) < 0.25
            callee = np.where(to_contact, self.contacts(debtor, rng.integers(0, 10, n)), debtor)
        elif role == HARASSER:
            callee = self.contacts(caller + S * 5, rng.integers(0, 3, n))
        else:  # list dialling across the whole network
            callee = rng.integers(0, self.N, n)
        t = self._hours(role, caller, rng)
        incoming = rng.random(n) < self.p_in[caller]
        answered = rng.random(n) < np.where(incoming, p["p_ans"], 0.8)
        out = self._durations(role, answered, rng, self.talk_x[caller])
        out.update(caller=caller, callee=callee, t=t, answered=answered, incoming=incoming)
        if role == ONE_RING:
            out["ring"] = rng.uniform(0.5, 2.9, n)
            out["answered"] &= ~incoming
        out["verification"] = self._verification(role, n, rng)
        redial = {TELE: 0.12, FRAUD: 0.2, COURIER: 0.3, DEBT: 0.3}.get(role, 0)
        callback = {ONE_RING: 0.06, FRAUD: 0.02, COURIER: 0.08, TAXI: 0.1}.get(role, 0)
        extra = [out]
        if redial:
            extra.append(self._follow(role, out, (~out["answered"]) & (rng.random(n) < redial),
                                      True, rng))
        if callback:
            extra.append(self._follow(role, out, out["incoming"] & (rng.random(n) < callback),
                                      False, rng))
        return {k: np.concatenate([e[k] for e in extra]) for k in out}

    def _durations(self, role, answered, rng, scale=1.0) -> dict:
        p, n = _P[role], len(answered)
        talk = scale * np.exp(np.log(p["talk"][0]) + p["talk"][1] * rng.standard_normal(n))
        if role in (FRAUD, ABROAD):  # most hang up fast; some victims are drawn into a long scam
            hooked = rng.random(n) < 0.14
            talk = np.where(hooked, np.exp(np.log(300) + 0.8 * rng.standard_normal(n)), talk)
        ring = np.where(answered, 1 + rng.gamma(2.0, 3.0, n), rng.uniform(8, 40, n))
        return dict(ring=ring, talk=np.where(answered, np.maximum(1, talk), 0).round())

    def _verification(self, role, n, rng) -> np.ndarray:
        cdf = np.cumsum(_P[role]["verif"])
        return np.searchsorted(cdf / cdf[-1], rng.random(n), side="right").astype(np.int8)

    def _follow(self, role, base, mask, incoming: bool, rng) -> dict:
        """Redials by the caller (incoming=True) or callbacks by the subscriber (False)."""
        idx = np.flatnonzero(mask)
        m = len(idx)
        answered = rng.random(m) < (_P[role]["p_ans"] if incoming else 0.9)
        out = self._durations(role, answered, rng)
        out.update(caller=base["caller"][idx], callee=base["callee"][idx],
                   t=np.minimum(base["t"][idx] + rng.uniform(120, 3600, m), 86399.0),
                   answered=answered, incoming=np.full(m, incoming),
                   verification=base["verification"][idx])
        if role == ONE_RING and not incoming:  # the victim reaches a paid line
            out["talk"] = np.where(answered, rng.integers(10, 90, m), 0).astype(float)
        return out

    def _bombing(self, day, rng) -> list[dict]:
        parts = []
        for cday, victim, first_id, pool, calls, t0 in self.campaigns:
            if cday != day:
                continue
            t = np.minimum(t0 + np.cumsum(rng.exponential(30.0, calls)), 86399.0)
            answered = rng.random(calls) < _P[BOMBER]["p_ans"]
            out = self._durations(BOMBER, answered, rng)
            out["ring"] = np.where(answered, out["ring"], rng.uniform(2, 12, calls))
            out.update(caller=first_id + rng.integers(0, pool, calls),
                       callee=np.full(calls, victim, np.int64), t=t, answered=answered,
                       incoming=np.ones(calls, bool),
                       verification=self._verification(BOMBER, calls, rng))
            parts.append(out)
        return parts
