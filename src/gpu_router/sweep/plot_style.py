"""The look shared by every sweep figure: labels, colors and line styles per strategy,
the legend, the per-scenario panels, and saving as PNG and SVG (matplotlib, no pyplot)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from .stats import series_labels

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


def rows_of(
    table: pd.DataFrame, priority: str = "all", exclude: Sequence[str] = ()
) -> pd.DataFrame:
    """The rows of one priority, with ``series``: the strategy plus other swept keys."""
    rows = table[table["priority"].astype(str) == priority] if "priority" in table else table
    return rows.assign(series=series_labels(rows, exclude))


def strategy_colors(strategies: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """A color per strategy (the label's first word); series differing only in a swept
    key share it and differ in line style (see ``_styles``)."""
    from matplotlib import colormaps

    bases = list(dict.fromkeys(s.split(" ")[0] for s in strategies))
    cmap = colormaps["tab10" if len(bases) <= 10 else "tab20"]
    base_color = {b: cmap(i % cmap.N) for i, b in enumerate(bases)}
    return {s: base_color[s.split(" ")[0]] for s in strategies}


def strategy_styles(strategies: Sequence[str]) -> dict[str, str]:
    suffixes = list(dict.fromkeys(s.partition(" ")[2] for s in strategies))
    cycle = ["-", "--", ":", "-."]
    return {s: cycle[suffixes.index(s.partition(" ")[2]) % len(cycle)] for s in strategies}


def legend(fig: Figure, axes: Sequence, n: int) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    if n > 6:
        fig.legend(handles, labels, loc="outside right center", fontsize=7)
    else:
        axes[0].legend(handles, labels, fontsize=7)


def panel_per_scenario(rows: pd.DataFrame):
    """One panel per scenario, side by side, with a colour and line style per series
    (wider when the legend has many entries): scenarios, series, colors, styles, fig, axes."""
    scenarios = list(dict.fromkeys(rows["scenario"]))
    series = list(dict.fromkeys(rows["series"]))
    wide = 2.8 if len(series) > 6 else 0.0
    fig = Figure(figsize=(5.2 * max(1, len(scenarios)) + wide, 4.2), layout="constrained")
    axes = fig.subplots(1, max(1, len(scenarios)), squeeze=False)[0]
    return scenarios, series, strategy_colors(series), strategy_styles(series), fig, axes


def save(fig: Figure, path: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        fig.savefig(target, dpi=120)
        written.append(target)
    return written
