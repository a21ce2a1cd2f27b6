"""Mean, sample standard deviation, and Welch's comparison of two groups of seeds (scipy).

Welch's t-test does not assume equal variances; its degrees of freedom are Welch–Satterthwaite's,
df = (a/n_a + b/n_b)² / ((a/n_a)²/(n_a−1) + (b/n_b)²/(n_b−1)) with a, b the sample variances, and the 95%
confidence interval of the difference of means is diff ± t_{0.975, df} · sqrt(a/n_a + b/n_b).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Summary:
    """n values: their mean and sample standard deviation (ddof=1; nan for a single value)."""

    n: int
    mean: float
    sd: float


@dataclass(frozen=True)
class Difference:
    """mean(values) − mean(baseline), its confidence interval, Welch's two-sided p-value and degrees of freedom."""

    difference: float
    low: float
    high: float
    p_value: float
    df: float
    confidence: float = 0.95


def summarize(values) -> Summary:
    data = np.asarray(list(values), dtype=float)
    if data.size == 0:
        return Summary(0, math.nan, math.nan)
    sd = float(data.std(ddof=1)) if data.size > 1 else math.nan
    return Summary(int(data.size), float(data.mean()), sd)


def welch(values, baseline, confidence: float = 0.95) -> Difference | None:
    """Welch's t-test of values against baseline; None when either side has fewer than two values.

    With no spread on either side the interval is the difference itself and the p-value is nan (undefined).
    """
    a, b = np.asarray(list(values), dtype=float), np.asarray(list(baseline), dtype=float)
    if a.size < 2 or b.size < 2:
        return None
    difference = float(a.mean() - b.mean())
    if a.var(ddof=1) == 0 and b.var(ddof=1) == 0:
        return Difference(difference, difference, difference, math.nan, math.nan, confidence)
    share_a, share_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    error = math.sqrt(share_a + share_b)
    df = (share_a + share_b) ** 2 / (share_a ** 2 / (a.size - 1) + share_b ** 2 / (b.size - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p_value = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return Difference(difference, difference - half, difference + half, p_value, float(df), confidence)
