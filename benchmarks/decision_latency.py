"""Time one routing decision (admission, queueing and GPU choice) per strategy and fleet size.

A decision is one ``Router.submit`` on a fleet kept about 80% busy: the request
is admitted (quotas, rate limits, queue bound), queued, and placed by the strategy
on one of the free GPUs. Between decisions a running request completes (untimed),
so the load stays level. Fleets of 10, 100, 1,000 GPUs are H100s; 6,212 is the
Alibaba GPU-v2023 fleet (P100 ... G3) from data/traces.

    .venv/bin/python benchmarks/decision_latency.py [--decisions N] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time

import numpy as np

from gpu_router.policy import (
    STRATEGIES,
    GpuState,
    Request,
    ResourceRequirements,
    Router,
    RouterConfig,
)
from gpu_router.policy.quota import QuotaLimits
from gpu_router.sim.fleet import GPU_MODELS, alibaba_groups

SIZES = (10, 100, 1_000, 6_212)


def make_fleet(n: int) -> list[GpuState]:
    if n == 6_212:
        groups = alibaba_groups()
        assert sum(c for _m, c in groups) == 6_212
    else:
        groups = [("H100", n)]
    fleet = []
    for model, count in groups:
        mem, cc, speed = GPU_MODELS[model]
        for _ in range(count):
            fleet.append(
                GpuState(
                    gpu_id=f"gpu-{len(fleet)}",
                    name=model,
                    memory_total_mb=mem,
                    compute_capability=cc,
                    speed=speed,
                    performance_index=min(1, speed),
                )
            )
    return fleet


def measure(strategy: str, n: int, decisions: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    limits = QuotaLimits(
        requests_per_minute=10**9,
        requests_per_day=10**9,
        concurrent_requests=10**9,
        priority_requests=10**9,
        gpu_minutes=1e12,
    )
    router = Router(make_fleet(n), RouterConfig(strategy=strategy, quotas=limits), rng)
    users = [f"user-{k}" for k in range(50)]
    running: list[str] = []

    def request(k: int) -> Request:
        memory = float(rng.integers(1, 12)) * 1024
        return Request(
            f"r{k}",
            users[k % 50],
            f"model-{k % 7}",
            int(rng.integers(1, 6)),
            "inference",
            ResourceRequirements(memory_mb=memory, expected_duration_ms=2000.0),
        )

    k = 0
    for _ in range(int(0.8 * n)):  # warm the fleet to ~80% busy
        router.submit(request(k), 0.0)
        running.append(f"r{k}")
        k += 1
    samples = np.empty(decisions)
    gc.disable()
    try:
        for j in range(decisions):
            req = request(k)
            t0 = time.perf_counter_ns()
            _decision, _actions = router.submit(req, float(j))
            samples[j] = time.perf_counter_ns() - t0
            running.append(req.request_id)
            k += 1
            done = running.pop(int(rng.integers(len(running))))
            router.complete(done, float(j) + 0.5)
    finally:
        gc.enable()
    us = samples / 1_000.0
    return {
        "strategy": strategy,
        "gpus": n,
        "decisions": decisions,
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
        "mean_us": round(float(us.mean()), 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decisions", type=int, default=3_000)
    ap.add_argument("--strategies", nargs="*", default=sorted(STRATEGIES))
    ap.add_argument("--sizes", nargs="*", type=int, default=list(SIZES))
    ap.add_argument("--json", action="store_true", help="print the cells as JSON")
    args = ap.parse_args(argv)
    rows = [measure(s, n, args.decisions) for s in args.strategies for n in args.sizes]
    if args.json:
        json.dump({"unit": "microseconds per Router.submit", "cells": rows}, sys.stdout, indent=1)
        print()
        return 0
    print(f"{'strategy':<22}" + "".join(f"{n:>16}" for n in args.sizes))
    print(f"{'(p50 / p99 us)':<22}" + "".join(f"{'GPUs':>16}" for _ in args.sizes))
    for s in args.strategies:
        cells = [r for r in rows if r["strategy"] == s]
        print(f"{s:<22}" + "".join(f"{r['p50_us']:>8.1f} /{r['p99_us']:>6.1f}" for r in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
