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
from .stats import mean_ci, series_labels, swept_columns

FORMATS = ("png", "svg")
LABELS = {
    "wait_mean_s": "mean wait (s)",
    "wait_p99_s": "p99 wait (s)",
    "wait_p95_s": "p95 wait (s)",
    "latency_p99_s": "p99 latency (s)",
    "utilization": "fleet utilization",
    "sla_attainment": "SLA attainment",
    "jain_fairness": "Jain fairness (users)",
    "throughput_rps": "throughput (req/s)",
    "goodput_s": "goodput (GPU s)",
}


def _rows(table: pd.DataFrame, priority: str = "all", exclude: Sequence[str] = ()) -> pd.DataFrame:
    """The rows of one priority, with ``series``: the strategy plus other swept keys."""
    rows = table[table["priority"].astype(str) == priority] if "priority" in table else table
    return rows.assign(series=series_labels(rows, exclude))


def _colors(strategies: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """A color per strategy (the label's first word); series differing only in a swept
    key share it and differ in line style (see ``_styles``)."""
    from matplotlib import colormaps

    bases = list(dict.fromkeys(s.split(" ")[0] for s in strategies))
    cmap = colormaps["tab10" if len(bases) <= 10 else "tab20"]
    base_color = {b: cmap(i % cmap.N) for i, b in enumerate(bases)}
    return {s: base_color[s.split(" ")[0]] for s in strategies}


def _styles(strategies: Sequence[str]) -> dict[str, str]:
    suffixes = list(dict.fromkeys(s.partition(" ")[2] for s in strategies))
    cycle = ["-", "--", ":", "-."]
    return {s: cycle[suffixes.index(s.partition(" ")[2]) % len(cycle)] for s in strategies}


def _legend(fig: Figure, axes: Sequence, n: int) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    if n > 6:
        fig.legend(handles, labels, loc="outside right center", fontsize=7)
    else:
        axes[0].legend(handles, labels, fontsize=7)


def _panel_per_scenario(rows: pd.DataFrame):
    """One panel per scenario, side by side, with a colour and line style per series
    (wider when the legend has many entries): scenarios, series, colors, styles, fig, axes."""
    scenarios = list(dict.fromkeys(rows["scenario"]))
    series = list(dict.fromkeys(rows["series"]))
    wide = 2.8 if len(series) > 6 else 0.0
    fig = Figure(figsize=(5.2 * max(1, len(scenarios)) + wide, 4.2), layout="constrained")
    axes = fig.subplots(1, max(1, len(scenarios)), squeeze=False)[0]
    return scenarios, series, _colors(series), _styles(series), fig, axes


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
    rows = _rows(table, priority).dropna(subset=["load"])
    scenarios, strategies, colors, styles, fig, axes = _panel_per_scenario(rows)
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
    _legend(fig, axes, len(strategies))
    return fig


def metric_vs_key_figure(
    table: pd.DataFrame, key: str, metric: str, *, priority: str = "all", log_x: bool = True
) -> Figure:
    """``metric`` against a swept scenario key (fleet size, fault rate) per strategy."""
    rows = _rows(table, priority, exclude=[key])
    scenarios, series, colors, styles, fig, axes = _panel_per_scenario(rows)
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
    _legend(fig, axes, len(series))
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
    rows = _rows(table, priority)
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
    rows = _rows(table)
    scenarios = list(dict.fromkeys(rows["scenario"]))
    strategies = list(dict.fromkeys(rows["series"]))
    colors = _colors(strategies)
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


def _cells(
    out: Path, table: pd.DataFrame, scenario: str | None, load: float | None
) -> tuple[pd.DataFrame, str | None, float | None]:
    rows = _rows(table)
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
    rows, scenario, load = _cells(out, res.load_results(out), scenario, load)
    strategies = list(dict.fromkeys(rows["series"]))
    colors, styles = _colors(strategies), _styles(strategies)
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
    _legend(fig, [ax], len(strategies))
    return fig


def contrasting_scenario(table: pd.DataFrame, metric: str = "latency_p99_s") -> str | None:
    """The scenario where the strategies differ most in ``metric`` (relative spread)."""
    rows = _rows(table)
    if rows.empty or metric not in rows:
        return None
    per = rows.groupby(["scenario", "series"])[metric].mean().groupby(level=0)
    spread = (per.max() - per.min()) / per.mean().abs().replace(0, np.nan)
    return str(spread.fillna(0).idxmax())


def failure_scenario(table: pd.DataFrame) -> str | None:
    """The scenario to draw a failure timeline for: one named like a failure, if any."""
    names = list(dict.fromkeys(_rows(table)["scenario"]))
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
    scenario = scenario or failure_scenario(table) or _rows(table)["scenario"].iloc[0]
    rows, scenario, load = _cells(out, table, scenario, load)
    seed = int(rows["seed"].min()) if seed is None and len(rows) else seed
    rows = rows[rows["seed"] == seed]
    colors = _colors(list(dict.fromkeys(rows["series"])))
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


def save(fig: Figure, path: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        fig.savefig(target, dpi=120)
        written.append(target)
    return written


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
