"""Ingest: files, SQLite stores and dict rows into columns; bad rows reported, never fatal."""
import gzip
import json
import sqlite3

import numpy as np
import pytest

from callmark.categories import by_key
from callmark.numbers import key_of
from trainer import ingest, ingest_columns
from trainer.ingest import BadRowReport, IngestError, read_appeals, read_recycled, read_tags, \
    read_verified


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_numbers_of_any_country_times_and_bad_rows(tmp_path):
    p = write(tmp_path / "tags.csv", "\n".join([
        "number,reporter,category,ts,company,extra",
        "13812345678,u1,fraud,2026-03-02T10:00:00Z,,x",          # CN national
        "+1 650-253-0000,u2,telemarketing,1772445600,ACME,y",     # US, epoch seconds
        "+49 30 1234567,u1,legit,1772445600000,,z",               # DE, epoch milliseconds
        "+8613812345678,u3,harassment,2026-03-02T18:00:00+08:00,,",
        "not-a-number,u4,fraud,2026-03-02T10:00:00Z,,",
        "13812345678,u5,nonsense,2026-03-02T10:00:00Z,,",
        "13812345678,,fraud,2026-03-02T10:00:00Z,,",
        "13812345678,u6,fraud,yesterday,,",
        "13812345678,u7",
        "",
    ]) + "\n")
    ev, rep = read_tags(p)
    assert len(ev) == 4
    assert rep.rows == 9 and rep.bad == 5 and rep.good == 4
    assert rep.counts == {"unparseable number": 1, "unknown category": 1, "missing reporter": 1,
                          "bad timestamp": 1, "too few columns": 1}
    assert sorted(s[0] for s in rep.samples) == [6, 7, 8, 9, 10]  # file line numbers
    assert ev.key.tolist() == [8613812345678, 16502530000, 49301234567, 8613812345678]
    assert ev.ts.tolist() == [1772445600] * 4  # ISO, epoch s, epoch ms and +08:00 agree
    assert ev.category.tolist() == [by_key(k).code for k in
                                    ("fraud", "telemarketing", "legit", "harassment")]
    assert [ev.reporters[i] for i in ev.reporter] == ["u1", "u2", "u1", "u3"]
    assert [ev.companies[i] if i >= 0 else None for i in ev.company] == [None, "ACME", None, None]
    assert "bad 5" in rep.summary()


def test_missing_required_column_is_a_clear_error(tmp_path):
    p = write(tmp_path / "t.csv", "number,who,category,ts\n1,2,3,4\n")
    with pytest.raises(IngestError, match="missing column.*reporter"):
        read_tags(p)
    with pytest.raises(IngestError, match="no such file"):
        read_tags(tmp_path / "nope.csv")


def test_jsonl_gz_with_broken_lines_and_call_facts(tmp_path):
    rows = [
        {"number": "13812345678", "reporter": "a", "category": "fraud", "ts": "2026-03-02T10:00:00Z",
         "ring_s": 2.5, "talk_s": 0, "answered": False, "direction": "in", "note": "刷单"},
        "this is not json",
        {"number": "13812345679", "reporter": "b", "category": "one_ring", "ts": 1772445600},
        [1, 2, 3],
    ]
    text = "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows)
    p = tmp_path / "tags.jsonl.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        f.write(text + "\n\n")
    ev, rep = read_tags(p)
    assert len(ev) == 2
    assert rep.counts == {"invalid JSON": 1, "row is not an object": 1}
    assert ev.ring_s[0] == pytest.approx(2.5) and np.isnan(ev.ring_s[1])
    assert ev.answered.tolist() == [0, -1] and ev.direction.tolist() == [0, -1]


def test_dict_rows_and_sqlite_store_give_the_same_columns(tmp_path):
    rows = [{"number": f"+86138000000{i:02d}", "reporter": f"d{i % 3}", "category": "fraud",
             "ts": f"2026-03-0{1 + i % 5}T00:00:00Z", "company": None, "note": None,
             "event_id": str(i)} for i in range(30)]
    ev1, rep1 = read_tags(iter(rows))
    db = tmp_path / "store.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE devices (id INTEGER PRIMARY KEY)")
    con.execute("CREATE TABLE tags (id INTEGER PRIMARY KEY, number TEXT, reporter TEXT, "
                "category TEXT, ts TEXT, company TEXT, note TEXT, event_id TEXT)")
    con.executemany("INSERT INTO tags (number, reporter, category, ts, company, note, event_id) "
                    "VALUES (:number, :reporter, :category, :ts, :company, :note, :event_id)", rows)
    con.commit()
    con.close()
    ev2, rep2 = read_tags(db)
    assert rep1.bad == rep2.bad == 0 and len(ev1) == len(ev2) == 30
    for a, b in zip((ev1.key, ev1.ts, ev1.category), (ev2.key, ev2.ts, ev2.category)):
        assert np.array_equal(a, b)
    assert ev1.reporters == ev2.reporters == ["d0", "d1", "d2"]


def test_number_normalisation_is_cached_per_distinct_string(tmp_path, monkeypatch):
    calls = []

    def counting(raw, region="CN"):
        calls.append(raw)
        return key_of(raw, region)

    monkeypatch.setattr(ingest_columns, "key_of", counting)
    lines = ["number,reporter,category,ts"]
    lines += [f"1381234567{i % 4},u{i},fraud,{1772445600 + i}" for i in range(1000)]
    ev, rep = read_tags(write(tmp_path / "t.csv", "\n".join(lines)))
    assert len(ev) == 1000 and sorted(set(calls)) == sorted(calls) and len(calls) == 4


