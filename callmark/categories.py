"""The label taxonomy: stable integer codes, zh/en names and a default action.

A code never changes meaning once released; new categories take new codes at the end.
`tests/callmark/test_categories.py` pins every released code.
"""
from __future__ import annotations

from dataclasses import dataclass

from callmark.errors import UnknownCategoryError

BLOCK = "block"
WARN = "warn"
LABEL = "label"
ACTIONS = (BLOCK, WARN, LABEL)


@dataclass(frozen=True)
class Category:
    """One label a number can carry."""

    code: int  # stable wire/pack code, 1..255; 0 means "no label"
    key: str  # stable machine name used in files and APIs
    zh: str
    en: str
    action: str  # default handset action: block | warn | label
    harmful: bool  # counts against the number (False for benign labels)

    def to_dict(self) -> dict:
        return {"code": self.code, "key": self.key, "zh": self.zh, "en": self.en,
                "action": self.action, "harmful": self.harmful}


CATEGORIES: tuple[Category, ...] = (
    Category(1, "fraud", "诈骗电话", "Fraud", BLOCK, True),
    Category(2, "harassment", "骚扰电话", "Harassment", WARN, True),
    Category(3, "telemarketing", "广告推销", "Telemarketing", WARN, True),
    Category(4, "real_estate", "房产中介", "Real-estate agent", WARN, True),
    Category(5, "loans", "贷款理财", "Loans & finance", WARN, True),
    Category(6, "insurance", "保险推销", "Insurance sales", WARN, True),
    Category(7, "debt_collection", "催收电话", "Debt collection", WARN, True),
    Category(8, "recruitment", "招聘猎头", "Recruitment", LABEL, True),
    Category(9, "education", "教育培训", "Education & training", WARN, True),
    Category(10, "healthcare", "医疗保健", "Healthcare & medical beauty", WARN, True),
    Category(11, "travel", "旅游签证", "Travel & visa", WARN, True),
    Category(12, "one_ring", "响一声", "One-ring call", BLOCK, True),
    Category(13, "call_bombing", "呼死你", "Call bombing", BLOCK, True),
    Category(14, "spoofed", "境外伪冒", "Spoofed from abroad", BLOCK, True),
    Category(15, "delivery", "快递外卖", "Delivery & takeaway", LABEL, False),
    Category(16, "taxi", "出租车", "Taxi & ride hailing", LABEL, False),
    Category(17, "customer_service", "客服电话", "Customer service", LABEL, False),
    Category(18, "legit", "正常号码", "Legitimate", LABEL, False),
)

_BY_KEY = {c.key: c for c in CATEGORIES}
_BY_CODE = {c.code: c for c in CATEGORIES}
HARMFUL_KEYS = frozenset(c.key for c in CATEGORIES if c.harmful)
BENIGN_KEYS = frozenset(c.key for c in CATEGORIES if not c.harmful)
KEYS = tuple(c.key for c in CATEGORIES)
MAX_CODE = max(_BY_CODE)


def by_key(key: str) -> Category:
    """The category named `key` (e.g. "fraud"); raises UnknownCategoryError naming the valid keys."""
    try:
        return _BY_KEY[key]
    except (KeyError, TypeError):
        raise UnknownCategoryError(
            f"unknown category {key!r}; use one of: {', '.join(KEYS)}") from None


def by_code(code: int) -> Category:
    """The category with stable code `code`; raises UnknownCategoryError."""
    try:
        return _BY_CODE[int(code)]
    except (KeyError, TypeError, ValueError):
        raise UnknownCategoryError(
            f"unknown category code {code!r}; valid codes are 1..{MAX_CODE}") from None


def is_key(key: str) -> bool:
    """True when `key` names a category."""
    return key in _BY_KEY
