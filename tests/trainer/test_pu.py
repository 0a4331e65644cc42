"""Elkan & Noto's PU correction: recovers P(positive | x) under SCAR labelling, and says what is wrong."""
import numpy as np
import pytest

from trainer import pu


def _scar(n=40_000, c=0.3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1))
    f = 1 / (1 + np.exp(-12.0 * (x[:, 0] - 0.3)))  # true P(positive | x): e1 assumes f = 1 where labelled
    positive = rng.random(n) < f
    labelled = positive & (rng.random(n) < c)  # selected completely at random among positives
    return x, f, labelled


def test_label_frequency_and_correction_recover_the_positive_probability():
    x, f, labelled = _scar()
    half = len(x) // 2
    # a calibrated classifier of P(labelled | x): the labelled share per x-quantile bin of the first half
    edges = np.quantile(x[:half, 0], np.linspace(0, 1, 41)[1:-1])
    rate = np.bincount(np.digitize(x[:half, 0], edges), weights=labelled[:half], minlength=40) \
        / np.bincount(np.digitize(x[:half, 0], edges), minlength=40)
    s = rate[np.digitize(x[half:, 0], edges)]  # held-out P(labelled | x)
    c = pu.label_frequency(s, labelled[half:])
    assert abs(c - 0.3) < 0.05
    before = np.abs(s - f[half:]).mean()
    after = np.abs(pu.correct(s, c) - f[half:]).mean()
    assert after < 0.05 < before


def test_correct_clips_to_probabilities():
    out = pu.correct(np.array([0.0, 0.2, 0.5, 0.9]), 0.5)
    assert out.tolist() == [0.0, 0.4, 1.0, 1.0]


@pytest.mark.parametrize("c", [0.0, -0.1, 1.5])
def test_correct_refuses_a_label_frequency_outside_0_1(c):
    with pytest.raises(ValueError, match="label frequency c must be in"):
        pu.correct(np.array([0.1]), c)


def test_label_frequency_needs_a_labelled_row_and_matching_shapes():
    with pytest.raises(ValueError, match="no labelled row"):
        pu.label_frequency(np.array([0.1, 0.2]), np.array([False, False]))
    with pytest.raises(ValueError, match="differ in shape"):
        pu.label_frequency(np.array([0.1, 0.2]), np.array([True]))
    assert pu.label_frequency(np.array([0.0, 0.9]), np.array([True, False])) == 1e-3
