"""Interval estimates of evaluation scores, as the field reports them: mean and interquartile mean
(IQM) with 95 % stratified bootstrap confidence intervals, and the probability of improvement.

The estimates come from rliable (Agarwal et al., "Deep RL at the Edge of the Statistical
Precipice", NeurIPS 2021; extra ``stats``). One dataset's scores are a matrix of training seeds ×
evaluation episodes; rliable's strata ("tasks") are the training seeds, so every bootstrap sample
keeps each seed's share of episodes and resamples the episodes within it. The probability of
improvement compares every episode of one method with every episode of the other
(Mann-Whitney U / (n·m)), bootstrapped independently per method.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ScoreSummary:
    """Point and interval estimates of one method's scores on one dataset.

    Attributes:
        mean: mean over all episodes of all seeds.
        iqm: interquartile mean over all episodes of all seeds (the mean of the middle 50 %).
        ci95: 95 % stratified bootstrap confidence interval of the IQM.
        mean_ci95: 95 % stratified bootstrap confidence interval of the mean.
        seeds: number of training seeds.
        episodes: number of evaluation episodes in all.
        seed_means: each training seed's mean, in seed order (the spread between seeds).
    """

    mean: float
    iqm: float
    ci95: tuple[float, float]
    mean_ci95: tuple[float, float]
    seeds: int
    episodes: int
    seed_means: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples as lists)."""
        out = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Reproducible rliable bootstraps: its stratified resampling draws from NumPy's global generator
    (the ``random_state`` it passes to arch is not used for the indices), so that generator is seeded
    here and restored afterwards; arch's FutureWarning about ``random_state`` is silenced."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        np.random.set_state(state)


def _rliable() -> tuple[Any, Any]:
    try:
        from rliable import library, metrics
    except ImportError as err:
        raise ImportError(
            f"interval estimates need rliable: pip install 'diffplan[stats]' (import failed: {err})"
        ) from err
    return library, metrics


def _matrix(scores: Sequence[Sequence[float]] | np.ndarray, what: str) -> np.ndarray:
    """``(episodes, seeds)`` float matrix of per-seed episode scores, checked."""
    try:
        x = np.asarray(scores, dtype=float)
    except ValueError as err:  # ragged
        raise ValueError(f"expected {what} as the same number of episodes for every seed, got {err}") from err
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"expected {what} of shape (seeds, episodes) with both > 0, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"expected finite {what}, got {int((~np.isfinite(x)).sum())} non-finite values")
    return x.T


def summarize(scores: Sequence[Sequence[float]] | np.ndarray, *, reps: int = 10_000, seed: int = 0) -> ScoreSummary:
    """Mean and IQM of one method's scores with stratified bootstrap 95 % confidence intervals.

    Args:
        scores: normalized episode scores, shape ``(seeds, episodes)``: one row per training seed.
        reps: bootstrap replications.
        seed: seed of the bootstrap (the intervals are reproducible).

    Returns:
        The estimates.

    Raises:
        ValueError: empty, ragged or non-finite scores.
    """
    library, metrics = _rliable()
    x = _matrix(scores, "scores")

    def aggregates(m: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(m), metrics.aggregate_mean(m)])

    with _seeded(seed):
        points, intervals = library.get_interval_estimates(
            {"x": x}, aggregates, reps=reps, random_state=np.random.RandomState(seed)
        )
    (iqm, mean), ci = points["x"], intervals["x"]
    return ScoreSummary(
        mean=float(mean),
        iqm=float(iqm),
        ci95=(float(ci[0, 0]), float(ci[1, 0])),
        mean_ci95=(float(ci[0, 1]), float(ci[1, 1])),
        seeds=x.shape[1],
        episodes=x.size,
        seed_means=tuple(float(v) for v in x.mean(axis=0)),
    )


def probability_of_improvement(
    x: Sequence[Sequence[float]] | np.ndarray,
    y: Sequence[Sequence[float]] | np.ndarray,
    *,
    reps: int = 10_000,
    seed: int = 0,
) -> tuple[float, tuple[float, float]]:
    """P(X > Y): the chance that an episode of method X scores above one of method Y, with a 95 % CI.

    Args:
        x: method X's scores, shape ``(seeds, episodes)``.
        y: method Y's scores, shape ``(seeds, episodes)`` (any number of seeds and episodes).
        reps: bootstrap replications.
        seed: seed of the bootstrap.

    Returns:
        ``(probability, (low, high))``; 0.5 means neither is better.
    """
    library, metrics = _rliable()
    flat_x = _matrix(x, "scores of X").reshape(-1, 1)
    flat_y = _matrix(y, "scores of Y").reshape(-1, 1)
    with _seeded(seed):
        points, intervals = library.get_interval_estimates(
            {"xy": [flat_x, flat_y]},
            metrics.probability_of_improvement,
            reps=reps,
            random_state=np.random.RandomState(seed),
        )
    ci = np.asarray(intervals["xy"]).reshape(-1)
    return float(points["xy"]), (float(ci[0]), float(ci[1]))