def test_region_for_national_numbers(tmp_path):
    p = write(tmp_path / "ftc.csv", "number,reporter,category,ts\n6502530000,1,telemarketing,1\n")
    ev, _ = read_tags(p, region="US")
    assert ev.key.tolist() == [16502530000]


def test_side_files(tmp_path):
    v, vr = read_verified(write(tmp_path / "v.csv", "number,company\n+8695588,工商银行\nxx,bad\n"))
    assert v == {key_of("95588"): "工商银行"} and vr.bad == 1
    a, ar = read_appeals(write(tmp_path / "a.csv", "number,categories,filed_ts,accepted\n"
                                                   "13812345678,fraud;harassment,2026-03-02,1\n"
                                                   "13812345679,fraud,2026-03-02,0\n"
                                                   "13812345670,martian,2026-03-02,1\n"))
    assert list(a) == [8613812345678] and ar.counts == {"unknown category": 1}
    assert a[8613812345678][0].codes == {by_key("fraud").code, by_key("harassment").code}
    r, rr = read_recycled(write(tmp_path / "r.csv", "number,reissued_ts\n13812345678,1000\n"
                                                    "13812345678,2000\n13812345679,never\n"))
    assert r == {8613812345678: 2000} and rr.counts == {"bad timestamp": 1}
    with pytest.raises(IngestError, match="missing column"):
        read_recycled(write(tmp_path / "bad.csv", "number,when\n1,2\n"))


def test_bad_row_report_round_trip_is_verified():
    rep = BadRowReport()
    rep.rows = 3
    rep.add(2, "bad timestamp", "x")
    again = BadRowReport.from_dict(json.loads(json.dumps(rep.to_dict())))
    assert again == rep
    with pytest.raises(IngestError):
        BadRowReport.from_dict({"rows": 0, "counts": {"x": 5}})


def _plain_rows(n):
    """Tag rows with repeats, long and non-ASCII reporters, bad rows; returns CSV lines."""
    rows = []
    for i in range(n):
        rep = f"u{i % 97}" if i % 5 else f"device-{i % 13:040d}"  # > 32 bytes: the dict path
        rows.append(f"+86138{i % 211:08d},{rep},{('fraud', 'legit', 'delivery')[i % 3]},"
                    f"{1772445600 + i}")
    rows[17] = "+8613800000001,报告者,fraud,1772445600"  # non-ASCII reporter
    rows[40] = "not-a-number,u1,fraud,1772445600"
    rows[41] = "+8613800000001,u1,fraud,later"
    rows[42] = "+8613800000001,,fraud,1772445600"
    return rows


@pytest.mark.parametrize("quoted", [False, True])
def test_fast_csv_and_bulk_interning_match_the_plain_paths(tmp_path, monkeypatch, quoted):
    rows = _plain_rows(3000)
    rows.insert(1500, "")  # blank line
    rows.insert(2000, "+8613800000002,u3")  # too few columns
    if quoted:  # a quoted field half-way: the csv module takes over from that block
        rows[2500] = '"+8613800000003",u4,"fraud",1772445600'
    text = "number,reporter,category,ts\r\n" + "\r\n".join(rows) + "\r\n"
    p = write(tmp_path / "t.csv", text)
    monkeypatch.setattr(ingest_columns, "BULK_MIN_ROWS", 10**9)
    monkeypatch.setattr(ingest, "CSV_BLOCK_CHARS", 1 << 30)
    monkeypatch.setattr(ingest, "CSV_CHUNK_ROWS", 100_000)
    ref, ref_rep = read_tags(p)  # one block, dict interning
    monkeypatch.setattr(ingest_columns, "BULK_MIN_ROWS", 64)
    monkeypatch.setattr(ingest, "CSV_BLOCK_CHARS", 4096)  # many blocks, lines cut at the edges
    monkeypatch.setattr(ingest, "CSV_CHUNK_ROWS", 70)
    ev, rep = read_tags(p)
    assert rep.to_dict()["counts"] == ref_rep.to_dict()["counts"] and rep.rows == ref_rep.rows
    assert rep.counts == {"unparseable number": 1, "bad timestamp": 1, "missing reporter": 1,
                          "too few columns": 1}
    assert sorted(rep.samples) == sorted(ref_rep.samples)
    for col in ("key", "reporter", "category", "ts"):
        assert np.array_equal(getattr(ev, col), getattr(ref, col)), col
    assert ev.reporters == ref.reporters and "报告者" in ev.reporters
    assert len(ev) == 3000 - 3 and len(set(ev.reporters)) == len(ev.reporters)


def test_bulk_interning_is_exact_when_hashes_collide(monkeypatch):
    table = ingest_columns.BytesTable()
    vals, new, commit = table.lookup(["a", "b", "a", "c"])
    assert new.tolist() == [0, 1, 3]
    assert commit(np.array([10, 11, 12])).tolist() == [10, 11, 10, 12]
    vals, new, commit = table.lookup(["c", "d", "a"])
    assert new.tolist() == [1] and commit(np.array([13])).tolist() == [12, 13, 10]
    # a value too long for the table, or non-ASCII: not applicable, the caller uses dicts
    assert table.lookup(["x" * 33]) is None and table.lookup(["é"]) is None
    # a forced collision is detected and disables the table instead of merging two values
    table.recent[next(iter(table.recent))] = 1
    assert table.lookup(["a", "b"]) is None and table.broken
    # the same answers after the recent entries were merged into the sorted arrays
    big = ingest_columns.BytesTable()
    names = [f"r{i}" for i in range(70_000)]
    vals, new, commit = big.lookup(names)
    assert commit(np.arange(70_000)).tolist() == list(range(70_000)) and not big.recent
    vals, new, commit = big.lookup(["r5", "zz", "r69999"])
    assert new.tolist() == [1] and commit(np.array([-7])).tolist() == [5, -7, 69999]
