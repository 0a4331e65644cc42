"""Consensus on the project simulator: calibration, honest numbers, attacks (slow)."""
import pytest

from tools.bench.consensus import run_sim
from tools.simulate import simulate


@pytest.mark.slow
def test_simulator_quality_calibration_and_attacks(tmp_path):
    d = tmp_path / "sim"
    simulate(d, days=14, users=3000, seed=7, fake_blocs=1, fake_bloc_size=100, colluder_blocs=1)
    r = run_sim(d)
    ours, plain, major = r["defended EM"], r["plain EM"], r["majority"]
    assert ours["attacked"] >= 2 and ours["attacked_published_harmful"] == 0
    assert ours["fpr_honest"] <= 0.001 and ours["precision_harmful"] >= 0.95
    assert ours["ece"] < 0.2 and ours["ece"] < major["ece"]
    assert ours["published_harmful"] >= 10
    assert plain["attacked_published_harmful"] >= ours["attacked_published_harmful"]
