"""Research workflow: sweep grids, parallel runs (local or Ray), confidence intervals, plots.

Public API (used by the CLI, the dashboard and the notebooks)::

    spec = load_sweep("sweeps/strategies_vs_load.yaml")
    run = run_sweep(spec, "results/svl", workers=2)        # or ray_address="local"
    table = load_results("results/svl")                    # tidy: cell x priority
    ci = confidence_intervals(table)                       # mean and 95% t-interval
"""

from __future__ import annotations

from .grid import Cell, SweepSpec, load_sweep, parse_sweep
from .results import CellOutput, is_result_dir, load_cell, load_manifest, load_results
from .runner import SweepRun, run_sweep, simulate_cell
from .stats import comparison_table, confidence_intervals, format_comparison, mean_ci

__all__ = [
    "Cell",
    "CellOutput",
    "SweepRun",
    "SweepSpec",
    "comparison_table",
    "confidence_intervals",
    "format_comparison",
    "is_result_dir",
    "load_cell",
    "load_manifest",
    "load_results",
    "load_sweep",
    "mean_ci",
    "parse_sweep",
    "run_sweep",
    "simulate_cell",
]
