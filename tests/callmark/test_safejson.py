"""callmark.safejson: the one decoder for untrusted JSON refuses what would crash json.loads."""
import json

import pytest

from callmark import safejson
from callmark.safejson import JSONInputError


@pytest.mark.parametrize("text,reason", [
    ("[" * 100_000 + "]" * 100_000, "nested 100000 levels"),
    ('{"a": ' + "1" * 5000 + "}", "number of 5000 characters"),
    ('{"a": "\\ud800"}', "lone UTF-16 surrogate"),
    ('["\\udc00x"]', "lone UTF-16 surrogate"),
    ('{"a": "x\\u0000y"}', "NUL character"), ('{"k\\u0000": 1}', "NUL character"),
    ("[NaN]", "NaN"), ("[-Infinity]", "-Infinity"),
    (b"\xff{}", "not UTF-8"), ("[1,", "not valid JSON"),
])
def test_refusals_are_typed_one_line_errors(text, reason):
    with pytest.raises(JSONInputError) as ei:
        safejson.loads(text, "body.json")
    msg = str(ei.value)
    assert msg.startswith("body.json: ") and reason in msg and "\n" not in msg
    assert isinstance(ei.value, ValueError)


def test_valid_json_parses_like_json_loads():
    doc = {"a": [1, 2.5e10, -3, True, None, {"b": "[[[{{{\\\"}"}], "s": "\U0001F600 \\ud800 literal",
           "n": 10**30}
    text = json.dumps(doc)
    assert safejson.loads(text) == json.loads(text) == doc
    assert safejson.loads(text.encode()) == doc
    assert safejson.loads('"\\ud83d\\ude00"') == "\U0001F600"           # a proper pair is fine


def test_limits_are_per_call():
    assert safejson.loads("[[1]]", max_depth=2) == [[1]]
    with pytest.raises(JSONInputError, match="nested 2 levels"):
        safejson.loads("[[1]]", max_depth=1)
    with pytest.raises(JSONInputError, match="more than the 10 allowed"):
        safejson.loads("x" * 11, max_bytes=10)
    with pytest.raises(JSONInputError, match="number of 6"):
        safejson.loads("123456", max_number_len=5)
    assert safejson.loads('"' + "9" * 100 + '"') == "9" * 100    # digits inside strings are text


def test_iter_lines_names_the_line(tmp_path):
    lines = [b'{"a": 1}', b"", b"[" * 1000 + b"]" * 1000]
    it = safejson.iter_lines(iter(lines), "tags.jsonl")
    assert next(it) == {"a": 1}
    with pytest.raises(JSONInputError, match=r"^tags.jsonl line 3: nested 1000"):
        next(it)
