"""A tiny SimPy-free stand-in for the simulator, injected into the runner by tests only.

Its frames have the simulator's columns; its numbers are a deterministic function of
the cell (waits grow like load / (1 - load), scaled per strategy), so tests can check
skipping, determinism and plots quickly without the real model.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from gpu_router.sweep.grid import Cell
from gpu_router.sweep.results import CellOutput

FACTOR = {
    "round-robin": 2.0,
    "random": 2.5,
    "least-loaded": 1.3,
    "earliest-completion": 1.05,
    "hybrid-seed": 1.5,
}


def fake_cell(cell: Cell) -> CellOutput:
    key = f"{cell.strategy}|{cell.scenario}|{cell.load}|{sorted(cell.overrides)}"
    rng = np.random.default_rng([cell.seed, zlib.crc32(key.encode())])
    load = cell.load or 0.7
    n, gpus = 200, int(dict(cell.overrides).get("fleet.count", 4))
    factor = FACTOR.get(cell.strategy, 1.8)
    submit = np.cumsum(rng.exponential(0.1, n))
    wait = rng.exponential(factor * load / (1 - min(load, 0.99)) * 0.05, n)
    service = rng.exponential(0.2, n)
    prio = rng.integers(1, 6, n)
    finish = submit + wait + service
    requests = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "user_id": [f"u{i % 7}" for i in range(n)],
            "priority": prio,
            "type": "inference",
            "model_id": "m",
            "submit_s": submit,
            "admit_s": submit,
            "dispatch_s": submit + wait,
            "start_s": submit + wait,
            "finish_s": finish,
            "gpu_id": [f"gpu-{i % gpus}" for i in range(n)],
            "outcome": "completed",
            "retries": 0,
            "wait_s": wait,
            "latency_s": wait + service,
            "service_s": service,
        }
    )
    rows = []
    for p in ["1", "2", "3", "4", "5", "all"]:
        sel = requests if p == "all" else requests[requests["priority"] == int(p)]
        w, lat = sel["wait_s"].to_numpy(), sel["latency_s"].to_numpy()
        rows.append(
            {
                "priority": p,
                "n_submitted": len(sel),
                "n_completed": len(sel),
                "n_rejected": 0,
                "n_failed": 0,
                "n_lost": 0,
                "wait_mean_s": w.mean(),
                "wait_p50_s": np.quantile(w, 0.5),
                "wait_p95_s": np.quantile(w, 0.95),
                "wait_p99_s": np.quantile(w, 0.99),
                "latency_p50_s": np.quantile(lat, 0.5),
                "latency_p95_s": np.quantile(lat, 0.95),
                "latency_p99_s": np.quantile(lat, 0.99),
                "sla_attainment": float((w < 0.5).mean()),
                "utilization": min(0.99, load * 0.97),
                "goodput_s": float(sel["service_s"].sum()),
                "jain_fairness": 0.9 + 0.1 / factor,
                "throughput_rps": len(sel) / finish.max(),
                "overhead_us_mean": 5.0,
                "overhead_us_p99": 9.0,
                "horizon_s": float(finish.max()),
                "erlang_c_wait_s": load / (1 - min(load, 0.99)) * 0.05,
            }
        )
    t = np.arange(0.0, 20.0, 1.0)
    timeline = pd.DataFrame(
        {
            "t": t,
            "queue_length": rng.integers(0, 9, len(t)),
            "gpus_up": np.where((t > 5) & (t < 12), gpus - 1, gpus),
            "rerouted": np.where(t == 6, 3, 0),
        }
    )
    gpu_frame = pd.DataFrame(
        {
            "gpu_id": [f"gpu-{i}" for i in range(gpus)],
            "model": "H100",
            "busy_s": 1.0,
            "utilization": load,
            "failures": 0,
            "completed": 1,
        }
    )
    return CellOutput(pd.DataFrame(rows), requests, gpu_frame, timeline, wall_s=0.01)


def failing_cell(cell: Cell) -> CellOutput:
    if cell.seed == 2:
        raise RuntimeError("boom")
    return fake_cell(cell)
