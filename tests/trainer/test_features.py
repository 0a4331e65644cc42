"""Per-number aggregation and per-call ring events from hand-written call tables."""
import json

import numpy as np
import pytest

from trainer import features
from trainer.features import FeatureInputError, aggregate_calls, ring_events

HEADER = "caller,callee_hash,start,ring_s,talk_s,answered,direction,presentation,verification\n"
A, B = "+8613800000001", "+8613900000002"


def _calls(tmp_path, rows):
    path = tmp_path / "calls.csv"
    path.write_text(HEADER + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def _rows():
    # A: spammy: rings 3 subscribers, mostly short unanswered rings at night (UTC+8 local hour 2)
    rows = [
        (A, "aa00000000000001", "2026-03-01T18:00:00Z", 1.5, 0, 0, "in", A, "none"),
        (A, "aa00000000000002", "2026-03-01T18:00:30Z", 2.0, 0, 0, "in", A, "none"),
        (A, "aa00000000000003", "2026-03-01T18:01:00Z", 9.0, 40, 1, "in", A, "failed"),
        (A, "aa00000000000003", "2026-03-02T18:01:00Z", 2.5, 0, 0, "in", A, "none"),
        # B: a friend: calls one subscriber, who calls back
        (B, "aa00000000000001", "2026-03-01T02:00:00Z", 8.0, 120, 1, "in", "13900000002", "passed"),
        (B, "aa00000000000001", "2026-03-02T03:00:00Z", 5.0, 60, 1, "out", "13900000002", "passed"),
        (B, "aa00000000000001", "2026-03-02T04:00:00Z", 5.0, 30, 1, "in", "13900000002", "passed"),
    ]
    return rows


def test_aggregate_values_are_exact(tmp_path):
    t = aggregate_calls(_calls(tmp_path, _rows()))
    a, b = t.ids.index(A), t.ids.index(B)
    col = {n: t.X[:, j] for j, n in enumerate(t.names)}
    assert col["calls"][a] == 4 and col["calls"][b] == 3
    assert col["rang_share"][a] == 1.0 and col["rang_share"][b] == pytest.approx(2 / 3)
    assert col["distinct_callees"][a] == 3 and col["distinct_callees"][b] == 1
    assert col["answer_rate"][a] == pytest.approx(0.25)
    assert col["short_ring_share"][a] == pytest.approx(0.75)
    assert col["callback_share"][a] == 0 and col["callback_share"][b] == 1.0
    assert col["night_share"][a] == 1.0  # 18:00Z = 02:00 local
    assert col["active_days"][a] == 2 and col["max_calls_hour"][a] == 3
    assert col["verif_failed_share"][a] == pytest.approx(0.25)
    assert col["repeat_callee_share"][a] == pytest.approx(1 / 3)


def test_chunking_does_not_change_the_result(tmp_path):
    path = _calls(tmp_path, _rows())
    one = aggregate_calls(path, chunk_rows=1000)
    tiny = aggregate_calls(path, chunk_rows=2)
    assert one.ids == tiny.ids
    np.testing.assert_allclose(one.X, tiny.X, equal_nan=True)


def test_bad_calls_files_give_clear_errors(tmp_path):
    with pytest.raises(FeatureInputError, match="not found"):
        aggregate_calls(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("caller,start\n+861,2026\n")
    with pytest.raises(FeatureInputError, match="lacks columns"):
        aggregate_calls(bad)
    badts = _calls(tmp_path, [(A, "aa01", "yesterday", 1, 0, 0, "in", A, "none")])
    with pytest.raises(FeatureInputError, match="ISO-8601"):
        aggregate_calls(badts)


def test_feature_table_round_trips_through_csv(tmp_path):
    from trainer.model.teacher import read_table

    t = aggregate_calls(_calls(tmp_path, _rows()))
    t.y = np.array([1, 0])
    path = t.to_csv(tmp_path / "f.csv", label_column="harmful")
    back = read_table(path, "number", "harmful")
    assert back.ids == t.ids and list(back.y) == [1, 0]
    np.testing.assert_allclose(back.X, t.X, rtol=1e-5, equal_nan=True)


def _sim_dir(tmp_path):
    _calls(tmp_path, _rows())
    (tmp_path / "truth.csv").write_text(
        "number,role,category,harmful,first_day,last_day,company\n"
        f"{A},one_ring,one_ring,1,0,1,\n{B},person,legit,0,0,1,\n")
    tags = [{"event_id": f"e{i}", "number": A, "reporter": f"r{i}", "category": "one_ring",
             "ts": "2026-03-01T19:00:00Z"} for i in range(2)]
    (tmp_path / "tags.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tags))
    return tmp_path


def test_ring_events_carry_history_pack_and_truth(tmp_path):
    ev = ring_events(_sim_dir(tmp_path))
    assert len(ev.facts) == 6  # incoming calls only
    assert ev.meta["incoming_calls"] == 6
    # A's 4th call: same handset as its 3rd (answered, 40 s talk), one day later, and A entered the pack
    last_a = [f for f, c in zip(ev.facts, ev.caller) if c == A][-1]
    assert last_a["prior_calls"] == 1 and last_a["prior_answered"] == 1 and last_a["last_talk_s"] == 40
    assert last_a["days_since_last"] == pytest.approx(1.0)
    assert last_a["pack_category"] == "one_ring" and last_a["pack_reporters"] == 2
    first_a = [f for f, c in zip(ev.facts, ev.caller) if c == A][0]
    assert "pack_category" not in first_a and first_a["hour"] == 2
    # B rang after the handset dialled it: counts as a contact
    last_b = [f for f, c in zip(ev.facts, ev.caller) if c == B][-1]
    assert last_b["in_contacts"] is True and last_b["prior_calls"] == 2
    assert list(ev.harmful) == [1 if c == A else 0 for c in ev.caller]
    assert ev.in_pack.sum() == 1


def test_truth_follows_number_recycling():
    entries = [(0, "fraud", 1), (5, "legit", 0)]
    assert features.truth_at(entries, 2) == ("fraud", 1)
    assert features.truth_at(entries, 6) == ("legit", 0)


def test_packs_count_harmful_labels_in_the_callers_100_block(tmp_path):
    """`pack_block_harmful` in training counts what `PackReader.block_harmful` reads on the phone:
    other numbers of the 100-block with a published harmful label (benign and unpublished ones not)."""
    from callmark.labels import write_labels
    from callmark.numbers import key_of

    rows = [{"number": "+86138000001" + s, "category": c, "confidence": 0.9, "reporters": 5, "published": p}
            for s, c, p in (("01", "fraud", 1), ("02", "harassment", 1), ("03", "delivery", 1),
                            ("04", "fraud", 0))]
    rows.append({"number": "+8613800000205", "category": "fraud", "confidence": 0.9, "reporters": 5,
                 "published": 1})  # the next block
    pack = features.StaticPack(write_labels(tmp_path / "labels.csv", rows))
    assert pack.block_harmful(key_of("+8613800000150")) == 2
    assert pack.block_harmful(key_of("+8613800000101")) == 1  # not itself
    assert pack.block_harmful(key_of("+8613800000204")) == 1 and pack.block_harmful(None) == 0
    tags = sorted([(100.0 + i, key_of("+86138000001" + s), f"r{i}{j}", c)
                   for i, (s, c) in enumerate((("01", "fraud"), ("02", "delivery"), ("03", "fraud")))
                   for j in range(2)] + [(500.0, key_of("+8613800000104"), "r9", "fraud")])
    rolling = features.RollingPack(tags, verified=set())
    rolling.advance(50.0)
    assert rolling.block_harmful(key_of("+8613800000150")) == 0
    rolling.advance(1000.0)  # 01 and 03 published as fraud (two reporters); 04 has one reporter
    assert rolling.block_harmful(key_of("+8613800000150")) == 2
    assert rolling.block_harmful(key_of("+8613800000103")) == 1


def test_ring_events_carry_the_block_count(tmp_path):
    from callmark.labels import write_labels

    _calls(tmp_path, _rows())
    (tmp_path / "truth.csv").write_text("number,category,harmful\n")
    labels = write_labels(tmp_path / "labels.csv", [
        {"number": "+8613800000009", "category": "fraud", "confidence": 0.9, "reporters": 5, "published": 1}])
    ev = ring_events(tmp_path, labels_csv=labels)
    by_caller = {c: f["pack_block_harmful"] for c, f in zip(ev.caller, ev.facts)}
    assert by_caller[A] == 1 and by_caller[B] == 0
