"""The crowd simulator: output contract, determinism and the behaviours docs/simulator.md promises."""
from __future__ import annotations

import csv
import hashlib
import json
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from callmark.categories import HARMFUL_KEYS, by_key
from callmark.numbers import key_of, normalize
from tools.sim_population import FIXED, MOBILE, N400, SHORT, format_variant
from tools.simulate import OUTPUT_FILES, SimConfig, SimulationError, command, simulate

CALLS_COLUMNS = ["caller", "callee_hash", "start", "ring_s", "talk_s", "answered", "direction",
                 "presentation", "verification"]
TRUTH_COLUMNS = ["number", "role", "category", "harmful", "first_day", "last_day", "company"]
SMALL = dict(days=4, users=400, seed=7)


def _rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _ts(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=timezone.utc)


def _local_hour(text: str) -> int:
    return (_ts(text).hour + 8) % 24


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    t0 = time.perf_counter()
    summary = simulate(out, **SMALL)
    elapsed = time.perf_counter() - t0
    calls = _rows(out / "calls.csv")
    truth = _rows(out / "truth.csv")
    tags = [json.loads(line) for line in (out / "tags.jsonl").read_text("utf-8").splitlines()]
    return dict(out=out, summary=summary, elapsed=elapsed, calls=calls, truth=truth, tags=tags,
                role={r["number"]: r["role"] for r in truth})


def test_small_run_is_fast_and_summary_matches_files(sim):
    assert sim["elapsed"] < 5
    s = sim["summary"]
    assert 3000 <= s["calls"] == len(sim["calls"])
    assert s["tags"] == len(sim["tags"]) > 0
    assert s["numbers"] == len(sim["truth"])
    assert sum(s["calls_by_role"].values()) == s["calls"]
    for name in OUTPUT_FILES:
        assert (sim["out"] / name).is_file(), name
    assert not list(sim["out"].glob("*.part"))
    meta = json.loads((sim["out"] / "meta.json").read_text("utf-8"))
    assert SimConfig.from_dict(meta["config"]).to_dict() == meta["config"]
    assert meta["summary"]["calls"] == s["calls"]


def test_file_headers_are_the_pinned_interface(sim):
    out = sim["out"]
    first = lambda name: (out / name).read_text("utf-8").splitlines()[0]
    assert first("calls.csv").split(",") == CALLS_COLUMNS
    assert first("truth.csv").split(",") == TRUTH_COLUMNS
    assert first("verified.csv") == "number,company"
    assert first("appeals.csv") == "number,categories,filed_ts,accepted"
    assert first("recycled.csv") == "number,reissued_ts"


def test_call_rows_are_well_formed_and_time_ordered(sim):
    starts = [_ts(r["start"]) for r in sim["calls"]]
    assert starts == sorted(starts)
    for r in sim["calls"]:
        assert r["caller"] in sim["role"]
        assert re.fullmatch(r"[0-9a-f]{16}", r["callee_hash"])
        assert r["direction"] in ("in", "out") and r["verification"] in ("passed", "failed", "none")
        assert r["answered"] in ("0", "1")
        ring, talk = float(r["ring_s"]), int(r["talk_s"])
        assert ring > 0 and talk >= 0 and (talk == 0) == (r["answered"] == "0")


def test_tags_are_well_formed(sim):
    ids = [t["event_id"] for t in sim["tags"]]
    assert len(set(ids)) == len(ids)
    times = [_ts(t["ts"]) for t in sim["tags"]]
    assert times == sorted(times)
    for t in sim["tags"]:
        by_key(t["category"])
        assert t["number"] and t["reporter"]
        assert set(t) <= {"event_id", "number", "reporter", "category", "ts", "company", "note",
                          "ring_s", "talk_s", "answered", "direction"}
        if "direction" in t:
            assert t["direction"] in ("in", "out") and isinstance(t["answered"], bool)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    digests = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        simulate(tmp_path / name, days=2, users=200, seed=seed, fake_blocs=1)
        digests.append({f: hashlib.sha256((tmp_path / name / f).read_bytes()).hexdigest()
                        for f in OUTPUT_FILES if f != "meta.json"})
    assert digests[0] == digests[1]
    assert digests[0]["calls.csv"] != digests[2]["calls.csv"]
    assert digests[0]["tags.jsonl"] != digests[2]["tags.jsonl"]


