"""`callmark consensus`: the stable CLI and the LABELS.csv / ranges artefacts it writes."""
import csv
import json

from click.testing import CliRunner

from tools.commands.consensus import command

STABLE = ["number", "category", "confidence", "reporters", "published"]


def tags_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["number", "reporter", "category", "ts", "note"])
        w.writerows(rows)
    return path


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def stream():
    """US, German and Chinese numbers; a block of 10 US numbers each tagged by 4 reporters."""
    rows = []
    t = 1772445600
    for j in range(5):  # +1 650 253 000j, four reporters each, on different days
        rows += [(f"+1 650 253 000{j}", f"u{j}{i}", "fraud", t + i * 90000 + j) for i in range(4)]
    rows += [("030 1234567", "de1", "legit", t), ("+49 30 1234567", "de2", "legit", t + 5)]
    rows += [("13812345678", "cn1", "harassment", t + 7), ("13812345678", "cn1", "legit", t + 9)]
    rows += [("garbage", "x", "fraud", t), ("13812345678", "y", "fraud", t + 10**8)]
    return rows


def test_cli_writes_stable_labels_and_ranges(tmp_path):
    tags = tags_csv(tmp_path / "TAGS.csv", stream())
    out = tmp_path / "out" / "LABELS.csv"
    r = CliRunner().invoke(command, ["--tags", str(tags), "--out", str(out), "--as-of",
                                     "2026-03-09T00:00:00Z", "--min-reporters", "3",
                                     "--half-life-days", "30", "--region", "DE", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    # 13812345678 is not a dialable number for a phone in DE: an irregular fact, never keyed
    assert summary["tags"]["counts"] == {"unparseable number": 1,
                                         "irregular number: not_in_numbering_plan": 3}
    rows = read(out)
    with open(out, newline="") as f:
        header = next(csv.reader(f))
    assert header[:5] == STABLE and header[5:] == ["key", "flags", "last_ts", "company"]
    by_number = {row["number"]: row for row in rows}
    # region DE only changes national numbers: "13812345678" is German-national here -> irregular
    assert set(by_number) >= {f"+1650253000{j}" for j in range(5)} | {"+49301234567"}
    for row in rows:
        assert row["number"].startswith("+") and row["published"] in ("0", "1")
        assert 0.0 <= float(row["confidence"]) <= 1.0 and int(row["reporters"]) >= 0
    us = by_number["+16502530001"]
    assert us["category"] == "fraud" and us["reporters"] == "4" and us["published"] == "1"
    assert by_number["+49301234567"]["category"] == "legit"
    ranges = read(tmp_path / "out" / "LABELS.ranges.csv")
    assert ranges == [{"start": "+16502530000", "size": "10", "category": "fraud",
                       "confidence": ranges[0]["confidence"], "numbers": "5",
                       "last_ts": ranges[0]["last_ts"]}]


def test_cli_min_reporters_and_as_of_and_latest_vote(tmp_path):
    tags = tags_csv(tmp_path / "TAGS.csv", stream())
    out = tmp_path / "L.csv"
    r = CliRunner().invoke(command, ["--tags", str(tags), "--out", str(out), "--min-reporters",
                                     "5", "--as-of", "2026-03-09T00:00:00Z"])
    assert r.exit_code == 0, r.output
    rows = {row["number"]: row for row in read(out)}
    assert all(row["published"] == "0" for row in rows.values())
    assert rows["+8613812345678"]["category"] == "legit"  # cn1 changed its vote; y is after as-of
    assert rows["+8613812345678"]["reporters"] == "1"


def test_cli_side_files_and_jsonl(tmp_path):
    t = 1772445600
    lines = [json.dumps({"number": "+16502530001", "reporter": f"r{i}", "category": "fraud",
                         "ts": t + i * 90000}) for i in range(5)]
    (tmp_path / "tags.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "verified.csv").write_text("number,company\n+16502530001,ACME Bank\n")
    (tmp_path / "appeals.csv").write_text("number,categories,filed_ts,accepted\n")
    (tmp_path / "recycled.csv").write_text("number,reissued_ts\n")
    out = tmp_path / "L.csv"
    r = CliRunner().invoke(command, ["--tags", str(tmp_path / "tags.jsonl"), "--out", str(out),
                                     "--verified", str(tmp_path / "verified.csv"),
                                     "--appeals", str(tmp_path / "appeals.csv"),
                                     "--recycled", str(tmp_path / "recycled.csv")])
    assert r.exit_code == 0, r.output
    (row,) = read(out)
    assert row["company"] == "ACME Bank" and int(row["flags"]) & 1
    assert row["category"] == "legit" and row["published"] == "1"


def test_cli_bad_input_is_a_clear_error_not_a_traceback(tmp_path):
    (tmp_path / "t.csv").write_text("phone,who\n1,2\n")
    r = CliRunner().invoke(command, ["--tags", str(tmp_path / "t.csv"), "--out",
                                     str(tmp_path / "L.csv")])
    assert r.exit_code != 0 and "missing column" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(command, ["--tags", str(tmp_path / "none.csv"), "--out",
                                     str(tmp_path / "L.csv")])
    assert r.exit_code != 0 and "no such file" in r.output
    tags_csv(tmp_path / "ok.csv", stream())
    r = CliRunner().invoke(command, ["--tags", str(tmp_path / "ok.csv"), "--out",
                                     str(tmp_path / "L.csv"), "--as-of", "someday"])
    assert r.exit_code != 0 and "as_of" in r.output
    (tmp_path / "cfg.json").write_text('{"halflife": 3}')
    r = CliRunner().invoke(command, ["--tags", str(tmp_path / "ok.csv"), "--out",
                                     str(tmp_path / "L.csv"), "--config",
                                     str(tmp_path / "cfg.json")])
    assert r.exit_code != 0 and "unknown config key 'halflife'" in r.output
