"""Real report streams in (FTC-shaped complaints, a PhoneBlock-shaped list, a mapped CSV), one
signed multi-region release out: import, build, publish, phones of two regions, lookup, diff."""
import csv
import gzip
import json

import pytest
from click.testing import CliRunner

from callmark.labels import read_labels
from callmark.numbers import key_of, normalize
from tools.cli import main

US_SPAM = [f"20255501{i:02d}" for i in range(12)]  # +1 202 555 01xx: fictional but valid
FRAGMENTS = ["833", "10", "202", "11111111111", "86", "12"]  # as published: +1833, +110, +1202 …
DE_SPAM = [f"+4930{i:07d}" for i in range(1000000, 1000012)]


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def ftc_csv(path, days):
    """FTC mirror shape: company_phone_number,snapshot_date_utc,source_commit."""
    with gzip.open(path, "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(["company_phone_number", "snapshot_date_utc", "source_commit"])
        for day, numbers in days:
            for n in numbers:
                w.writerow([n, day, "abc"])
    return path


def phoneblock_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["phone", "votes", "lastActivity"])
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("streams")
    day1 = [n for n in US_SPAM[:6] for _ in range(3)] + FRAGMENTS * 4  # 6 numbers x 3 complaints
    day2 = [n for n in US_SPAM[6:] for _ in range(3)]  # day 2 adds 6 more numbers
    ftc = ftc_csv(d / "ftc.csv.gz", [("backfill_to_2025-10-28", day1), ("2025-12-11", day2)])
    pb = phoneblock_csv(d / "pb.csv", [(n, 10 + i, 1777000000000 + i) for i, n in enumerate(DE_SPAM)]
                        + [("+4915", 40, 1777000000000), ("+498686", 12, 1777000000000),
                           ("+4930999", 0, 1777000000000)])
    out = run("import", "ftc-dnc", ftc, "--out", d / "ftc.jsonl")
    out_pb = run("import", "phoneblock", pb, "--out", d / "pb.jsonl")
    return {"dir": d, "ftc": ftc, "pb": pb, "ftc_out": out, "pb_out": out_pb}


def test_import_counts_irregular_rows_by_reason_with_lines(world):
    out = world["ftc_out"]
    assert "rows 60, good 36, bad 24" in out
    assert "irregular number: too_short" in out and "(lines 20, " in out
    events = [json.loads(x) for x in open(world["dir"] / "ftc.jsonl")]
    assert len(events) == 36 and {e["source"] for e in events} == {"ftc-dnc"}
    assert all(e["event_id"].startswith("ftc-dnc:") for e in events)
    assert len({e["reporter"] for e in events}) == 36  # one-off complainants
    assert events[0]["ts"] == "2025-10-28T00:00:00Z"  # the backfill block's date
    pb = [json.loads(x) for x in open(world["dir"] / "pb.jsonl")]
    assert len(pb) == 12 and all(e["votes"] >= 10 and e["source"] == "phoneblock" for e in pb)
    assert "no net votes: 1" in world["pb_out"]


def test_csv_import_with_a_column_map(tmp_path):
    src = tmp_path / "r.csv"
    src.write_text("caller,kind,time,user\n13812345678,fraud,2026-03-01T00:00:00Z,u1\n"
                   "86,fraud,2026-03-01T00:00:00Z,u2\n13812345678,nonsense,2026-03-01,u3\n")
    out = run("import", "csv", src, "--out", tmp_path / "r.jsonl", "--region", "CN",
              "--map", "number=caller,category=kind,ts=time,reporter=user", "--reporter-prefix", "x:")
    ev = [json.loads(x) for x in open(tmp_path / "r.jsonl")]
    assert [(e["number"], e["reporter"], e["source"]) for e in ev] == [("+8613812345678", "x:u1", "app")]
    assert "irregular number: too_short: 1 (lines 3)" in out and "unknown category: 1 (lines 4)" in out
    r = CliRunner().invoke(main, ["import", "csv", str(src), "--out", str(tmp_path / "x.jsonl"),
                                  "--map", "number=nope"])
    assert r.exit_code != 0 and "no column 'nope'" in r.output


def build(world, name, *extra):
    d = world["dir"]
    out = run("build", "--tags", d / "ftc.jsonl", "--tags", d / "pb.jsonl", "--no-student",
              "--out", d / name, *extra)
    return out, json.loads(out.strip().splitlines()[-1])


