"""Student: train a tiny model (in a child process: TensorFlow never shares a process with LiteRT),
then test the exported artefact: size, built-in int8 ops, LiteRT vs Keras, test vectors, report, gate."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

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


pytestmark = pytest.mark.slow


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
    assert check["max_prob_diff"] <= 0.06  # int8 quantisation error seen on tiny data; see docs/models.md
    assert metrics["data"]["distilled"] is True


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


def test_test_vectors_replay_through_litert(tiny):
    model, _ = tiny
    code = "import sys, json; from callmark.model import replay_test_vectors; print(json.dumps(replay_test_vectors(sys.argv[1])))"
    res = subprocess.run([sys.executable, "-c", code, str(model)], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert out["vectors"] >= 30 and out["max_diff"] < 1e-6  # same runtime: bit-exact


def test_evaluation_report_and_gate(tiny, tmp_path):
    from trainer.evaluate import ReleaseGateError, evaluate, gate

    model, sim = tiny
    cand = tmp_path / "cand"
    shutil.copytree(model, cand)
    metrics = json.loads((cand / "metrics.json").read_text())
    metrics["config"]["max_prob_diff"] = 0.06  # tiny training data: see test_artefact_files_size_and_checks
    (cand / "metrics.json").write_text(json.dumps(metrics))
    m = evaluate(cand, sim, published_dir=model)
    assert 0.5 < m["risk_auc"] <= 1
    assert m["published"]["risk_auc"] == pytest.approx(m["risk_auc"])  # same file, same calls
    report = (cand / "report.md").read_text()
    for png in ("roc_pr.png", "confusion.png", "calibration.png"):
        assert (cand / png).stat().st_size > 1000 and png in report
    assert "| threshold |" in report and "published" in report
    evaluate(model, sim, plots=False)
    assert gate(cand, model, margin=0.01)["compared"]["risk_auc"]["candidate"] == pytest.approx(m["risk_auc"])
    # a regression beyond the margin is refused
    metrics = json.loads((cand / "metrics.json").read_text())
    metrics["evaluation"]["risk_auc"] -= 0.2
    (cand / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ReleaseGateError, match="risk_auc regressed"):
        gate(cand, model, margin=0.01)
    # a contract break is refused
    contract = json.loads((cand / "contract.json").read_text())
    contract["inputs"][2]["fields"] = contract["inputs"][2]["fields"][::-1]
    (cand / "contract.json").write_text(json.dumps(contract))
    with pytest.raises(ReleaseGateError, match="contract"):
        gate(cand, model, margin=0.01)