def test_presentations_normalise_to_the_caller(sim):
    """Raw strings vary like phones send them, yet name the same number."""
    styles = Counter()
    for r in sim["calls"]:
        raw = r["presentation"]
        if sim["role"][r["caller"]] == "fraud_abroad":
            assert raw.startswith("+86")
            continue
        assert key_of(raw) == key_of(r["caller"]) is not None, (raw, r["caller"])
        styles["+86"] += raw.startswith("+86")
        styles["0086"] += raw.startswith("0086")
        styles["space"] += " " in raw
        styles["dash"] += "-" in raw
        styles["17951"] += raw.startswith("17951")
        styles["national"] += raw.isdigit() and not raw.startswith(("86", "0086", "17951"))
    assert all(styles[k] > 0 for k in ("+86", "0086", "space", "dash", "17951", "national")), styles
    assert styles["national"] > 0.5 * len(sim["calls"])
    for t in sim["tags"]:  # spoofed '+86' strings of a wrong length are irregular: never keyed
        assert key_of(t["number"]) is not None or (
            t["number"].startswith("+86") and normalize(t["number"]).irregular), t["number"]


def test_format_variants_cover_every_style():
    samples = {MOBILE: "13812345678", FIXED: "02887654321", N400: "4008001234", SHORT: "95588"}
    for kind, national in samples.items():
        want = key_of(national)
        for code in range(9):
            raw = format_variant(national, kind, code)
            assert key_of(raw) == want, (raw, national)
    assert format_variant("13812345678", MOBILE, 7) == "１３８１２３４５６７８"
    assert format_variant("13812345678", MOBILE, 6) == "1795113812345678"


def test_population_uses_realistic_number_types(sim):
    types = defaultdict(Counter)
    for r in sim["truth"]:
        types[r["role"]][normalize(r["number"]).type] += 1
    assert types["person"]["mobile"] + types["person"]["mvno"] == sum(types["person"].values())
    assert types["customer_service"]["short_service"] >= 15
    assert types["customer_service"]["shared_cost"] >= 1  # 400 numbers
    assert types["fraud"]["mvno"] > 0 and types["taxi"]["mvno"] > 0
    roles = {r["role"] for r in sim["truth"]}
    assert roles >= {"person", "courier", "taxi", "customer_service", "telemarketer",
                     "debt_collector", "fraud", "fraud_abroad", "one_ring", "call_bomber",
                     "harasser"}
    sectors = {r["category"] for r in sim["truth"] if r["role"] == "telemarketer"}
    assert sectors >= {"loans", "real_estate", "insurance", "education", "telemarketing"}
    for r in sim["truth"]:
        by_key(r["category"])
        assert r["harmful"] == str(int(r["category"] in HARMFUL_KEYS))


def test_verified_businesses_are_honest_service_numbers(sim):
    verified = _rows(sim["out"] / "verified.csv")
    truth = {r["number"]: r for r in sim["truth"]}
    assert any(v["number"] == "+8695588" for v in verified)
    assert any(v["number"].startswith("+86400") for v in verified)
    for v in verified:
        assert truth[v["number"]]["harmful"] == "0" and v["company"]


def _per_number(calls, role_of):
    stats = defaultdict(lambda: dict(n=0, out=0, peers=set(), hours=set()))
    for r in calls:
        s = stats[r["caller"]]
        s["n"] += 1
        s["out"] += r["direction"] == "in"
        s["peers"].add(r["callee_hash"])
        s["hours"].add(_local_hour(r["start"]))
    by_role = defaultdict(list)
    for number, s in stats.items():
        by_role[role_of[number]].append(s)
    return by_role


def test_call_behaviour_matches_the_sichuan_shape(sim):
    by_role = _per_number(sim["calls"], sim["role"])
    med = lambda role, f: float(np.median([f(s) for s in by_role[role] if s["n"] >= 3]))
    outgoing = lambda s: s["out"] / s["n"]
    per_peer = lambda s: s["n"] / len(s["peers"])
    assert 0.35 < med("person", outgoing) < 0.7  # Sichuan normal: 0.52
    assert med("fraud", outgoing) > 0.9  # Sichuan fraud: 0.97
    assert med("fraud", per_peer) < 1.5  # fraud calls each person about once (Sichuan: 1.25)
    assert med("person", per_peer) > 1.3 * med("fraud", per_peer)  # grows with the window
    assert med("telemarketer", per_peer) < 1.5


