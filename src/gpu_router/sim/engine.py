"""The SimPy model: replays a workload through ``policy.Router`` on a simulated fleet.

Event kernel: SimPy's environment and queue, plain callbacks scheduled by kernel.py
(the entries ``Timeout`` would make, no process per request) and its inlined run loop.
The loop, all in simulated seconds read from ``env.now``:

- arrival i: build the ``Request``, ``router.submit`` -> apply its actions;
- ``Dispatch``: the work starts on that GPU (processor sharing, gpus.SimGpu),
  ``router.start``; ``Abort``: the work stops; ``Finished``: terminal, recorded;
- a GPU's first completion: ``router.complete``; faults (faults.py) call
  ``gpu_down``/``gpu_up``/``fail``; the monitor (monitor.py) calls ``observe``
  with lagged snapshots; ``router.next_wakeup()`` schedules ``tick``.

Every router call is timed with ``time.perf_counter_ns`` (real CPU time per
decision, the routing-overhead metric); that clock never feeds back into the model.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

import numpy as np
import simpy

from ..policy.decisions import Abort, Dispatch, Finished, Reject
from ..policy.types import PRIORITIES, GpuState, Request, RequestState, ResourceRequirements
from . import metrics as m
from .faults import XID_FAIL_DELAY_S, FaultEffects, FaultEvent
from .gpus import SimGpu
from .kernel import later, run
from .model_loads import AdapterLoads, LoadTimes
from .monitor import Monitor
from .records import RequestLog
from .router_like import RouterLike
from .scenario import Scenario
from .service_model import dispatch_extra
from .workload import Workload

INF = math.inf
_STATE_CODE = {
    RequestState.COMPLETED.value: m.OUTCOME_CODE[m.COMPLETED],
    RequestState.FAILED.value: m.OUTCOME_CODE[m.FAILED],
    RequestState.CANCELLED.value: m.OUTCOME_CODE[m.CANCELLED],
    RequestState.REJECTED.value: m.OUTCOME_CODE[m.REJECTED],
}
_NOT_REROUTE = frozenset({"timeout", "cancelled"})

GC_THRESHOLD_0 = 50_000


def id_width(n: int) -> int:
    return max(6, len(str(max(n - 1, 0))))


class Engine(FaultEffects):
    """One run: ``Engine(...).run()`` fills ``log``, ``gpus``, ``timeline``, ``overhead_ns``."""

    def __init__(
        self,
        scenario: Scenario,
        workload: Workload,
        gpus: list[SimGpu],
        router: RouterLike,
        faults: list[FaultEvent],
        fault_rng: np.random.Generator,
        load_rng: np.random.Generator | None = None,
        load_times: LoadTimes | None = None,
        adapters: AdapterLoads | None = None,
    ) -> None:
        self.sc = scenario
        self.wl = workload
        self.gpus = gpus
        self.router = router
        self.faults = faults
        self.fault_rng = fault_rng
        # model locality (Dispatch.model_id set): loads drawn from ``load_times``
        self.load_rng = load_rng if load_rng is not None else np.random.default_rng(0)
        self.load_times = load_times
        self._loading: dict[tuple[int, str], float] = {}  # (GPU, model) -> load ends
        self.cold_starts, self.load_s_total = 0, 0.0
        self.adapters = adapters  # adapter (LoRA) loads per request, or None
        self.model_mb_samples: list[float] = []
        self.env = simpy.Environment()
        n = len(workload)
        self.n = n
        self.log = RequestLog(n)
        self.gpu_index = {g.gid: g.index for g in gpus}
        self.width = id_width(n)
        self.rid_index: dict[str, int] = {}
        self._rids = self.log.ids  # request ids by index, set at arrival
        self.overhead_ns: list[int] = []
        self.outstanding = 0
        self.interruptions = 0
        self.timeline: list[tuple[float, int, int, int, int]] = []
        self.window_busy: list[list[float]] = []
        self._wake_at = INF
        self._arrival = workload.arrival_s.tolist()
        self._work = workload.work.tolist()
        self._loads = any(w > 0 for w in workload.model_weights_mb)
        cancel = workload.cancel_at
        self._cancel_at = cancel.tolist() if cancel is not None else None
        self._cols = (
            workload.model_idx.tolist(),
            workload.memory_mb.tolist(),
            workload.declared_ms.tolist(),
            workload.user.tolist(),
            workload.priority.tolist(),
            workload.type_idx.tolist(),
        )
        self._mem_true = [0.0] * n
        self._names = (workload.user_names, workload.model_ids, workload.type_names)
        self._timeout_s = workload.timeout_s
        pr, t = workload.priority, workload.timeout_s  # Request.__post_init__'s checks, once
        self._valid = (
            pr.dtype.kind in "iu"
            and (not n or PRIORITIES[0] <= pr.min() <= pr.max() <= PRIORITIES[-1])
            and all(workload.user_names)
            and (t is None or (type(t) is float and 0 < t < INF))
        )
        self._res_cache: dict[tuple[float, float, object], ResourceRequirements] = {}
        self._down, self._hang = [0] * len(gpus), [0] * len(gpus)
        self._jobs = [g.jobs for g in gpus]  # never rebound
        self._detected = [False] * len(gpus)
        self.horizon = scenario.horizon_s
        drain = scenario.drain_s if scenario.drain_s is not None else 10 * self.horizon + 3600
        self.end_s = self.horizon + drain
        self.monitor = Monitor(
            self.env, gpus, scenario.monitor, self._observe, self._keep_running, gpus[0].clock
        )
        self.context_mb = gpus[0].model.cal.context_overhead_mb if gpus else 0.0
        sm = self._sm = scenario.service_model
        self._startup_s = sm.startup_s
        # dispatch_extra is 0.0 when none of these is set
        self._dispatch_extra = bool(
            sm.dispatch_overhead_s or sm.dispatch_overhead_share or sm.poll_interval_s
        )

    # -- running --------------------------------------------------------------------

    def run(self) -> None:
        env = self.env
        if self.n:
            later(env, self._arrival[0], 0, self._arrive)
        for ev in self.faults:
            later(env, ev.at_s, ev, self._fault_start)
        self.monitor.start()
        for t in (self.sc.warmup_s, self.horizon):
            later(env, t, None, self._snapshot_busy)
        period = self.sc.timeline_period_s or self.horizon / 200.0
        later(env, 0.0, period, self._sample_timeline)
        # Fewer young-generation collections: a run allocates millions of short-lived
        # events; memory stays the same and the run is ~15% faster. Restored after.
        thresholds = gc.get_threshold()
        gc.set_threshold(GC_THRESHOLD_0, *thresholds[1:])
        try:
            run(env, self.end_s)
        finally:
            gc.set_threshold(*thresholds)
        if len(self.window_busy) < 2:
            self._snapshot_busy(None)

    def _keep_running(self) -> bool:
        return self.env.now < self.horizon or self.outstanding > 0

    def _call(self, fn: Callable[..., list[Any]], *args: object) -> list[Any]:
        t0 = perf_counter_ns()
        actions = fn(*args)
        self.overhead_ns.append(perf_counter_ns() - t0)
        return actions

    # -- arrivals -------------------------------------------------------------------

    def _request(self, i: int, now: float) -> Request:
        wl = self.wl
        models, memory, declared, users, prios, types = self._cols
        mi = models[i]
        key = (memory[i], declared[i], mi)
        res = self._res_cache.get(key)
        if res is None:
            res = ResourceRequirements(
                memory_mb=key[0],
                expected_duration_ms=key[1],
                min_compute_capability=wl.model_min_cc[mi],
            )
            if len(self._res_cache) < 100_000:
                self._res_cache[key] = res
        digits = str(i)  # f"r{i:0{width}d}", cheaper
        rid = "r" + "0" * (self.width - len(digits)) + digits
        self.rid_index[rid] = i
        self._rids[i] = rid
        make = Request.trusted if self._valid else Request  # checked once in __init__
        user_names, model_ids, type_names = self._names
        uid, model, typ = user_names[users[i]], model_ids[mi], type_names[types[i]]
        return make(rid, uid, model, prios[i], typ, res, self._timeout_s, now)

    def _arrive(self, event: Any) -> None:
        i = event.value
        now = self.env._now
        if i + 1 < self.n:
            nxt = self._arrival[i + 1]
            later(self.env, nxt - now, i + 1, self._arrive)
        req = self._request(i, now)
        self._mem_true[i] = self._cols[1][i] + self.context_mb  # req.resources.memory_mb
        t0 = perf_counter_ns()
        decision, actions = self.router.submit(req, now)
        self.overhead_ns.append(perf_counter_ns() - t0)
        if type(decision) is Reject:
            self.log.outcome[i] = m.OUTCOME_CODE[m.REJECTED]
            self.log.finish[i] = now
            self.log.error[i] = decision.code
            return
        self.log.admit[i] = now
        self.outstanding += 1
        if self._cancel_at is not None and self._cancel_at[i] == self._cancel_at[i]:
            delay = self._cancel_at[i] - now
            later(self.env, delay, i, self._cancel)
        if actions:
            self._apply(actions)
        self._wakeup()

    # -- actions --------------------------------------------------------------------

    def _apply(self, actions: list[Any]) -> None:
        for a in actions:
            kind = type(a)
            if kind is Dispatch:
                self._start(a)
            elif kind is Finished:
                self._finished(a)
            elif kind is Abort:
                self._abort(a)

    def _start(self, a: Dispatch) -> None:
        i = self.rid_index[a.request_id]
        g = self.gpus[self.gpu_index[a.gpu_id]]
        now = self.env._now
        log = self.log
        log.dispatch[i] = now
        log.start[i] = now
        log.gpu[i] = g.index
        log.attempt[i] += 1
        self.router.start(a.request_id, now)
        if not g.up:  # crashed, not yet detected: the dispatch fails at once
            value = (i, g.index, log.attempt[i], "gpu_unreachable")
            later(self.env, 0.0, value, self._job_fails)
            return
        sm = self._sm
        extra = self._startup_s + (
            dispatch_extra(sm, self._work[i], g.speed) if self._dispatch_extra else 0.0
        )
        if a.model_id is not None:
            extra += self._model_wait(a, g.index, now) * g.speed
        if self.adapters is not None:
            extra += self.adapters.charge(i) * g.speed
        if self._loads:
            mi = self._cols[0][i]
            keep = self.sc.service_model.resident_models
            extra += g.load_s(mi, self.wl.model_weights_mb[mi], keep) * g.speed
        g.add(i, self._work[i] + extra, self._mem_true[i], now)
        self._reschedule(g)
        if g.storm_p > 0 and self.fault_rng.random() < g.storm_p:
            value = (i, g.index, log.attempt[i], "xid")
            later(self.env, XID_FAIL_DELAY_S, value, self._job_fails)

    def _model_wait(self, a: Dispatch, gi: int, now: float) -> float:
        """Seconds the request waits for its model on GPU ``gi``: a new load when cold,
        else the rest of a load in flight there (0 when resident)."""
        key = (gi, str(a.model_id))
        if not a.cold:
            return max(0.0, self._loading.get(key, 0.0) - now)
        lt = self.load_times
        load = lt.sample(self.load_rng) if lt is not None else a.load_s
        self.cold_starts += 1
        self.load_s_total += load
        self._loading[key] = now + load
        value = (a.gpu_id, a.model_id, load)
        later(self.env, load, value, self._model_loaded)
        return load

    def _model_loaded(self, event: Any) -> None:
        gpu_id, model_id, load = event.value
        loaded = getattr(self.router, "model_loaded", None)
        if loaded is not None:
            self._apply(self._call(loaded, gpu_id, model_id, load, self.env.now))
            self._wakeup()

    def _abort(self, a: Abort) -> None:
        i = self.rid_index[a.request_id]
        g = self.gpus[self.gpu_index[a.gpu_id]]
        if g.remove(i, self.env.now) is not None:
            self._reschedule(g)
            if a.reason not in _NOT_REROUTE:
                self._interrupted(i)

    def _finished(self, a: Finished) -> None:
        i = self.rid_index[a.request_id]
        self.log.outcome[i] = _STATE_CODE[a.state]
        self.log.finish[i] = self.env._now
        self.log.error[i] = a.error
        self.outstanding -= 1

    def _cancel(self, event: Any) -> None:
        i = event.value
        if self.log.outcome[i] != m.OUTCOME_CODE[m.LOST]:
            return  # already terminal
        rid = f"r{i:0{self.width}d}"
        self._apply(self._call(self.router.cancel, rid, self.env.now))
        self._wakeup()

    def _interrupted(self, i: int) -> None:
        self.log.retries[i] += 1
        self.interruptions += 1

    # -- GPU work -------------------------------------------------------------------

    def _reschedule(self, g: SimGpu) -> None:
        delay = g.reschedule()
        if delay is not None:
            later(self.env, delay, (g.index, g.version), self._done)

    def _done(self, event: Any) -> None:
        gi, version = event.value
        g = self.gpus[gi]
        if g.version != version:
            return
        now = self.env._now
        i = g.first_job()
        g.remove(i, now)
        g.completed += 1
        self._reschedule(g)
        rid = self._rids[i]
        t0 = perf_counter_ns()
        actions = self.router.complete(rid, now)
        self.overhead_ns.append(perf_counter_ns() - t0)
        if actions:
            self._apply(actions)
        self._wakeup()

    def _job_fails(self, event: Any) -> None:
        i, gi, attempt, error = event.value
        g = self.gpus[gi]
        now = self.env.now
        if self.log.attempt[i] != attempt or self.log.gpu[i] != gi:
            return
        if g.remove(i, now) is not None:
            self._reschedule(g)
        elif error == "xid":
            return  # already gone (completed, aborted)
        self._interrupted(i)
        rid = f"r{i:0{self.width}d}"
        self._apply(self._call(self.router.fail, rid, now, error))
        self._wakeup()

    # -- wakeups, monitor, timeline -------------------------------------------------

    def _wakeup(self) -> None:
        w = self.router.next_wakeup()
        if w is None or w >= self._wake_at:
            return
        now = self.env.now
        self._wake_at = w
        later(self.env, max(0.0, w - now) or 1e-9 * max(1.0, now), w, self._tick)

    def _tick(self, event: Any) -> None:
        if event.value != self._wake_at:
            return
        self._wake_at = INF
        self._apply(self._call(self.router.tick, self.env.now))
        self._wakeup()

    def _observe(self, state: GpuState) -> None:
        self._apply(self._call(self.router.observe, state, self.env.now))
        self._wakeup()

    def _sample_timeline(self, event: Any) -> None:
        now = self.env.now
        running = sum(map(len, self._jobs))
        up = sum(1 for g in self.gpus if g.up and not g.hung)
        queued = getattr(self.router, "queue_length", 0)
        locality = getattr(self.router, "locality", None)
        stats = locality() if locality is not None else None
        if stats is not None:
            self.model_mb_samples.append(stats.memory_used_mb)
        self.timeline.append((now, int(queued), running, up, self.interruptions))
        if self._keep_running():
            later(self.env, event.value, event.value, self._sample_timeline)

    def _snapshot_busy(self, _event: object) -> None:
        now = min(self.env.now, self.horizon)
        self.window_busy.append([g.busy_at(now) for g in self.gpus])
