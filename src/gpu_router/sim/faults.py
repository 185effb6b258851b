"""Fault schedules: when which GPU crashes, hangs, throttles or storms, drawn up front.

Kinds (scenario ``faults:`` list; docs/scenarios.md has every key):
- ``crash``: the GPU dies at once; its running work is lost. The router is told
  (``gpu_down``) after ``detect_s`` (default 0: Xid / NVML unreachable is immediate);
  dispatches to it in between fail. After ``duration_s`` it comes back (``gpu_up``).
- ``hang``: the worker stops making progress (rate 0) but answers nothing; with
  ``detect_s`` set, a heartbeat timeout reports it down after that long, else only
  request timeouts notice. Progress resumes after ``duration_s``.
- ``throttle``: thermal/power capping: speed times ``factor`` for ``duration_s``.
- ``xid_storm``: for ``duration_s`` each request running or started on the GPU
  fails with probability ``fail_prob`` (the router sees failures and error_rate).
- ``monitor_outage``: no monitor samples reach the router for ``duration_s``.

Which GPUs: explicit indices ``gpus``, else a ``fraction`` of the fleet drawn with
the fault generator, else GPU 0. When: ``at_s``, or a Poisson process of
``rate_per_gpu_hour`` per GPU over the horizon with exponential durations of mean
``duration_s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scenario import FaultSpec, ScenarioError


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One fault on one GPU (gpu = -1 for fleet-wide kinds such as monitor_outage)."""

    at_s: float
    gpu: int
    kind: str
    duration_s: float
    factor: float = 1.0
    fail_prob: float = 0.0
    detect_s: float | None = None


def _targets(spec: FaultSpec, n: int, rng: np.random.Generator) -> list[int]:
    if spec.kind == "monitor_outage":
        return [-1]
    if spec.gpus:
        bad = [g for g in spec.gpus if not 0 <= g < n]
        if bad:
            raise ScenarioError(f"faults.gpus={list(spec.gpus)!r}: {bad} not in 0..{n - 1}")
        return list(spec.gpus)
    if spec.fraction > 0:
        k = max(1, round(spec.fraction * n))
        return sorted(int(i) for i in rng.choice(n, size=k, replace=False))
    if spec.rate_per_gpu_hour > 0:
        return list(range(n))
    return [0]


def schedule(
    specs: tuple[FaultSpec, ...], n_gpus: int, horizon_s: float, rng: np.random.Generator
) -> list[FaultEvent]:
    """All fault events of a run, sorted by time (deterministic for a given generator)."""
    events: list[FaultEvent] = []
    for spec in specs:
        targets = _targets(spec, n_gpus, rng)
        for g in targets:
            if spec.at_s is not None:
                times = [spec.at_s]
                durations = [spec.duration_s]
            else:
                rate = spec.rate_per_gpu_hour / 3600.0
                if spec.kind == "monitor_outage":
                    rate *= n_gpus
                count = rng.poisson(rate * horizon_s)
                times = sorted(rng.random(count) * horizon_s)
                durations = list(rng.exponential(spec.duration_s, count))
            for t, d in zip(times, durations, strict=True):
                events.append(
                    FaultEvent(
                        float(t), g, spec.kind, float(d), spec.factor, spec.fail_prob, spec.detect_s
                    )
                )
    return sorted(events, key=lambda e: (e.at_s, e.gpu))  # stable: spec order on ties
