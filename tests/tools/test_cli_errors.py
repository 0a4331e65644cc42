"""Hostile files through the `callmark` CLI (issue 17): one line naming the file and the problem,
exit 1, never a traceback or click's bare "Aborted!"."""
from __future__ import annotations

import gzip
import json

import pytest
from click.testing import CliRunner

from tools.cli import main

TAGS = ("event_id,number,reporter,category,ts\n"
        + "".join(f"e{i},1380013800{i % 10},r{i % 7},fraud,2026-03-01T08:00:00Z\n" for i in range(40)))


def _run(args):
    res = CliRunner().invoke(main, args)
    out = res.output.strip()
    return res, out


def _one_line_error(res, out, *needles):
    assert res.exit_code == 1, (res.exit_code, out, res.exception)
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in out and "Aborted!" not in out
    assert out.startswith("Error: ") and len(out.splitlines()) == 1, out
    for n in needles:
        assert n in out, (n, out)


def _table(path, rows=60, with_features=True):
    head = "number,opposite_count,opposite_unique,label\n" if with_features else "number,other,x,label\n"
    body = "".join(f"n{i},{10 + i * (i % 2) * 5},{i % 9 + 1},{i % 2}\n" for i in range(rows))
    path.write_text(head + body, encoding="utf-8")
    return path


def test_teacher_on_non_utf8_csv_and_a_128kib_field(tmp_path):
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("number,opposite_count,label\nn1,3,1\nn2,4,0\ncaf\xe9,5,1\n".encode("latin-1"))
    res, out = _run(["teacher", "fit", "--table", str(bad), "--id-column", "number",
                     "--label-column", "label", "--out", str(tmp_path / "t")])
    _one_line_error(res, out, str(bad), "not UTF-8")
    big = tmp_path / "big.csv"
    big.write_text("number,opposite_count,label\nn1,3,1\nn2,\"" + "9" * (128 * 1024 + 1) + "\",0\n")
    res, out = _run(["teacher", "fit", "--table", str(big), "--id-column", "number",
                     "--label-column", "label", "--out", str(tmp_path / "t")])
    _one_line_error(res, out, str(big), "field larger than field limit")


def test_teacher_score_refuses_binary_model_and_missing_features(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "teacher.json").write_bytes(b"\x00\xff\xfe binary \x89PNG")
    table = _table(tmp_path / "t.csv")
    res, out = _run(["teacher", "score", "--model", str(tmp_path / "bin"), "--table", str(table),
                     "--id-column", "number", "--out", str(tmp_path / "s.csv")])
    _one_line_error(res, out, "teacher.json", "not UTF-8")
    res, out = _run(["teacher", "fit", "--table", str(table), "--id-column", "number",
                     "--label-column", "label", "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, out
    other = _table(tmp_path / "other.csv", with_features=False)
    res, out = _run(["teacher", "score", "--model", str(tmp_path / "m"), "--table", str(other),
                     "--id-column", "number", "--out", str(tmp_path / "s.csv")])
    _one_line_error(res, out, "opposite_count", "opposite_unique")
    assert not (tmp_path / "s.csv").exists()


def test_consensus_on_broken_gz_names_the_input(tmp_path):
    good = gzip.compress(TAGS.encode())
    trunc = tmp_path / "tags.csv.gz"
    trunc.write_bytes(good[: len(good) // 2])
    out_csv = tmp_path / "LABELS.csv"
    res, out = _run(["consensus", "--tags", str(trunc), "--out", str(out_csv)])
    _one_line_error(res, out, str(trunc), "truncated")
    garbage = tmp_path / "garbage.csv.gz"
    garbage.write_bytes(b"this is not gzip at all\n" * 10)
    res, out = _run(["consensus", "--tags", str(garbage), "--out", str(out_csv)])
    _one_line_error(res, out, str(garbage), "not a gzip file")
    assert str(out_csv) not in out and not out_csv.exists()


def test_consensus_reports_a_deeply_nested_jsonl_line_and_goes_on(tmp_path):
    rows = [json.loads(json.dumps(dict(zip(["event_id", "number", "reporter", "category", "ts"], ln.split(",")))))
            for ln in TAGS.splitlines()[1:]]
    lines = [json.dumps(r) for r in rows]
    lines.insert(3, "[" * 100_000 + "]" * 100_000)
    lines.insert(5, '{"event_id": "x", "number": ' + "1" * 5000 + "}")
    src = tmp_path / "tags.jsonl"
    src.write_text("\n".join(lines) + "\n")
    res = CliRunner().invoke(main, ["consensus", "--tags", str(src), "--out", str(tmp_path / "L.csv"), "--json"])
    assert res.exit_code == 0, (res.output, res.exception)
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["tags"]["counts"] == {"invalid JSON": 2} and summary["tags"]["rows"] == 42


def test_handset_tag_with_undecodable_note(tmp_path):
    res, out = _run(["handset", "--state", str(tmp_path / "phone"), "tag", "+8613812345678", "fraud",
                     "--note", "\udcff"])
    _one_line_error(res, out, "note", "not valid text")
