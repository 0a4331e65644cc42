"""Student: train a tiny model (in a child process: TensorFlow never shares a process with LiteRT),
then test the exported artefact: size, built-in int8 ops, LiteRT vs Keras, test vectors, report, gate."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

BUILD = """
import sys
from tools.simulate import simulate
from trainer.model.student import StudentConfig, train_student
simulate(sys.argv[1], days=3, users=250, seed=7)
train_student(sys.argv[1], sys.argv[2], StudentConfig(epochs=4, check_rows=1500))
"""


def build_tiny_model(tmp_path_factory) -> tuple[Path, Path]:
    """(model_dir, sim_dir), built once per test session in a child process."""
    base = tmp_path_factory.getbasetemp() / "tiny_model_cache"
    model, sim = base / "model", base / "sim"
    if not (model / "model.tflite").is_file():
        base.mkdir(exist_ok=True)
        res = subprocess.run([sys.executable, "-c", BUILD, str(sim), str(model)], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
    return model, sim


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory)


@pytest.mark.slow
def test_artefact_files_size_and_checks(tiny):
    model, _ = tiny
    for name in ("model.tflite", "contract.json", "test_vectors.json", "metrics.json"):
        assert (model / name).is_file(), name
    metrics = json.loads((model / "metrics.json").read_text())
    size = (model / "model.tflite").stat().st_size
    assert size == metrics["size_bytes"] <= 64 * 1024
    check = metrics["artefact_check"]
    assert check["rows"] >= 500
    assert check["top1_agreement_tie_aware"] >= 0.995
    assert check["max_prob_diff"] <= 0.02 and check["max_risk_diff"] <= 0.02
    assert check["passed"] is True and check["problems"] == []
    assert metrics["data"]["distilled"] is True


@pytest.mark.slow
def test_tflite_uses_only_builtin_int8_ops(tiny):
    model, _ = tiny
    code = ("import sys; from ai_edge_litert.interpreter import Interpreter; "
            "it = Interpreter(model_path=sys.argv[1]); "
            "print(' '.join(sorted({o['op_name'] for o in it._get_ops_details()})))")
    res = subprocess.run([sys.executable, "-c", code, str(model / "model.tflite")], capture_output=True, text=True)
    ops = set(res.stdout.split())
    assert {"FULLY_CONNECTED", "GATHER", "SOFTMAX"} <= ops
    assert not any(o.startswith("Flex") or o == "CUSTOM" for o in ops)
    # weights are int8: the float model would be ~4x larger
    assert (model / "model.tflite").stat().st_size < json.loads((model / "metrics.json").read_text())["params"] * 2


QUANT_PARAMS = """
import json, sys
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1])
print(json.dumps([[t["name"], t["shape"].tolist(), list(t["quantization"])] for t in it.get_tensor_details()]))
"""


@pytest.mark.slow
def test_fixed_int8_grids_in_exported_file(tiny):
    """The hidden activations and logits carry the fixed grids the Keras model fake-quantises onto."""
    from trainer.model.student import CLASSES as cfg_classes, StudentConfig, logit_range

    model, _ = tiny
    res = subprocess.run([sys.executable, "-c", QUANT_PARAMS, str(model / "model.tflite")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    tensors = json.loads(res.stdout)
    cfg = StudentConfig.from_dict(json.loads((model / "metrics.json").read_text())["config"])
    lo, hi = logit_range(cfg.logit_clip)
    hidden = [q for name, shape, q in tensors if shape == [1, cfg.hidden[-1]] and "Relu6" in name]
    logits = [q for name, shape, q in tensors if "logit" in name and shape in ([1, len(cfg_classes)], [1, 1])]
    assert hidden and all(q[0] == pytest.approx(6 / 255) and q[1] == -128 for q in hidden)
    assert len(logits) == 2 and all(q[0] == pytest.approx((hi - lo) / 255) and q[1] == 0 for q in logits)


@pytest.mark.slow
def test_test_vectors_replay_through_litert(tiny):
    model, _ = tiny
    code = "import sys, json; from callmark.model import replay_test_vectors; print(json.dumps(replay_test_vectors(sys.argv[1])))"
    res = subprocess.run([sys.executable, "-c", code, str(model)], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert out["vectors"] >= 30 and out["max_diff"] < 1e-6  # same runtime: bit-exact
    cli = [sys.executable, "-m", "tools.cli", "model", "replay", "--model", str(model)]
    res = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0 and res.stdout.startswith(f"{out['vectors']} test vectors match through LiteRT")
    vectors = json.loads((model / "test_vectors.json").read_text())
    vectors["vectors"][3]["expected"]["risk"] += 0.5  # a phone's copy that disagrees with the model
    broken = model.parent / "broken_vectors"
    shutil.copytree(model, broken, dirs_exist_ok=True)
    (broken / "test_vectors.json").write_text(json.dumps(vectors))
    res = subprocess.run(cli[:-1] + [str(broken)], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 1 and "test vector 3" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_evaluation_report_and_contract_gate(tiny, tmp_path):
    from trainer.evaluate import ReleaseGateError, evaluate, gate

    model, sim = tiny
    cand = tmp_path / "cand"
    shutil.copytree(model, cand)
    m = evaluate(cand, sim, published_dir=model)
    # 3 days x 250 users is too little to learn from; quality is benchmarked on the demo's data
    assert 0 < m["risk_auc"] < 1 and m["events"] > 100
    assert m["published"]["risk_auc"] == pytest.approx(m["risk_auc"])  # same file, same calls
    report = (cand / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(links) == 3 and all((cand / f).stat().st_size > 1000 for f in links)
    assert (cand / "report.html").read_text().count("<img src=") == 3
    assert "| threshold |" in report and "published (same calls)" in report
    # the same file against itself is no worse on the same calls (only the absolute bar could refuse it)
    assert gate(cand, model, data_dir=sim, min_gain=0.0)["accepted"] is True
    contract = json.loads((cand / "contract.json").read_text())
    contract["inputs"][2]["fields"] = contract["inputs"][2]["fields"][::-1]
    (cand / "contract.json").write_text(json.dumps(contract))
    with pytest.raises(ReleaseGateError, match="contract"):
        gate(cand, model, data_dir=sim, min_gain=0.0)
    with pytest.raises(ReleaseGateError, match="same calls"):
        gate(cand, model)  # no data: refuses to compare stored figures


TWO = """
import csv, random, shutil, sys
from pathlib import Path
from tools.simulate import simulate
from trainer.model.student import StudentConfig, train_student
sim, bad, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
simulate(str(sim), days=7, users=1500, seed=3)
shutil.copytree(sim, bad)
rows = list(csv.DictReader(open(sim / "truth.csv")))
labels = [(r["category"], r["harmful"]) for r in rows]
random.Random(0).shuffle(labels)  # corrupt: every number gets another number's label
with open(bad / "truth.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    for r, (c, h) in zip(rows, labels):
        w.writerow(dict(r, category=c, harmful=h))
cfg = StudentConfig(epochs=4, check_rows=1000)
train_student(str(sim), str(out / "good"), cfg, distill=False)
train_student(str(bad), str(out / "corrupt"), cfg, distill=False)
"""


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    base = tmp_path_factory.mktemp("two_models")
    res = subprocess.run([sys.executable, "-c", TWO, str(base / "sim"), str(base / "bad"), str(base / "m")], cwd=ROOT,
                         capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    return base / "m" / "good", base / "m" / "corrupt", base / "sim"


def _snapshot(d: Path) -> dict:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.iterdir()) if p.is_file()}


@pytest.mark.slow
def test_gate_refuses_a_model_trained_on_corrupted_labels_with_the_reason(two_models):
    from trainer.evaluate import ReleaseGateError, assess, gate

    good, corrupt, sim = two_models
    assess(good, sim, gate=False)  # the published model's own report, written at its release
    with pytest.raises(ReleaseGateError) as err:
        gate(corrupt, good, data_dir=sim)
    assert "regressed on the same calls" in str(err.value)
    verdict = json.loads((corrupt / "metrics.json").read_text())["gate"]
    assert verdict["accepted"] is False and verdict["published"] == str(good)
    assert any("risk_auc_callers regressed" in r for r in verdict["reasons"])
    report = (corrupt / "report.md").read_text()
    assert "REFUSED" in report and "risk_auc_callers regressed on the same calls" in report
    compared = verdict["compared"]["risk_auc_callers"]
    assert compared["published"] > compared["candidate"] + 0.02
    assert compared["high"] < 0  # the caller-resampled interval of the difference excludes 0: a real regression
    # the CLI with --out: the same refusal, written into a copy; the candidate's own files stay as they were
    before = _snapshot(corrupt)
    out = corrupt.parent / "regate"
    cli = [sys.executable, "-m", "tools.cli", "model", "gate", "--candidate", str(corrupt), "--published", str(good),
           "--data", str(sim), "--out", str(out)]
    for _ in range(2):  # a rerun replaces its own copy
        res = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT)
        assert res.returncode == 1 and "risk_auc_callers regressed on the same calls" in res.stderr, res.stderr[-2000:]
        assert "Traceback" not in res.stderr
    assert _snapshot(corrupt) == before
    assert json.loads((out / "metrics.json").read_text())["gate"]["accepted"] is False
    res = subprocess.run(cli + ["--json"], capture_output=True, text=True, cwd=ROOT)  # refusal: verdict on stdout
    assert res.returncode == 1 and json.loads(res.stdout)["accepted"] is False, res.stderr[-2000:]
    assert f"refused {corrupt} (verdict and report in {out})" in res.stderr  # names the candidate, not the copy
    res = subprocess.run(cli[:-1] + [str(good)], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 1 and "was not made by --out" in res.stderr  # never over another model


@pytest.mark.slow
def test_a_later_gate_run_leaves_the_published_models_files_unchanged(two_models):
    from trainer.evaluate import ReleaseGateError, assess, gate

    good, corrupt, sim = two_models
    assess(good, sim, gate=False)
    before = _snapshot(good)
    assert "report.md" in before and "report.html" in before
    with pytest.raises(ReleaseGateError):
        gate(corrupt, good, data_dir=sim)
    assert _snapshot(good) == before  # report, plots, metrics and contract untouched


def test_int8_grid_snapping_is_a_fixed_point():
    """Snapped weights sit on the grid the converter derives from them, so converting changes nothing."""
    from trainer.model.convert import int8_grid_asymmetric, int8_grid_per_channel

    rng = np.random.default_rng(3)
    table = rng.normal(0.1, 0.7, (500, 4)).astype("float32")
    snapped = int8_grid_asymmetric(table)
    assert len(np.unique(snapped)) <= 256
    assert np.abs(snapped - table).max() <= (table.max() - table.min()) / 255 / 2 + 1e-6
    np.testing.assert_allclose(int8_grid_asymmetric(snapped), snapped, atol=1e-6)
    kernel = rng.normal(0, 0.5, (140, 64)).astype("float32")
    kernel[:, 3] = 0.0  # a dead unit keeps its zeros
    k = int8_grid_per_channel(kernel)
    np.testing.assert_array_equal(np.abs(k).max(0), np.abs(kernel).max(0))  # scale max|w|/127 unchanged
    steps = k / (np.abs(kernel).max(0) / 127 + (kernel.max(0) == 0))
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
    np.testing.assert_array_equal(int8_grid_per_channel(k), k)


def test_default_student_cannot_tell_callers_of_one_10k_block_apart():
    """Anti-memorisation (issue 14): the default graph sees a number only through its 5- and 8-digit
    prefixes, so two callers of one 10,000-number block get the same outputs whatever the rest of
    their digits; with per-digit embeddings they would not."""
    from callmark import model as cm
    from trainer.model.student import StudentConfig, build_keras

    facts = [{"number": n, "hour": 10, "weekday": 2} for n in ("+8613812345678", "+8613812349901",
                                                                   "+8613899999999")]
    X = cm.encode_batch(facts)
    model = build_keras(StudentConfig(dropout=0.0))
    model.get_layer("table").set_weights([np.random.default_rng(0).normal(0, 1, model.get_layer("table")
                                                                           .get_weights()[0].shape)])
    risk = np.asarray(model.predict(X, verbose=0)["risk"]).reshape(-1)
    assert risk[0] == risk[1]  # same 10k block: same prefixes
    assert risk[0] != risk[2]  # another block: other embeddings
    spelled = build_keras(StudentConfig(dropout=0.0, digit_embedding=True))
    spelled.get_layer("table").set_weights([np.random.default_rng(0).normal(0, 1, spelled.get_layer("table")
                                                                              .get_weights()[0].shape)])
    r2 = np.asarray(spelled.predict(X, verbose=0)["risk"]).reshape(-1)
    assert r2[0] != r2[1]


CALIBRATE = """
import json, sys
import numpy as np
from trainer.model import import_tensorflow
import_tensorflow()
import keras
from trainer.model.student import calibrate_risk
x = keras.Input((1,), name="x")
logit = keras.layers.Dense(1, name="risk_logit")(x)
model = keras.Model(x, {"risk": keras.layers.Activation("sigmoid")(logit)})
model.get_layer("risk_logit").set_weights([np.ones((1, 1), "float32"), np.zeros(1, "float32")])
rng = np.random.default_rng(0)
z = rng.normal(0, 2, 20000).astype("float32")
y = (rng.random(20000) < 1 / (1 + np.exp(-(0.5 * z - 1.5)))).astype("float32")  # over-confident, too high
print(json.dumps(calibrate_risk(model, {"x": z[:, None]}, y)))
"""


def test_platt_calibration_recovers_the_map_and_folds_it_into_the_risk_layer():
    res = subprocess.run([sys.executable, "-c", CALIBRATE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    cal = json.loads(res.stdout.strip().splitlines()[-1])
    assert cal["a"] == pytest.approx(0.5, abs=0.05) and cal["c"] == pytest.approx(-1.5, abs=0.1)
    assert cal["val_ece_after"] < 0.02 < cal["val_ece_before"]
