"""`callmark pack build/delta/apply/stats` end to end through click, as outside checks call it."""
import csv
import json
import shutil

from click.testing import CliRunner

from tools.commands.pack import command
from trainer.packs import synthetic_table
from callmark.numbers import format_key
from callmark.categories import by_code
from callmark.pack import PackReader, pack_state_hash


def _labels_csv(path, t, drop_every=0, bump=False):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["number", "category", "confidence", "reporters", "published", "key", "flags", "last_ts",
                    "company"])
        for i, k in enumerate(t.labels["key"].tolist()):
            if drop_every and i % drop_every == 0:
                continue
            rep = int(t.labels["reporters"][i]) * (3 if bump and i % 7 == 0 else 1)
            w.writerow([format_key(k), by_code(int(t.labels["category"][i])).key,
                        t.labels["confidence"][i] / 100, rep, 1, "", int(t.labels["flags"][i]),
                        int(t.labels["last_day"][i]) * 86400, t.names.get(k, "")])


def _run(args):
    res = CliRunner().invoke(command, args, catch_exceptions=False)
    return res


def test_build_delta_apply_stats(tmp_path):
    t = synthetic_table(2000, seed=21)
    _labels_csv(tmp_path / "l1.csv", t)
    _labels_csv(tmp_path / "l2.csv", t, drop_every=9, bump=True)
    for n in (1, 2):
        res = _run(["build", "--labels", str(tmp_path / f"l{n}.csv"), "--version", str(n),
                    "--out", str(tmp_path / f"v{n}"), "--no-provinces"])
        assert res.exit_code == 0, res.output
    st1 = json.loads(_run(["stats", "--json", str(tmp_path / "v1")]).output)
    assert st1["entries"] == t.entries and st1["wire_bytes"] > 0 and st1["sqlite_bytes"] > st1["wire_bytes"]
    assert len(st1["state_hash"]) == 64
    res = _run(["delta", "--old", str(tmp_path / "v1"), "--new", str(tmp_path / "v2"),
                "--out", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    sd = json.loads(_run(["stats", "--json", str(tmp_path / "d")]).output)
    assert sd["removals"] == len(range(0, t.n_labels, 9)) and sd["upserts"] > 0
    assert sd["wire_bytes"] < st1["wire_bytes"]
    st2 = json.loads(_run(["stats", "--json", str(tmp_path / "v2")]).output)
    assert sd["state_hash"] == st2["state_hash"] and sd["entries"] == st2["entries"]

    phone = tmp_path / "phone.sqlite"
    shutil.copyfile(tmp_path / "v1" / "CN-full-v1.sqlite", phone)
    res = _run(["apply", "--pack", str(phone), "--delta", str(tmp_path / "d"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["state_hash"] == st2["state_hash"] == pack_state_hash(str(phone)) and out["version"] == 2
    sp = json.loads(_run(["stats", "--json", str(phone)]).output)
    assert sp["entries"] == st2["entries"] and sp["state_hash"] == st2["state_hash"]
    assert sp["sqlite_bytes"] > 0 and sp["wire_bytes"] > 0
    with PackReader(str(phone)) as r:
        assert r.version == 2
    sw = json.loads(_run(["stats", "--json", str(tmp_path / "d" / "CN-full-v1-v2.delta")]).output)
    assert (sw["upserts"], sw["removals"], sw["state_hash"]) == (sd["upserts"], sd["removals"], sd["state_hash"])
    sw = json.loads(_run(["stats", "--json", str(tmp_path / "v2" / "CN-full-v2.pack")]).output)
    assert sw["entries"] == st2["entries"] and sw["wire_bytes"] == st2["wire_bytes"]

    # applying the same delta twice is refused with a clear message, the pack is untouched
    res = CliRunner().invoke(command, ["apply", "--pack", str(phone), "--delta", str(tmp_path / "d")])
    assert res.exit_code != 0 and "full pack" in res.output and "Traceback" not in res.output
    assert pack_state_hash(str(phone)) == st2["state_hash"]


def test_bad_input_is_a_clear_error(tmp_path):
    (tmp_path / "bad.csv").write_text("number,category\n+8613812345678,fraud\n")
    (tmp_path / "junk.sqlite").write_bytes(b"not sqlite at all" * 100)
    cases = [
        (["build", "--labels", str(tmp_path / "nope.csv"), "--version", "1", "--out", str(tmp_path / "o")],
         "no labels file"),
        (["build", "--labels", str(tmp_path / "bad.csv"), "--version", "1", "--out", str(tmp_path / "o")],
         "missing columns"),
        (["stats", "--json", str(tmp_path / "junk.sqlite")], "not a callmark pack"),
        (["stats", "--json", str(tmp_path)], "index.json"),
        (["delta", "--old", str(tmp_path), "--new", str(tmp_path), "--out", str(tmp_path / "d")], "index.json"),
        (["apply", "--pack", str(tmp_path / "junk.sqlite"), "--delta", str(tmp_path)], "not a callmark pack"),
    ]
    for args, msg in cases:
        res = CliRunner().invoke(command, args)
        assert res.exit_code != 0, args
        assert msg in res.output and "Traceback" not in res.output, (args, res.output)


def test_layered_pack_install_apply_compact(tmp_path):
    from callmark import pack_layers
    t = synthetic_table(2000, seed=22)
    _labels_csv(tmp_path / "l1.csv", t)
    _labels_csv(tmp_path / "l2.csv", t, drop_every=30, bump=True)
    for n in (1, 2):
        assert _run(["build", "--labels", str(tmp_path / f"l{n}.csv"), "--version", str(n),
                     "--out", str(tmp_path / f"v{n}"), "--no-provinces", "--no-lite"]).exit_code == 0
    assert _run(["delta", "--old", str(tmp_path / "v1"), "--new", str(tmp_path / "v2"),
                 "--out", str(tmp_path / "d")]).exit_code == 0
    st2 = json.loads(_run(["stats", "--json", str(tmp_path / "v2")]).output)
    phone = tmp_path / "phone" / "CN-full"
    res = _run(["install", "--wire", str(tmp_path / "v1" / "CN-full-v1.pack"), "--pack", str(phone)])
    assert res.output.startswith(f"installed: {phone} is v1, ") and "verified" in res.output  # a sentence
    res = _run(["apply", "--pack", str(phone), "--delta", str(tmp_path / "d"), "--json"])
    out = json.loads(res.output)
    assert out["state_hash"] == st2["state_hash"] and out["layer"] in ("recent", "settled")
    sp = json.loads(_run(["stats", "--json", str(phone)]).output)
    assert sp["kind"] == "layered" and sp["entries"] == st2["entries"] and len(sp["layers"]["rows"]) == 2
    res = _run(["compact", "--pack", str(phone)])
    assert res.output.startswith(f"compacted: {phone} is one base (base), generation ") and "unchanged" in res.output
    assert pack_layers.verify(str(phone))["state_hash"] == st2["state_hash"]
    res = CliRunner().invoke(command, ["install", "--wire", str(tmp_path / "v2" / "CN-full-v2.pack"),
                                       "--pack", str(phone), "--state-hash", "0" * 64])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert pack_layers.read_meta(str(phone))["version"] == "2"
