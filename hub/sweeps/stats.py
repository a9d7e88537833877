"""Aggregate scores across seeds the way rliable does (Agarwal et al., 2021), with numpy only.

    iqm([...])                                    interquartile mean: the mean of the middle 50% of the runs
    stratified_bootstrap_ci([task_a, task_b])     95% percentile interval of a statistic, runs resampled per task

The IQM is a 25% trimmed mean (scipy.stats.trim_mean(x, 0.25) over all runs: floor(n/4) values cut from each end).
The stratified bootstrap resamples, in each stratum (a task, a dataset), that stratum's runs with replacement
(same count), pools the strata, recomputes the statistic, and takes the percentile interval over the resamples.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Statistic = Callable[[np.ndarray], float]


def iqm(scores: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean of `scores` (all values pooled): floor(n/4) cut from each end, the rest averaged."""
    x = np.sort(np.asarray(scores, dtype=float).ravel())
    if x.size == 0:
        raise ValueError("iqm of no scores")
    cut = int(0.25 * x.size)
    return float(x[cut:x.size - cut].mean())


def stratified_bootstrap_ci(strata: Sequence[Sequence[float] | np.ndarray], statistic: Statistic = iqm,
                            reps: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """The `level` percentile bootstrap interval of `statistic` over the pooled strata, each stratum's runs
    resampled with replacement within the stratum. Deterministic for a given `seed`."""
    groups = [np.asarray(s, dtype=float).ravel() for s in strata]
    groups = [g for g in groups if g.size]
    if not groups:
        raise ValueError("a bootstrap interval of no scores")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    stats = np.empty(reps)
    for r in range(reps):
        sample = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])
        stats[r] = statistic(sample)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


def iqm_ci(scores: Sequence[float] | np.ndarray, reps: int = 2000, level: float = 0.95,
           seed: int = 0) -> tuple[float, float, float]:
    """(IQM, CI low, CI high) of one arm's scores across seeds (one stratum)."""
    return (iqm(scores), *stratified_bootstrap_ci([scores], iqm, reps, level, seed))


def auc(points: Sequence[tuple[float, float]]) -> float:
    """Normalised area under a learning curve of (step, score) points: the trapezoid area divided by the steps
    spanned (the mean score over training); a single point is its own score."""
    pts = sorted(points)
    if not pts:
        raise ValueError("the area under no curve")
    x = np.asarray([p[0] for p in pts], dtype=float)
    y = np.asarray([p[1] for p in pts], dtype=float)
    if x.size == 1 or x[-1] == x[0]:
        return float(y.mean())
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))
