"""fer_analysis.stats: paired CIs over seeds and the binomial CI of a test accuracy."""

import math

import numpy as np
import pytest

from fer_analysis.stats import accuracy_ci, binomial_ci, mean_sd, paired_difference


def test_paired_t_interval_matches_hand_computation():
    # d = [1, 2, 3]: mean 2, sd 1, se 1/sqrt(3); t(0.975, 2) = 4.302653
    half = 4.302653 / math.sqrt(3)
    d = paired_difference([0, 0, 0], [1, 2, 3])
    assert d.mean == pytest.approx(2.0)
    assert d.low == pytest.approx(2 - half, abs=1e-5) and d.high == pytest.approx(2 + half, abs=1e-5)
    assert not d.significant and d.format().endswith("n.s.")
    shifted = paired_difference([0, 0, 0], [2, 3, 4])  # b - a, not a - b
    assert shifted.mean == pytest.approx(3.0) and shifted.low == pytest.approx(3 - half, abs=1e-5)
    assert shifted.significant and "n.s." not in shifted.format()


def test_direction_is_b_minus_a():
    d = paired_difference([5, 6, 7], [1, 2, 3.5])
    assert d.mean < 0 and d.high < 0 and d.significant


def test_pairing_removes_the_seed_effect():
    # a large seed effect shared by both arms, a small consistent gain: paired -> significant
    seed_effect = np.array([0.0, 10.0, -8.0, 4.0])
    a = 50 + seed_effect
    b = a + np.array([1.0, 1.2, 0.9, 1.1])
    assert paired_difference(a, b).significant


def test_planted_difference_found_and_null_kept_at_the_nominal_rate():
    rng = np.random.default_rng(0)
    sims, n = 2000, 5
    false_pos = sum(paired_difference(rng.normal(0, 1, n), rng.normal(0, 1, n)).significant for _ in range(sims))
    found = sum(paired_difference(rng.normal(0, 1, n), rng.normal(3, 1, n)).significant for _ in range(sims))
    assert 0.03 < false_pos / sims < 0.07  # 95% interval: ~5% false claims
    assert found / sims > 0.9


def test_single_pair_and_nans():
    one = paired_difference([1.0], [3.0])
    assert one.n == 1 and one.mean == 2.0 and not one.significant and "(n=1)" in one.format()
    d = paired_difference([1.0, math.nan, 2.0], [2.0, 5.0, 3.0])
    assert d.n == 2 and d.mean == pytest.approx(1.0)
    assert paired_difference([], []).format() == "–"
    with pytest.raises(ValueError):
        paired_difference([1, 2], [1])


def test_wilson_interval_matches_hand_computation():
    lo, hi = binomial_ci(50, 100)
    assert lo == pytest.approx(40.383, abs=1e-2) and hi == pytest.approx(59.617, abs=1e-2)
    lo0, hi0 = binomial_ci(0, 20)
    assert lo0 == pytest.approx(0.0, abs=1e-9) and 0 < hi0 < 20
    assert accuracy_ci(50.0, 100) == pytest.approx((lo, hi))
    assert all(math.isnan(x) for x in binomial_ci(0, 0))
    with pytest.raises(ValueError):
        binomial_ci(11, 10)


def test_mean_sd():
    assert mean_sd([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0, 3))
    assert mean_sd([4.0, math.nan]) == (4.0, 0.0, 1)