def test_special_callers_behave_as_named(sim):
    one_ring = [r for r in sim["calls"] if sim["role"][r["caller"]] == "one_ring"]
    rings = [r for r in one_ring if r["direction"] == "in"]
    assert rings and all(float(r["ring_s"]) < 3 and r["answered"] == "0" for r in rings)
    night = sum(_local_hour(r["start"]) >= 21 or _local_hour(r["start"]) < 7 for r in rings)
    assert night > 0.6 * len(rings)
    assert any(r["direction"] == "out" for r in one_ring)  # victims call back
    tele = [r for r in sim["calls"] if sim["role"][r["caller"]] == "telemarketer"]
    assert tele and all(7 <= _local_hour(r["start"]) <= 21 for r in tele)  # business hours
    business = sum(9 <= _local_hour(r["start"]) < 18 for r in tele)
    assert business > 0.85 * len(tele)
    bombs = Counter((r["caller"], r["callee_hash"]) for r in sim["calls"]
                    if sim["role"][r["caller"]] == "call_bomber")
    victims = Counter(callee for _, callee in bombs.elements())
    assert victims and victims.most_common(1)[0][1] >= 20
    spoofed = [r for r in sim["calls"] if sim["role"][r["caller"]] == "fraud_abroad"]
    assert spoofed and Counter(r["verification"] for r in spoofed).most_common(1)[0][0] == "failed"
    lifetimes = [int(r["last_day"]) - int(r["first_day"]) + 1 for r in sim["truth"]
                 if r["role"] == "fraud"]
    assert np.median(lifetimes) <= SMALL["days"]


def test_tags_are_noisy_and_include_legit_votes(tmp_path):
    simulate(tmp_path, days=6, users=1000, seed=11, fake_blocs=0)
    truth = {r["number"]: r for r in _rows(tmp_path / "truth.csv")}
    tags = [json.loads(x) for x in (tmp_path / "tags.jsonl").read_text("utf-8").splitlines()]
    assert {r["kind"] for r in _rows(tmp_path / "reporters.csv")} == {"honest", "careless"}
    by_number = {key_of(n): r for n, r in truth.items()}
    right = wrong = benign_harm = legit = 0
    for t in tags:
        row = by_number[key_of(t["number"])]
        right += t["category"] == row["category"]
        wrong += t["category"] != row["category"]
        benign_harm += row["harmful"] == "0" and t["category"] in HARMFUL_KEYS
        legit += t["category"] == "legit"
    assert right > wrong * 0.5 and wrong > 0.2 * len(tags)
    assert benign_harm > 0 and legit > 0
    cats = Counter(t["category"] for t in tags)
    assert cats["harassment"] == max(cats.values())  # the most common mark (Tencent: 52 %)


def test_fake_blocs_tag_honest_numbers_in_bursts(sim):
    reporters = _rows(sim["out"] / "reporters.csv")
    kinds = {r["reporter"]: r["kind"] for r in reporters}
    fakes = {r for r, k in kinds.items() if k == "fake"}
    assert len(fakes) == sim["summary"]["fake_accounts"] == 60
    truth = {key_of(r["number"]): r for r in sim["truth"]}
    fake_tags = [t for t in sim["tags"] if t["reporter"] in fakes]
    assert fake_tags and all(truth[key_of(t["number"])]["harmful"] == "0" for t in fake_tags)
    for reporter in list(fakes)[:5]:
        times = [_ts(t["ts"]) for t in fake_tags if t["reporter"] == reporter]
        assert (max(times) - min(times)).total_seconds() <= 3600
    honest = [t for t in sim["tags"] if t["reporter"] not in fakes]
    assert honest and not {t["reporter"] for t in honest} & fakes
    lines = {r["reporter"]: r["callee_hash"] for r in reporters if r["kind"] != "fake"}
    callees = {r["callee_hash"] for r in sim["calls"]}
    assert {lines[t["reporter"]] for t in honest} <= callees  # users tag calls they received


