"""Applying the router's actions, and the dispatcher's job events.

Every router call returns actions, applied by :meth:`EventsMixin._apply`: ``Dispatch``
starts a job (held until the request's journal insert is committed), ``Abort`` stops
one, ``Finished`` journals the terminal state, drops the request from the router and
``live``, and sends the callback (:meth:`EventsMixin._send_callback`). The dispatcher
reports what its jobs do through the ``job_*`` and ``worker_down`` callbacks, each
tagged with an attempt number so that reports of an abandoned attempt are ignored.
Times: monotonic ``now`` and wall-clock ``wall`` in seconds.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from gpu_router.policy.decisions import Abort, Action, Dispatch, Finished
from gpu_router.shim.core.dispatcher import JobSpec
from gpu_router.shim.core.live import Live, ServiceBase
from gpu_router.shim.logs import log
from gpu_router.shim.store import JournalRecord


class EventsMixin(ServiceBase):
    """Action application, job events, taking GPUs out, and callbacks."""

    # ================================================================ actions

    def _apply(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Dispatch):
                self._on_dispatch(a)
            elif isinstance(a, Abort):
                self._on_abort(a)
            elif isinstance(a, Finished):
                self._on_finished(a)

    def _on_dispatch(self, a: Dispatch) -> None:
        live = self.live.get(a.request_id)
        if live is None:  # pragma: no cover - the router only dispatches what we submitted
            return
        if live.pending_commit:  # nothing runs before its acknowledgement is durable
            live.held = a
            return
        live.attempt += 1
        live.job_id = None
        live.progress = 0.0
        rec = live.rec
        if not (live.attempt == 1 and rec.state == "processing" and rec.gpu_id == a.gpu_id):
            # (else the row says so already: it was inserted as placed there)
            self._journal(
                rec, state="processing", gpu_id=a.gpu_id, job_id=None, attempts=rec.attempts + 1
            )
        attach = None
        if live.reattach is not None:
            old_gpu, old_job = live.reattach
            live.reattach = None
            if old_gpu == a.gpu_id:
                attach = old_job
            else:
                self.dispatcher.abort(a.request_id, old_gpu, old_job)
        body = rec.body
        req = live.request
        spec = JobSpec(
            a.request_id,
            body.get("payload") or {},
            float(req.resources.expected_duration_ms),
            float(req.resources.memory_mb),
            live.traceparent,
        )
        self.dispatcher.start(a.gpu_id, live.attempt, spec, attach)

    def _on_abort(self, a: Abort) -> None:
        live = self.live.get(a.request_id)
        job = live.job_id if live is not None else None
        self.dispatcher.abort(a.request_id, a.gpu_id, job)
        if live is None:
            return
        live.held = None
        live.job_id = None
        live.attempt += 1  # whatever the old task still reports is stale
        rrec = self.r.records.get(a.request_id)
        if rrec is not None and rrec.state.value == "queued":
            self._journal(live.rec, state="queued", gpu_id=None, job_id=None, error=a.reason)

    def _on_finished(self, a: Finished) -> None:
        live = self.live.pop(a.request_id, None)
        self.dispatcher.stop(a.request_id)
        self.r.forget(a.request_id)  # its history is in the journal (and in `recent`)
        if live is None:  # pragma: no cover
            return
        live.held = None
        if live.unjournaled:  # never acknowledged: no trace of it is kept
            return
        now, wall = self.clock.now(), self.clock.wall()
        rec = live.rec
        self._journal(
            rec,
            state=a.state,
            error=a.error,
            completion_time=wall,
            result=live.result if a.state == "completed" else rec.result,
            callback_state="pending" if rec.callback_url else rec.callback_state,
        )
        self._remember(rec)
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
        if rec.callback_url:
            self._send_callback(rec)

    # ================================================================ dispatch events

    def _current(self, rid: str, attempt: int) -> Live | None:
        live = self.live.get(rid)
        return live if live is not None and live.attempt == attempt else None

    def job_started(self, request_id: str, attempt: int, gpu_id: str, job_id: str) -> None:
        live = self._current(request_id, attempt)
        if live is None:
            self.dispatcher.spawn(self.dispatcher._cancel_job(gpu_id, job_id))
            return
        live.job_id = job_id
        live.started_mono = self.clock.now()
        rec = live.rec
        start = self.clock.wall() if rec.start_time is None else rec.start_time
        self._journal(rec, job_id=job_id, start_time=start)
        self._apply(self.r.start(request_id, self.clock.now()))

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
        self._apply(self.r.complete(request_id, self.clock.now()))

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
        self._apply(self.r.fail(request_id, self.clock.now(), error, gpu_fault=gpu_fault))
        self._sync_queued(request_id, error)

    def _sync_queued(self, rid: str, error: str) -> None:
        live = self.live.get(rid)
        rrec = self.r.records.get(rid)
        if live is not None and rrec is not None and rrec.state.value == "queued":
            live.attempt += 1
            self._journal(live.rec, state="queued", gpu_id=None, job_id=None, error=error)

    def worker_down(self, gpu_id: str, reason: str) -> None:
        self.take_out(gpu_id, "worker", reason)

    def take_out(self, gpu_id: str, why: str, reason: str) -> None:
        if gpu_id in self.down or gpu_id not in self.r.fleet.index:
            return
        now = self.clock.now()
        self.down[gpu_id] = (why, now)
        log(
            self.logger,
            logging.WARNING,
            "GPU taken out of service",
            gpu_id=gpu_id,
            why=why,
            reason=reason,
        )
        self.prom.set_gpu_state(gpu_id, "error")
        on_gpu = sorted(self.r.on_gpu[self.r.fleet.index[gpu_id]])
        self._apply(self.r.gpu_down(gpu_id, now, reason))
        for rid in on_gpu:
            self._sync_queued(rid, reason)

    # ================================================================ callbacks

    def _send_callback(self, rec: JournalRecord) -> None:
        if not rec.callback_url:
            return
        from gpu_router.shim.core.status import status_data

        body = {"status": "success", "data": status_data(self, rec), "error": None, "meta": None}
        headers = {}
        if rec.trace_id:
            headers["traceparent"] = f"00-{rec.trace_id}-{uuid.uuid4().hex[:16]}-01"

        async def run() -> None:
            ok = await self.dispatcher.deliver(rec.callback_url or "", body, headers)
            state = "delivered" if ok else "failed"
            self.prom.child(self.prom.callbacks, state).inc()
            self._journal(rec, callback_state=state)

        self.dispatcher.spawn(run())
