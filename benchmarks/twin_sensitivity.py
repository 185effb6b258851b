"""How the twin check's cells move with the service overhead the simulator is given.

For chosen cells of a stored twin run (``gpu-router twin ... --out X.json``: twin file,
load, priority, latency quantile) this runs the simulator alone on the same workload
over a grid of calibrations and prints the simulated cell, its error against the
stored service value, and a bootstrap 90% interval of the simulated quantile
(resampling that priority's completed requests: how far a p99 over a few hundred
requests moves with the sample alone). No service is started.

- default (``--model line``): the runs with the line calibration a 0.031 s / b 0.038
  (``docs/twin/line/``), the overhead ``a + b * work`` over a grid spanning the fits
  measured on the service (docs/simulator.md, "The model and its calibration":
  a 0.026-0.053 s, b 0.030-0.056);
- ``--model polled``: the runs with the polling calibration (``docs/twin/``), polling
  modelled (0.05 s, at most 1 s) and the constant ``dispatch_overhead_s`` over 0-12 ms
  (the 60-s runs' own fits were 2.8-6.5 ms, the long runs' 7 ms).

    .venv/bin/python benchmarks/twin_sensitivity.py [--model line|polled] [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from gpu_router.sim import run_scenario
from gpu_router.twin import compare as cmp
from gpu_router.twin.spec import Calibration, fleet_size, load_twin, scenario_at

ROOT = Path(__file__).resolve().parents[1]
#: (twin file, stored run, load, priority, quantile): the calibrated misses of the
#: line-calibrated runs (docs/simulator.md, "Before: the line calibration")
LINE_CELLS = [
    ("scenarios/twin/poisson.yaml", "docs/twin/line/poisson.json", 0.95, "3", 99),
    ("scenarios/twin/azure.yaml", "docs/twin/line/azure.json", 0.80, "3", 50),
]
LINE_GRID = [
    Calibration(dispatch_overhead_s=a, dispatch_overhead_share=b)
    for a in (0.026, 0.031, 0.040, 0.053)
    for b in (0.030, 0.038, 0.056)
]
#: the calibrated miss of the polling-calibrated runs (docs/simulator.md, "Results")
POLLED_CELLS = [
    ("scenarios/twin/azure.yaml", "docs/twin/azure.json", 0.95, "3", 99),
    ("scenarios/twin/azure.yaml", "docs/twin/azure.json", 0.95, "3", 50),
    ("scenarios/twin/poisson.yaml", "docs/twin/poisson.json", 0.95, "3", 99),
]
POLLED_GRID = [
    Calibration(dispatch_overhead_s=c, poll_interval_s=0.05, max_poll_interval_s=1.0)
    for c in (0.0, 0.003, 0.005, 0.007, 0.009, 0.012)
]


def cell(
    twin: str,
    stored: str,
    load: float,
    prio: str,
    q: int,
    grid: list[Calibration],
    rng: np.random.Generator,
):
    spec = load_twin(ROOT / twin)
    runs = json.loads((ROOT / stored).read_text())["loads"]
    (run,) = [r for r in runs if abs(r["load"] - load) < 1e-9]
    service = run["summaries"]["service"]["priorities"][prio][f"latency_p{q}_s"]
    rows = []
    for cal in grid:
        s = spec.model_copy(update={"calibration": cal})
        sc = scenario_at(s, load, calibrated=True)
        res = run_scenario(sc, spec.strategy, spec.seed)
        frame = cmp.sim_frame(res.requests)
        lo, hi = sc.warmup_s, sc.horizon_s
        f = frame[(frame["arrival_s"] >= lo) & (frame["arrival_s"] < hi)]
        g = f[(f["outcome"] == "completed") & (f["priority"] == int(prio))]
        lat = (g["finish_s"] - g["submit_s"]).to_numpy()
        value = float(np.percentile(lat, q))
        boot = [float(np.percentile(rng.choice(lat, len(lat)), q)) for _ in range(400)]
        lo90, hi90 = np.percentile(boot, [5, 95])
        rows.append(
            {
                "a_s": cal.dispatch_overhead_s,
                "b": cal.dispatch_overhead_share,
                "poll_s": cal.poll_interval_s,
                "n": len(lat),
                "sim_s": round(value, 3),
                "error": round(cmp.rel(value, service), 3),
                "boot90_s": [round(float(lo90), 3), round(float(hi90), 3)],
            }
        )
    fleet_size(scenario_at(spec, load))  # (the scenario is valid at this load)
    return {"cell": f"{twin} load {load} priority {prio} p{q}", "service_s": service, "grid": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("line", "polled"), default="line")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    cells, grid = (LINE_CELLS, LINE_GRID) if args.model == "line" else (POLLED_CELLS, POLLED_GRID)
    out = [cell(*c, grid, rng) for c in cells]
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    for c in out:
        print(f"{c['cell']}: service {c['service_s']:.3f} s")
        for r in c["grid"]:
            print(
                f"  a {r['a_s']:.3f} s  b {r['b']:.3f}  poll {r['poll_s']:.2f} s  n {r['n']}"
                f"  sim {r['sim_s']:.3f} s  error {r['error']:+.1%}"
                f"  bootstrap 90% [{r['boot90_s'][0]:.3f}, {r['boot90_s'][1]:.3f}] s"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
