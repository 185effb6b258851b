"""Simulator speed: simulated requests per wall-clock second, printed as JSON.

For each fleet size it runs the same M/M/c workload (scenarios/mmc.yaml, load 0.8)
three ways in the same process:

- ``bare_simpy``: a textbook SimPy M/M/c (one process per customer, a Resource);
- ``engine_only``: our engine with a minimal FIFO router stub (the simulator's
  own cost: arrivals, processor-sharing GPUs, records, tables);
- ``full``: our engine driving the real ``policy.Router`` (default strategy).

and reports ratios to bare SimPy, the policy's own time per request in the full model
(``full_router_us``: the engine's clock around submit, complete, fail, cancel, tick and
observe; ``start`` and ``next_wakeup`` are not clocked), the wall time of a
1,000,000-request run of the full model (``--million``), and of the Alibaba-fleet
replay (``--alibaba``). ``--clock cpu`` times the three sides with this process's CPU
time instead of the wall clock (other jobs on the same cores then count less).

    .venv/bin/python benchmarks/sim_throughput.py [--requests 50000] [--million] [--alibaba]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import simpy

from gpu_router.policy.decisions import Dispatch, Enqueue, Finished
from gpu_router.sim import load_scenario, run_scenario

ROOT = Path(__file__).resolve().parents[1]
MMC = ROOT / "scenarios" / "mmc.yaml"
#: the clock of the timings (``--clock cpu``: time.process_time)
CLOCK = time.perf_counter


def bare_simpy(c: int, n: int, load: float, seed: int = 1) -> float:
    """Wall seconds of a plain SimPy M/M/c with n customers."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / (load * c), n).tolist()
    services = rng.exponential(1.0, n).tolist()
    waits = []
    env = simpy.Environment()
    servers = simpy.Resource(env, capacity=c)

    def customer(i):
        arrive = env.now
        with servers.request() as req:
            yield req
            waits.append(env.now - arrive)
            yield env.timeout(services[i])

    def source():
        for i in range(n):
            yield env.timeout(gaps[i])
            env.process(customer(i))

    t0 = CLOCK()
    env.process(source())
    env.run()
    return CLOCK() - t0


class FifoStub:
    """The smallest Router-contract implementation: one FIFO queue, first free GPU."""

    def __init__(self, gpus, _cfg, _rng):
        self.free = [g.gpu_id for g in gpus][::-1]
        self.queue: list[str] = []
        self.on: dict[str, str] = {}
        self.queue_length = 0

    def submit(self, request, now):
        rid = request.request_id
        if self.free:
            gid = self.free.pop()
            self.on[rid] = gid
            return Enqueue(1), [Dispatch(rid, gid)]
        self.queue.append(rid)
        return Enqueue(len(self.queue)), []

    def start(self, rid, now):
        return []

    def complete(self, rid, now):
        gid = self.on.pop(rid)
        out = [Finished(rid, "completed")]
        if self.queue:
            nxt = self.queue.pop(0)
            self.on[nxt] = gid
            out.append(Dispatch(nxt, gid))
        else:
            self.free.append(gid)
        return out

    def next_wakeup(self):
        return None

    def tick(self, now):
        return []

    def observe(self, state, now):
        return []


def ours(c: int, n: int, load: float, stub: bool, seed: int = 1) -> tuple[float, int, float]:
    """(wall seconds, requests, router seconds as the engine clocked them)."""
    sc = load_scenario(
        MMC, {"fleet.count": c, "workload.load": load, "horizon_s": n / (load * c), "warmup_s": 0}
    )
    t0 = CLOCK()
    res = run_scenario(sc, "earliest-completion", seed, router_factory=FifoStub if stub else None)
    wall = CLOCK() - t0
    calls, mean_us = res.info["router_calls"], float(res.summary["overhead_us_mean"].iloc[0])
    return wall, len(res.requests), calls * mean_us / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=50_000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 1000])
    ap.add_argument("--load", type=float, default=0.8)
    ap.add_argument("--million", action="store_true", help="time a 1,000,000-request run")
    ap.add_argument("--alibaba", action="store_true", help="time the Alibaba-fleet replay")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    out: dict[str, object] = {
        "python": platform.python_version(),
        "simpy": simpy.__version__,
        "load": args.load,
        "clock": args.clock,
        "sizes": {},
    }
    for c in args.sizes:
        bare = bare_simpy(c, args.requests, args.load)
        eng, n_eng, _ = ours(c, args.requests, args.load, stub=True)
        full, n_full, router = ours(c, args.requests, args.load, stub=False)
        out["sizes"][str(c)] = {
            "requests": args.requests,
            "bare_simpy_rps": round(args.requests / bare),
            "engine_only_rps": round(n_eng / eng),
            "full_rps": round(n_full / full),
            "engine_only_vs_bare": round(eng / n_eng / (bare / args.requests), 2),
            "full_vs_bare": round(full / n_full / (bare / args.requests), 2),
            "full_router_us": round(router / n_full * 1e6, 2),
        }
    if args.million:
        wall, n, router = ours(10, 1_000_000, args.load, stub=False)
        out["million"] = {
            "gpus": 10,
            "requests": n,
            "wall_s": round(wall, 1),
            "router_s": round(router, 1),
        }
        wall, n, _ = ours(10, 1_000_000, args.load, stub=True)
        out["million_engine_only"] = {"gpus": 10, "requests": n, "wall_s": round(wall, 1)}
    if args.alibaba:
        sc = load_scenario(ROOT / "scenarios" / "alibaba_replay.yaml")
        t0 = time.perf_counter()
        res = run_scenario(sc, "earliest-completion", 1)
        out["alibaba_replay"] = {
            "gpus": len(res.gpus),
            "requests": len(res.requests),
            "wall_s": round(time.perf_counter() - t0, 1),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
