"""One twin cell run long enough that its quantiles have tight confidence intervals.

The twin check's 60-s runs give 100-260 requests per priority; a p99 over that many is
set by its three largest and its bootstrap 90% interval spans 20-40% of the value
(docs/simulator.md, "The two calibrated misses"). This runs one twin file at one load
with a longer horizon (``--horizon``, wall seconds of live replay), the simulator
(raw, calibrated, refit on this run) and the live service on the same requests, and
prints per priority the latency p50 / p99 of both sides, ``sim / service - 1``, and
bootstrap intervals of the service's quantile, the simulator's, and their difference.

The bootstrap is *paired* (both sides replay the same requests, so a resample draws
the same requests for both) and *by blocks of arrival time* (``--block``, s): in a
queue, requests that arrive close together wait together, so resampling single
requests would understate the spread; the single-request interval is printed too.
The 1-minute load average of the machine is sampled every 5 s during the live run.

    .venv/bin/python benchmarks/twin_long.py scenarios/twin/poisson.yaml --load 0.95 \
        --horizon 400 --out /tmp/twin-long-poisson
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpu_router.sim import run_scenario
from gpu_router.twin import compare as cmp
from gpu_router.twin import overheads
from gpu_router.twin.run import clean, run_service
from gpu_router.twin.run import refit as refit_calibration
from gpu_router.twin.spec import Calibration, TwinSpec, fleet_size, load_twin, scenario_at

QS = (50, 99)
#: the service's defaults, dispatch.poll_interval and max_poll_interval (s)
POLL_S, MAX_POLL_S = 0.05, 1.0


class LoadSampler(threading.Thread):
    """``os.getloadavg()[0]`` every ``step`` s until stopped."""

    def __init__(self, step: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.step, self.samples = step, []  # type: ignore[var-annotated]
        self._stop_ev = threading.Event()

    def run(self) -> None:
        while not self._stop_ev.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop_ev.wait(self.step)

    def stop(self) -> dict[str, float]:
        self._stop_ev.set()
        self.join()
        x = np.array(self.samples)
        return {"min": float(x.min()), "mean": float(x.mean()), "max": float(x.max())}


def latencies(frame: pd.DataFrame, window: tuple[float, float]) -> pd.DataFrame:
    """Completed requests arriving in ``window``: index (workload order), priority,
    arrival and latency (s)."""
    lo, hi = window
    f = frame[(frame["arrival_s"] >= lo) & (frame["arrival_s"] < hi)]
    f = f[f["outcome"] == "completed"]
    return pd.DataFrame(
        {
            "priority": f["priority"].astype(int).to_numpy(),
            "arrival_s": f["arrival_s"].to_numpy(),
            "latency_s": (f["finish_s"] - f["submit_s"]).to_numpy(),
        },
        index=f.index,
    )


def paired(svc: pd.DataFrame, sim: pd.DataFrame) -> pd.DataFrame:
    """The requests completed on both sides, by workload index."""
    return svc.join(sim[["latency_s"]].add_suffix("_sim"), how="inner").rename(
        columns={"latency_s": "latency_s_svc"}
    )


def boot(
    d: pd.DataFrame, q: int, block_s: float | None, n: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Paired bootstrap of one priority's quantile ``q``: service, simulator, error."""
    svc, sim = d["latency_s_svc"].to_numpy(), d["latency_s_sim"].to_numpy()
    if block_s:
        block = (d["arrival_s"].to_numpy() // block_s).astype(int)
        groups = [np.flatnonzero(block == b) for b in np.unique(block)]
    else:
        groups = [np.array([i]) for i in range(len(d))]
    out = np.empty((n, 3))
    for k in range(n):
        pick = rng.integers(0, len(groups), len(groups))
        idx = np.concatenate([groups[j] for j in pick])
        a, b = np.percentile(svc[idx], q), np.percentile(sim[idx], q)
        out[k] = (a, b, b / a - 1)
    lo, hi = np.percentile(out, [5, 95], axis=0)
    return {
        "service_90": [float(lo[0]), float(hi[0])],
        "sim_90": [float(lo[1]), float(hi[1])],
        "error_90": [float(lo[2]), float(hi[2])],
    }


def cells(
    svc: pd.DataFrame, sims: dict[str, pd.DataFrame], block_s: float, n: int, seed: int
) -> list[dict[str, Any]]:
    rows = []
    for name, sim in sims.items():
        d = paired(svc, sim)
        for p in [*sorted(d["priority"].unique()), "all"]:
            g = d if p == "all" else d[d["priority"] == p]
            for q in QS:
                a = float(np.percentile(g["latency_s_svc"], q))
                b = float(np.percentile(g["latency_s_sim"], q))
                rng = np.random.default_rng(seed)
                rows.append(
                    {
                        "sim": name,
                        "priority": str(p),
                        "n": len(g),
                        "q": q,
                        "service_s": a,
                        "sim_s": b,
                        "error": b / a - 1,
                        "block": boot(g, q, block_s, n, rng),
                        "iid": boot(g, q, None, n, rng),
                    }
                )
    return rows


def run(spec: TwinSpec, load: float, out: Path, block_s: float, n_boot: int) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    raw_sc, cal_sc = scenario_at(spec, load), scenario_at(spec, load, calibrated=True)
    window = (raw_sc.warmup_s, raw_sc.horizon_s)
    t = time.perf_counter()
    raw = run_scenario(raw_sc, spec.strategy, spec.seed)
    cal = run_scenario(cal_sc, spec.strategy, spec.seed)
    sim_wall = time.perf_counter() - t
    sampler = LoadSampler()
    sampler.start()
    live = run_service(spec, load, out / "service")
    loadavg = sampler.stop()
    live["records"].to_csv(out / "service_records.csv.gz", index=False)
    live["jobs"].to_csv(out / "service_jobs.csv.gz", index=False)
    parts = overheads.decompose(live["records"], live["jobs"])
    fitted = refit_calibration(parts, spec.calibration)
    refit_spec = spec.model_copy(update={"calibration": Calibration(**fitted)})
    refit = run_scenario(scenario_at(refit_spec, load, calibrated=True), spec.strategy, spec.seed)
    svc_frame = cmp.service_frame(live["records"])
    svc_frame.index = [int(r[1:]) for r in live["records"]["request_id"]]
    sims = {}
    for name, res in (("calibrated", cal), ("refit", refit), ("raw", raw)):
        fr = cmp.sim_frame(res.requests)
        fr.index = [int(r[1:]) for r in res.requests["request_id"]]
        fr.to_csv(out / f"sim_{name}.csv.gz")
        sims[name] = latencies(fr, window)
    n = fleet_size(raw_sc)
    trace = raw_sc.workload.trace
    return {
        "twin": spec.label,
        "load": load,
        "horizon_s": raw_sc.horizon_s,
        "warmup_s": raw_sc.warmup_s,
        "time_scale": None if trace is None else trace.time_scale,
        "requests": live["n"],
        "service_wall_s": round(live["wall_s"], 1),
        "sim_wall_s": round(sim_wall, 1),
        "loadavg_1min": loadavg,
        "calibration": spec.calibration.model_dump(),
        "refit": fitted,
        "overheads": overheads.summary(parts),
        "utilization": {
            "service": cmp.summarize(svc_frame, n, window)["utilization"],
            **{
                k: cmp.summarize(cmp.sim_frame(r.requests), n, window)["utilization"]
                for k, r in (("calibrated", cal), ("refit", refit), ("raw", raw))
            },
        },
        "lost": int((svc_frame["outcome"] == "lost").sum()),
        "block_s": block_s,
        "cells": cells(latencies(svc_frame, window), sims, block_s, n_boot, spec.seed),
    }


def reanalyze(
    spec: TwinSpec, load: float, out: Path, cals: dict[str, Calibration], block_s: float, n: int
) -> dict[str, Any]:
    """The stored service run in ``out`` against the simulator with each of ``cals``
    (no service is started): the cells as :func:`run` gives them."""
    records = pd.read_csv(out / "service_records.csv.gz")
    jobs = pd.read_csv(out / "service_jobs.csv.gz")
    jobs["request_id"] = jobs["request_id"].astype(str)
    parts = overheads.decompose(records, jobs)
    svc_frame = cmp.service_frame(records)
    svc_frame.index = [int(r[1:]) for r in records["request_id"]]
    sc = scenario_at(spec, load)
    window = (sc.warmup_s, sc.horizon_s)
    sims, util = {}, {"service": cmp.summarize(svc_frame, fleet_size(sc), window)["utilization"]}
    for name, cal in cals.items():
        s = spec.model_copy(update={"calibration": cal})
        res = run_scenario(scenario_at(s, load, calibrated=True), spec.strategy, spec.seed)
        fr = cmp.sim_frame(res.requests)
        fr.index = [int(r[1:]) for r in res.requests["request_id"]]
        sims[name] = latencies(fr, window)
        util[name] = cmp.summarize(fr, fleet_size(sc), window)["utilization"]
    return {
        "fit": overheads.fit(parts),
        "fit_polled": overheads.fit_polled(parts, POLL_S, MAX_POLL_S),
        "utilization": util,
        "cells": cells(latencies(svc_frame, window), sims, block_s, n, spec.seed),
    }


def report(res: dict[str, Any]) -> str:
    la = res["loadavg_1min"]
    head = (
        f"{res['twin']} load {res['load']} horizon {res['horizon_s']} s: {res['requests']}"
        f" requests, service wall {res['service_wall_s']} s, load average (1 min)"
        f" {la['min']:.2f}-{la['max']:.2f} (mean {la['mean']:.2f}); lost {res['lost']}"
    )
    cols = (
        "| sim | prio | n | q | service (s) [90% block] | sim (s) [90% block] | error"
        " [90% block] [90% iid] |"
    )
    lines = [head, f"refit {res['refit']}; utilization {res['utilization']}", cols]
    lines.append("| --- " * 7 + "|")
    for c in res["cells"]:
        b, i = c["block"], c["iid"]
        lines.append(
            f"| {c['sim']} | {c['priority']} | {c['n']} | p{c['q']} | {c['service_s']:.3f}"
            f" [{b['service_90'][0]:.3f}, {b['service_90'][1]:.3f}] | {c['sim_s']:.3f}"
            f" [{b['sim_90'][0]:.3f}, {b['sim_90'][1]:.3f}] | {c['error']:+.1%}"
            f" [{b['error_90'][0]:+.1%}, {b['error_90'][1]:+.1%}]"
            f" [{i['error_90'][0]:+.1%}, {i['error_90'][1]:+.1%}] |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("twin")
    ap.add_argument("--load", type=float, required=True)
    ap.add_argument("--horizon", type=float, default=400.0, help="replay length (s)")
    ap.add_argument("--block", type=float, default=10.0, help="bootstrap block (s)")
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--out", required=True, help="folder for the records and result.json")
    ap.add_argument(
        "--reanalyze",
        action="append",
        default=[],
        metavar="NAME=A,B[,POLL,MAXPOLL]",
        help="no service run: the stored one in --out against the simulator calibrated so",
    )
    args = ap.parse_args()
    spec = load_twin(args.twin, {"scenario.horizon_s": args.horizon})
    if args.reanalyze:
        cals = {}
        for item in args.reanalyze:
            name, _, vals = item.partition("=")
            v = [float(x) for x in vals.split(",")]
            keys = ("dispatch_overhead_s", "dispatch_overhead_share", "poll_interval_s")
            cals[name] = Calibration(**dict(zip((*keys, "max_poll_interval_s"), v, strict=False)))
        res = reanalyze(spec, args.load, Path(args.out), cals, args.block, args.boot)
        print(json.dumps({k: res[k] for k in ("fit", "fit_polled", "utilization")}))
        for c in res["cells"]:
            b = c["block"]["error_90"]
            print(
                f"{c['sim']:>12} p{c['priority']:<3} n {c['n']:5d} p{c['q']}: service"
                f" {c['service_s']:.3f} sim {c['sim_s']:.3f} error {c['error']:+.1%}"
                f" [{b[0]:+.1%}, {b[1]:+.1%}]"
            )
        return 0
    res = run(spec, args.load, Path(args.out), args.block, args.boot)
    Path(args.out, "result.json").write_text(json.dumps(clean(res), indent=1))
    print(report(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
