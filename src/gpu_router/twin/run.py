"""One twin comparison: the same workload through the simulator and the live service.

For each load of the twin file: the scenario at that load (``spec.scenario_at``); the
workload the simulator draws for it (``sim.draw_workload``, the same seed); the
simulator run *raw* (no service overheads) and *calibrated* (the twin file's
``calibration`` in ``service_model``); the live service run on the wall clock with the
same requests (``launch``, ``replay``); the service's overheads measured from its
records (``overheads``) and the simulator run once more with the overheads fitted on
this very run (*refit*: the calibration's own model, its overheads fitted on this run;
what the model gives when the overhead is known, which tells a wrong model from an
overhead that moved with the machine's load); all summarized and compared the same way
(``compare``).
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from ..sim import draw_workload, run_scenario
from . import compare as cmp
from . import overheads
from .launch import SERVICE_KEY, LiveService
from .replay import replay
from .spec import Calibration, TwinSpec, fleet_size, scenario_at


def run_service(spec: TwinSpec, load: float, directory: Path) -> dict[str, Any]:
    """The live side at ``load``: records, job times and the replay's start (wall s)."""
    sc = scenario_at(spec, load)
    wl = draw_workload(sc, spec.seed)
    live = LiveService(directory, sc, spec.strategy, spec.service)
    live.start()
    try:
        wall0 = time.perf_counter()
        records, t0 = asyncio.run(
            replay(live.url, SERVICE_KEY, wl, drain_timeout_s=spec.drain_timeout_s)
        )
        wall = time.perf_counter() - wall0
    finally:
        live.stop()
    jobs = overheads.job_times(live.jobs(), t0)
    return {"records": records, "jobs": jobs, "wall_s": wall, "n": len(wl)}


def refit(parts: pd.DataFrame, calibration: Calibration) -> dict[str, float]:
    """``calibration``'s model with its overheads fitted on one service run's ``parts``:
    with polling modelled (``poll_interval_s`` > 0) the same poll schedule and the
    constant left beside it (``overheads.fit_polled``), else the line ``a + b * work``
    (``overheads.fit``)."""
    if calibration.poll_interval_s > 0:
        return overheads.fit_polled(
            parts, calibration.poll_interval_s, calibration.max_poll_interval_s
        )
    return overheads.fit(parts)


def run_load(spec: TwinSpec, load: float, directory: Path) -> dict[str, Any]:
    """Service, calibrated and raw simulator at one load: summaries, errors, overheads."""
    raw_sc = scenario_at(spec, load)
    cal_sc = scenario_at(spec, load, calibrated=True)
    window = (raw_sc.warmup_s, raw_sc.horizon_s)
    n = fleet_size(raw_sc)
    raw = run_scenario(raw_sc, spec.strategy, spec.seed)
    cal = run_scenario(cal_sc, spec.strategy, spec.seed)
    live = run_service(spec, load, directory)
    svc = cmp.summarize(cmp.service_frame(live["records"]), n, window)
    sums = {
        "service": svc,
        "sim_calibrated": cmp.summarize(cmp.sim_frame(cal.requests), n, window),
        "sim_raw": cmp.summarize(cmp.sim_frame(raw.requests), n, window),
    }
    parts = overheads.decompose(live["records"], live["jobs"])
    fitted = refit(parts, spec.calibration)
    if not all(math.isfinite(v) for v in fitted.values()):
        raise RuntimeError(
            f"load {load}: too few completed requests matched their workers' job logs"
            f" ({len(parts)} completed) to fit the service's overhead"
        )
    refit_spec = spec.model_copy(update={"calibration": Calibration(**fitted)})
    refit_run = run_scenario(
        scenario_at(refit_spec, load, calibrated=True), spec.strategy, spec.seed
    )
    sums["sim_refit"] = cmp.summarize(cmp.sim_frame(refit_run.requests), n, window)
    kw: dict[str, Any] = {"min_requests": spec.min_requests, "tolerance": spec.tolerance}
    trace = raw_sc.workload.trace
    return {
        "load": load,
        "requests": live["n"],
        "service_wall_s": round(live["wall_s"], 2),
        "time_scale": None if trace is None else trace.time_scale,
        "summaries": sums,
        "calibrated_vs_service": cmp.compare(sums["sim_calibrated"], svc, **kw),
        "refit_vs_service": cmp.compare(sums["sim_refit"], svc, **kw),
        "raw_vs_service": cmp.compare(sums["sim_raw"], svc, **kw),
        "overheads": {**overheads.summary(parts), "refit": fitted},
        "table": cmp.table(load, svc, sums["sim_calibrated"], sums["sim_refit"], sums["sim_raw"]),
    }


def run_twin(
    spec: TwinSpec, loads: tuple[float, ...] | None = None, directory: Path | None = None
) -> dict[str, Any]:
    """Every load of ``spec`` (or ``loads``); a JSON-ready dict (``tables``: markdown)."""
    out: dict[str, Any] = {
        "label": spec.label,
        "strategy": spec.strategy,
        "seed": spec.seed,
        "calibration": spec.calibration.model_dump(),
        "tolerance": spec.tolerance,
        "min_requests": spec.min_requests,
        "loads": [],
    }
    with tempfile.TemporaryDirectory(prefix="twin-") as tmp:
        base = directory or Path(tmp)
        for load in loads or spec.loads:
            out["loads"].append(run_load(spec, load, base / f"load{load:g}"))
    return out


def clean(x: Any) -> Any:
    """NaN and infinities as None (strict JSON)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [clean(v) for v in x]
    return x
