"""Execution: applying the Router's actions, and the job events of the dispatcher.

Every Router call returns actions, applied by :meth:`Execution.apply`: ``Dispatch``
starts a job (held until the request's journal insert is durable) under the router's
job id ``{request_id}.{attempt}`` (``attempt``: the journal's ``attempts``, so a restarted
router can ask the workers about it), ``Abort`` stops one, ``Finished`` journals the
terminal state, drops the request from the Router and from the live requests, sends the
callback and has the job acknowledged to its worker once the store has the state. The
dispatcher reports what its jobs do through the ``job_*`` and ``worker_down`` methods
(the dispatcher's ``JobEvents``), each tagged with an attempt number so that reports of
an abandoned attempt are ignored.
Times: monotonic ``now`` and wall-clock ``wall`` in seconds.
"""

from __future__ import annotations

import logging
from typing import Any

from gpu_router.policy import (
    Abort,
    Action,
    Dispatch,
    Finished,
    GpuState,
    RequestState,
    Router,
)
from gpu_router.shim.core.callbacks import Callbacks
from gpu_router.shim.core.clock import Clock
from gpu_router.shim.core.dispatcher import Dispatcher, JobSpec
from gpu_router.shim.core.gpus import GpuBook
from gpu_router.shim.core.live import Live, LiveRequests
from gpu_router.shim.core.metrics import JsonStats, PromMetrics
from gpu_router.shim.gpu_sources.base import job_id_for
from gpu_router.shim.logs import log

QUEUED = RequestState.QUEUED


