"""A lookup does not change the phone; a flag given once applies once (issue: `handset label`
recorded every look-up as a received call, and `--region` given once stuck and broke the next sync)."""
from __future__ import annotations

import json

from click.testing import CliRunner

from tests.tools.handset_helpers import FRAUD, UNKNOWN, Publisher
from tools.handset_cli import command


def synced(tmp_path):
    p = Publisher(tmp_path / "rel")
    p.publish(1)
    state = str(tmp_path / "ph")
    r = CliRunner().invoke(command, ["--state", state, "--server", str(p.exports), "--root", str(p.root_file),
                                     "sync", "--json"])
    assert r.exit_code == 0, r.output
    return p, state


def test_label_is_a_lookup_unless_record(tmp_path):
    _, state = synced(tmp_path)
    run = CliRunner().invoke
    for _ in range(12):  # twelve look-ups of one number: no history, so no call-bombing verdict
        r = run(command, ["--state", state, "label", UNKNOWN, "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["action"] == "allow"
    seen = [json.loads(run(command, ["--state", state, "label", UNKNOWN, "--record", "--json"]).output)["action"]
            for _ in range(12)]
    assert seen[0] == "allow" and seen[-1] != "allow"  # recorded calls do count (the rules see a flood)


def test_region_given_once_does_not_stick(tmp_path):
    p, state = synced(tmp_path)
    run = CliRunner().invoke
    r = run(command, ["--state", state, "--region", "US", "label", "2025550143", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(run(command, ["--state", state, "config"]).output)["region"] == "CN"
    r = run(command, ["--state", state, "sync", "--force", "--json"])  # the next sync still works
    assert r.exit_code == 0 and json.loads(r.output)["status"] == "up_to_date", r.output
    assert json.loads(run(command, ["--state", state, "label", FRAUD, "--json"]).output)["category"] == "fraud"


def test_one_off_region_or_channel_cannot_sync(tmp_path):
    _, state = synced(tmp_path)
    for flag, value in (("--region", "DE"), ("--channel", "beta")):
        r = CliRunner().invoke(command, ["--state", state, flag, value, "sync", "--force"])
        assert r.exit_code != 0 and "config --save" in r.output and "Traceback" not in r.output, r.output


def test_config_save_changes_the_saved_settings(tmp_path):
    p, state = synced(tmp_path)
    run = CliRunner().invoke
    r = run(command, ["--state", state, "--server", "http://127.0.0.1:9", "status"])
    assert r.exit_code == 0
    assert json.loads(run(command, ["--state", state, "config"]).output)["server_url"] == str(p.exports)
    r = run(command, ["--state", state, "--server", "http://127.0.0.1:9", "--channel", "beta", "config", "--save"])
    saved = json.loads(r.output)
    assert (saved["server_url"], saved["channel"]) == ("http://127.0.0.1:9", "beta")
