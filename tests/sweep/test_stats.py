from __future__ import annotations

import math

import pandas as pd
import pytest

from gpu_router.policy.errors import InvalidValue
from gpu_router.sweep.stats import (
    comparison_table,
    confidence_intervals,
    format_comparison,
    mean_ci,
    t_quantile,
)


@pytest.mark.parametrize(
    ("df", "expected"),  # two-sided 95% critical values, from published t tables
    [
        (1, 12.7062047362),
        (2, 4.3026527297),
        (3, 3.1824463053),
        (4, 2.7764451052),
        (9, 2.2621571628),
        (29, 2.0452296421),
        (100, 1.9839715185),
    ],
)
def test_t_quantile_matches_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-9)


def test_t_quantile_other_levels():
    assert t_quantile(0.995, 4) == pytest.approx(4.6040948714, abs=1e-9)
    assert t_quantile(0.95, 10) == pytest.approx(1.8124611228, abs=1e-9)
    with pytest.raises(InvalidValue):
        t_quantile(0.3, 4)


def test_mean_ci_exact_values():
    assert mean_ci([1, 2, 3, 4]) == pytest.approx((2.5, 2.054260256760473, 4), abs=1e-12)
    assert mean_ci([10.0, 12.0]) == pytest.approx((11.0, 12.7062047362, 2), abs=1e-9)
    mean, hw, n = mean_ci([5.0])
    assert (mean, n) == (5.0, 1) and math.isnan(hw)
    mean, hw, n = mean_ci([float("nan"), 1.0, 3.0])
    assert (mean, n) == (2.0, 2) and hw == pytest.approx(12.7062047362, abs=1e-9)


def table():
    rows = []
    for strategy, waits in {"a": [1.0, 2.0, 3.0, 4.0], "b": [0.5, 0.5, 0.5, 0.5]}.items():
        for seed, w in enumerate(waits, 1):
            for prio in ("5", "all"):
                rows.append(
                    {
                        "cell_id": f"{strategy}{seed}",
                        "strategy": strategy,
                        "scenario": "s",
                        "load": 0.9,
                        "seed": seed,
                        "priority": prio,
                        "wait_mean_s": w,
                        "wait_p99_s": 2 * w,
                        "utilization": 0.8,
                        "erlang_c_wait_s": 0.5,
                    }
                )
    return pd.DataFrame(rows)


def test_confidence_intervals_per_group():
    ci = confidence_intervals(table(), metrics=["wait_mean_s", "utilization"])
    row = ci[(ci.strategy == "a") & (ci.priority == "all") & (ci.metric == "wait_mean_s")].iloc[0]
    assert (row["n"], row["mean"]) == (4, 2.5)
    assert row["half_width"] == pytest.approx(2.054260256760473, abs=1e-12)
    assert row["ci_low"] == pytest.approx(2.5 - 2.054260256760473)
    b = ci[(ci.strategy == "b") & (ci.metric == "wait_mean_s")]
    assert (b["half_width"] == 0).all() and len(b) == 2
    assert set(ci.columns) >= {
        "strategy",
        "scenario",
        "load",
        "priority",
        "metric",
        "n",
        "mean",
        "std",
        "half_width",
        "ci_low",
        "ci_high",
    }


def test_comparison_table():
    comp = comparison_table(table())
    assert list(comp.index) == ["b", "a"]
    assert comp.loc["a", "wait mean s"] == 2.5
    assert comp.loc["b", "wait/ErlangC"] == 1.0
    assert comp.loc["a", "wait/ErlangC"] == 5.0
    assert comp.loc["b", "wins"] == 1 and comp.loc["a", "wins"] == 0
    assert comp.loc["a", "cells"] == 4
    text = format_comparison(comp)
    assert "wait p99 s" in text and "wins" in text
    assert format_comparison(comparison_table(table().iloc[:0])) == "(no finished cells)"


def test_comparison_ties_all_win():
    t = table()
    t["wait_p99_s"] = 1.0
    comp = comparison_table(t)
    assert comp.loc["a", "wins"] == 1 and comp.loc["b", "wins"] == 1
