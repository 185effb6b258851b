"""The public API of the simulator (what the sweep, the CLI and the notebooks call).

    from gpu_router.sim import load_scenario, run_scenario, SimResult
    scenario = load_scenario("scenarios/steady.yaml", {"workload.load": 0.9})
    result = run_scenario(scenario, "hybrid-seed", seed=1)
    result.summary; result.requests; result.gpus; result.timeline
    result.write("out/")

Strategy names are the policy registry's; options may follow a colon,
``"power-of-d:d=3"``, or come from the scenario's ``router.strategy_options``
(a mapping of options, or a mapping from strategy name to options).

Randomness: one ``SeedSequence(seed)`` per run, spawned into independent child
generators for the workload, the faults and the router, so the same seed gives
the same tables to the last digit (except the two real-clock overhead columns).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ..policy.errors import InvalidValue
from ..policy.strategies import make_strategy
from . import metrics as m
from . import notes
from .engine import Engine
from .faults import schedule
from .fleet import build_fleet, capacity
from .gpus import SampleClock, SimGpu
from .model_loads import AdapterLoads, LoadTimes
from .router_like import RouterLike
from .scenario import Scenario, ScenarioError, load_scenario
from .service_model import ServiceModel
from .theory import mmc_wait_or_nan
from .traces import read_trace
from .workload import Workload, generate

__all__ = ["SimResult", "draw_workload", "load_scenario", "parse_strategy", "run_scenario"]

RouterFactory = Callable[[list[Any], Mapping[str, Any], np.random.Generator], RouterLike]


@dataclass
class SimResult:
    """The tables of one run (column names in ``gpu_router.sim.metrics``)."""

    scenario: Scenario
    strategy: str
    seed: int
    requests: pd.DataFrame
    gpus: pd.DataFrame
    summary: pd.DataFrame
    timeline: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    def write(self, directory: str | Path) -> Path:
        """Write requests/gpus/summary/timeline.parquet into ``directory`` (created)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for name in ("requests", "gpus", "summary", "timeline"):
            getattr(self, name).to_parquet(out / f"{name}.parquet", index=False)
        return out

    def row(self, priority: str = "all") -> dict[str, Any]:
        """One summary row as a dict (``priority`` "1".."5" or "all")."""
        part = self.summary.loc[self.summary[m.PRIORITY] == priority]
        row: dict[str, Any] = part.iloc[0].to_dict()
        return row


def parse_strategy(name: str) -> tuple[str, dict[str, Any]]:
    """``"power-of-d:d=3,x=1"`` -> ``("power-of-d", {"d": 3, "x": 1})``."""
    base, _, rest = name.partition(":")
    opts: dict[str, Any] = {}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise ScenarioError(f"strategy={name!r}: options are key=value, got {part!r}")
        opts[key.strip()] = yaml.safe_load(value)
    return base.strip(), opts


def _scenario_options(scenario: Scenario, name: str) -> dict[str, Any]:
    opts = scenario.router.get("strategy_options") or {}
    if opts and all(isinstance(v, Mapping) for v in opts.values()):
        opts = opts.get(name, {})
    return dict(opts)


def check_strategy(scenario: Scenario, strategy: str) -> None:
    """Build the strategy once, so a bad name or option is refused naming where it came
    from: the strategy string (``power-of-d:d=0``) or ``router.strategy_options``."""
    name, cli = parse_strategy(strategy)
    opts = {**_scenario_options(scenario, name), **cli}
    try:
        make_strategy(name, opts)
    except InvalidValue as err:
        if err.field == "strategy":
            raise ScenarioError(f"strategy={name!r}: {err.reason}") from None
        option = err.field.split(".")[0]
        if option in cli or (err.field == "strategy_options" and cli):
            where = f"strategy={strategy!r}: option {err.field}"
        else:
            where = f"router.strategy_options.{err.field}".removesuffix(".strategy_options")
        raise ScenarioError(f"{where}={err.value!r}: {err.reason}") from None


