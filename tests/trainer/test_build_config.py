"""One config format: `build --config` takes the flat fields `consensus --config` takes (and the
nested sections), CLI options win, and a bad key is named (issue: a traceback before)."""
import json

import pytest
from click.testing import CliRunner

from tools.cli import main
from tools.simulate import simulate
from trainer.pipeline import BuildConfig, BuildError


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    simulate(str(out), days=3, users=300, seed=5)
    return out


def test_flat_and_nested_fields_mean_the_same():
    flat = BuildConfig.from_dict({"min_reporters": 4, "lite": False, "min_score": 0.9, "deltas_back": 2})
    nested = BuildConfig.from_dict({"consensus": {"min_reporters": 4}, "packs": {"lite": False},
                                    "model_labels": {"min_score": 0.9}, "deltas_back": 2})
    assert flat == nested
    assert flat.consensus == {"min_reporters": 4} and flat.deltas_back == 2


@pytest.mark.parametrize("bad, words", [
    ({"min_reporter": 4}, ["'min_reporter'", "min_reporters"]),
    ({"consensus": {"half_life": 3}}, ["half_life"]),
    ({"min_reporters": -1}, ["min_reporters"]),
    ({"consensus": 3}, ["'consensus'", "ConsensusConfig"]),
    ([1, 2], ["JSON object"]),
])
def test_bad_keys_are_named(bad, words):
    with pytest.raises(BuildError) as e:
        BuildConfig.from_dict(bad)
    for w in words:
        assert w in str(e.value)


def test_the_consensus_config_file_works_for_build_and_consensus(sim, tmp_path):
    cfg = tmp_path / "oneoff.json"
    cfg.write_text(json.dumps({"min_reporters": 2, "half_life_days": 30, "lite": False}))
    run = CliRunner().invoke
    r = run(main, ["consensus", "--tags", str(sim / "tags.jsonl"), "--out", str(tmp_path / "labels.csv"),
                   "--config", str(cfg), "--json"])
    assert r.exit_code == 0, r.output
    assert "skipped here: lite" in r.output
    r = run(main, ["build", "--tags", str(sim / "tags.jsonl"), "--out", str(tmp_path / "builds"), "--no-student",
                   "--config", str(cfg)])
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    built = json.loads(r.output.strip().splitlines()[-1])
    index = json.loads(open(f"{built['build_dir']}/packs/index.json").read())
    assert not [p for p in index["packs"] if p["tier"] == "lite"]  # the pack field reached the packs


def test_build_config_errors_and_precedence(sim, tmp_path):
    run = CliRunner().invoke
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"min_reporter": 2}))
    r = run(main, ["build", "--tags", str(sim / "tags.jsonl"), "--out", str(tmp_path / "b"), "--config", str(bad)])
    assert r.exit_code == 1 and "'min_reporter'" in r.output and "Traceback" not in r.output
    (tmp_path / "v.json").write_text(json.dumps({"version": 7, "out": str(tmp_path / "fromfile"), "min_reporters": 1}))
    r = run(main, ["build", "--tags", str(sim / "tags.jsonl"), "--no-student", "--version", "9",
                   "--config", str(tmp_path / "v.json")])
    assert r.exit_code == 0, r.output
    built = json.loads(r.output.strip().splitlines()[-1])
    assert built["version"] == 9 and built["build_dir"].startswith(str(tmp_path / "fromfile"))


def test_one_gate_margin_for_build_and_model_gate():
    from tools.commands.model import COMMANDS
    from trainer.evaluate import GATE_MARGIN
    margin = next(p for p in COMMANDS["model"].commands["gate"].params if p.name == "margin")
    assert BuildConfig().gate_margin == margin.default == GATE_MARGIN


def test_a_student_the_data_cannot_train_is_skipped_not_a_crash(sim, tmp_path, monkeypatch):
    import trainer.pipeline as P
    from trainer.model.student import StudentError

    def refuse(*a, **kw):
        raise StudentError("the teacher needs both harmful and honest numbers in the data")

    monkeypatch.setattr(P, "student_stage", refuse)
    res = P.build(BuildConfig(tags=str(sim / "tags.jsonl"), calls=str(sim / "calls.csv"), out=str(tmp_path)),
                  echo=lambda *_: None)
    assert res.model_dir is None and res.stats["student"].startswith("skipped: the teacher needs")
    assert (tmp_path / "v1" / "packs" / "index.json").exists()  # the packs still ship