class Execution:
    """Runs what the Router decides and feeds back what the workers report."""

    def __init__(
        self,
        router: Router,
        requests: LiveRequests,
        gpus: GpuBook,
        jobs: Dispatcher,
        callbacks: Callbacks,
        clock: Clock,
        prom: PromMetrics,
        stats: JsonStats,
        logger: logging.Logger,
    ) -> None:
        self.router = router
        self.requests = requests
        self.gpus = gpus
        self.jobs = jobs
        self.callbacks = callbacks
        self.clock = clock
        self.prom = prom
        self.stats = stats
        self.logger = logger

    # ================================================================ actions

    def apply(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Dispatch):
                self.dispatch(a)
            elif isinstance(a, Abort):
                self._abort(a)
            elif isinstance(a, Finished):
                self._finished(a)

    def dispatch(self, a: Dispatch) -> None:
        """Start the request's job on its GPU (held while its insert is not durable)."""
        live = self.requests.get(a.request_id)
        if live is None:  # pragma: no cover - the router only dispatches what we submitted
            return
        if live.pending_commit:  # nothing runs before its acknowledgement is durable
            live.held = a
            return
        live.attempt += 1
        live.job_id = None
        live.progress = 0.0
        rec = live.rec
        if live.last_gpu is not None and live.reroute_reason is not None:  # a re-route
            rec.rerouted_from.append(live.last_gpu)
            self.callbacks.rerouted(rec, live.last_gpu, a.gpu_id, live.reroute_reason)
            live.reroute_reason = None
        live.last_gpu = a.gpu_id
        if not (live.attempt == 1 and rec.state == "processing" and rec.gpu_id == a.gpu_id):
            # (else the row says so already: it was inserted as placed there)
            self.requests.change(
                rec, state="processing", gpu_id=a.gpu_id, job_id=None, attempts=rec.attempts + 1
            )
        attach = None
        if live.reattach is not None:
            old_gpu, old_job = live.reattach
            live.reattach = None
            if old_gpu == a.gpu_id:
                attach = old_job
            else:
                self.jobs.abort(a.request_id, old_gpu, old_job)
        req = live.request
        spec = JobSpec(
            a.request_id,
            rec.body.get("payload") or {},
            float(req.resources.expected_duration_ms),
            float(req.resources.memory_mb),
            live.traceparent,
            job_id_for(a.request_id, rec.attempts),
            self._model(a),
        )
        self.jobs.start(a.gpu_id, live.attempt, spec, attach)

    def _model(self, a: Dispatch) -> dict[str, Any] | None:
        """What the worker must hold for this dispatch (model locality on), else None."""
        if a.model_id is None:
            return None
        need = self.router.get_model_requirements(a.model_id)
        return {"id": a.model_id, "memory_mb": need["min_memory_mb"], "evict": list(a.evicted)}

    def model_loaded(self, request_id: str, attempt: int, seconds: float) -> None:
        live = self._current(request_id, attempt)
        if live is None or live.rec.gpu_id is None:
            return
        model, gpu = live.request.model_id, live.rec.gpu_id
        self.apply(self.router.model_loaded(gpu, model, seconds, self.clock.now()))

    def release_held(self, live: Live) -> None:
        """Start the dispatch a submission held until its insert was durable."""
        if live.held is not None and self.requests.get(live.rec.request_id) is live:
            held, live.held = live.held, None
            self.dispatch(held)

    def _abort(self, a: Abort) -> None:
        live = self.requests.get(a.request_id)
        self.jobs.abort(a.request_id, a.gpu_id, live.job_id if live is not None else None)
        if live is None:
            return
        live.held = None
        live.job_id = None
        live.attempt += 1  # whatever the old task still reports is stale
        live.reroute_reason = a.reason
        if self.router.state_of(a.request_id) is QUEUED:
            self.requests.change(live.rec, state="queued", gpu_id=None, job_id=None, error=a.reason)

    def _finished(self, a: Finished) -> None:
        live = self.requests.pop(a.request_id)
        self.jobs.stop(a.request_id)
        self.router.forget(a.request_id)  # its history is in the journal (and in `recent`)
        if live is None:  # pragma: no cover
            return
        live.held = None
        rec = live.rec
        if live.job_id is not None and rec.gpu_id is not None:
            self.jobs.ack(rec.gpu_id, live.job_id)  # once its terminal state is durable
        if live.unjournaled:  # never acknowledged: no trace of it is kept
            return
        now, wall = self.clock.now(), self.clock.wall()
        self.requests.change(
            rec,
            state=a.state,
            error=a.error,
            completion_time=wall,
            result=live.result if a.state == "completed" else rec.result,
            callback_state="pending" if rec.callback_url else rec.callback_state,
        )
        self.requests.remember(rec)
        response_s = wall - rec.submitted_at
        gpu_s = (now - live.started_mono) if live.started_mono is not None else 0.0
        prio = str(rec.priority)
        p = self.prom
        p.child(p.finished, a.state, prio).inc()
        p.child(p.completion, a.state, prio).observe(max(0.0, response_s))
        self.stats.finished(
            rec.user_id,
            rec.model_id,
            rec.gpu_id,
            a.state,
            response_s * 1000.0,
            gpu_s if a.state == "completed" else 0.0,
            now,
        )
        log(  # per request: completions at DEBUG (the journal has them), the rest at INFO
            self.logger,
            logging.DEBUG if a.state == "completed" else logging.INFO,
            "request finished",
            request_id=a.request_id,
            state=a.state,
            error=a.error,
            gpu_id=rec.gpu_id,
            trace_id=rec.trace_id,
        )
        self.callbacks.send(rec)

    # ================================================================ job events

    def _current(self, rid: str, attempt: int) -> Live | None:
        live = self.requests.get(rid)
        return live if live is not None and live.attempt == attempt else None

    def job_started(self, request_id: str, attempt: int, gpu_id: str, job_id: str) -> None:
        live = self._current(request_id, attempt)
        if live is None:
            self.jobs.spawn(self.jobs.cancel_job(gpu_id, job_id))
            return
        live.job_id = job_id
        live.started_mono = self.clock.now()
        rec = live.rec
        start = self.clock.wall() if rec.start_time is None else rec.start_time
        self.requests.change(rec, job_id=job_id, start_time=start)
        self.apply(self.router.start(request_id, self.clock.now()))

    def job_progress(self, request_id: str, attempt: int, progress: float) -> None:
        live = self._current(request_id, attempt)
        if live is not None:
            live.progress = progress

    def job_completed(self, request_id: str, attempt: int, result: Any) -> None:
        live = self._current(request_id, attempt)
        if live is None:
            return
        live.result = result
        live.progress = 1.0
        self.apply(self.router.complete(request_id, self.clock.now()))

    def job_failed(self, request_id: str, attempt: int, error: str, gpu_fault: bool) -> None:
        live = self._current(request_id, attempt)
        if live is None:
            return
        log(
            self.logger,
            logging.WARNING,
            "job failed",
            request_id=request_id,
            gpu_id=live.rec.gpu_id,
            error=error,
        )
        if live.rec.gpu_id is not None:
            self.prom.child(self.prom.worker_failures, live.rec.gpu_id).inc()
            if live.job_id is not None:  # the failed job: nothing of it is wanted
                self.jobs.ack(live.rec.gpu_id, live.job_id)
                live.job_id = None
        live.reroute_reason = error
        self.apply(self.router.fail(request_id, self.clock.now(), error, gpu_fault=gpu_fault))
        self._sync_queued(request_id, error)

    def requeued(self, rid: str, error: str) -> None:
        """The Router re-queued ``rid`` (its GPU left): journal it as queued again."""
        self._sync_queued(rid, error)

    def gpu_joined(self, state: GpuState) -> None:
        """A GPU joins the fleet at run time (or one that left comes back) with a sample."""
        now = self.clock.now()
        self.gpus.back(state.gpu_id, now)
        self.apply(self.router.add_gpu(state, now))
        self.prom.set_gpu_state(state.gpu_id, self.gpus.status(self.router, state.gpu_id))

    def gpu_left(self, gpu_id: str, reason: str) -> None:
        """A GPU leaves the fleet: what runs or waits there is re-routed (``reason``)."""
        self.gpus.down.pop(gpu_id, None)  # gone, not down: no health probe brings it back
        on_gpu = self.router.gpu(gpu_id).request_ids
        self.apply(self.router.remove_gpu(gpu_id, self.clock.now(), reason))
        for rid in on_gpu:
            self.requeued(rid, reason)
        self.prom.set_gpu_state(gpu_id, "inactive")

    def _sync_queued(self, rid: str, error: str) -> None:
        live = self.requests.get(rid)
        if live is not None and self.router.state_of(rid) is QUEUED:
            live.attempt += 1
            self.requests.change(live.rec, state="queued", gpu_id=None, job_id=None, error=error)

    def worker_down(self, gpu_id: str, reason: str) -> None:
        self.take_out(gpu_id, "worker", reason)

    def take_out(self, gpu_id: str, why: str, reason: str) -> None:
        """Take a GPU out of service (``why``: signal or worker) and re-queue its work."""
        if gpu_id in self.gpus.down or not self.router.has_gpu(gpu_id):
            return
        now = self.clock.now()
        self.gpus.down[gpu_id] = (why, now)
        log(
            self.logger,
            logging.WARNING,
            "GPU taken out of service",
            gpu_id=gpu_id,
            why=why,
            reason=reason,
        )
        self.prom.set_gpu_state(gpu_id, "error")
        on_gpu = self.router.gpu(gpu_id).request_ids
        self.apply(self.router.gpu_down(gpu_id, now, reason))
        for rid in on_gpu:
            self._sync_queued(rid, reason)
