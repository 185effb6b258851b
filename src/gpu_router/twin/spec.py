"""Twin files: one simulator scenario, the loads to run it at, and the service's config.

A twin file (``scenarios/twin/*.yaml``, docs/simulator.md "The twin check")::

    scenario: {...}            # a simulator scenario (docs/scenarios.md), run by both sides
    loads: [0.5, 0.8, 0.95]    # offered loads; a trace is time-compressed to reach each
    seed: 1
    strategy: earliest-completion
    service: {...}             # service config keys (config.example.yaml) set on top
    calibration:               # what the calibrated simulator adds to each request
      dispatch_overhead_s: 0.03
      dispatch_overhead_share: 0.05

The service side runs virtual H100s with one real ``gpu-router worker`` each, so the
scenario's fleet must be one group of H100s in exclusive mode. Quotas are off on both
sides (the simulator's ``router.quotas_enabled: false``, limits too large to reach in the
service): the twin compares the queueing, not the limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..sim import Scenario, ScenarioError, draw_workload, parse_scenario
from ..sim.scenario import set_dotted

#: the scenario's ``router`` keys the service config can express (others are refused)
ROUTER_KEYS = frozenset({"strategy_options", "binding", "queue", "quotas_enabled"})
QUEUE_KEYS = {"max_size": "max_length", "max_wait_s": "max_wait_s"}
QUEUE_KEYS |= {"admission_share": "admission_share", "fair_share": "fair_share"}


class TwinError(ScenarioError):
    """A twin file the two sides cannot both run; the message names the key."""


class Calibration(BaseModel):
    """What the service adds to each request beyond its work (wall seconds; share of
    the run time), as measured by the twin (``overheads.fit``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    dispatch_overhead_s: float = Field(default=0.0, ge=0, le=60)
    dispatch_overhead_share: float = Field(default=0.0, ge=0, le=1)
    #: completion detection by polling (the service's ``dispatch.poll_interval`` and
    #: ``max_poll_interval``, s) modelled as the service does it; 0: folded into the above
    poll_interval_s: float = Field(default=0.0, ge=0, le=60)
    max_poll_interval_s: float = Field(default=1.0, gt=0, le=600)


class TwinSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    scenario: dict[str, Any]
    loads: tuple[float, ...] = (0.5, 0.8, 0.95)
    seed: int = 1
    strategy: str = "earliest-completion"
    service: dict[str, Any] = Field(default_factory=dict)
    calibration: Calibration = Calibration()
    min_requests: int = Field(default=100, ge=1)  # a priority with fewer is not judged
    tolerance: float = Field(default=0.10, gt=0)  # |sim / service - 1| that agrees
    drain_timeout_s: float = Field(default=120.0, gt=0)
    label: str = "twin"


def load_twin(path: str | Path, overrides: Mapping[str, object] | None = None) -> TwinSpec:
    """Read a twin file; ``overrides`` are dotted keys into it (``scenario.horizon_s``)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise TwinError(f"{path}: cannot read: {err}") from None
    if not isinstance(data, dict):
        raise TwinError(f"{path.name}: top level must be a mapping")
    data.setdefault("label", path.stem)
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    try:
        spec = TwinSpec.model_validate(data)
    except ValidationError as err:
        e = err.errors()[0]
        loc = ".".join(str(p) for p in e["loc"])
        raise TwinError(f"{path.name}: {loc}={e.get('input')!r}: {e['msg']}") from None
    check(spec, label=path.name)
    return spec


def check(spec: TwinSpec, label: str = "twin") -> None:
    """Refuse what only one side could run, naming the key."""
    sc = base_scenario(spec, label)
    fleet = sc.fleet
    if fleet.source != "scenario" or fleet.mode != "exclusive" or fleet.slots != 1:
        raise TwinError(f"{label}: scenario.fleet: the twin runs exclusive H100s, one slot each")
    if fleet.groups and (len(fleet.groups) > 1 or fleet.groups[0].model != "H100"):
        raise TwinError(f"{label}: scenario.fleet.groups: one group of H100s only")
    if not fleet.groups and fleet.model != "H100":
        raise TwinError(f"{label}: scenario.fleet.model={fleet.model!r}: the twin runs H100s")
    for key in sc.router:
        if key not in ROUTER_KEYS:
            raise TwinError(f"{label}: scenario.router.{key}: the service config has no such key")
    queue = sc.router.get("queue") or {}
    for key in queue:
        if key not in QUEUE_KEYS:
            raise TwinError(f"{label}: scenario.router.queue.{key}: not a service queue key")
    if sc.faults or sc.workload.cancel.share or sc.workload.timeout_s:
        raise TwinError(f"{label}: scenario: faults, cancels and timeouts are not replayed")
    for load in spec.loads:
        if not 0 < load < 1:
            raise TwinError(f"{label}: loads: {load!r} must be in (0, 1)")


def base_scenario(spec: TwinSpec, label: str = "twin") -> Scenario:
    data = dict(spec.scenario)
    data["router"] = {**(data.get("router") or {}), "quotas_enabled": False}
    return parse_scenario(data, label=label)


def fleet_size(sc: Scenario) -> int:
    return sc.fleet.groups[0].count if sc.fleet.groups else int(sc.fleet.count or 1)


def scenario_at(spec: TwinSpec, load: float, *, calibrated: bool = False) -> Scenario:
    """The scenario at offered ``load``: Poisson and friends set ``workload.load``; a
    trace is time-compressed (``trace.time_scale``) until its offered load is ``load``
    within 1%. ``calibrated``: with the twin's measured overheads in ``service_model``."""
    sc = base_scenario(spec)
    overrides: dict[str, object] = {}
    if sc.workload.trace is None:
        overrides["workload.load"] = load
    else:
        overrides["workload.trace.time_scale"] = _time_scale(spec, sc, load)
    if calibrated:
        for key, value in spec.calibration.model_dump().items():
            overrides[f"service_model.{key}"] = value
    data = {**spec.scenario, "router": {**sc.router}}
    return parse_scenario(data, overrides, label=spec.label)


def offered_load(sc: Scenario, seed: int) -> float:
    wl = draw_workload(sc, seed)
    return float(wl.work.sum()) / (sc.horizon_s * fleet_size(sc)) if len(wl) else 0.0


def _time_scale(spec: TwinSpec, sc: Scenario, load: float) -> float:
    if sc.workload.trace is None:
        raise TwinError(f"{spec.label}: scenario.workload.trace: none to time-compress")
    scale = sc.workload.trace.time_scale
    for _ in range(8):
        trial = sc.model_copy(
            update={
                "workload": sc.workload.model_copy(
                    update={"trace": sc.workload.trace.model_copy(update={"time_scale": scale})}
                )
            }
        )
        got = offered_load(trial, spec.seed)
        if got <= 0:
            raise TwinError(f"{spec.label}: the trace has no request in the window")
        if abs(got / load - 1) < 0.01:
            break
        scale *= load / got
    return scale
