"""Confidence intervals across seeds, and the strategy comparison table.

For each strategy x scenario x load (x swept key) group and each metric, the mean
over seeds and the two-sided Student t interval ``mean +- t(1-a/2, n-1) s / sqrt(n)``.
The t quantile is computed exactly for integer degrees of freedom (the closed-form
CDF of Abramowitz & Stegun 26.7.3-4, inverted by bisection), so no SciPy is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..policy.errors import InvalidValue

#: The metrics summarised by default (those of the simulator's summary that vary by cell).
METRICS = (
    "wait_mean_s",
    "wait_p50_s",
    "wait_p95_s",
    "wait_p99_s",
    "latency_p50_s",
    "latency_p95_s",
    "latency_p99_s",
    "sla_attainment",
    "utilization",
    "goodput_s",
    "jain_fairness",
    "throughput_rps",
    "n_completed",
    "n_rejected",
    "n_failed",
    "n_lost",
    "overhead_us_mean",
    "overhead_us_p99",
    "erlang_c_wait_s",
)
GROUP = ("strategy", "scenario", "load")


def t_cdf_two_sided(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer ``df`` (A&S 26.7.3 and 26.7.4)."""
    if df < 1:
        raise InvalidValue("df", df, "must be >= 1")
    theta = math.atan(abs(t) / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2 == 1:
        if df == 1:
            return 2 * theta / math.pi
        term, total = math.cos(theta), math.cos(theta)
        for k in range(1, (df - 3) // 2 + 1):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 2 / math.pi * (theta + s * total)
    term, total = 1.0, 1.0
    for k in range(1, (df - 2) // 2 + 1):
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return s * total


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t with integer ``df``."""
    if not 0.5 < p < 1:
        raise InvalidValue("p", p, "must be in (0.5, 1)")
    target = 2 * p - 1
    lo, hi = 0.0, 1.0
    while t_cdf_two_sided(hi, df) < target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf_two_sided(mid, df) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13 * max(1.0, hi):
            break
    return (lo + hi) / 2


def mean_ci(values: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float, int]:
    """(mean, half-width, n) of the t interval; half-width is NaN for fewer than 2 values."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, n
    sd = float(x.std(ddof=1))
    return mean, t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n), n


def confidence_intervals(
    table: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    by: Sequence[str] | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Long table: the ``by`` columns, priority, metric, n, mean, std, ci_low, ci_high, half_width.

    ``by`` defaults to strategy, scenario, load and any swept key columns present.
    """
    if table.empty:
        return pd.DataFrame(
            columns=[
                *GROUP,
                "priority",
                "metric",
                "n",
                "mean",
                "std",
                "half_width",
                "ci_low",
                "ci_high",
            ]
        )
    by = list(by) if by is not None else [*GROUP, *swept_columns(table)]
    keys = [*by, "priority"] if "priority" in table and "priority" not in by else list(by)
    metrics = [m for m in (metrics or METRICS) if m in table]
    records = []
    for group, frame in table.groupby(keys, dropna=False, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        for metric in metrics:
            mean, hw, n = mean_ci(frame[metric].to_numpy(dtype=float), level)
            std = float(frame[metric].astype(float).std(ddof=1)) if n > 1 else math.nan
            records.append(
                {
                    **dict(zip(keys, group, strict=True)),
                    "metric": metric,
                    "n": n,
                    "mean": mean,
                    "std": std,
                    "half_width": hw,
                    "ci_low": mean - hw,
                    "ci_high": mean + hw,
                }
            )
    return pd.DataFrame.from_records(records)


def swept_columns(table: pd.DataFrame) -> list[str]:
    """The grid's extra scenario keys: the dotted columns of the tidy table."""
    return [c for c in table.columns if "." in c]


def series_labels(table: pd.DataFrame, exclude: Sequence[str] = ()) -> pd.Series:
    """One label per row: the strategy, plus the swept keys' values (``early`` binding etc.)."""
    keys = [k for k in swept_columns(table) if k not in exclude]
    labels = table["strategy"].astype(str)
    for key in keys:
        labels = labels + f" {key.rsplit('.', 1)[-1]}=" + table[key].astype(str)
    return labels


#: The comparison table's columns: (metric, heading, lower is better).
COMPARISON = (
    ("wait_mean_s", "wait mean s", True),
    ("wait_p99_s", "wait p99 s", True),
    ("latency_p99_s", "latency p99 s", True),
    ("sla_attainment", "SLA", False),
    ("utilization", "util", False),
    ("jain_fairness", "fairness", False),
    ("vs_erlang_c", "wait/ErlangC", True),
)


def comparison_table(table: pd.DataFrame, priority: str = "all") -> pd.DataFrame:
    """One row per strategy (and swept-key value): each metric's mean over its cells, and wins.

    ``wins`` counts the scenario x load groups where the row has the lowest mean
    p99 wait (every tied row wins); ``wait/ErlangC`` is the median over cells of the mean
    wait over the pooled M/M/c (late binding) wait.
    """
    rows = table[table["priority"].astype(str) == priority].copy() if "priority" in table else table
    if rows.empty:
        return pd.DataFrame()
    if "erlang_c_wait_s" in rows and "wait_mean_s" in rows:
        bound = rows["erlang_c_wait_s"].astype(float)
        rows["vs_erlang_c"] = np.where(
            bound > 0, rows["wait_mean_s"] / bound.where(bound > 0), np.nan
        )
    cols = [m for m, _, _ in COMPARISON if m in rows]
    rows["strategy"] = series_labels(rows)
    out = rows.groupby("strategy", sort=False)[cols].mean()
    if "vs_erlang_c" in out:  # a ratio: the median is not dominated by one bursty scenario
        out["vs_erlang_c"] = rows.groupby("strategy", sort=False)["vs_erlang_c"].median()
    out.insert(0, "cells", rows.groupby("strategy", sort=False)["cell_id"].nunique())
    if "wait_p99_s" in rows:
        group = [c for c in ("scenario", "load") if c in rows]
        per = rows.groupby([*group, "strategy"], dropna=False)["wait_p99_s"].mean().reset_index()
        best = per.groupby(group, dropna=False)["wait_p99_s"].transform("min")
        winners = per.loc[per["wait_p99_s"] <= best * (1 + 1e-9), "strategy"]  # ties all win
        out["wins"] = winners.value_counts().reindex(out.index).fillna(0).astype(int)
    sort = "wait_mean_s" if "wait_mean_s" in out else cols[0]
    out = out.sort_values(sort)
    return out.rename(columns={m: h for m, h, _ in COMPARISON})


def format_comparison(comp: pd.DataFrame) -> str:
    """The comparison table as fixed-width text for the terminal."""
    if comp.empty:
        return "(no finished cells)"
    return comp.to_string(float_format=lambda v: f"{v:.4g}")
