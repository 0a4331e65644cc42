"""The main job end to end, small: simulate, upload through a real server, build, publish, sync, label."""
import pytest

from tools.demo import DemoConfig, run_demo


@pytest.mark.slow
def test_demo_two_days_full_then_delta(tmp_path):
    summary = run_demo(DemoConfig(workdir=str(tmp_path / "work"), exports=str(tmp_path / "exports"),
                                  keys=str(tmp_path / "keys"), days=7, users=3000, seed=3, student=False))
    day1, day2 = summary["days"]
    assert day1["uploaded"]["acked"] > 0 and day2["uploaded"]["acked"] > 0
    assert day2["manifest_version"] == day1["manifest_version"] + 1
    assert day1["sync"]["status"] == "full" and day2["sync"]["status"] == "delta"
    for day in (day1, day2):
        acc = day["replay"]["accuracy"]
        assert acc["harmful_calls"] > 0 and acc["benign_calls"] > 0
        assert acc["harmful_flagged"] > 0.5  # the pack and the rules catch most unwanted calls
        assert acc["benign_flagged"] < 0.01  # and almost never warn about an honest caller
    assert (tmp_path / "work" / "summary.json").exists()
    # after the run the phone syncs from the exports mirror (the demo's server is gone)
    from tools.handset import Handset
    phone = Handset(tmp_path / "work" / "handset")
    assert phone.config.server_url == str(tmp_path / "exports")
    assert phone.sync(force=True).status == "up_to_date"
    phone.close()
    # the simulated verified businesses went in through the admin API and the build read them there
    assert summary["verified_businesses"] > 0
    from server.store import iter_verified
    assert len(list(iter_verified(tmp_path / "work" / "store"))) == summary["verified_businesses"]
    # `make demo` twice: the rerun clears the first run's releases and publishes its v1, v2 again
    again = run_demo(DemoConfig(workdir=str(tmp_path / "work"), exports=str(tmp_path / "exports"),
                                keys=str(tmp_path / "keys"), days=7, users=3000, seed=3, student=False))
    assert [d["manifest_version"] for d in again["days"]] == [day1["manifest_version"], day2["manifest_version"]]


def test_a_rerun_refuses_exports_with_releases_the_demo_did_not_make(tmp_path):
    import json

    import click

    from tools.demo import clear_previous_demo
    exports = tmp_path / "exports"
    (exports / "channels" / "beta").mkdir(parents=True)
    (exports / "README.md").write_text("kept")
    demo = [{"action": "publish", "channel": "beta", "note": "demo day 1", "release": "beta-1"},
            {"action": "promote", "channel": "stable", "release": "stable-1"}]
    (exports / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in demo + [
        {"action": "publish", "channel": "beta", "note": "hotfix", "release": "beta-2", "ts": "2026-11-30T00:00:00Z"}]))
    with pytest.raises(click.ClickException, match="did not make .first: publish beta-2"):
        clear_previous_demo(exports)
    assert (exports / "channels" / "beta").is_dir()  # nothing touched
    (exports / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in demo))
    clear_previous_demo(exports)
    assert sorted(p.name for p in exports.iterdir()) == ["README.md"]
    (exports / "channels").mkdir()  # channels without any history: not the demo's to delete
    with pytest.raises(click.ClickException, match="no release history"):
        clear_previous_demo(exports)


def test_the_summary_lists_label_sources_as_words_largest_first():
    from tools.demo import _by_source
    assert _by_source({"model": 5551, "default": 10213, "rule:spoofed": 7}) == \
        "default 10,213, model 5,551, rule:spoofed 7"
    assert _by_source({}) == "none"


def test_a_refusal_says_what_the_phone_keeps():
    from tools.demo import _gate_word
    refused = {"stats": {"model_gate": "refused: recall gain 0.01 < 0.05"}}
    assert _gate_word(refused, False) == ("refused by the release gate (the phone runs without a model): "
                                          "recall gain 0.01 < 0.05")
    assert "(published model kept)" in _gate_word(refused, True)
    assert _gate_word({"stats": {"model_gate": "accepted"}}, False).startswith("accepted")


def test_evaluation_rows_name_a_refused_candidate():
    from tools.demo import _evaluation_rows
    ev = {"max_fpr": 0.005, "recall_not_in_pack": 0.48, "risk_ece": 0.07, "warn_risk": 0.8, "gain_over_pack": 0.13,
          "pack_alone": {"recall": 0.12, "fpr": 0.001}, "pack_plus_model": {"recall": 0.25, "fpr": 0.004}}
    refused = dict(_evaluation_rows(2, ev, {"recall_not_in_pack": 0.41}, refused=True))
    key = "day 2: refused candidate, held-out callers not in pack: harmful calls caught at <= 0.5 % FPR"
    assert refused[key] == "0.480  (published model, same calls: 0.410)  [goal >= 0.5: missed]"
    combo = refused["day 2: held-out callers (build's calls): pack + refused candidate: harmful / honest flagged"]
    assert combo == "0.250 / 0.0040  (+0.130 recall)  [goal >= +0.10]"
    shipped = dict(_evaluation_rows(1, ev, None))
    assert shipped["day 1: model risk calibration error (ECE)"] == "0.070  [goal <= 0.05: missed]"
    ranked = dict(_evaluation_rows(2, dict(ev, risk_auc_callers=0.935, risk_auc=0.943),
                                   {"risk_auc_callers": 0.923, "risk_auc": 0.965}))
    assert ranked["day 2: model risk ROC AUC, each held-out caller counted once (the gate's ranking figure)"] == \
        "0.935  (published model, same calls: 0.923)  [per call: 0.943, published 0.965]"


def test_the_replay_says_what_warned_honest_callers_and_how_many_callers_that_was():
    from collections import Counter
    from types import SimpleNamespace

    from tools.demo import _honest_by_source
    from tools.handset_replay import _accuracy, _score
    acc = Counter()
    for caller, source, action in [("+1", "model", "warn")] * 3 + [("+2", "pack_exact", "warn"),
                                                                    ("+3", "model", "allow")]:
        _score(acc, ("legit", False), SimpleNamespace(action=action, source=source, category=None), caller)
    _score(acc, ("fraud", True), SimpleNamespace(action="warn", source="model", category="fraud"), "+4")
    a = _accuracy(acc)
    assert a["benign_flagged_by"] == {"model": 3, "pack_exact": 1}
    assert (a["benign_flagged_callers"], a["benign_flagged_top_caller"], a["benign_calls"]) == (2, 3, 5)
    assert _honest_by_source(a) == "model 3, pack_exact 1; 2 callers, at most 3 calls from one"
