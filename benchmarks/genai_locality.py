"""Model locality on the GenAI 2026 replay: every strategy, three loads, several seeds.

Runs ``scenarios/genai_locality.yaml`` (days 17-19, 4,965 requests, 8 H100s) with the
trace time-scaled to each offered load (``time_scale = 6.96 * load / 0.8``, horizon the
slice's 172,800 s divided by it), for each strategy and seed; writes one CSV row per run
and a summary with 95% confidence intervals across seeds (Student t), and plots p99
latency and cold starts per strategy at 80%. ``utilization`` is the busy share of the
GPUs over the horizon (loads count as busy); ``useful_utilization`` the trace's work
(no loads) over GPU-seconds until the last request finished.

    .venv/bin/python benchmarks/genai_locality.py --out results/genai_locality \
        [--seeds 5] [--side-seeds 2] [--plot docs/figures/genai_locality.png]

Seeds vary the load-time draws (from the measured distribution) and the random
strategies; the trace's arrivals, durations and models are the same in every run.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from gpu_router.sim import load_scenario, run_scenario

ROOT = Path(__file__).resolve().parents[1]
BLIND = [
    "round-robin",
    "random",
    "least-loaded",
    "join-shortest-queue",
    "power-of-d",
    "least-work-left",
    "hybrid-seed",
    "earliest-completion",
]
AWARE = ["warm-first", "locality-cost", "locality-replicate"]
SPAN_S = 172_800.0  # days 17-19 of the trace
SCALE_AT_80 = 6.96  # with the LoRA loads (scenarios/genai_locality.yaml)
#: two-sided 95% Student t quantiles by degrees of freedom
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def run(
    load: float, strategy: str, seed: int, cache_share: float | None = None
) -> dict[str, object]:
    scale = SCALE_AT_80 * load / 0.8
    horizon = SPAN_S / scale
    overrides: dict[str, float] = {"workload.trace.time_scale": scale, "horizon_s": horizon}
    if cache_share is not None:
        overrides["router.models.cache_share"] = cache_share
    sc = load_scenario(ROOT / "scenarios" / "genai_locality.yaml", overrides)
    r = run_scenario(sc, strategy, seed)
    row, info = r.row(), r.info
    n_gpus = sc.fleet.count or 8
    return {
        "load": load,
        "strategy": strategy,
        "aware": strategy in AWARE,
        "seed": seed,
        "cache_share": cache_share,
        "requests": info["n_requests"],
        "latency_p50_s": row["latency_p50_s"],
        "latency_p99_s": row["latency_p99_s"],
        "latency_mean_s": row["latency_mean_s"],
        "utilization": row["utilization"],
        # trace work served per GPU-second until the last request finished (no loads)
        "useful_utilization": info["n_requests"]
        * info["mean_work_s"]
        / (n_gpus * info["last_finish_s"]),
        "makespan_s": info["last_finish_s"],
        "cold_starts": info["cold_starts"],
        "load_s_total": info["load_s_total"],
        "model_gb_per_gpu": info["model_gb_per_gpu_mean"],
        "adapter_loads": info.get("adapter_loads", 0),
        "adapter_load_s_total": info.get("adapter_load_s_total", 0.0),
        "wall_s": info["wall_s"],
    }


def ci(values: pd.Series) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval."""
    n = len(values)
    mean = float(values.mean())
    if n < 2:
        return mean, math.nan
    return mean, T95.get(n - 1, 1.96) * float(values.std(ddof=1)) / math.sqrt(n)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    metrics = ["latency_p99_s", "latency_mean_s", "cold_starts", "load_s_total",
               "utilization", "useful_utilization", "makespan_s", "model_gb_per_gpu",
               "adapter_loads", "adapter_load_s_total"]  # fmt: skip
    for (load, strategy), part in runs.groupby(["load", "strategy"], sort=False):
        out: dict[str, object] = {"load": load, "strategy": strategy, "seeds": len(part)}
        for m in metrics:
            out[m], out[m + "_ci"] = ci(part[m])
        rows.append(out)
    return pd.DataFrame(rows)


def compare(runs: pd.DataFrame, summary: pd.DataFrame, load: float = 0.8) -> pd.DataFrame:
    """The best locality-aware against the best locality-blind strategy at ``load`` (best:
    lowest mean p99 over the seeds), seed by seed: p99 and cold-start ratios and the
    utilization differences, each with its 95% interval over the seeds."""
    at = summary[summary["load"] == load]
    best = {
        side: at[at["strategy"].isin(names)].sort_values("latency_p99_s").iloc[0]["strategy"]
        for side, names in (("blind", BLIND), ("aware", AWARE))
    }
    part = runs[runs["load"] == load].set_index(["strategy", "seed"])
    a, b = part.loc[best["aware"]], part.loc[best["blind"]]
    pairs = {
        "p99_ratio": a["latency_p99_s"] / b["latency_p99_s"],
        "cold_ratio": a["cold_starts"] / b["cold_starts"],
        "utilization_diff": a["utilization"] - b["utilization"],
        "useful_utilization_diff": a["useful_utilization"] - b["useful_utilization"],
    }
    row: dict[str, object] = {"load": load, "aware": best["aware"], "blind": best["blind"]}
    for k, v in pairs.items():
        row[k], row[k + "_ci"] = ci(v)
    return pd.DataFrame([row])


def plot(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summary[summary["load"] == 0.8].sort_values("latency_p99_s")
    colors = ["tab:green" if x in AWARE else "tab:gray" for x in s["strategy"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    axes[0].barh(s["strategy"], s["latency_p99_s"], xerr=s["latency_p99_s_ci"], color=colors)
    axes[0].set_xlabel("p99 latency (s), 95% CI over seeds")
    axes[1].barh(s["strategy"], s["cold_starts"], xerr=s["cold_starts_ci"], color=colors)
    axes[1].set_xlabel("cold starts (model loads)")
    axes[1].set_yticklabels([])
    fig.suptitle("GenAI 2026 replay (LoRA loads on), 8 H100s, 80% load: aware (green) vs blind")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="results/genai_locality")
    ap.add_argument("--seeds", type=int, default=5, help="seeds at 80% load")
    ap.add_argument("--side-seeds", type=int, default=2, help="seeds at 50% and 95%")
    ap.add_argument("--plot", default=None)
    ap.add_argument(
        "--cache-shares",
        type=float,
        nargs="*",
        help="instead: at 80%% and seed 1, these model-cache shares (sensitivity)",
    )
    args = ap.parse_args()
    if args.cache_shares:
        strategies = ["earliest-completion", "locality-cost", "locality-replicate"]
        rows = [run(0.8, s, 1, share) for share in args.cache_shares for s in strategies]
        cols = ["cache_share", "strategy", "latency_p99_s", "cold_starts"]
        print(pd.DataFrame(rows)[cols].round(3).to_string(index=False))
        return
    rows = []
    for load, seeds in ((0.8, args.seeds), (0.5, args.side_seeds), (0.95, args.side_seeds)):
        for strategy in BLIND + AWARE:
            rows += [run(load, strategy, seed) for seed in range(1, seeds + 1)]
    runs = pd.DataFrame(rows)
    summary = summarise(runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / "runs.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    best = compare(runs, summary)
    best.to_csv(out / "compare.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(summary.round(3).to_string(index=False))
        print(best.round(4).to_string(index=False))
    print(f"total wall {runs['wall_s'].sum():.1f} s over {len(runs)} runs")
    if args.plot:
        plot(summary, Path(args.plot))


if __name__ == "__main__":
    main()
