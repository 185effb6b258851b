"""Streamlit dashboard: compare routing strategies over a sweep result directory.

    gpu-router dashboard results/default
    streamlit run dashboards/app.py -- --results results/default

Open a result directory (written by ``gpu-router sweep``), choose scenarios,
strategies and metrics, and see the comparison table (mean and 95% CI over seeds)
next to the charts; drill into one cell's per-request records; start a small sweep
from the page. Reads result files and calls ``gpu_router.sweep``'s public API only.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

import pandas as pd
import streamlit as st

from gpu_router.sweep import (
    comparison_table,
    confidence_intervals,
    is_result_dir,
    load_cell,
    load_manifest,
    load_results,
    parse_sweep,
    plots,
    run_sweep,
)

REPO = Path(__file__).resolve().parents[1]
METRICS = {
    "wait_p99_s": "p99 wait (s)",
    "wait_mean_s": "mean wait (s)",
    "wait_p95_s": "p95 wait (s)",
    "latency_p99_s": "p99 latency (s)",
    "sla_attainment": "SLA attainment",
    "utilization": "utilization",
    "jain_fairness": "Jain fairness",
    "throughput_rps": "throughput (req/s)",
    "goodput_s": "goodput (GPU s)",
    "n_rejected": "rejected",
    "n_failed": "failed",
    "n_lost": "lost",
    "overhead_us_p99": "policy overhead p99 (us)",
}
DEFAULT_METRICS = ["wait_p99_s", "sla_attainment", "utilization"]


def start_dir() -> str:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--results", default=None)
    known, _ = parser.parse_known_args(sys.argv[1:])
    return known.results or os.environ.get("GPU_ROUTER_RESULTS") or "results/default"


@st.cache_data(show_spinner=False)
def read_table(path: str, stamp: float) -> pd.DataFrame:
    return load_results(path)


@st.cache_data(show_spinner=False)
def read_cis(path: str, stamp: float, metrics: tuple[str, ...]) -> pd.DataFrame:
    return confidence_intervals(load_results(path), metrics=list(metrics))


def result_dirs() -> list[str]:
    return sorted(
        {
            str(p.parent)
            for root in (Path.cwd() / "results", REPO / "results")
            if root.is_dir()
            for p in root.glob("**/results.parquet")
        }
    )


def sidebar() -> tuple[str | None, pd.DataFrame]:
    st.sidebar.header("Result directory")
    if "results_dir" not in st.session_state:
        st.session_state["results_dir"] = start_dir()
    known = result_dirs()
    if known:
        pick = st.sidebar.selectbox(
            "Found under results/", ["(type a path below)", *known], key="found_dir"
        )
        if pick != "(type a path below)" and pick != st.session_state.get("_last_pick"):
            st.session_state["_last_pick"] = pick
            st.session_state["results_dir"] = pick
    path = st.sidebar.text_input("Path", key="results_dir")
    if not is_result_dir(path):
        st.sidebar.warning(
            f"No results.parquet in {path!r}: run `gpu-router sweep` or start "
            "a sweep in the last tab."
        )
        return None, pd.DataFrame()
    stamp = (Path(path) / "results.parquet").stat().st_mtime
    return path, read_table(path, stamp)


def filters(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str], str]:
    st.sidebar.header("Filters")
    scenarios = list(dict.fromkeys(table["scenario"]))
    strategies = list(dict.fromkeys(table["strategy"]))
    chosen_sc = st.sidebar.multiselect("Scenarios", scenarios, default=scenarios, key="scenarios")
    chosen_st = st.sidebar.multiselect(
        "Strategies", strategies, default=strategies, key="strategies"
    )
    available = [m for m in METRICS if m in table]
    metrics = st.sidebar.multiselect(
        "Metrics",
        available,
        key="metrics",
        default=[m for m in DEFAULT_METRICS if m in available],
        format_func=lambda m: METRICS[m],
    )
    priority = st.sidebar.selectbox("Priority", ["all", "5", "4", "3", "2", "1"], key="priority")
    sel = table[table["scenario"].isin(chosen_sc) & table["strategy"].isin(chosen_st)]
    return sel, metrics, priority


def ci_table(path: str, sel: pd.DataFrame, metrics: list[str], priority: str) -> pd.DataFrame:
    stamp = (Path(path) / "results.parquet").stat().st_mtime
    ci = read_cis(path, stamp, tuple(metrics))
    ci = ci[
        ci["strategy"].isin(sel["strategy"].unique())
        & ci["scenario"].isin(sel["scenario"].unique())
        & (ci["priority"] == priority)
    ]
    if ci.empty:
        return ci
    ci = ci.assign(
        value=[
            f"{m:.4g} ± {h:.2g}" if pd.notna(h) else f"{m:.4g}"
            for m, h in zip(ci["mean"], ci["half_width"], strict=True)
        ]
    )
    keys = [c for c in ci.columns if c in ("scenario", "load") or "." in c]
    wide = ci.pivot_table(
        index=[*keys, "strategy"], columns="metric", values="value", aggfunc="first", sort=False
    )
    return wide[[m for m in metrics if m in wide]].rename(columns=METRICS).reset_index()


def comparison_tab(path: str, sel: pd.DataFrame, metrics: list[str], priority: str) -> None:
    rows = sel[sel["priority"] == priority]
    if rows.empty:
        st.info("Nothing selected.")
        return
    st.subheader("Per strategy (mean over the selected cells)")
    st.dataframe(comparison_table(sel, priority=priority), key="comparison")
    left, right = st.columns(2)
    with left:
        st.subheader("Mean ± 95% CI over seeds")
        st.dataframe(ci_table(path, sel, metrics, priority), hide_index=True, key="ci")
    with right:
        st.subheader("Charts")
        stamp = (Path(path) / "results.parquet").stat().st_mtime
        picked = (tuple(sorted(sel["scenario"].unique())), tuple(sorted(sel["strategy"].unique())))
        multi_load = sel["load"].notna().any() and sel["load"].nunique() > 1
        for metric in metrics:
            if multi_load or metric == "jain_fairness":
                st.image(chart_png(path, stamp, *picked, metric, priority))
            else:
                data = rows.groupby(["scenario", "strategy"])[metric].mean().unstack()
                st.caption(METRICS.get(metric, metric))
                st.bar_chart(data)
        if "sla_attainment" in sel and sel["scenario"].nunique() > 1:
            st.image(chart_png(path, stamp, *picked, "sla_heatmap", priority))


@st.cache_data(show_spinner=False, max_entries=256)
def chart_png(
    path: str,
    stamp: float,
    scenarios: tuple[str, ...],
    strategies: tuple[str, ...],
    metric: str,
    priority: str,
) -> bytes:
    """One chart as PNG bytes, cached so that a page reload shows it at once."""
    table = load_results(path)
    sel = table[table["scenario"].isin(scenarios) & table["strategy"].isin(strategies)]
    if metric == "sla_heatmap":
        fig = plots.sla_heatmap_figure(sel, priority=priority)
    elif metric == "jain_fairness" and not (sel["load"].nunique() > 1):
        fig = plots.fairness_figure(sel)
    else:
        bound = "erlang_c_wait_s" if metric in ("wait_mean_s", "wait_p99_s") else None
        fig = plots.metric_vs_load_figure(
            sel, metric, priority=priority, bound=bound, log=metric.startswith("wait")
        )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def cell_tab(path: str, sel: pd.DataFrame) -> None:
    cells = sel.drop_duplicates("cell_id")
    if cells.empty:
        st.info("No cells selected.")
        return
    ids = {
        f"{r.strategy} | {r.scenario} | load {r.load:g} | seed {r.seed} | {r.cell_id}": r.cell_id
        for r in cells.itertuples()
    }
    cid = ids[st.selectbox("Cell", list(ids), key="cell")]
    cell = load_cell(path, cid)
    st.caption(f"parameters: {cell['meta'].get('params')}")
    st.dataframe(cell["summary"], hide_index=True, key="cell_summary")
    left, right = st.columns(2)
    req = cell["requests"]
    with left:
        st.subheader(f"Per-request records ({len(req):,})")
        outcome = (
            st.multiselect("Outcome", sorted(req["outcome"].astype(str).unique()), key="outcome")
            if "outcome" in req
            else []
        )
        shown = req[req["outcome"].astype(str).isin(outcome)] if outcome else req
        st.dataframe(shown.head(2000), hide_index=True, key="requests")
    with right:
        if "wait_s" in req and len(req):
            st.subheader("Wait by priority (s)")
            st.dataframe(
                req.groupby("priority", observed=True)["wait_s"].describe(
                    percentiles=[0.5, 0.95, 0.99]
                ),
                key="wait_by_priority",
            )
        if not cell["timeline"].empty:
            st.subheader("Timeline")
            tl = cell["timeline"].set_index("t")
            st.line_chart(tl[[c for c in ("queue_length", "gpus_up", "rerouted") if c in tl]])


def sweep_tab() -> None:
    st.write("Run a small grid on this machine (in-process, one cell at a time).")
    scenarios = sorted(p.stem for p in (REPO / "scenarios").glob("*.yaml"))
    try:
        from gpu_router.policy.strategies import STRATEGIES

        strategies = list(STRATEGIES)
    except ImportError:  # pragma: no cover - the registry is part of the package
        strategies = []
    with st.form("sweep"):
        sc = st.multiselect("Scenarios", scenarios, default=scenarios[:1], key="run_scenarios")
        strat = st.multiselect(
            "Strategies", strategies, default=strategies[:2], key="run_strategies"
        )
        loads = st.text_input("Loads (comma-separated)", "0.7, 0.9", key="run_loads")
        seeds = st.number_input("Seeds", 1, 10, 2, key="run_seeds")
        horizon = st.number_input(
            "Horizon (simulated s; 0 keeps the scenario's)", 0, 100_000, 200, key="run_horizon"
        )
        out = st.text_input("Output directory", "results/dashboard", key="run_out")
        submitted = st.form_submit_button("Run sweep")
    if not submitted:
        return
    try:
        load_list = [float(x) for x in loads.split(",") if x.strip()]
        spec = parse_sweep(
            {
                "name": "dashboard",
                "scenarios": sc,
                "strategies": strat,
                "loads": load_list or None,
                "seeds": int(seeds),
                "overrides": (
                    {"horizon_s": float(horizon), "warmup_s": float(horizon) / 10}
                    if horizon
                    else {}
                ),
            },
            base=REPO,
        )
    except ValueError as exc:
        st.error(str(exc))
        return
    bar = st.progress(0.0, text=f"0/{len(spec.cells)} cells")

    def step(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"{done}/{total} cells")

    run = run_sweep(spec, out, workers=1, progress=False, on_progress=step)
    st.success(
        f"ran {run.ran}, skipped {run.skipped}, failed {len(run.failed)} cells in "
        f"{run.wall_s:.1f} s -> {out}"
    )
    st.button(
        "Open these results",
        key="open_new",
        on_click=lambda: st.session_state.update(results_dir=out),
    )


def main() -> None:
    st.set_page_config(page_title="GPU Router sweeps", layout="wide")
    st.title("GPU Request Router: strategy comparison")
    path, table = sidebar()
    if path is not None and not table.empty:
        manifest = load_manifest(path)
        st.caption(
            f"{manifest.get('name', '')}: {table['cell_id'].nunique()} cells, "
            f"{table['strategy'].nunique()} strategies, "
            f"{table['scenario'].nunique()} scenarios - {path}"
        )
    tabs = st.tabs(["Comparison", "Cell records", "Run a sweep"])
    if path is not None and not table.empty:
        sel, metrics, priority = filters(table)
        with tabs[0]:
            comparison_tab(path, sel, metrics, priority)
        with tabs[1]:
            cell_tab(path, sel)
    with tabs[2]:
        sweep_tab()


main()
