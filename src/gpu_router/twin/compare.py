"""The same metrics of both sides, from per-request times, and how far apart they are.

Both sides become one frame: ``priority, arrival_s, submit_s, start_s, finish_s,
outcome`` (seconds from the replay's start). Over the requests that *arrive* in
``[warmup_s, horizon_s)`` (the same requests on both sides):

- wait = start - submit (simulator: dispatch; service: the worker accepted the job);
  latency = finish - submit (service: when it saw the job end); p50/p95/p99 over
  completed requests, per priority and for all;
- rejected: refused at submission;
- utilization: GPU-time between start and finish of completed requests, clipped to the
  window, over GPUs x window (the same definition on both sides, so the service's
  detection lag counts as busy, as it does for the router);
- queue length: admitted, not started, sampled every ``QUEUE_STEP_S``; mean, p95, max.

:func:`compare` gives ``sim / service - 1`` per cell, and judges latency p50 and p99 of
each priority with at least ``min_requests`` completed requests against ``tolerance``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

QUANTILES = (50, 95, 99)
QUEUE_STEP_S = 0.5
JUDGED = ("latency_p50_s", "latency_p99_s")


def sim_frame(requests: pd.DataFrame) -> pd.DataFrame:
    """The simulator's requests table as the twin's frame."""
    return pd.DataFrame(
        {
            "priority": requests["priority"].astype(int),
            "arrival_s": requests["submit_s"],
            "submit_s": requests["submit_s"],
            "start_s": requests["dispatch_s"],
            "finish_s": requests["finish_s"],
            "outcome": requests["outcome"],
        }
    )


def service_frame(records: pd.DataFrame) -> pd.DataFrame:
    return records[["priority", "arrival_s", "submit_s", "start_s", "finish_s", "outcome"]].copy()


def _pct(x: np.ndarray, q: int) -> float:
    return float(np.percentile(x, q)) if len(x) else math.nan


def summarize(frame: pd.DataFrame, n_gpus: int, window: tuple[float, float]) -> dict[str, Any]:
    """Per priority (and "all"): counts, wait and latency percentiles; fleet figures."""
    lo, hi = window
    f = frame[(frame["arrival_s"] >= lo) & (frame["arrival_s"] < hi)]
    done = f[f["outcome"] == "completed"]
    out: dict[str, Any] = {"priorities": {}}
    names = [str(p) for p in sorted(f["priority"].unique())] + ["all"]
    for name in names:
        sub = f if name == "all" else f[f["priority"] == int(name)]
        g = sub[sub["outcome"] == "completed"]
        wait = (g["start_s"] - g["submit_s"]).to_numpy()
        lat = (g["finish_s"] - g["submit_s"]).to_numpy()
        row: dict[str, Any] = {
            "n": len(sub),
            "completed": len(g),
            "rejected": int((sub["outcome"] == "rejected").sum()),
        }
        for q in QUANTILES:
            row[f"wait_p{q}_s"] = _pct(wait, q)
            row[f"latency_p{q}_s"] = _pct(lat, q)
        row["latency_mean_s"] = float(lat.mean()) if len(lat) else math.nan
        out["priorities"][name] = row
    busy = (np.minimum(done["finish_s"], hi) - np.maximum(done["start_s"], lo)).clip(lower=0)
    out["utilization"] = float(busy.sum()) / (n_gpus * (hi - lo))
    grid = np.arange(lo, hi, QUEUE_STEP_S)
    admitted = frame[frame["outcome"] != "rejected"]
    sub_t = np.sort(admitted["submit_s"].to_numpy())
    start_t = np.sort(admitted["start_s"].fillna(np.inf).to_numpy())
    queue = np.searchsorted(sub_t, grid, side="right") - np.searchsorted(
        start_t, grid, side="right"
    )
    out["queue"] = {
        "mean": float(queue.mean()),
        "p95": float(np.percentile(queue, 95)),
        "max": int(queue.max()),
        "step_s": QUEUE_STEP_S,
        "series": queue.astype(int).tolist(),
    }
    out["lost"] = int((f["outcome"] == "lost").sum())
    return out


def rel(a: float, b: float) -> float:
    """``a / b - 1`` (NaN where undefined)."""
    if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return math.nan
    return a / b - 1.0


def compare(
    sim: dict[str, Any], service: dict[str, Any], *, min_requests: int, tolerance: float
) -> dict[str, Any]:
    """``sim / service - 1`` per priority and metric; the judged cells and whether each agrees."""
    cells: dict[str, dict[str, float]] = {}
    judged: list[dict[str, Any]] = []
    for p, srow in service["priorities"].items():
        mrow = sim["priorities"].get(p)
        if mrow is None:
            continue
        cells[p] = {k: rel(mrow[k], v) for k, v in srow.items() if k.endswith("_s")}
        if p == "all" or srow["completed"] < min_requests:
            continue
        for k in JUDGED:
            err = cells[p][k]
            judged.append({"priority": p, "metric": k, "error": err, "ok": abs(err) <= tolerance})
    return {
        "cells": cells,
        "judged": judged,
        "agree": bool(judged) and all(j["ok"] for j in judged),
        "utilization": rel(sim["utilization"], service["utilization"]),
        "queue_mean": rel(sim["queue"]["mean"], service["queue"]["mean"]),
    }


def tally(comparisons: list[dict[str, Any]], tolerance: float) -> dict[str, int]:
    """Over several :func:`compare` results (the loads of one twin run): the judged cells
    within ``tolerance`` and all, and the same over every priority's latency p50 and p99
    with a value on both sides (judged or not)."""
    out = {"judged_ok": 0, "judged": 0, "cells_ok": 0, "cells": 0}
    for c in comparisons:
        out["judged"] += len(c["judged"])
        out["judged_ok"] += sum(bool(j["ok"]) for j in c["judged"])
        for p, row in c["cells"].items():
            if p == "all":
                continue
            for k in JUDGED:
                if not math.isfinite(row[k]):
                    continue
                out["cells"] += 1
                out["cells_ok"] += bool(abs(row[k]) <= tolerance)
    return out


def _ms(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x * 1000:.0f}"


def _pc(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x * 100:+.1f}%"


def _cell(sim: dict[str, Any], svc: dict[str, Any]) -> str:
    return " / ".join(f"{_ms(sim[k])} ({_pc(rel(sim[k], svc[k]))})" for k in JUDGED)


def table(load: float, svc: dict[str, Any], *sims: dict[str, Any]) -> str:
    """A markdown table of one load: the service, then the calibrated, refit and raw
    simulator (latency p50 / p99 and their errors), per priority."""
    head = (
        "| load | prio | n | service latency p50 / p95 / p99 (ms) | calibrated sim p50 / p99"
        " (error) | refit sim p50 / p99 | raw sim p50 / p99 | wait p99 service / calibrated |"
    )
    lines = [head, "| --- " * 8 + "|"]
    for p, s in svc["priorities"].items():
        rows = [m["priorities"].get(p) for m in sims]
        if any(r is None for r in rows) or not s["completed"]:
            continue
        lines.append(
            f"| {load:.2f} | {p} | {s['completed']} | {_ms(s['latency_p50_s'])} /"
            f" {_ms(s['latency_p95_s'])} / {_ms(s['latency_p99_s'])} | "
            + " | ".join(_cell(r, s) for r in rows if r is not None)
            + f" | {_ms(s['wait_p99_s'])} / {_ms(rows[0]['wait_p99_s'] if rows[0] else math.nan)} |"
        )
    fleet = " | ".join(f"{m['utilization']:.3f}, {m['queue']['mean']:.2f}" for m in sims)
    lines.append(
        f"| {load:.2f} | fleet | | utilization {svc['utilization']:.3f}, queue mean"
        f" {svc['queue']['mean']:.2f} | {fleet} | rejected"
        f" {svc['priorities']['all']['rejected']} / {sims[0]['priorities']['all']['rejected']} |"
    )
    return "\n".join(lines)
