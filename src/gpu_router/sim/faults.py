"""Faults: when which GPU crashes, hangs, throttles or storms (drawn up front), and their effects.

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
- ``leave``: the GPU leaves the fleet (elastic fleet: ``Router.remove_gpu``); the router
  stops its running work and re-routes it. It joins again after ``duration_s``
  (``Router.add_gpu`` with a fresh sample).
- ``join``: the GPU is not in the fleet when the run starts and joins at ``at_s``
  (a ``leave`` from 0 to ``at_s``; it still counts in the fleet's size and utilization).

Which GPUs: explicit indices ``gpus``, else a ``fraction`` of the fleet drawn with
the fault generator, else GPU 0. When: ``at_s``, or a Poisson process of
``rate_per_gpu_hour`` per GPU over the horizon with exponential durations of mean
``duration_s``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from .gpus import SimGpu
from .kernel import later
from .records import RequestLog
from .scenario import FaultSpec, ScenarioError

XID_FAIL_DELAY_S = 0.05
#: the most fault events a run may draw
MAX_FAULT_EVENTS = 1_000_000


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
    for k, spec in enumerate(specs):
        targets = _targets(spec, n_gpus, rng)
        expected = spec.rate_per_gpu_hour / 3600.0 * n_gpus * horizon_s
        if spec.at_s is None and expected > MAX_FAULT_EVENTS:
            raise ScenarioError(
                f"faults.{k}.rate_per_gpu_hour={spec.rate_per_gpu_hour!r}: about {expected:.3g}"
                f" events over {n_gpus} GPUs and horizon_s={horizon_s:g};"
                f" at most {MAX_FAULT_EVENTS:,}"
            )
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
            if spec.kind == "join":
                times, durations, kind = [0.0], [spec.at_s or 0.0], "leave"
            else:
                kind = spec.kind
            for t, d in zip(times, durations, strict=True):
                events.append(
                    FaultEvent(
                        float(t), g, kind, float(d), spec.factor, spec.fail_prob, spec.detect_s
                    )
                )
    return sorted(events, key=lambda e: (e.at_s, e.gpu))  # stable: spec order on ties


class FaultEffects:
    """What faults do to the running model (mixed into the engine, which owns the state)."""

    env: simpy.Environment
    gpus: list[SimGpu]
    log: RequestLog
    router: Any
    monitor: Any
    fault_rng: np.random.Generator
    _down: list[int]
    _hang: list[int]
    _detected: list[bool]

    # the engine's methods these effects call (declared as methods, not attributes, so
    # that a mypyc build of both modules sees one kind of member)
    def _interrupted(self, i: int) -> None:
        raise NotImplementedError

    def _reschedule(self, g: SimGpu) -> None:
        raise NotImplementedError

    def _job_fails(self, event: Any) -> None:
        raise NotImplementedError

    def _apply(self, actions: list[Any]) -> None:
        raise NotImplementedError

    def _call(self, fn: Callable[..., list[Any]], *args: object) -> list[Any]:
        raise NotImplementedError

    def _wakeup(self) -> None:
        raise NotImplementedError

    def _fault_start(self, event: Any) -> None:
        ev: FaultEvent = event.value
        now = self.env.now
        later(self.env, ev.duration_s, ev, self._fault_end)
        if ev.kind == "monitor_outage":
            self.monitor.outages += 1
            return
        g = self.gpus[ev.gpu]
        if ev.kind == "leave":
            self._apply(self._call(self.router.remove_gpu, g.gid, now, "gpu left the fleet"))
            self._wakeup()
        elif ev.kind in ("crash", "hang"):
            g.failures += 1
            if ev.kind == "crash":
                self._down[g.index] += 1
                g.up = False
                for i in list(g.jobs):
                    g.remove(i, now)
                    self._interrupted(i)
            else:
                self._hang[g.index] += 1
                g.advance(now)
                g.hung = True
            self._reschedule(g)
            if ev.kind == "crash" or ev.detect_s is not None:
                delay = ev.detect_s or 0.0
                later(self.env, delay, ev, self._detect)
        elif ev.kind == "throttle":
            g.advance(now)
            g.factor *= ev.factor
            self._reschedule(g)
        elif ev.kind == "xid_storm":
            g.failures += 1
            g.storm_p = ev.fail_prob
            g.clock.touch(g.index)  # the monitor reports the new error rate
            for i in list(g.jobs):
                if self.fault_rng.random() < ev.fail_prob:
                    value = (i, g.index, self.log.attempt[i], "xid")
                    later(self.env, XID_FAIL_DELAY_S, value, self._job_fails)

    def _detect(self, event: Any) -> None:
        ev: FaultEvent = event.value
        g = self.gpus[ev.gpu]
        still = (not g.up) if ev.kind == "crash" else g.hung
        if not still or self._detected[g.index]:
            return
        self._detected[g.index] = True
        reason = "crash" if ev.kind == "crash" else "worker_unresponsive"
        self._apply(self._call(self.router.gpu_down, g.gid, self.env.now, reason))
        self._wakeup()

    def _fault_end(self, event: Any) -> None:
        ev: FaultEvent = event.value
        now = self.env.now
        if ev.kind == "monitor_outage":
            self.monitor.outages -= 1
            return
        g = self.gpus[ev.gpu]
        if ev.kind == "leave":
            g.advance(now)
            state = g.snapshot(now, 0.0)
            self._apply(self._call(self.router.add_gpu, state, now))
            self._wakeup()
            return
        if ev.kind == "crash":
            self._down[g.index] -= 1
            g.up = self._down[g.index] == 0
        elif ev.kind == "hang":
            self._hang[g.index] -= 1
            g.advance(now)
            g.hung = self._hang[g.index] > 0
        elif ev.kind == "throttle":
            g.advance(now)
            g.factor /= ev.factor
        elif ev.kind == "xid_storm":
            g.storm_p = 0.0
        self._reschedule(g)
        if g.up and not g.hung and self._detected[g.index]:
            self._detected[g.index] = False
            self._apply(self._call(self.router.gpu_up, g.gid, now))
            self._wakeup()