def test_recycling_and_appeals(tmp_path):
    summary = simulate(tmp_path, days=14, users=500, seed=5)
    truth = _rows(tmp_path / "truth.csv")
    recycled = _rows(tmp_path / "recycled.csv")
    assert summary["recycled"] == len(recycled) > 0
    rows = defaultdict(list)
    for r in truth:
        rows[r["number"]].append(r)
    for rec in recycled:
        old, new = rows[rec["number"]]
        assert old["harmful"] == "1" and new["harmful"] == "0" and new["category"] == "legit"
        assert int(old["last_day"]) < int(new["first_day"])
        assert _ts(rec["reissued_ts"]) > _ts("2026-03-01T00:00:00Z")
    appeals = _rows(tmp_path / "appeals.csv")
    assert summary["appeals"] == len(appeals) > 0
    for a in appeals:
        assert a["number"] in rows and a["accepted"] in ("0", "1")
        assert all(c in HARMFUL_KEYS for c in a["categories"].split(";"))
    accepted = [a for a in appeals if a["accepted"] == "1"]
    assert accepted and all(rows[a["number"]][-1]["harmful"] == "0" for a in accepted)


def test_calls_per_day_knob_scales_volume(tmp_path):
    small = simulate(tmp_path / "s", days=2, users=100, seed=1, calls_per_day=2000)
    big = simulate(tmp_path / "b", days=2, users=100, seed=1, calls_per_day=8000)
    assert 0.6 * 4000 < small["calls"] < 1.6 * 4000
    assert 3 * small["calls"] < big["calls"] < 5 * small["calls"]


def test_no_unwanted_callers_means_no_harmful_truth(tmp_path):
    summary = simulate(tmp_path, days=2, users=60, seed=3, unwanted_per_day=0, fake_blocs=0)
    assert summary["harmful_numbers"] == 0
    assert set(summary["calls_by_role"]) == {"person", "courier", "taxi", "customer_service"}
    assert all(r["harmful"] == "0" for r in _rows(tmp_path / "truth.csv"))


@pytest.mark.parametrize("bad, message", [
    (dict(days=0), "days must be an integer >= 1, got 0"), (dict(users=-1), "users must be an integer >= 1"),
    (dict(fake_blocs=-1), "fake_blocs must be an integer >= 0"), (dict(seed=-3), "seed"), (dict(seed=2 ** 40), "seed"),
    (dict(calls_per_day=5), "calls_per_day"), (dict(start="soon"), "start"),
    (dict(tag_scale=float("nan")), "tag_scale")])
def test_bad_config_is_a_clear_error(tmp_path, bad, message):
    args = dict(days=2, users=50, seed=1) | bad
    with pytest.raises(SimulationError, match=message):
        simulate(tmp_path, **args)
    with pytest.raises(SimulationError, match="unknown config keys"):
        SimConfig.from_dict({"days": 1, "colour": "red"})


def test_cli_writes_files_and_reports_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(command, ["--days", "2", "--users", "150", "--seed", "2", "--out",
                                     str(tmp_path / "o"), "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["calls"] == len(_rows(tmp_path / "o" / "calls.csv"))
    result = runner.invoke(command, ["--days", "0", "--users", "10", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "days" in result.output and "Traceback" not in result.output
    assert "Example" in runner.invoke(command, ["--help"]).output


@pytest.mark.slow
def test_a_million_calls_stream_with_bounded_memory(tmp_path):
    """~1 M call records through the real CLI entry point, in bounded memory."""
    # The peak RSS of a forked child starts at its parent's (pytest may hold TensorFlow by now):
    # reset the high-water mark first (clear_refs 5), then read VmHWM at the end.
    code = ("import re, sys; open('/proc/self/clear_refs', 'w').write('5'); "
            "from tools.simulate import command; "
            "command.main(sys.argv[1:], standalone_mode=False); "
            "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))")
    out = tmp_path / "big"
    proc = subprocess.run([sys.executable, "-c", code, "--days", "10", "--users", "14000",
                           "--calls-per-day", "100000", "--seed", "1", "--out", str(out),
                           "--quiet", "--json"], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary_line, rss_kb = proc.stdout.strip().splitlines()[-2:]
    summary = json.loads(summary_line)
    assert 700_000 < summary["calls"] < 1_500_000
    with open(out / "calls.csv", "rb") as f:
        assert sum(1 for _ in f) == summary["calls"] + 1
    assert int(rss_kb) < 600 * 1024  # MB; one day of calls at a time
