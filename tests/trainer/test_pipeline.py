"""`callmark build`: the recipe end to end on simulator data, and model-derived labels."""
import csv
import json

import pytest
from click.testing import CliRunner

from callmark.pack import PackReader
from callmark.numbers import key_of
from tools.cli import main
from tools.simulate import simulate
from callmark.labels import FLAG_MODEL
from trainer.model_labels import ModelLabelConfig, merge_model_labels
from trainer.pipeline import BuildConfig, BuildError, BuildResult, build
from trainer.training_targets import consensus_targets


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    simulate(str(out), days=4, users=600, seed=11)
    return out


def test_build_twice_gives_packs_and_a_delta_that_matches(sim, tmp_path):
    base = dict(tags=str(sim / "tags.jsonl"), calls=str(sim / "calls.csv"), verified=str(sim / "verified.csv"),
                out=str(tmp_path / "builds"), student=False)
    first = build(BuildConfig(**base, as_of="2026-03-04T00:00:00Z"), echo=lambda *_: None)
    second = build(BuildConfig(**base), echo=lambda *_: None)
    assert (first.version, second.version) == (1, 2)
    assert BuildResult.load(second.build_dir).to_dict() == second.to_dict()
    labels = list(csv.DictReader(open(second.labels_csv)))
    assert labels and {"number", "category", "confidence", "reporters", "published"} <= set(labels[0])
    # every published label is in the full pack, and only those
    index = json.loads(open(f"{second.pack_dir}/index.json").read())
    full = next(p for p in index["packs"] if p["tier"] == "full")
    reader = PackReader(f"{second.pack_dir}/{full['sqlite']}")
    for row in labels:
        hit = reader.lookup(int(row["key"]))
        assert (hit is not None) == (row["published"] == "1") or int(row["flags"]) & 2
    # the second build carries a delta from the first
    assert len(second.delta_dirs) == 1
    delta_index = json.loads(open(f"{second.delta_dirs[0]}/index.json").read())
    assert delta_index["from_version"] == 1 and delta_index["to_version"] == 2


def test_build_refuses_to_overwrite_and_names_missing_inputs(sim, tmp_path):
    cfg = BuildConfig(tags=str(sim / "tags.jsonl"), out=str(tmp_path), version=3, student=False)
    build(cfg, echo=lambda *_: None)
    with pytest.raises(BuildError, match="already holds a build"):
        build(cfg, echo=lambda *_: None)
    with pytest.raises(BuildError, match="no store"):
        build(BuildConfig(data_dir=str(tmp_path / "nothing"), out=str(tmp_path / "b")), echo=lambda *_: None)
    assert not (tmp_path / "b" / "v1").exists()            # a failed build leaves no half directory


def test_an_unfinished_build_is_cleared_before_its_version_is_built_again(sim, tmp_path):
    stale = tmp_path / "v1" / "training"
    stale.mkdir(parents=True)
    (stale / "calls.csv").write_text("an older attempt's file\n")
    res = build(BuildConfig(tags=str(sim / "tags.jsonl"), out=str(tmp_path), student=False), echo=lambda *_: None)
    assert res.version == 1 and not (stale / "calls.csv").exists()


def test_build_cli_reports_errors_without_traceback(tmp_path):
    result = CliRunner().invoke(main, ["build", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path)])
    assert result.exit_code == 1 and "no store" in result.output and "Traceback" not in result.output


def _labels(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["number", "category", "confidence", "reporters", "published",
                                          "key", "flags", "last_ts", "company"])
        w.writeheader()
        for r in rows:
            w.writerow(r)


def test_model_labels_never_override_crowd_verified_or_appealed(tmp_path):
    path = str(tmp_path / "labels.csv")
    row = lambda n, cat, pub, reps, flags=0: {"number": n, "category": cat, "confidence": "0.5",  # noqa: E731
                                               "reporters": reps, "published": pub, "key": key_of(n),
                                               "flags": flags, "last_ts": 0, "company": ""}
    _labels(path, [row("+8613800000001", "delivery", 1, 9),     # published crowd label
                   row("+8613800000002", "fraud", 0, 1),        # unsettled: upgraded
                   row("+8613800000003", "legit", 0, 2, 8)])    # appeal-suppressed
    k = {i: key_of(f"+861380000000{i}") for i in range(1, 7)}
    scores = {k[1]: 0.99, k[2]: 0.99, k[3]: 0.99, k[4]: 0.99, k[5]: 0.99, k[6]: 0.5}
    calls = {key: 100 for key in k.values()}
    calls[k[5]] = 3  # weak call evidence
    verified = {k[4]: "Bank"}
    counts = merge_model_labels(path, scores, calls, ModelLabelConfig(), verified=verified, appeals={k[3]: []})
    out = {int(r["key"]): r for r in csv.DictReader(open(path))}
    assert counts == {"model_labels_added": 0, "model_labels_upgraded": 1}
    assert out[k[1]]["category"] == "delivery" and int(out[k[1]]["flags"]) & FLAG_MODEL == 0
    assert out[k[2]]["published"] == "1" and int(out[k[2]]["flags"]) & FLAG_MODEL
    assert float(out[k[2]]["confidence"]) < 0.99
    assert out[k[3]]["published"] == "0"
    assert k[4] not in out and k[5] not in out and k[6] not in out


