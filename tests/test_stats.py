"""Interval estimates: IQM and mean with stratified bootstrap CIs, probability of improvement."""

from __future__ import annotations

import numpy as np
import pytest

from diffplan.stats import probability_of_improvement, summarize


def test_summary_of_known_scores() -> None:
    scores = [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 100.0]]  # IQM drops the lowest and highest quarter
    s = summarize(scores, reps=500)
    assert s.iqm == pytest.approx(4.5) and s.mean == pytest.approx(128 / 8)
    assert s.seeds == 2 and s.episodes == 8 and s.seed_means == pytest.approx((2.5, 29.5))
    assert s.ci95[0] <= s.iqm <= s.ci95[1] and s.mean_ci95[0] <= s.mean <= s.mean_ci95[1]
    assert s.ci95[1] < s.mean_ci95[1]  # the outlier widens the mean's interval, not the IQM's
    assert s.to_dict()["ci95"] == list(s.ci95)


def test_intervals_are_reproducible_and_narrow_with_more_episodes() -> None:
    rng = np.random.default_rng(0)
    few, many = rng.normal(50, 10, (2, 10)), rng.normal(50, 10, (2, 400))
    assert summarize(few, reps=500, seed=3) == summarize(few, reps=500, seed=3)
    width = [np.subtract(*summarize(x, reps=500).ci95[::-1]) for x in (few, many)]
    assert width[1] < width[0] / 3


def test_probability_of_improvement() -> None:
    low, high = np.zeros((2, 5)), np.ones((3, 4))
    assert probability_of_improvement(high, low, reps=200) == (1.0, (1.0, 1.0))
    assert probability_of_improvement(low, high, reps=200)[0] == 0.0
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, (3, 50)), rng.normal(0.5, 1, (3, 50))
    p, (lo, hi) = probability_of_improvement(b, a, reps=500)
    assert 0.5 < lo <= p <= hi < 1.0


@pytest.mark.parametrize(
    ("scores", "message"),
    [([[1.0, 2.0], [3.0]], "same number of episodes"), ([], "shape (seeds, episodes)"), ([[np.nan]], "finite")],
)
def test_bad_scores_get_a_clear_error(scores: list, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        summarize(scores, reps=10)
