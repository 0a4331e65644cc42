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
    # the published confidence is a careful reviewer's (docs/consensus.md step 9); the simulator's
    # reporters are independent given the truth, which is where the posterior itself is right:
    # check both, the posterior against the earlier bound
    assert ours["ece"] < 0.25 and ours["ece"] < major["ece"] / 2
    posterior = run_sim(d, {"confidence": "posterior"})["defended EM"]
    assert posterior["ece"] < 0.2
    assert ours["published_harmful"] >= 10
    # the reviewer publishes fewer split numbers (32 against 38 here), never more
    assert 0.8 * posterior["published_harmful"] <= ours["published_harmful"]
    assert ours["published_harmful"] <= posterior["published_harmful"]
    assert plain["attacked_published_harmful"] >= ours["attacked_published_harmful"]
