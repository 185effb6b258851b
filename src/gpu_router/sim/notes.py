"""What a run assumed without being told, and where its reference figures do not apply.

The CLI prints these in the summary header and ``SimResult.info`` carries them
(``defaults``, ``notes``), so a researcher sees that a scenario without ``fleet``
ran on one H100, that an overloaded run is unstable, or why ``erlang_c_wait_s``
is absent (NaN) for a run:

- ``defaults(scenario)``: the defaults that shape the run (fleet, horizon, load,
  quotas) when the scenario does not set them;
- ``erlang_c_reason(scenario, fleet)``: None when the run is an M/M/c system
  (Poisson arrivals, exponential service, identical exclusive GPUs, no
  abandonment, no capacity faults), else why the closed form does not apply;
- ``offered_load`` / ``check_offered_load``: rate x mean work / capacity, and the
  refusal of an explicit ``rate_rps`` at or above capacity without ``allow_overload``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..policy.quota import QuotaLimits
from .fleet import GpuSpec
from .scenario import Scenario, ScenarioError, overload_message

CAPACITY_FAULTS = ("crash", "hang", "throttle", "xid_storm")


def quotas_apply(scenario: Scenario) -> bool:
    """Per-user quotas are on: set by the scenario, or the default of synthetic runs.

    Trace replays default to no quotas: their synthetic user ids would otherwise hit
    the default limits at low utilization (docs/scenarios.md).
    """
    router = scenario.router
    if "quotas_enabled" in router:
        return bool(router["quotas_enabled"])
    return scenario.workload.trace is None or "quotas" in router


def defaults(scenario: Scenario) -> list[str]:
    """The defaults that apply to this scenario's run, one phrase each."""
    out = []
    given = scenario.model_fields_set
    if "fleet" not in given:
        out.append("fleet: 1 x H100 (the scenario sets no fleet)")
    if "horizon_s" not in given:
        out.append(f"horizon_s: {scenario.horizon_s:g}")
    wl = scenario.workload
    if wl.trace is None and wl.rate_rps is None and "load" not in wl.model_fields_set:
        out.append(f"workload.load: {wl.load:g}")
    router = scenario.router
    if wl.trace is not None and "quotas_enabled" not in router and "quotas" not in router:
        out.append("router.quotas_enabled: false (trace replay)")
    elif quotas_apply(scenario) and "quotas" not in router:
        q = QuotaLimits()
        out.append(
            f"router.quotas: per user {q.requests_per_minute} req/min,"
            f" {q.concurrent_requests} concurrent, {q.priority_requests} at priority 5"
        )
    return out


def offered_load(rate_rps: float, mean_work: float, capacity: float) -> float:
    """Offered load rho: H100-seconds of work arriving per second over the fleet's speed."""
    return rate_rps * mean_work / capacity if capacity > 0 else float("inf")


def check_offered_load(scenario: Scenario, load: float) -> None:
    """Refuse an explicit ``rate_rps`` at or over capacity unless the scenario allows it."""
    wl = scenario.workload
    if wl.trace is not None or wl.rate_rps is None or load < 1:
        return
    if not wl.allow_overload and not scenario.loss_system:
        raise ScenarioError(overload_message("workload.rate_rps", wl.rate_rps, load))


def stability_note(scenario: Scenario, load: float) -> str | None:
    if scenario.workload.trace is None and load >= 1 and not scenario.loss_system:
        return (
            f"unstable: offered load {load:.3g} >= 1 (allow_overload), waits grow with the"
            " horizon and refusals carry the excess"
        )
    return None


def erlang_c_reason(scenario: Scenario, fleet: Sequence[GpuSpec]) -> str | None:
    """Why the M/M/c closed form does not describe this run (None: it does)."""
    wl = scenario.workload
    if wl.trace is not None:
        return "trace replay (arrivals are not Poisson)"
    if wl.arrival.process != "poisson":
        return f"{wl.arrival.process} arrivals are not Poisson"
    if wl.service.distribution != "exponential":
        return f"{wl.service.distribution} service is not exponential"
    type_scales = {t.work_scale for t in wl.types.values() if t.weight > 0}
    model_scales = {m.work_scale for m in wl.models if m.weight > 0}
    if len(type_scales) > 1 or len(model_scales) > 1:
        return "work scales differ between types or models (a mixture of exponentials)"
    if len({g.speed for g in fleet}) > 1:
        return "GPUs of different speeds"
    if any(g.slots != 1 for g in fleet):
        return "shared GPUs (processor sharing, not c servers)"
    if scenario.loss_system:
        return "loss system (router.queue.max_size 0: Erlang B, not C)"
    if wl.timeout_s is not None or wl.cancel.share > 0:
        return "timeouts or cancellations (abandonment)"
    sm = scenario.service_model
    if sm.dispatch_overhead_s > 0 or sm.dispatch_overhead_share > 0 or sm.poll_interval_s > 0:
        return "dispatch overhead added to the work"
    if sm.startup_s > 0 or any(m.weights_mb > 0 for m in wl.models):
        return "startup or model-load time added to the work"
    if any(f.kind in CAPACITY_FAULTS for f in scenario.faults):
        return "faults change the capacity"
    return None
