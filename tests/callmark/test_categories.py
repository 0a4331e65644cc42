"""The taxonomy: released codes are pinned forever."""
import pytest

from callmark import categories
from callmark.errors import UnknownCategoryError

RELEASED = {
    1: "fraud", 2: "harassment", 3: "telemarketing", 4: "real_estate", 5: "loans", 6: "insurance",
    7: "debt_collection", 8: "recruitment", 9: "education", 10: "healthcare", 11: "travel",
    12: "one_ring", 13: "call_bombing", 14: "spoofed", 15: "delivery", 16: "taxi",
    17: "customer_service", 18: "legit",
}


def test_every_released_code_keeps_its_meaning():
    for code, key in RELEASED.items():
        assert categories.by_code(code).key == key
        assert categories.by_key(key).code == code


def test_codes_and_keys_are_unique_and_complete():
    codes = [c.code for c in categories.CATEGORIES]
    keys = [c.key for c in categories.CATEGORIES]
    assert len(set(codes)) == len(codes) and len(set(keys)) == len(keys)
    assert 0 not in codes and max(codes) <= 255
    assert set(RELEASED.values()) <= set(keys)


def test_names_and_actions():
    for c in categories.CATEGORIES:
        assert c.zh and c.en and c.action in categories.ACTIONS
    assert categories.by_key("fraud").action == "block"
    assert not categories.by_key("delivery").harmful and categories.by_key("fraud").harmful
    assert "legit" in categories.BENIGN_KEYS and "one_ring" in categories.HARMFUL_KEYS


def test_unknown_category_errors_name_the_valid_ones():
    with pytest.raises(UnknownCategoryError, match="fraud"):
        categories.by_key("scam")
    with pytest.raises(UnknownCategoryError):
        categories.by_code(0)
