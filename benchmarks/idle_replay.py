"""Idle time in a long low-load replay: the monitor ticking through it vs sleeping.

Runs ``scenarios/genai_replay.yaml`` (23 days, about 10% utilization) with
``monitor.sleep_when_idle`` false (every period sampled, as before the change) and
true, one after the other in the same process, checks the tables are identical and
prints JSON: wall seconds, monitor samples taken, router calls.

    .venv/bin/python benchmarks/idle_replay.py [--strategy earliest-completion] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import pandas as pd

from gpu_router.sim import load_scenario, run_scenario

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "genai_replay.yaml"))
    ap.add_argument("--strategy", default="earliest-completion")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    overrides = dict(kv.split("=", 1) for kv in args.set)
    runs = []
    for rep in range(args.repeat):
        tables = {}
        for sleep in (False, True):
            sc = load_scenario(args.scenario, {**overrides, "monitor.sleep_when_idle": sleep})
            res = run_scenario(sc, args.strategy, 1)
            tables[sleep] = res.requests
            runs.append(
                {
                    "repeat": rep,
                    "sleep_when_idle": sleep,
                    "wall_s": round(res.info["wall_s"], 2),
                    "requests": res.info["n_requests"],
                    "monitor_samples": res.info["monitor_samples"],
                    "router_calls": res.info["router_calls"],
                    "utilization": round(float(res.row()["utilization"]), 4),
                }
            )
        pd.testing.assert_frame_equal(tables[False], tables[True])
    print(
        json.dumps(
            {
                "scenario": Path(args.scenario).name,
                "strategy": args.strategy,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "identical_requests_table": True,
                "runs": runs,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
