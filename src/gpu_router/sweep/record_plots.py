"""Figures from the cells' per-request records and timelines: the latency CDF and the
failure timeline, and how the scenario to draw is chosen. Times in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import results as res
from .plot_style import legend, rows_of, strategy_colors, strategy_styles


def cells(
    out: Path, table: pd.DataFrame, scenario: str | None, load: float | None
) -> tuple[pd.DataFrame, str | None, float | None]:
    rows = rows_of(table)
    if scenario is None:
        scenario = rows["scenario"].iloc[0] if len(rows) else None
    rows = rows[rows["scenario"] == scenario]
    loads = sorted(rows["load"].dropna().unique())
    if load is None and loads:
        load = max((x for x in loads if x <= 0.9), default=loads[0])
    if load is not None:
        rows = rows[np.isclose(rows["load"], load)]
    return rows, scenario, load


def latency_cdf_figure(
    out: str | Path,
    scenario: str | None = None,
    load: float | None = None,
    column: str = "latency_s",
) -> Figure:
    """Empirical CDF of per-request latency (all seeds pooled) per strategy."""
    out = Path(out)
    rows, scenario, load = cells(out, res.load_results(out), scenario, load)
    strategies = list(dict.fromkeys(rows["series"]))
    colors, styles = strategy_colors(strategies), strategy_styles(strategies)
    fig = Figure(figsize=(6.5 + (2.8 if len(strategies) > 6 else 0), 4.2), layout="constrained")
    ax = fig.subplots()
    for strategy in strategies:
        ids = rows.loc[rows["series"] == strategy, "cell_id"].unique()
        vals = [
            pd.read_parquet(res.cell_dir(out, c) / "requests.parquet", columns=[column])
            for c in ids
            if (res.cell_dir(out, c) / "requests.parquet").is_file()
        ]
        x = np.sort(pd.concat(vals)[column].dropna().to_numpy(float)) if vals else np.array([])
        if x.size == 0:
            continue
        ax.step(
            x,
            np.arange(1, x.size + 1) / x.size,
            where="post",
            color=colors[strategy],
            ls=styles[strategy],
            label=f"{strategy} (p99 {np.quantile(x, 0.99):.3g} s)",
        )
    ax.set_xscale("log")
    ax.set_xlabel(column.replace("_s", "") + " (s, log)")
    ax.set_ylabel("fraction of requests")
    where = f"{scenario}" + (f", load {load:g}" if load else "")
    ax.set_title(f"{column.replace('_s', '')} CDF: {where}")
    ax.grid(alpha=0.3, which="both")
    legend(fig, [ax], len(strategies))
    return fig


def contrasting_scenario(table: pd.DataFrame, metric: str = "latency_p99_s") -> str | None:
    """The scenario where the strategies differ most in ``metric`` (relative spread)."""
    rows = rows_of(table)
    if rows.empty or metric not in rows:
        return None
    per = rows.groupby(["scenario", "series"])[metric].mean().groupby(level=0)
    spread = (per.max() - per.min()) / per.mean().abs().replace(0, np.nan)
    return str(spread.fillna(0).idxmax())


def failure_scenario(table: pd.DataFrame) -> str | None:
    """The scenario to draw a failure timeline for: one named like a failure, if any."""
    names = list(dict.fromkeys(rows_of(table)["scenario"]))
    for hint in ("failure", "fault", "crash"):
        for name in names:
            if hint in name:
                return name
    return None


def failure_timeline_figure(
    out: str | Path, scenario: str | None = None, load: float | None = None, seed: int | None = None
) -> Figure:
    """Queue length, GPUs up and re-routed requests over time, one line per strategy."""
    out = Path(out)
    table = res.load_results(out)
    scenario = scenario or failure_scenario(table) or rows_of(table)["scenario"].iloc[0]
    rows, scenario, load = cells(out, table, scenario, load)
    seed = int(rows["seed"].min()) if seed is None and len(rows) else seed
    rows = rows[rows["seed"] == seed]
    colors = strategy_colors(list(dict.fromkeys(rows["series"])))
    fig = Figure(figsize=(8, 6.5), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    for _, row in rows.iterrows():
        path = res.cell_dir(out, row["cell_id"]) / "timeline.parquet"
        if not path.is_file():
            continue
        tl = pd.read_parquet(path)
        if tl.empty:
            continue
        c = colors[row["series"]]
        axes[0].step(tl["t"], tl["queue_length"], where="post", color=c, lw=1, label=row["series"])
        axes[1].step(tl["t"], tl["gpus_up"], where="post", color=c, lw=1)
        axes[2].step(tl["t"], tl["rerouted"], where="post", color=c, lw=1)
    for ax, label in zip(axes, ("queue length", "GPUs up", "re-routed"), strict=True):
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[2].set_xlabel("simulated time (s)")
    axes[0].legend(fontsize=7, ncols=3)
    axes[0].set_title(
        f"failure timeline: {scenario}" + (f", load {load:g}" if load else "") + f", seed {seed}"
    )
    return fig
