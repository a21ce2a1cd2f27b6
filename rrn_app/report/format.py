"""How numbers are written in every output: mean ± sd (n), differences with their interval, p-values."""

from __future__ import annotations

import math

from rrn_app.report.headline import Metric
from rrn_app.report.stats import Difference, Summary


def decimals(metric: Metric) -> int:
    return 2 if metric.scale == 100 else 3


def number(value: float, places: int, sign: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:+.{places}f}" if sign else f"{value:.{places}f}"


def summary(value: Summary, metric: Metric) -> str:
    """`46.39 ± 0.62 (4)`; one run: `46.39 (1)`; none: empty."""
    if not value.n:
        return ""
    places = decimals(metric)
    if value.n == 1:
        return f"{number(value.mean, places)} (1)"
    return f"{number(value.mean, places)} ± {number(value.sd, places)} ({value.n})"


def p_value(value: float) -> str:
    if not math.isfinite(value):
        return "p —"
    return "p<0.001" if value < 0.001 else f"p={value:.3f}"


def difference(value: Difference | None, metric: Metric) -> str:
    """`+0.05 [−1.20, +1.30] p=0.941`; fewer than two runs on a side: `n<2`."""
    if value is None:
        return "n<2"
    places = decimals(metric)
    return (f"{number(value.difference, places, True)} [{number(value.low, places, True)}, "
            f"{number(value.high, places, True)}] {p_value(value.p_value)}")


def published_value(value: float, sd: float | None, places: int) -> str:
    """A published number with as many decimals as its source prints (`1.4697`, `50.6`, `7.60 ± 0.55`)."""
    return f"{value:.{places}f} ± {sd:.{places}f}" if sd is not None else f"{value:.{places}f}"