def router_config(scenario: Scenario, strategy: str, service: ServiceModel) -> dict[str, Any]:
    """The RouterConfig mapping of a run: scenario ``router:`` + the strategy.

    Trace replays run without per-user quotas unless the scenario sets ``quotas`` or
    ``quotas_enabled`` (their user ids are synthetic; notes.quotas_apply)."""
    name, opts = parse_strategy(strategy)
    cfg = dict(scenario.router)
    cfg.pop("strategy_options", None)
    cfg["strategy"] = name
    cfg["strategy_options"] = {**_scenario_options(scenario, name), **opts}
    cfg.setdefault("context_overhead_mb", service.cal.context_overhead_mb)
    cfg["quotas_enabled"] = notes.quotas_apply(scenario)
    if scenario.sla.admit_by_wait:
        queue = dict(cfg.get("queue") or {})
        queue.setdefault("admission_wait_s", scenario.sla.admission_limits())
        cfg["queue"] = queue
    return cfg


def _default_router(
    gpus: list[Any], cfg: Mapping[str, Any], rng: np.random.Generator
) -> RouterLike:
    from ..policy import Router, RouterConfig

    return Router(gpus, RouterConfig.from_mapping(cfg), rng)


def build_workload(
    scenario: Scenario,
    fleet_capacity: float,
    mean_speed: float,
    service: ServiceModel,
    rng: np.random.Generator,
) -> Workload:
    spec = scenario.workload
    if spec.trace is None:
        wl = generate(rng, spec, fleet_capacity, scenario.horizon_s)
    else:
        wl = read_trace(rng, spec, service, mean_speed, scenario.horizon_s)
        wl = replace(wl, mean_work=float(wl.work.mean()) if len(wl) else math.nan)
    return replace(wl, work=service.apply_floor(wl.work))


def draw_workload(scenario: Scenario, seed: int) -> Workload:
    """The workload ``run_scenario(scenario, ..., seed)`` replays, drawn the same way
    (arrays: arrival_s, work in H100-s with the floor applied, declared_ms, priority,
    user, ...), for a replay of the same requests elsewhere (the twin check)."""
    wl_ss = np.random.SeedSequence(seed).spawn(3)[0]
    fleet = build_fleet(scenario.fleet)
    service = ServiceModel(scenario.service_model)
    cap = capacity(fleet)
    return build_workload(scenario, cap, cap / len(fleet), service, np.random.default_rng(wl_ss))


def run_scenario(
    scenario: Scenario, strategy: str, seed: int, *, router_factory: RouterFactory | None = None
) -> SimResult:
    """Run one scenario with one strategy and seed; deterministic for a given seed."""
    wall0 = time.perf_counter()
    check_strategy(scenario, strategy)
    # a fourth child for model loads, a fifth for adapter loads: the first ones are the
    # same as with spawn(3)
    wl_ss, fault_ss, router_ss, load_ss, adapter_ss = np.random.SeedSequence(seed).spawn(5)
    fleet = build_fleet(scenario.fleet)
    service = ServiceModel(scenario.service_model)
    cap = capacity(fleet)
    mean_speed = cap / len(fleet)
    wl = build_workload(scenario, cap, mean_speed, service, np.random.default_rng(wl_ss))
    load = notes.offered_load(wl.rate_rps, wl.mean_work, cap)
    notes.check_offered_load(scenario, load)
    fault_rng = np.random.default_rng(fault_ss)
    faults = schedule(scenario.faults, len(fleet), scenario.horizon_s, fault_rng)
    cfg = router_config(scenario, strategy, service)
    try:
        router = (router_factory or _default_router)(
            [g.state() for g in fleet], cfg, np.random.default_rng(router_ss)
        )
    except InvalidValue as err:
        key = err.field if err.field.startswith("router.") else f"router.{err.field}"
        raise ScenarioError(f"{key}={err.value!r}: {err.reason}") from None
    clock = SampleClock()
    gpus = [SimGpu(i, spec, service, clock) for i, spec in enumerate(fleet)]
    spec = scenario.service_model.model_load
    load_times = LoadTimes.from_spec(spec) if spec is not None else None
    a_spec = scenario.service_model.adapter_load
    adapters = None
    if a_spec is not None and wl.adapters is None:
        raise ScenarioError(
            "service_model.adapter_load: name the adapter counts (workload.trace.columns.adapters)"
        )
    if a_spec is not None and wl.adapters is not None:
        rng = np.random.default_rng(adapter_ss)
        adapters = AdapterLoads(LoadTimes.from_spec(a_spec), wl.adapters, rng)
    engine = Engine(
        scenario,
        wl,
        gpus,
        router,
        faults,
        fault_rng,
        np.random.default_rng(load_ss),
        load_times,
        adapters,
    )
    engine.run()
    res = _result(scenario, strategy, seed, wl, engine, mean_speed, wall0)
    res.info["offered_load"] = load
    res.info["defaults"] = notes.defaults(scenario)
    note = notes.stability_note(scenario, load)
    if note:
        res.info["notes"].insert(0, note)
    return res


