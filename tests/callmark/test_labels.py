"""callmark/labels.py: the one LABELS.csv reader/writer and its one rule for "published"."""
import io

import pytest

from callmark.labels import (LABEL_COLUMNS, LabelsFormatError, parse_published, ranges_path, read_labels,
                             read_ranges, write_labels, write_ranges)

HEAD = ",".join(LABEL_COLUMNS) + "\n"


@pytest.mark.parametrize("value, want", [("1", True), (" TRUE ", True), ("yes", True), ("t", True),
                                         ("0", False), ("false", False), ("No", False), ("", False)])
def test_published_rule(value, want):
    assert parse_published(value) is want


def test_bad_published_value_names_line():
    fh = io.StringIO(HEAD + "+8613812345678,fraud,0.9,3,1,,0,,\n+8613812345679,fraud,0.9,3,2,,0,,\n")
    rows = read_labels(fh, name="x.csv")
    assert next(rows)["published"] is True
    with pytest.raises(LabelsFormatError, match=r"x.csv line 3: published must be 1/0.*'2'"):
        next(rows)


def test_missing_column_and_missing_file(tmp_path):
    with pytest.raises(LabelsFormatError, match=r"missing columns \['published'\]"):
        list(read_labels(io.StringIO("number,category,confidence,reporters\n")))
    with pytest.raises(LabelsFormatError, match="no labels file"):
        list(read_labels(tmp_path / "nope.csv"))


def test_round_trip_and_published_only(tmp_path):
    p = tmp_path / "labels.csv"
    rows = [{"number": "+8613812345678", "category": "fraud", "confidence": "0.9", "reporters": 3,
             "published": True, "flags": 8},
            {"number": "+8613812345679", "category": "legit", "confidence": "0.5", "reporters": 1,
             "published": "no"}]
    write_labels(p, rows)
    assert p.read_text().splitlines()[1] == "+8613812345678,fraud,0.9,3,1,,8,,"
    got = list(read_labels(p))
    assert [r["published"] for r in got] == [True, False] and got[1].line == 3
    assert [r["number"] for r in read_labels(p, published_only=True)] == ["+8613812345678"]
    rp = ranges_path(p)
    assert rp.name == "labels.ranges.csv" and list(read_ranges(rp)) == []
    write_ranges(rp, [("+8617012345600", 100, "fraud", "0.9", 12, 0)])
    assert [r["size"] for r in read_ranges(rp)] == ["100"]
