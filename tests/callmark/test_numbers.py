"""The number normaliser: every form a phone or a report carries, and the never-raise contract."""
import json

import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from callmark.numbers import (SHORT_KEY_BASE, TYPES, calling_region, format_key, is_short_key, key_of,
                              lookup_hash, publishable_key, short_key,
                              normalize)
from tools.cli import main

MOBILE = 8613812345678


@pytest.mark.parametrize("raw", [
    "13812345678", "+8613812345678", "+86 138 1234 5678", "+86-138-1234-5678", "008613812345678",
    "0086 138 1234 5678", "(+86) 138-1234-5678", "１３８１２３４５６７８", "＋８６１３８１２３４５６７８",
    "17951 13812345678", "12593-13812345678", "17911 13812345678", "10193 13812345678",
    "tel:+8613812345678", " 138 1234 5678 ",
])
def test_chinese_mobile_forms_share_one_key(raw):
    facts = normalize(raw)
    assert facts.key == MOBILE
    assert facts.e164 == "+8613812345678"
    assert facts.valid and facts.irregular is None
    assert facts.type == "mobile"
    assert facts.carrier == "China Mobile"
    assert facts.province == "jiangsu"


def test_virtual_operator_ranges_are_mvno():
    for raw in ("16512345678", "17012345678", "17112345678"):
        facts = normalize(raw)
        assert facts.type == "mvno", raw
        assert facts.carrier is None or "MVNO" in facts.carrier


@pytest.mark.parametrize("raw,digits", [("95588", "95588"), ("96110", "96110"), ("12315", "12315"),
                                        ("10086", "10086"), ("+8695588", "95588"), ("110", "110")])
def test_short_service_numbers_have_their_own_key_space(raw, digits):
    facts = normalize(raw)
    assert facts.type == "short_service" and facts.valid
    assert is_short_key(facts.key) and facts.key >= SHORT_KEY_BASE
    assert facts.e164 == f"+86{digits}"
    assert format_key(facts.key) == facts.e164
    assert normalize(facts.e164).key == facts.key


def test_short_keys_never_collide_with_e164_keys():
    assert normalize("95588").key != normalize("+8695588000").key
    assert normalize("95588").key != normalize("95588", "US").key or normalize("95588", "US").key is None


@pytest.mark.parametrize("raw,kind", [("400-810-8888", "shared_cost"), ("4008108888", "shared_cost"),
                                      ("800 820 8820", "toll_free")])
def test_service_ranges(raw, kind):
    facts = normalize(raw)
    assert facts.type == kind and facts.valid and facts.e164.startswith("+86")


@pytest.mark.parametrize("raw,city,province", [("(010) 12345678", "Beijing", "beijing"),
                                               ("020-87654321", "Guangzhou", "guangdong"),
                                               ("0571 88888888", "Hangzhou", "zhejiang")])
def test_fixed_lines_with_area_codes(raw, city, province):
    facts = normalize(raw)
    assert facts.type == "fixed_line" and facts.valid
    assert facts.city == city and facts.province == province


def test_us_and_german_numbers():
    us = normalize("2125551234", "US")
    assert us.key == 12125551234 and us.region == "US" and us.valid
    assert normalize("0012125551234").key == us.key  # dialled from China with the IDD prefix
    de = normalize("+49 1512 3456789", "DE")
    assert de.key == 4915123456789 and de.type == "mobile" and de.carrier
    assert normalize("01512 3456789", "DE").key == de.key


@pytest.mark.parametrize("raw,reason", [("", "empty"), ("abc", "non_digit_characters"),
                                        ("+999999", "invalid_country_code"), ("0", "not_a_number"),
                                        ("x" * 100, "too_long_input"), ("1381234567", "not_in_numbering_plan")])
def test_irregular_inputs_are_facts_not_errors(raw, reason):
    facts = normalize(raw)
    assert not facts.valid
    assert facts.irregular == reason


def test_invalid_but_readable_numbers_have_no_key():
    facts = normalize("1381234567")  # one digit short of a mobile number
    assert facts.key is None and not facts.valid and facts.irregular == "not_in_numbering_plan"
    assert facts.e164 == "+861381234567"  # the digits read stay visible


@pytest.mark.parametrize("raw,region", [("+1833", "US"), ("+110", "US"), ("+1202", "US"),
                                        ("+11111111111", "US"), ("86", "CN"), ("12", "CN"),
                                        ("+8686", "CN"), ("+4915", "DE"), ("1", "US")])
def test_fragments_and_bare_codes_never_get_a_key(raw, region):
    facts = normalize(raw, region)
    assert facts.key is None and key_of(raw, region) is None
    assert not facts.valid and facts.irregular


@pytest.mark.parametrize("raw", ["+86 10 95566", "010 95566", "01095566", "+86 755 95566",
                                 "0086 21 95566", "095566", "95566"])
def test_cn_service_number_behind_an_area_code_takes_the_service_key(raw):
    assert normalize(raw).key == normalize("95566").key == short_key(86, "95566")
    assert normalize(raw).type == "short_service"


def test_area_code_mapping_leaves_landlines_alone():
    assert normalize("+86 10 6552 9988").key == 861065529988  # a Beijing landline
    assert normalize("+86 755 9555 1234").type != "short_service"  # an 8-digit local number


def test_publishable_key_follows_the_same_rule():
    assert publishable_key(normalize("+8613812345678").key)
    assert publishable_key(normalize("95588").key) and publishable_key(normalize("110").key)
    for key in (1833, 110, 1202, 11111111111, 8686, 8612, 0, -5):
        assert not publishable_key(key)


def test_calling_region_of_keys():
    assert calling_region(normalize("+12125551234").key) == "US"
    assert calling_region(normalize("+4930123456").key) == "DE"
    assert calling_region(normalize("95588").key) == "CN"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_never_raises_on_any_string(raw):
    facts = normalize(raw)
    assert facts.type in TYPES
    assert facts.valid == (facts.irregular is None)
    if facts.e164:
        assert normalize(facts.e164).key == facts.key


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"\+?[0-9 \-]{3,18}", fullmatch=True), st.sampled_from(["CN", "US", "DE"]))
def test_e164_output_normalises_to_the_same_key(raw, region):
    facts = normalize(raw, region)
    if facts.key is not None:
        assert normalize(facts.e164, region).key == facts.key
        assert format_key(facts.key) == facts.e164


def test_non_string_input_is_irregular_not_a_crash():
    assert normalize(None).irregular == "empty"
    assert normalize(13812345678).key == MOBILE
    assert key_of(b"\xff") is None


def test_lookup_hash_is_sha256_of_e164():
    assert lookup_hash("+8613812345678") == lookup_hash(normalize("13812345678").e164)
    assert len(lookup_hash("+8613812345678")) == 64


def test_cli_prints_one_json_object_per_input():
    result = CliRunner().invoke(main, ["numbers", "normalize", "13812345678", "95588", "junk", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["input"] for r in rows] == ["13812345678", "95588", "junk"]
    for field in ("input", "key", "e164", "type", "carrier", "region", "valid", "irregular"):
        assert all(field in r for r in rows)
    assert rows[0]["key"] == MOBILE and rows[2]["valid"] is False


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=30), st.from_regex(r"(\+|00)?[0-9 \-]{3,18}", fullmatch=True)),
       st.sampled_from(["CN", "US", "DE"]))
def test_key_of_agrees_with_normalize(raw, region):
    assert key_of(raw, region) == normalize(raw, region).key