def _result(
    scenario: Scenario,
    strategy: str,
    seed: int,
    wl: Workload,
    engine: Engine,
    mean_speed: float,
    wall0: float,
) -> SimResult:
    gpu_ids = [g.gid for g in engine.gpus]
    requests, served = engine.log.frame(wl, gpu_ids)
    speeds = np.array([g.speed for g in engine.gpus] + [1.0])
    gpu_seconds = served / speeds[np.array(engine.log.gpu, dtype=np.int64)]
    start, end = scenario.warmup_s, scenario.horizon_s
    b0, b1 = (np.array(x) for x in engine.window_busy[:2])
    window_busy = b1 - b0
    span = end - start
    utilization = float(window_busy.sum() / (len(gpu_ids) * span))
    now = engine.env.now
    gpus = pd.DataFrame(
        {
            m.GPU_ID: gpu_ids,
            m.MODEL: [g.spec.model for g in engine.gpus],
            m.BUSY_S: [g.busy_at(now) for g in engine.gpus],
            m.UTILIZATION: window_busy / span,
            m.FAILURES: [g.failures for g in engine.gpus],
            m.COMPLETED_COUNT: [g.completed for g in engine.gpus],
        },
        columns=list(m.GPU_COLUMNS),
    )
    mu = mean_speed / wl.mean_work if wl.mean_work > 0 else math.nan
    why = notes.erlang_c_reason(scenario, [g.spec for g in engine.gpus])
    erlang = mmc_wait_or_nan(wl.rate_rps, mu, len(gpu_ids)) if len(wl) and not why else math.nan
    if not why and math.isnan(erlang):
        why = "no steady state (offered load >= 1)"
    summary = m.summarize(
        requests,
        demand_s=wl.work,
        served_s=served,
        gpu_seconds=gpu_seconds,
        window=(start, end),
        utilization=utilization,
        overhead_ns=np.array(engine.overhead_ns, dtype=np.int64),
        wait_target=dict(scenario.sla.wait_target_s),
        erlang_c_wait_s=erlang,
    )
    timeline = pd.DataFrame(engine.timeline, columns=list(m.TIMELINE_COLUMNS))
    info = {
        "wall_s": time.perf_counter() - wall0,
        "n_requests": len(wl),
        "rate_rps": wl.rate_rps,
        "mean_work_s": wl.mean_work,
        "last_finish_s": float(requests[m.FINISH_S].max()) if len(requests) else math.nan,
        "router_calls": len(engine.overhead_ns),
        "monitor_samples": engine.monitor.samples,
        "monitor_delivered": engine.monitor.delivered,
        "notes": [f"erlang_c_wait_s absent: {why}"] if why else [],
    }
    locality = getattr(engine.router, "locality", None)
    stats = locality() if locality is not None else None
    if stats is not None:
        mb = engine.model_mb_samples
        info["cold_starts"] = engine.cold_starts
        info["warm_starts"] = stats.warm_starts
        info["load_s_total"] = engine.load_s_total
        per_gpu_gb = sum(mb) / len(mb) / len(gpu_ids) / 1000.0 if mb else 0.0
        info["model_gb_per_gpu_mean"] = per_gpu_gb
    if engine.adapters is not None:
        info["adapter_loads"] = engine.adapters.loads
        info["adapter_load_s_total"] = engine.adapters.load_s_total
    return SimResult(scenario, strategy, seed, requests, gpus, summary, timeline, info)
