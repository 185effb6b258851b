"""Scenario files: the YAML schema, validated on load (docs/scenarios.md documents every key).

``load_scenario(path, overrides)`` reads a YAML file, applies dotted-key overrides
(``{"workload.load": 0.9, "fleet.count": 100, "fleet.groups.0.count": 4}``) and
validates the result. Every error names the key and the bad value:
``ScenarioError: steady.yaml: workload.load=-1: Input should be greater than 0``.
Unknown keys are errors too, so a typo never silently falls back to a default.
Numbers must be finite; those that size a run have a stated maximum (``MAX_*``
below, docs/scenarios.md), so an absurd value is refused before anything is drawn.
Units: seconds (``*_s``), megabytes (``*_mb``), rates per second unless named otherwise.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..policy.errors import RouterError
from ..policy.queue import DEFAULT_SLA_WAIT_S
from .trace_spec import TraceSpec


class ScenarioError(RouterError, ValueError):
    """A scenario file or override that cannot be run; the message names key and value."""


#: the largest values that size a run (refused above, with the maximum in the message)
MAX_LOAD = 10.0
MAX_GPUS = 100_000
MAX_SLOTS = 1024
MAX_USERS = 1_000_000
MAX_HORIZON_S = 1e9
MIN_MONITOR_PERIOD_S = 1e-3
MAX_TIMELINE_ROWS = 1_000_000
MAX_BURSTS = 1_000_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class GpuGroup(_Strict):
    model: str = "H100"
    count: int = Field(default=1, ge=0, le=MAX_GPUS)
    slots: int | None = Field(default=None, ge=1, le=MAX_SLOTS)
    speed: float | None = Field(default=None, gt=0)
    memory_mb: float | None = Field(default=None, gt=0)


class FleetSpec(_Strict):
    source: Literal["scenario", "alibaba"] = "scenario"
    model: str = "H100"
    count: int | None = Field(default=None, ge=1, le=MAX_GPUS)
    groups: tuple[GpuGroup, ...] = ()
    mode: Literal["exclusive", "shared"] = "exclusive"
    slots: int = Field(default=1, ge=1, le=MAX_SLOTS)
    nodes_path: str | None = None


class ArrivalSpec(_Strict):
    process: Literal["poisson", "mmpp", "diurnal"] = "poisson"
    burst_factor: float = Field(default=5.0, ge=1)
    burst_fraction: float = Field(default=0.1, gt=0, lt=1)
    burst_mean_s: float = Field(default=10.0, gt=0)
    period_s: float = Field(default=86_400.0, gt=0)
    amplitude: float = Field(default=0.5, ge=0, le=1)
    phase: float = 0.0


class ServiceSpec(_Strict):
    distribution: Literal["exponential", "deterministic", "lognormal", "gamma"] = "exponential"
    mean_s: float = Field(default=1.0, gt=0)
    cv: float = Field(default=1.0, ge=0)


class TypeSpec(_Strict):
    weight: float = Field(default=1.0, ge=0)
    work_scale: float = Field(default=1.0, gt=0)


class ModelSpec(_Strict):
    id: str
    weight: float = Field(default=1.0, ge=0)
    memory_mb: float = Field(default=0.0, ge=0)
    work_scale: float = Field(default=1.0, gt=0)
    min_compute_capability: tuple[int, int] | None = None
    weights_mb: float = Field(default=0.0, ge=0)


class UsersSpec(_Strict):
    count: int = Field(default=10, ge=1, le=MAX_USERS)
    skew: float = Field(default=0.0, ge=0)
    heavy_share: float = Field(default=0.0, ge=0, lt=1)


class CancelSpec(_Strict):
    """Clients that give up: a share of requests is cancelled after an exponential patience."""

    share: float = Field(default=0.0, ge=0, le=1)
    patience_s: float = Field(default=30.0, gt=0)


class WorkloadSpec(_Strict):
    load: float | None = Field(default=0.7, gt=0, le=MAX_LOAD)
    rate_rps: float | None = Field(default=None, gt=0)
    allow_overload: bool = False
    arrival: ArrivalSpec = ArrivalSpec()
    service: ServiceSpec = ServiceSpec()
    priorities: dict[int, float] = Field(default_factory=lambda: {3: 1.0})
    types: dict[str, TypeSpec] = Field(default_factory=lambda: {"inference": TypeSpec()})
    models: tuple[ModelSpec, ...] = (ModelSpec(id="default"),)
    users: UsersSpec = UsersSpec()
    timeout_s: float | None = Field(default=None, gt=0)
    cancel: CancelSpec = CancelSpec()
    trace: TraceSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> WorkloadSpec:
        for p, w in self.priorities.items():
            if not 1 <= p <= 5:
                raise ValueError(f"priorities: key {p!r} must be a priority 1..5")
            if w < 0:
                raise ValueError(f"priorities.{p}={w!r} must be >= 0")
        if sum(self.priorities.values()) <= 0:
            raise ValueError(f"priorities={self.priorities!r}: weights must sum to > 0")
        if sum(t.weight for t in self.types.values()) <= 0:
            raise ValueError("types: weights must sum to > 0")
        if not self.models or sum(m.weight for m in self.models) <= 0:
            raise ValueError("models: need at least one model with weight > 0")
        return self


class ModelLoadSpec(_Strict):
    """Measured model load times: a CSV ``path`` (relative: to the data directory), the
    ``column`` holding them, and ``unit_s`` seconds per unit (0.001 for ms)."""

    path: str
    column: str = "value"
    unit_s: float = Field(default=0.001, gt=0)


class ServiceModelSpec(_Strict):
    """Overrides of the calibrated constants (service_model.Calibration)."""

    sharing_gain: dict[int, float] | None = None
    context_overhead_mb: float | None = Field(default=None, ge=0)
    floor_ms: float | None = Field(default=None, ge=0)
    startup_s: float = Field(default=0.0, ge=0)
    #: the service's own time per request on top of its work, wall seconds: a constant
    #: and a share of the run time (dispatch, completion detection; the twin check
    #: measures both, docs/simulator.md); 0 models none
    dispatch_overhead_s: float = Field(default=0.0, ge=0, le=3600)
    dispatch_overhead_share: float = Field(default=0.0, ge=0, le=1)
    #: completion detection by polling as the service does (``dispatch.poll_interval``,
    #: ``max_poll_interval``): a job's end is seen at the first poll at or after it
    #: (service_model.poll_delay_s); 0 models none
    poll_interval_s: float = Field(default=0.0, ge=0, le=60)
    max_poll_interval_s: float = Field(default=1.0, gt=0, le=600)
    resident_models: int = Field(default=2, ge=1)
    model_load: ModelLoadSpec | None = None
    #: measured adapter (LoRA) load times, charged per adapter a request names
    #: (``workload.trace.columns.adapters``), model_loads.AdapterLoads
    adapter_load: ModelLoadSpec | None = None
    prefill_us_per_token: float | None = Field(default=None, gt=0)
    decode_ms_per_token: float | None = Field(default=None, gt=0)


class MonitorSpec(_Strict):
    enabled: bool = True
    period_s: float = Field(default=0.1, ge=MIN_MONITOR_PERIOD_S)
    lag_s: float = Field(default=0.275, ge=0)
    skip_unchanged: bool = True
    sleep_when_idle: bool = True


class FaultSpec(_Strict):
    kind: Literal["crash", "hang", "throttle", "xid_storm", "monitor_outage", "leave", "join"]
    gpus: tuple[int, ...] = ()
    fraction: float = Field(default=0.0, ge=0, le=1)
    at_s: float | None = Field(default=None, ge=0)
    duration_s: float = Field(default=60.0, gt=0)
    rate_per_gpu_hour: float = Field(default=0.0, ge=0)
    factor: float = Field(default=0.78, gt=0, le=1)
    fail_prob: float = Field(default=0.5, ge=0, le=1)
    detect_s: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check(self) -> FaultSpec:
        if self.at_s is None and self.rate_per_gpu_hour == 0:
            raise ValueError(f"fault {self.kind!r}: set at_s or rate_per_gpu_hour")
        return self


class Threshold(_Strict):
    metric: str
    priority: str = "all"
    max: float | None = None
    min: float | None = None


class GateSpec(_Strict):
    strategies: tuple[str, ...] = ("hybrid-seed",)
    seed: int = 1
    thresholds: tuple[Threshold, ...] = ()


class SlaSpec(_Strict):
    """``wait_target_s`` per priority (s);
    ``admit_by_wait`` refuses a request whose predicted wait exceeds its priority's
    ``admission_wait_s`` (default: ``wait_target_s``) unless ``router.queue`` sets it."""

    wait_target_s: dict[int, float] = Field(default_factory=lambda: dict(DEFAULT_SLA_WAIT_S))
    admit_by_wait: bool = False
    admission_wait_s: dict[int, float] = Field(default_factory=dict)
    gate: GateSpec | None = None

    @model_validator(mode="after")
    def _fill(self) -> SlaSpec:
        for table in (self.wait_target_s, self.admission_wait_s):
            for p, v in table.items():
                if p not in DEFAULT_SLA_WAIT_S or not v > 0:
                    raise ValueError(f"sla: priority {p!r} -> {v!r}: priorities 1-5, waits > 0")
        return self

    def admission_limits(self) -> dict[int, float]:
        """The longest predicted wait admitted per priority (s)."""
        return {**DEFAULT_SLA_WAIT_S, **self.wait_target_s, **self.admission_wait_s}


class Scenario(_Strict):
    name: str = "scenario"
    description: str = ""
    horizon_s: float = Field(default=600.0, gt=0, le=MAX_HORIZON_S)
    warmup_s: float = Field(default=0.0, ge=0)
    drain_s: float | None = Field(default=None, ge=0)
    timeline_period_s: float | None = Field(default=None, gt=0)
    fleet: FleetSpec = FleetSpec()
    workload: WorkloadSpec = WorkloadSpec()
    service_model: ServiceModelSpec = ServiceModelSpec()
    monitor: MonitorSpec = MonitorSpec()
    faults: tuple[FaultSpec, ...] = ()
    router: dict[str, Any] = Field(default_factory=dict)
    sla: SlaSpec = SlaSpec()
    source_path: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        if self.warmup_s >= self.horizon_s:
            raise ValueError(f"warmup_s={self.warmup_s!r} must be < horizon_s={self.horizon_s!r}")
        wl = self.workload
        if wl.load is None and wl.rate_rps is None and wl.trace is None:
            raise ValueError("workload: set load or rate_rps")
        if self.timeline_period_s is not None:
            rows = self.end_s / self.timeline_period_s
            if rows > MAX_TIMELINE_ROWS:
                raise ValueError(
                    f"timeline_period_s={self.timeline_period_s!r}: {rows:.3g} rows over"
                    f" horizon and drain ({self.end_s:g} s); at most {MAX_TIMELINE_ROWS:,}"
                )
        a = wl.arrival
        if a.process == "mmpp" and self.horizon_s * a.burst_fraction / a.burst_mean_s > MAX_BURSTS:
            raise ValueError(
                f"workload.arrival.burst_mean_s={a.burst_mean_s!r}: about"
                f" {self.horizon_s * a.burst_fraction / a.burst_mean_s:.3g} bursts over"
                f" horizon_s={self.horizon_s:g}; at most {MAX_BURSTS:,}"
            )
        load = wl.load if wl.trace is None and wl.rate_rps is None else None
        if load is not None and load >= 1 and not wl.allow_overload and not self.loss_system:
            raise ValueError(overload_message("workload.load", load, load))
        return self

    @property
    def end_s(self) -> float:
        """When the run stops at the latest: the horizon plus the drain."""
        drain = self.drain_s if self.drain_s is not None else 10 * self.horizon_s + 3600
        return self.horizon_s + drain

    @property
    def loss_system(self) -> bool:
        """``router.queue.max_size: 0``: refuse what cannot start at once (no queue)."""
        queue = self.router.get("queue")
        return isinstance(queue, Mapping) and queue.get("max_size") == 0


def overload_message(key: str, value: object, load: float) -> str:
    return (
        f"{key}={value!r}: offered load {load:.3g} >= 1 has no steady state (the queue grows"
        " with the horizon); set workload.allow_overload: true to run it anyway, or"
        " router.queue.max_size: 0 for a loss system"
    )


def set_dotted(data: dict[str, Any], key: str, value: object) -> None:
    """Set ``a.b.0.c`` in nested dicts/lists, creating dicts on the way."""
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = node[_index(key, part, node)]
            continue
        nxt = node.get(part)
        if nxt is None:
            nxt = {}
            node[part] = nxt
        elif not isinstance(nxt, dict | list):
            where = ".".join(parts[: i + 1])
            raise ScenarioError(f"{where}={nxt!r}: not a mapping, cannot set {key}")
        node = nxt
    last = parts[-1]
    if isinstance(node, list):
        node[_index(key, last, node)] = value
    else:
        node[last] = value


def _index(key: str, part: str, node: list[Any]) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ScenarioError(f"{key}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


def _format(err: ValidationError, label: str, data: Mapping[str, Any]) -> str:
    """One line: ``label: key=value: reason`` per error, joined by "; "."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if p not in ("function-after",))
        value = e.get("input")
        msg = str(e["msg"]).removeprefix("Value error, ")
        if not loc or isinstance(value, dict):
            # a check over several keys: its message names them (``warmup_s=...``)
            parts.append(f"{loc}: {msg}" if loc else msg)
        else:
            parts.append(f"{loc}={value!r}: {msg}")
    return f"{label}: " + "; ".join(parts)


def parse_scenario(
    data: Mapping[str, Any], overrides: Mapping[str, object] | None = None, label: str = "scenario"
) -> Scenario:
    """Validate a scenario mapping (after applying dotted ``overrides``)."""
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{label}: top level must be a mapping, got {type(data).__name__}")
    raw = copy.deepcopy(dict(data))
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    try:
        return Scenario.model_validate(raw)
    except ValidationError as err:
        raise ScenarioError(_format(err, label, raw)) from None


def load_scenario(path: str | Path, overrides: Mapping[str, object] | None = None) -> Scenario:
    """Read and validate a scenario YAML file; ``overrides`` are dotted keys."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ScenarioError(f"{path}: cannot read: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ScenarioError(f"{path.name}: invalid YAML: {err}") from None
    data = data or {}
    if isinstance(data, dict):
        data.setdefault("name", path.stem)
        data["source_path"] = str(path.resolve())
    return parse_scenario(data, overrides, label=path.name)