def test_build_two_sources_two_regions(world):
    out, summary = build(world, "b1", "--regions", "US,DE")
    assert summary["bad_rows"] == 0 and f"{summary['bad_rows']:,} bad rows" in out
    # the one-off profile publishes numbers with 3 complaints; the app defaults would not
    assert summary["sources"]["ftc-dnc"]["published"] == 12
    assert summary["sources"]["phoneblock"]["published"] == 12
    assert set(summary["packs"]) == {"US", "DE"}
    labels = {r["number"]: r for r in read_labels(str(world["dir"] / "b1/v1/labels.csv"))}
    for raw in FRAGMENTS:
        assert "+1" + raw not in labels and "+86" + raw not in labels
    for n in ("+1833", "+110", "+1202", "+11111111111", "+8686", "+8612", "+4915", "+498686"):
        assert n not in labels
    index = json.loads((world["dir"] / "b1/v1/packs/index.json").read_text())
    assert {(p["region"], p["tier"]) for p in index["packs"]} == {
        ("US", "full"), ("US", "lite"), ("DE", "full"), ("DE", "lite")}


def test_same_events_from_two_inputs_are_one_event(world):
    d = world["dir"]
    run("import", "ftc-dnc", world["ftc"], "--out", d / "ftc-again.jsonl")
    out = run("build", "--tags", d / "ftc.jsonl", "--tags", d / "ftc-again.jsonl", "--no-student",
              "--out", d / "dup")
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["duplicates"] == 36 and summary["events"] == 36
    assert summary["sources"]["ftc-dnc"]["published"] == 12


def test_pack_build_refuses_labels_of_another_region(world):
    labels = world["dir"] / "b1/v1/labels.csv"
    r = CliRunner().invoke(main, ["pack", "build", "--labels", str(labels), "--version", "1",
                                  "--out", str(world["dir"] / "p-cn"), "--region", "CN"])
    assert r.exit_code != 0 and "DE: 12" in r.output and "--region DE,US" in r.output
    run("pack", "build", "--labels", labels, "--version", "1", "--out", world["dir"] / "p2",
        "--region", "US,DE")


def test_publish_keeps_other_regions_and_phones_label_their_own(world, tmp_path):
    d = world["dir"]
    run("build", "--tags", d / "ftc.jsonl", "--no-student", "--out", d / "us")
    run("build", "--tags", d / "pb.jsonl", "--no-student", "--out", d / "de")
    ex, keys = tmp_path / "exports", tmp_path / "keys"
    run("keys", "init", "--dir", keys)
    run("publish", "--build", d / "us/v1", "--channel", "stable", "--exports", ex, "--keys", keys)
    from server import create_app
    app = create_app({"data_dir": str(tmp_path / "var"), "exports_dir": str(ex),
                      "device_secret": "x"})
    detail = app.test_client().get("/readyz").get_json()["detail"]
    assert detail["lookup_entries"] == 12 and detail["lookup_version"] == "stable-v1"
    out = run("publish", "--build", d / "de/v1", "--channel", "stable", "--exports", ex, "--keys", keys)
    assert "regions DE,US" in out
    root = ex / "root/1.root.json"
    for region, number, cat in (("US", "+1" + US_SPAM[0], "telemarketing"),
                                ("DE", DE_SPAM[-1], "harassment")):
        phone = tmp_path / f"phone-{region}"
        out = run("handset", "--state", phone, "--server", ex, "--root", root, "--region", region,
                  "sync")
        assert f"pack {region}-full" in out
        assert cat in run("handset", "--state", phone, "label", number)
    assert "pack_exact" not in run("handset", "--state", tmp_path / "phone-US", "label", "+1833")

    detail = app.test_client().get("/readyz").get_json()["detail"]  # same process: reloaded
    assert detail["lookup_entries"] == 24 and detail["lookup_version"] == "stable-v2"
    from callmark.numbers import lookup_hash
    h = lookup_hash(DE_SPAM[0])
    ans = app.test_client().get(f"/v1/lookup/{h[:1]}?channel=stable").get_json()
    assert ans["version"] == "stable-v2"
    assert [x["category"] for x in ans["labels"] if x["hash"] == h] == ["harassment"]
    assert normalize("+86 10 95566").key == key_of("95566")


def test_diff_lists_the_numbers_the_second_day_added(world):
    d = world["dir"]
    run("build", "--tags", d / "ftc.jsonl", "--no-student", "--out", d / "days", "--as-of",
        "2025-12-10T00:00:00Z")
    run("build", "--tags", d / "ftc.jsonl", "--no-student", "--out", d / "days", "--as-of",
        "2025-12-11T23:59:59Z")
    out = run("diff", d / "days/v1", d / "days/v2", "--json", "--top", "20")
    diff = json.loads(out)
    us = next(r for r in diff["regions"] if r["region"] == "US")
    assert us["added"] == 6 and us["removed"] == 0
    assert {x["number"] for x in us["top"]["added"]} == {"+1" + n for n in US_SPAM[6:]}
    md = run("diff", d / "days/v1", d / "days/v2")
    assert "6 numbers added" in md and "+1" + US_SPAM[6] in md
