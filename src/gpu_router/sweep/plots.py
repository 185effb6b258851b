"""Figures from a sweep result directory, as PNG and SVG (matplotlib, no pyplot state).

Each ``*_figure`` function returns a ``matplotlib.figure.Figure`` (the dashboard
shows them as they are); ``write_all(DIR)`` saves every one that the sweep has data
for under ``DIR/figures``. Summary figures read the tidy table (priority "all" unless
asked); the latency CDF and the failure timeline read the cells' per-request records.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import results as res
from .plot_style import (
    FORMATS,
    LABELS,
    legend,
    panel_per_scenario,
    rows_of,
    save,
    strategy_colors,
)
from .record_plots import (
    contrasting_scenario,
    failure_scenario,
    failure_timeline_figure,
    latency_cdf_figure,
)
from .stats import mean_ci, swept_columns


def metric_vs_load_figure(
    table: pd.DataFrame,
    metric: str,
    *,
    priority: str = "all",
    bound: str | None = None,
    log: bool = False,
) -> Figure:
    """``metric`` against load per strategy (mean and 95% CI over seeds), one panel per scenario.

    ``bound`` names a column drawn as a dashed reference line (the Erlang C wait).
    """
    rows = rows_of(table, priority).dropna(subset=["load"])
    scenarios, strategies, colors, styles, fig, axes = panel_per_scenario(rows)
    for ax, scenario in zip(axes, scenarios, strict=False):
        sub = rows[rows["scenario"] == scenario]
        for strategy in strategies:
            s = sub[sub["series"] == strategy]
            if s.empty:
                continue
            stats = [(load, *mean_ci(g[metric].to_numpy(float))) for load, g in s.groupby("load")]
            x, mean, hw = (np.array([r[i] for r in stats], float) for i in range(3))
            hw = np.nan_to_num(hw)
            # on a log axis an interval reaching 0 is drawn down to 1% of the mean
            low = np.minimum(hw, 0.99 * np.abs(mean)) if log else hw
            ax.errorbar(
                x,
                mean,
                yerr=[low, hw],
                marker="o",
                ms=3,
                capsize=2,
                color=colors[strategy],
                ls=styles[strategy],
                label=strategy,
            )
        if bound and bound in sub and sub[bound].notna().any():
            b = sub.groupby("load")[bound].mean()
            ax.plot(
                b.index,
                b.to_numpy(),
                color="black",
                ls=(0, (6, 2)),
                lw=2,
                label="Erlang C mean wait (pooled M/M/c)",
            )
        ax.set_title(scenario)
        ax.set_xlabel("offered load (utilization)")
        ax.set_ylabel(LABELS.get(metric, metric) + ("" if priority == "all" else f", p{priority}"))
        if log:
            positive = sub[metric].astype(float) > 0
            ax.set_yscale(
                "log" if positive.all() else "symlog",
                **({} if positive.all() else {"linthresh": 1e-3}),
            )
        ax.grid(alpha=0.3)
    legend(fig, axes, len(strategies))
    return fig


def metric_vs_key_figure(
    table: pd.DataFrame, key: str, metric: str, *, priority: str = "all", log_x: bool = True
) -> Figure:
    """``metric`` against a swept scenario key (fleet size, fault rate) per strategy."""
    rows = rows_of(table, priority, exclude=[key])
    scenarios, series, colors, styles, fig, axes = panel_per_scenario(rows)
    for ax, scenario in zip(axes, scenarios, strict=False):
        sub = rows[rows["scenario"] == scenario]
        for name in series:
            s = sub[sub["series"] == name]
            stats = [(x, *mean_ci(g[metric].to_numpy(float))) for x, g in s.groupby(key, sort=True)]
            if not stats:
                continue
            x, mean, hw = (np.array([r[i] for r in stats], float) for i in range(3))
            ax.errorbar(
                x,
                mean,
                yerr=np.nan_to_num(hw),
                marker="o",
                ms=3,
                capsize=2,
                color=colors[name],
                ls=styles[name],
                label=name,
            )
        if log_x and (sub[key].astype(float) > 0).all():
            ax.set_xscale("log")
        ax.set_title(scenario)
        ax.set_xlabel(key)
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.grid(alpha=0.3)
    legend(fig, axes, len(series))
    return fig


def wait_vs_load_figure(table: pd.DataFrame, priority: str = "all") -> Figure:
    """p99 wait against load per strategy, with the pooled M/M/c (Erlang C) mean wait."""
    fig = metric_vs_load_figure(
        table, "wait_p99_s", priority=priority, bound="erlang_c_wait_s", log=True
    )
    fig.suptitle("p99 wait vs load (dashed: Erlang C mean wait,\nthe late-binding reference)")
    return fig


def wait_mean_vs_load_figure(table: pd.DataFrame, priority: str = "all") -> Figure:
    """Mean wait against load per strategy, against its closed-form bound (Erlang C)."""
    fig = metric_vs_load_figure(
        table, "wait_mean_s", priority=priority, bound="erlang_c_wait_s", log=True
    )
    fig.suptitle("mean wait vs load (dashed: Erlang C, pooled M/M/c)")
    return fig


def utilization_vs_load_figure(table: pd.DataFrame) -> Figure:
    fig = metric_vs_load_figure(table, "utilization")
    fig.suptitle("fleet utilization vs offered load")
    return fig


def sla_heatmap_figure(table: pd.DataFrame, priority: str = "all") -> Figure:
    """SLA attainment, strategy x scenario (mean over loads and seeds)."""
    rows = rows_of(table, priority)
    grid = rows.pivot_table(
        index="series", columns="scenario", values="sla_attainment", aggfunc="mean", sort=False
    )
    fig = Figure(
        figsize=(1.2 * grid.shape[1] + 3.5, 0.45 * grid.shape[0] + 1.8), layout="constrained"
    )
    ax = fig.subplots()
    im = ax.imshow(grid.to_numpy(float), cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=30, ha="right")
    ax.set_yticks(range(grid.shape[0]), grid.index)
    for (i, j), v in np.ndenumerate(grid.to_numpy(float)):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="SLA attainment")
    ax.set_title("SLA attainment (mean over loads and seeds)")
    return fig


def fairness_figure(table: pd.DataFrame) -> Figure:
    """Jain's fairness index over users per strategy (mean and 95% CI), grouped by scenario."""
    rows = rows_of(table)
    scenarios = list(dict.fromkeys(rows["scenario"]))
    strategies = list(dict.fromkeys(rows["series"]))
    colors = strategy_colors(strategies)
    fig = Figure(
        figsize=(max(6.0, 1.1 * len(scenarios) * len(strategies) * 0.35 + 3), 4.0),
        layout="constrained",
    )
    ax = fig.subplots()
    width = 0.8 / max(1, len(strategies))
    for k, strategy in enumerate(strategies):
        stats = [
            mean_ci(
                rows[(rows.scenario == sc) & (rows.series == strategy)]["jain_fairness"].to_numpy(
                    float
                )
            )
            for sc in scenarios
        ]
        x = np.arange(len(scenarios)) + (k - (len(strategies) - 1) / 2) * width
        ax.bar(
            x,
            [s[0] for s in stats],
            width,
            yerr=np.nan_to_num([s[1] for s in stats]),
            color=colors[strategy],
            label=strategy,
            capsize=2,
        )
    ax.set_xticks(range(len(scenarios)), scenarios, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(LABELS["jain_fairness"])
    ax.set_title("fairness between users per strategy")
    fig.legend(
        *ax.get_legend_handles_labels(),
        loc="outside lower center",
        fontsize=7,
        ncols=min(5, len(strategies)),
    )
    return fig


def write_all(out: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Every figure the sweep has data for, under ``DIR/figures``; returns the files."""
    out = Path(out)
    table = res.load_results(out)
    figs = out / "figures"
    written: list[Path] = []
    if table.empty:
        return written
    has_loads = table["load"].notna().any() and table["load"].nunique() > 1
    written += save(
        latency_cdf_figure(out, contrasting_scenario(table)), figs / "latency_cdf", formats
    )
    if has_loads:
        written += save(wait_vs_load_figure(table), figs / "wait_p99_vs_load", formats)
        written += save(wait_mean_vs_load_figure(table), figs / "wait_mean_vs_load", formats)
        written += save(utilization_vs_load_figure(table), figs / "utilization_vs_load", formats)
    for key in swept_columns(table):
        if table[key].nunique() > 1 and pd.api.types.is_numeric_dtype(table[key]):
            stem = key.replace(".", "_")
            for metric in ("wait_p99_s", "utilization", "overhead_us_p99"):
                if metric in table:
                    written += save(
                        metric_vs_key_figure(table, key, metric),
                        figs / f"{metric}_vs_{stem}",
                        formats,
                    )
    if "sla_attainment" in table:
        written += save(sla_heatmap_figure(table), figs / "sla_heatmap", formats)
    if "jain_fairness" in table:
        written += save(fairness_figure(table), figs / "fairness", formats)
    scenario = failure_scenario(table)
    if scenario is not None:
        written += save(failure_timeline_figure(out, scenario), figs / "failure_timeline", formats)
    return written