def test_model_labels_add_untagged_numbers_with_strong_evidence(tmp_path):
    path = str(tmp_path / "labels.csv")
    _labels(path, [])
    key = key_of("+8613800000009")
    counts = merge_model_labels(path, {key: 0.995}, {key: 500}, ModelLabelConfig())
    rows = list(csv.DictReader(open(path)))
    assert counts["model_labels_added"] == 1
    assert rows[0]["number"] == "+8613800000009" and rows[0]["reporters"] == "0"
    assert int(rows[0]["flags"]) == FLAG_MODEL and rows[0]["category"] == "harassment"


def test_consensus_targets(tmp_path):
    path = tmp_path / "labels.csv"
    _labels(path, [{"number": "+8613800000001", "category": "fraud", "confidence": "0.9", "reporters": 5,
                    "published": 1, "key": key_of("+8613800000001"), "flags": 0, "last_ts": 0, "company": ""},
                   {"number": "+8613800000002", "category": "fraud", "confidence": "0.4", "reporters": 1,
                    "published": 0, "key": key_of("+8613800000002"), "flags": 0, "last_ts": 0, "company": ""},
                   {"number": "+8613800000004", "category": "delivery", "confidence": "0.3", "reporters": 1,
                    "published": 0, "key": key_of("+8613800000004"), "flags": 0, "last_ts": 0, "company": ""}])
    y = consensus_targets(["+8613800000001", "+8613800000002", "+8613800000003", "+8613800000004"], path, "CN")
    # published and unsettled crowd labels both count; untagged numbers are honest
    assert y.tolist() == [1, 1, 0, 0]
    # an unsettled harmful label below the weak-label bar is no target (-1); a benign one stays 0;
    # a published label counts whatever its confidence
    y = consensus_targets(["+8613800000001", "+8613800000002", "+8613800000003", "+8613800000004"], path, "CN",
                          min_confidence=0.5)
    assert y.tolist() == [1, -1, 0, 0]
    assert consensus_targets(["+8613800000001"], path, "CN", min_confidence=0.95).tolist() == [1]


def test_weak_labels_are_no_class_targets_of_the_student(tmp_path):
    """training_dir's truth.csv (the student's class targets) leaves weak labels out: their callers
    get the teacher's soft target like an untagged caller, not a hard harmful class."""
    from trainer.training_targets import training_dir

    labels = tmp_path / "labels.csv"
    row = {"reporters": 1, "flags": 0, "last_ts": 0, "company": ""}
    _labels(labels, [dict(row, number="+8613800000001", category="fraud", confidence="0.9", published=1,
                          key=key_of("+8613800000001")),
                     dict(row, number="+8613800000002", category="harassment", confidence="0.14", published=0,
                          key=key_of("+8613800000002")),
                     dict(row, number="+8613800000003", category="harassment", confidence="0.3", published=0,
                          key=key_of("+8613800000003")),
                     dict(row, number="+8613800000004", category="delivery", confidence="0.05", published=0,
                          key=key_of("+8613800000004")),
                     dict(row, number="+8613800000005", category="fraud", confidence="0.99", published=1,
                          key=key_of("+8613800000005"), flags=FLAG_MODEL)])
    calls = tmp_path / "calls.csv"
    calls.write_text("caller,callee_hash,start,ring_s,talk_s,answered,direction,presentation,verification\n")
    class NoEvents:
        ts = []

        def __len__(self):
            return 0

    d = training_dir(BuildConfig(calls=str(calls)), labels, NoEvents(), {"verified": {}}, tmp_path)
    numbers = [r["number"] for r in csv.DictReader(open(d / "truth.csv"))]
    assert numbers == ["+8613800000001", "+8613800000003", "+8613800000004"]


def test_a_build_evaluates_on_its_gold_set_when_told(tmp_path, monkeypatch):
    """`eval_truth` + `eval_gold` in a build config reach the one evaluation: the gate reads only the
    callers the gold set lists (trainer.evaluate.evaluation_events tests what `gold` does)."""
    from trainer import evaluate, pipeline

    seen = {}

    def assess(model_dir, data_dir, **kw):
        seen.update(kw)
        return {"candidate": None, "published": None, "verdict": {"accepted": False, "reasons": ["x"]}}
    monkeypatch.setattr(evaluate, "assess", assess)
    cfg = BuildConfig.from_dict({"eval_truth": str(tmp_path / "gold.csv"), "eval_gold": True})
    model, _ = pipeline.gated_evaluation(str(tmp_path / "model"), cfg, tmp_path, {}, echo=lambda *_: None)
    assert model is None and seen["gold"] is True and seen["truth_csv"] == str(tmp_path / "gold.csv")
    seen.clear()
    pipeline.gated_evaluation(str(tmp_path / "model"), BuildConfig(), tmp_path, {}, echo=lambda *_: None)
    assert seen["gold"] is False and seen["truth_csv"] is None  # production default: release labels
