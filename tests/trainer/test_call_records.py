"""Operator call records in: CSV or Parquet, mapped column names, clear errors, same features."""
import csv

import numpy as np
import pytest

from trainer import call_records
from trainer.features import FeatureInputError, aggregate_calls

ROWS = [  # caller, subscriber, start, ring, talk, answered, direction, verification
    ("+8613800000001", "s1", "2026-03-01T08:00:00Z", 3, 0, "no", "incoming", "passed"),
    ("+8613800000001", "s2", "2026-03-01T08:05:00Z", 2, 40, "yes", "incoming", ""),
    ("+8613900000002", "s1", "2026-03-01T09:00:00Z", 1, 100, "yes", "outgoing", "failed"),
    ("+8613800000001", "s3", "2026-03-02T10:00:00Z", 5, 0, "no", "incoming", "none"),
]
HEADER = ["other_party", "subscriber_id", "begin_time", "ring_seconds", "talk_seconds", "answered", "dir",
          "stir_status"]
MAP = "caller=other_party,callee=subscriber_id,start=begin_time,ring_s=ring_seconds,talk_s=talk_seconds," \
      "direction=dir,verification=stir_status"


def _operator_csv(path):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER + ["cell_id"])
        for r in ROWS:
            w.writerow(list(r) + ["c9"])
    return path


def test_mapped_csv_converts_to_the_canonical_file_and_features_match(tmp_path):
    src = _operator_csv(tmp_path / "cdr.csv")
    mapping = call_records.parse_mapping(MAP)
    assert not call_records.is_canonical(src, mapping)
    out = tmp_path / "calls.csv"
    assert call_records.write_canonical_csv(src, out, mapping) == {"rows": 4}
    assert call_records.is_canonical(out)
    rows = list(csv.DictReader(open(out)))
    assert rows[0]["direction"] == "in" and rows[2]["direction"] == "out" and rows[1]["answered"] == "1"
    assert rows[1]["verification"] == "none" and rows[2]["presentation"] == "+8613900000002"
    table = aggregate_calls(out)
    chunks = list(call_records.iter_records(src, mapping))
    assert chunks[0]["inbound"].tolist() == [True, True, False, True]
    assert table.ids == ["+8613800000001", "+8613900000002"]


def test_parquet_with_timestamp_column_reads_the_same(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    from datetime import datetime, timezone

    cols = {h: [r[i] for r in ROWS] for i, h in enumerate(HEADER)}
    cols["begin_time"] = [datetime.fromisoformat(v.replace("Z", "+00:00")).astimezone(timezone.utc)
                          for v in cols["begin_time"]]
    pq.write_table(pa.table(cols), tmp_path / "cdr.parquet")
    mapping = call_records.parse_mapping(MAP)
    a = list(call_records.iter_records(tmp_path / "cdr.parquet", mapping))[0]
    b = list(call_records.iter_records(_operator_csv(tmp_path / "cdr.csv"), mapping))[0]
    for k in a:
        assert np.asarray(a[k]).tolist() == np.asarray(b[k]).tolist(), k


def test_missing_columns_and_bad_values_say_what_to_fix(tmp_path):
    src = _operator_csv(tmp_path / "cdr.csv")
    with pytest.raises(FeatureInputError, match=r"lacks columns caller, callee, start, talk_s, direction.*--calls-map"):
        list(call_records.iter_records(src))
    with pytest.raises(FeatureInputError, match="mapped to 'nope'"):
        list(call_records.iter_records(src, call_records.parse_mapping(MAP + ",caller=nope")))
    with pytest.raises(FeatureInputError, match=r"--calls-map .callerid=x.: unknown field .callerid.; fields are caller, callee"):
        call_records.parse_mapping("callerid=x")
    bad = tmp_path / "bad.csv"
    with open(bad, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerow(["+8613800000001", "s1", "2026-03-01T08:00:00Z", 3, 0, "maybe", "in", ""])
    with pytest.raises(FeatureInputError, match="answered 'maybe'"):
        list(call_records.iter_records(bad, call_records.parse_mapping(MAP)))
    with pytest.raises(FeatureInputError, match="not a readable Parquet"):
        (tmp_path / "x.parquet").write_text("not parquet")
        list(call_records.iter_records(tmp_path / "x.parquet"))
