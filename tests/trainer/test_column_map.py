import pytest

from trainer.column_map import parse_column_map


class Bad(ValueError):
    pass


def parse(items):
    return parse_column_map(items, ("number", "category"), error=Bad, option="--map", example="number=caller")


def test_one_string_or_several_items_field_names_case_insensitive_columns_kept():
    assert parse("Number=Caller, category=kind") == {"number": "Caller", "category": "kind"}
    assert parse(["number=a", "category=b,"]) == {"number": "a", "category": "b"}
    assert parse(None) == {} and parse("") == {}


@pytest.mark.parametrize("text, message", [
    ("number", "--map 'number': write FIELD=COLUMN, e.g. number=caller"),
    ("number=", "write FIELD=COLUMN"),
    ("phone=caller", "unknown field 'phone'; fields are number, category"),
])
def test_bad_parts_name_the_option_and_how_to_fix(text, message):
    with pytest.raises(Bad, match=message):
        parse(text)
