"""The Router: admission, queueing, placement and failover as one state machine.

Every call carries ``now`` (seconds on the caller's clock) and returns the actions
the caller must apply (``Dispatch``, ``Abort``, ``Finished``); see
docs/architecture.md. The router keeps exact accounting of what it placed on each
GPU, so strategies never rely on lagged samples alone.

The Router owns its collaborators and composes them: ``RouterState`` (bookkeeping),
``Admission`` (admission control), ``Binder`` (placement and the binding loops),
``GpuService`` (GPU service state and ejection), the quotas and the estimator.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .admission import Admission
from .binding import Binder
from .config import RouterConfig
from .decisions import Abort, Action, Decision, Enqueue, Placement, Reject, estimate_times
from .errors import InvalidValue
from .estimator import ResourceEstimator
from .gpu_service import CRASHED, MAINTENANCE, OVERHEATED, REMOVED, GpuService
from .outlier import OutlierDetector
from .quota import QuotaLimits, QuotaManager, QuotaUsage
from .records import RequestRecord, RequestSnapshot
from .residency import LocalityStats
from .router_state import CANCELLED, COMPLETED, FAILED, P, RouterState
from .strategies import make_strategy
from .types import GpuState, Request, RequestState
from .views import FleetSummary, GpuView, fleet_summary, gpu_view, slots_in_service

__all__ = ["CRASHED", "MAINTENANCE", "OVERHEATED", "REMOVED", "Router"]


class Router:
    """The policy core both the simulator and the service drive.

    State changes (each returns the actions to apply): ``submit``, ``start``,
    ``complete``, ``fail``, ``cancel``, ``tick``, ``observe``, ``gpu_down``,
    ``gpu_up``, ``maintenance``, ``restart``, ``forget``.

    Reads (copies; nothing private is needed): ``gpu_ids``, ``has_gpu``, ``gpu``,
    ``gpus`` (``GpuView``), ``fleet_summary`` (``FleetSummary``), ``is_out``,
    ``state_of``, ``record`` (``RequestSnapshot``), ``queue_length``,
    ``next_wakeup``, ``quota_usage``, ``quota_limits``, ``strategy_name``,
    ``config``, ``get_model_requirements``, ``resident_models``, ``locality``.
    Quota changes: ``set_quota_limits``, ``replay_usage``. Models: ``model_loaded``,
    ``report_models``.
    """

    def __init__(
        self,
        gpus: Iterable[GpuState],
        config: RouterConfig | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.config = config = config or RouterConfig()
        rng = rng if rng is not None else np.random.default_rng(0)
        self._quotas = QuotaManager(config.quotas)
        self._state = state = RouterState(gpus, config, self._quotas)
        strategy = make_strategy(config.strategy, config.strategy_options)
        self._binder = Binder(state, strategy, rng)
        self._gpus = GpuService(state, OutlierDetector(config.outlier))
        self._estimator = ResourceEstimator(config.estimator)
        self._admission = Admission(state, self._binder, self._quotas, self._estimator)
        self._last_tick = float("-inf")
        # the state's containers, never rebound: bound here for the per-call paths
        self._records = state.records
        self._queue = state.queue
        self._fleet = state.fleet
        self._gpu_ids = tuple(state.fleet.gpu_ids)
        if config.max_temperature_c is not None:  # the first samples count too
            for i, g in enumerate(state.fleet.states):
                self._gpus.check_temperature(i, g, 0.0, config.max_temperature_c)

    # -- reads --------------------------------------------------------------------

    @property
    def gpu_ids(self) -> tuple[str, ...]:
        """Every GPU id, in fleet order."""
        return self._gpu_ids

    def has_gpu(self, gpu_id: str) -> bool:
        return gpu_id in self._fleet.index

    def gpu(self, gpu_id: str) -> GpuView:
        """The view of one GPU; InvalidValue("gpu_id", ...) if there is no such GPU."""
        return gpu_view(self._state, self._state.index(gpu_id))

    def gpus(self) -> list[GpuView]:
        """The view of every GPU, in fleet order."""
        return [gpu_view(self._state, i) for i in range(self._fleet.size)]

    def fleet_summary(self) -> FleetSummary:
        return fleet_summary(self._state)

    def is_out(self, gpu_id: str) -> set[str]:
        """Why a GPU takes no work (empty when it does); a copy."""
        return set(self._gpus.out(self._state.index(gpu_id)))

    def state_of(self, request_id: str) -> RequestState | None:
        """The state of a request; None if unknown or forgotten."""
        rec = self._records.get(request_id)
        return None if rec is None else rec.state

    def record(self, request_id: str) -> RequestSnapshot:
        """A snapshot of one request (state, GPU, times, retries, error); KeyError if unknown."""
        return self._state.snapshot(request_id)

    @property
    def queue_length(self) -> int:
        """Requests admitted and not yet dispatched (backoffs and GPU queues included)."""
        return self._state.queue_length()

    @property
    def strategy_name(self) -> str:
        """The strategy as configured (``config.strategy``)."""
        return self.config.strategy

    def next_wakeup(self) -> float | None:
        """The earliest time ``tick`` has something to do (backoff, timeout, ejection end,
        maintenance end)."""
        state = self._state
        if not (state.backoff or state.deadlines or self._binder.holds or self._gpus.timed()):
            return None  # the common case: no timer of any kind (each check is a len)
        timer = state.next_timer()
        change = self._gpus.next_change(self._last_tick)
        if self._binder.holds:
            hold = self._binder.next_hold_end(self._last_tick)
            if hold is not None:
                change = hold if change is None else min(change, hold)
        due = change if timer is None else timer if change is None else min(timer, change)
        ends = self._gpus.next_maintenance_end()
        return due if ends is None or (due is not None and due <= ends) else ends

    # -- models -------------------------------------------------------------------

    def get_model_requirements(self, model_id: str | None) -> dict[str, object]:
        """What ``model_id`` needs (seed 4.1): ``models.ModelRegistry.get_model_requirements``."""
        return self._state.model_registry.get_model_requirements(model_id)

    def resident_models(self, gpu_id: str) -> tuple[str, ...]:
        """Models GPU ``gpu_id`` holds or is loading, least recently used first (empty
        when locality is off)."""
        res = self._state.residency
        return () if res is None else res.caches[self._state.index(gpu_id)].models()

    def locality(self) -> LocalityStats | None:
        """Cold and warm starts so far and model weights resident (None: locality off)."""
        res = self._state.residency
        return None if res is None else res.stats()

    def report_models(
        self, gpu_id: str, models: list[str], taken_at: float, now: float
    ) -> list[Action]:
        """The worker of ``gpu_id`` holds ``models`` (least recently used first; a report
        taken at ``taken_at``): the residency follows it (``model_reports.reconcile``)."""
        if not self._state.report_models(self._state.index(gpu_id), models, taken_at):
            return []
        return self._binder.dispatch(now)

    def model_loaded(self, gpu_id: str, model_id: str, seconds: float, now: float) -> list[Action]:
        """The worker on ``gpu_id`` finished loading ``model_id`` in ``seconds``: the
        Model Manager learns the load time and the model is ready there."""
        self._state.model_loaded(self._state.index(gpu_id), model_id, seconds, now)
        return self._binder.dispatch(now)

    # -- quotas -------------------------------------------------------------------

    def quota_usage(self, user_id: str, now: float) -> QuotaUsage:
        """Every limit of ``user_id`` with used, remaining and reset time at ``now``."""
        return self._quotas.usage(user_id, now)

    def quota_limits(self, user_id: str) -> QuotaLimits:
        return self._quotas.limits(user_id)

    def set_quota_limits(self, user_id: str, **changes: object) -> QuotaLimits:
        """Admin change of one user's limits (takes effect on their next call)."""
        return self._quotas.set_limits(user_id, **changes)

    def replay_usage(
        self, user_id: str, priority: int, now: float, gpu_seconds: float = 0.0
    ) -> None:
        """Count one past request (e.g. from a journal, after a restart): a token from
        each rate bucket if they have one (no slot is kept), and ``gpu_seconds`` of GPU
        time in the current period. The caller decides which past requests count."""
        if self._quotas.admit(user_id, priority, now) is None:
            self._quotas.release(user_id, priority)
        if gpu_seconds:
            self._quotas.charge_gpu_time(user_id, gpu_seconds, now)

    # -- admission ----------------------------------------------------------------

    def submit(
        self, request: Request, now: float, *, resumed: bool = False
    ) -> tuple[Decision, list[Action]]:
        """Admit or refuse ``request``; admitted ones are dispatched as soon as they fit.

        ``resumed`` re-admits a request acknowledged before a restart: it skips the
        queue bound and the quota checks (it was admitted once) but takes its quota slots.
        """
        admitted = self._admission.admit(request, now, resumed=resumed)
        if isinstance(admitted, Reject):
            return admitted, []
        rec, state, binder = admitted, self._state, self._binder
        if not state.early and not len(self._queue):
            # fast path: nothing waits, so this request is the head of the queue
            started = binder.start_now(rec, now)
            if started is not None:
                return self._placed(rec), [started]
        self._queue.push(request.request_id, request.user_id, request.priority, now)
        actions = binder.dispatch(now)
        if rec.state is P:
            return self._placed(rec), actions
        return self._enqueued(rec), actions

    def _placed(self, rec: RequestRecord) -> Placement:
        i = rec.gpu_index
        assert i is not None  # noqa: S101 - a processing record always has a GPU
        run_s = rec.duration_s / max(self._fleet.speed_list[i], 1e-9)  # estimate_times's
        return Placement(self._gpu_ids[i], 0.0, run_s)

    def _enqueued(self, rec: RequestRecord) -> Enqueue:
        rid, i, s = rec.request.request_id, rec.gpu_index, self._state
        if i is not None and s.early:
            position, gpu, speed = (
                s.gpu_queues[i].position(rid),
                self._gpu_ids[i],
                self._fleet.speed_list[i],
            )
        else:
            position, gpu, speed = (
                (self._queue.position(rid) if rid in self._queue else 1),
                None,
                1.0,
            )
        wait_s, run_s = estimate_times(
            rec.duration_s, float(speed), position, slots_in_service(s), rec.units
        )
        return Enqueue(position, gpu, wait_s, run_s)

    # -- lifecycle ----------------------------------------------------------------

    def start(self, request_id: str, now: float) -> list[Action]:
        """The worker began running the request."""
        rec = self._records.get(request_id)
        if rec is not None and rec.state is P and rec.started_at is None:
            rec.started_at = now
        return []

    def complete(self, request_id: str, now: float) -> list[Action]:
        """The request finished on its GPU. Late or repeated calls are ignored."""
        rec = self._records.get(request_id)
        if rec is None or rec.state is not P:
            return []
        state = self._state
        i = state.release(rec, now)
        began = rec.started_at if rec.started_at is not None else rec.dispatched_at
        ran_s = now - (began if began is not None else now)  # t=0.0 counts as a time
        req = rec.request
        if self.config.quotas_enabled:
            self._quotas.charge_gpu_time(req.user_id, ran_s, now)
        self._estimator.observe(
            req.model_id, req.type, req.resources.max_batch_size, ran_s * self._fleet.speed_list[i]
        )
        self._gpus.record_success(i, now)
        finished = state.finish(rec, COMPLETED, now)
        if not len(self._queue) and not state.early:
            return [finished]  # nothing waits: no dispatch pass to run
        return [finished, *self._binder.dispatch(now)]

    def fail(
        self, request_id: str, now: float, error: str, *, gpu_fault: bool = True
    ) -> list[Action]:
        """The work failed. Re-queue at the head of its priority after a backoff, or
        end ``failed`` once retries are spent. A GPU fault counts toward ejection."""
        rec = self._records.get(request_id)
        if rec is None or rec.state is not P:
            return []
        i = self._state.release(rec, now)
        actions = self._gpus.record_failure(i, now) if gpu_fault else []
        backoff_s = self.config.retry.backoff_s(rec.retries + 1)
        actions += self._state.retry(rec, now, error, backoff_s)
        return actions + self._binder.dispatch(now)

    def cancel(self, request_id: str, now: float, reason: str = "cancelled") -> list[Action]:
        """Cancel a request; cancelling twice is the same as once."""
        rec = self._records.get(request_id)
        if rec is None or rec.state.terminal:
            return []
        actions = self._stop(rec, now, reason)
        actions.append(self._state.finish(rec, CANCELLED, now, reason))
        return actions + self._binder.dispatch(now)

    def forget(self, request_id: str) -> bool:
        """Drop the record of a finished request (its history lives with the caller, e.g.
        the service's journal). Returns False for unknown or unfinished requests."""
        return self._state.forget(request_id)

    def tick(self, now: float) -> list[Action]:
        """Do what is due at ``now``: end retry backoffs, time out requests, end ejections."""
        state = self._state
        actions: list[Action] = []
        self._last_tick = max(self._last_tick, now)
        state.end_backoffs(now)
        retries = self.config.timeouts.retries
        for rec in state.due_deadlines(now):
            if rec.state is P and rec.timeout_retries < retries and rec.timeout_s:
                actions += self._stop(rec, now, "timeout")
                actions += state.retry_timed_out(rec, now, rec.timeout_s)
                continue
            actions += self._stop(rec, now, "timeout")
            actions.append(state.finish(rec, FAILED, now, "timeout"))
        self._gpus.end_ejections(now)
        self._gpus.end_maintenances(now)
        return actions + self._binder.dispatch(now)

    def _stop(self, rec: RequestRecord, now: float, reason: str) -> list[Action]:
        """Take an unfinished request off its GPU (an ``Abort``) or out of its queue."""
        if rec.state is P:
            i = self._state.release(rec, now)
            return [Abort(rec.request.request_id, self._gpu_ids[i], reason)]
        self._state.unqueue(rec)
        return []

    # -- GPU service state --------------------------------------------------------

    def observe(self, state: GpuState, now: float) -> list[Action]:
        """A monitor sample of one GPU; placements after ``state.sampled_at`` stay counted.
        Above ``config.max_temperature_c`` the GPU is drained (``OVERHEATED``)."""
        i = self._state.index(state.gpu_id)
        if self._gpus.observe(i, state):
            self._binder.forget_compatibility()
        max_c = self.config.max_temperature_c
        if max_c is None:
            return self._binder.dispatch(now)
        return self._gpus.check_temperature(i, state, now, max_c) + self._binder.dispatch(now)

    def gpu_down(self, gpu_id: str, now: float, reason: str = CRASHED) -> list[Action]:
        """Hard failure (crash, critical Xid, uncorrectable ECC, unreachable): stop
        placing on it and re-queue its running requests at the head of their priority."""
        i = self._state.index(gpu_id)
        actions = self._gpus.take_out(i, now, CRASHED, requeue_running=True, error=reason)
        self._state.drop_models(i)  # a crashed GPU's memory is gone
        return actions + self._binder.dispatch(now)

    def add_gpu(self, state: GpuState, now: float) -> list[Action]:
        """A GPU joins at run time (elastic fleet) with its first sample; one that left
        (``remove_gpu``) comes back. It takes work at once (queued work is dispatched)."""
        s = self._state
        if state.gpu_id in self._fleet.index:
            i = s.index(state.gpu_id)
            self._gpus.bring_back(i, REMOVED)
            self._gpus.observe(i, state)
        else:
            i = s.add_gpu(state)
            self._gpu_ids = tuple(self._fleet.gpu_ids)
        self._binder.forget_compatibility()
        max_c = self.config.max_temperature_c
        actions = [] if max_c is None else self._gpus.check_temperature(i, state, now, max_c)
        return actions + self._binder.dispatch(now)

    def remove_gpu(self, gpu_id: str, now: float, reason: str = REMOVED) -> list[Action]:
        """A GPU leaves at run time: what runs there is stopped and re-queued at the head
        of its priority (as at a crash; ``reason`` is the error). It stays in ``gpu_ids``
        as ``inactive`` until ``add_gpu`` brings it back."""
        i = self._state.index(gpu_id)
        actions = self._gpus.take_out(i, now, REMOVED, requeue_running=True, error=reason)
        return actions + self._binder.dispatch(now)

    def gpu_up(self, gpu_id: str, now: float) -> list[Action]:
        """The GPU passed its health checks again."""
        self._gpus.bring_back(self._state.index(gpu_id), CRASHED)
        return self._binder.dispatch(now)

    def maintenance(
        self,
        gpu_id: str,
        now: float,
        reason: str = MAINTENANCE,
        *,
        duration_s: float | None = None,
    ) -> list[Action]:
        """Drain: no new placements; running requests finish; its queue moves back. With
        ``duration_s`` (> 0) the maintenance ends by itself then (``tick``)."""
        if duration_s is not None and not 0 < duration_s < float("inf"):
            raise InvalidValue("duration_s", duration_s, "must be a finite number > 0")
        i = self._state.index(gpu_id)
        return self._gpus.maintenance(i, now, duration_s)

    def restart(self, gpu_id: str, now: float) -> list[Action]:
        """Admin restart: abort and re-queue what runs there, clear maintenance, crash and
        ejection marks; the GPU takes work again at once (health checks may take it out)."""
        i = self._state.index(gpu_id)
        actions = self._gpus.restart(i, now)
        self._state.drop_models(i)
        return actions + self._binder.dispatch(now)
