"""The running service: the policy Router driven by real time, the journal and workers.

All state changes happen on the event loop thread, in plain synchronous methods, so no
locks are needed: HTTP handlers call :meth:`RouterService.submit` and friends; the
dispatcher reports job events; three loops sample the GPUs, tick the router's timers and
probe GPUs that were taken out. The clock is read through ``self.clock`` only.

Every router call returns actions, applied by :meth:`_apply`: ``Dispatch`` starts a job,
``Abort`` stops one, ``Finished`` journals the terminal state and sends the callback.

Journal writes go through :class:`~.group_commit.GroupCommit` (a writer thread): a
submission awaits the commit of its row before it is answered 200 (and its job is not
started before that); later state changes ride a later batch. A finished request is
dropped from the router (``Router.forget``) and from ``live``; the last ``RECENT`` of them
stay in memory for the status API, older ones are read back from the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import numpy as np

from gpu_router.policy.decisions import (
    Abort,
    Action,
    Dispatch,
    Enqueue,
    Finished,
    Placement,
    Reject,
)
from gpu_router.policy.decisions import RejectCode as RC
from gpu_router.policy.errors import InvalidValue
from gpu_router.policy.router import Router
from gpu_router.policy.types import GpuState, Request, ResourceRequirements

from . import fastjson
from .clock import Clock
from .config import ServiceConfig, router_config
from .dispatcher import Dispatcher, JobSpec
from .envelope import iso
from .gpu_sources.base import JOB_COMPLETED, JOB_RUNNING, GpuSource
from .group_commit import GroupCommit
from .journal import DuplicateRequest, Journal, JournalError, JournalRecord
from .logs import log
from .metrics import JsonStats, PromMetrics
from .schemas import RouteRequest

#: INCOMPATIBLE (no GPU of the fleet could ever serve it): 503 without Retry-After, since a
#: retry cannot help (DESIGN 5.1). NO_CAPACITY (every compatible GPU is down now): 503 with
#: Retry-After.
REJECT_STATUS = {
    RC.INCOMPATIBLE: 503,
    RC.NO_CAPACITY: 503,
    RC.QUEUE_FULL: 429,
    RC.RATE_LIMITED: 429,
    RC.QUOTA_EXCEEDED: 429,
    RC.DUPLICATE: 409,
}


@dataclass(slots=True)
class Live:
    """A request that is not terminal yet: its journal row plus what only memory holds."""

    rec: JournalRecord
    request: Request
    traceparent: str | None
    attempt: int = 0
    job_id: str | None = None
    progress: float = 0.0
    result: Any = None
    started_mono: float | None = None
    reattach: tuple[str, str] | None = None  # (gpu_id, job_id) found running after a restart
    committed: asyncio.Future[None] | None = None  # the insert of a new submission
    held: Dispatch | None = None  # its dispatch, started once the insert is committed
    unjournaled: bool = False  # the insert failed: nothing more is written for it

    @property
    def pending_commit(self) -> bool:
        return self.committed is not None and not self.committed.done()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a submission answers: HTTP status, the ``data`` and, for refusals, an error."""

    status_code: int
    data: dict[str, Any]
    error_code: str | None = None
    message: str | None = None
    retry_after_s: float | None = None
    gpu_id: str | None = None


def canonical_body(req: RouteRequest) -> tuple[dict[str, Any], str, str]:
    """The validated body as a JSON object, its canonical JSON text (sorted keys, no
    spaces; the journal stores it) and that text's SHA-256 (compared on re-submission)."""
    body = req.model_dump(mode="json")
    canon = fastjson.dumps(body, sort_keys=True)
    return body, canon, hashlib.sha256(canon.encode()).hexdigest()


def body_hash(req: RouteRequest) -> str:
    return canonical_body(req)[2]


def to_policy_request(req: RouteRequest, request_id: str, now: float) -> Request:
    rr = req.resource_requirements
    cc = None
    if rr.min_compute_capability is not None:
        major, minor = rr.min_compute_capability.split(".")
        cc = (int(major), int(minor))
    return Request(
        request_id=request_id,
        user_id=req.user_id,
        model_id=req.model_id,
        priority=req.priority,
        type=req.type,
        resources=ResourceRequirements(
            memory_mb=float(rr.memory),
            compute_units=rr.compute_units,
            max_batch_size=rr.max_batch_size,
            expected_duration_ms=float(rr.expected_duration),
            min_compute_capability=cc,
        ),
        timeout_s=None if req.timeout is None else req.timeout / 1000.0,
        submitted_at=now,
    )


class RouterService:
    RECENT = 10_000  # finished requests kept in memory for the status API
    OBSERVE_CHUNK = 16  # GPU samples applied per turn of the event loop

    def __init__(
        self,
        config: ServiceConfig,
        source: GpuSource,
        *,
        clock: Clock,
        journal: Journal,
        http: httpx.AsyncClient,
        logger: logging.Logger,
        prom: PromMetrics | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.clock = clock
        self.journal = journal
        self.http = http
        self.logger = logger
        self.prom = prom or PromMetrics()
        self.stats = JsonStats()
        self.router: Router | None = None
        self.live: dict[str, Live] = {}
        self.recent: OrderedDict[str, JournalRecord] = OrderedDict()
        jc = config.journal
        self.writer = GroupCommit(
            journal,
            delay_s=jc.commit_delay_ms / 1000.0,
            lazy_delay_s=jc.lazy_commit_ms / 1000.0,
            max_batch=jc.max_batch,
        )
        journal.on_lost = lambda lost: log(
            logger, logging.ERROR, "journal updates lost", count=len(lost), first=lost[0]
        )
        self.down: dict[str, tuple[str, float]] = {}  # gpu_id -> (why, since) taken out by us
        self.gpu_since: dict[str, float] = {}  # gpu_id -> when it last came into service
        self.maintenance_info: dict[str, dict[str, Any]] = {}
        self.started_mono = clock.now()
        self.ready = False
        self.not_ready_reason: str | None = "starting"
        self._loops: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self.dispatcher = Dispatcher(
            source,
            self,
            dispatch=config.dispatch,
            calls=config.request_router,
            http=http,
            monotonic=clock.now,
            logger=logger,
            on_worker_error=lambda g: self.prom.child(self.prom.worker_failures, g).inc(),
            worker_urls=dict(config.gpu_monitoring.worker_urls),
        )

    # ================================================================ lifecycle

    async def start(self) -> None:
        states = await self.source.sample()
        now = self.clock.now()
        self.router = Router(
            states, router_config(self.config), np.random.default_rng(self.config.seed)
        )
        for s in states:
            self.gpu_since[s.gpu_id] = now
        self._load_settings(now)
        counts = self.journal.count_by_state()
        self.stats.system.total = sum(counts.values())
        self.stats.system.completed = counts.get("completed", 0)
        self.stats.system.failed = counts.get("failed", 0)
        await self._restore(now)
        for rec in self.journal.pending_callbacks():
            self._send_callback(self.recent.get(rec.request_id) or rec)
        self._loops = [
            asyncio.ensure_future(c) for c in (self._sampler(), self._ticker(), self._health())
        ]
        self.ready = True
        self.not_ready_reason = None
        log(
            self.logger,
            logging.INFO,
            "service started",
            gpus=len(states),
            resumed=len(self.live),
            strategy=self.router.config.strategy,
        )

    async def stop(self) -> None:
        self.ready = False
        self.not_ready_reason = "stopping"
        for t in self._loops:
            t.cancel()
        for t in self._loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.dispatcher.aclose()
        self.writer.close()

    @property
    def r(self) -> Router:
        if self.router is None:
            raise RuntimeError("service not started")
        return self.router

    # ================================================================ submission

    def lookup(self, rid: str) -> JournalRecord | None:
        """A request's record: live, recently finished, or from the journal."""
        live = self.live.get(rid)
        if live is not None:
            return live.rec
        rec = self.recent.get(rid)
        return rec if rec is not None else self.journal.get(rid)

    async def submit(self, req: RouteRequest, trace_child: str | None) -> Outcome:
        """Admit ``req``; a 200 is returned only once its journal row is committed."""
        now, wall = self.clock.now(), self.clock.wall()
        given = req.request_id
        rid = given or str(uuid.uuid4())
        body, canon, digest = canonical_body(req)
        # A re-submission is found in memory (live or recently finished); one of an older
        # request is found by the journal itself: its insert fails as a duplicate, below.
        # (No SELECT per submission: ids are almost always new.)
        live = self.live.get(rid) if given else None
        known = None if given is None else live.rec if live is not None else self.recent.get(rid)
        if known is not None:
            if live is not None and live.committed is not None and known.body_hash == digest:
                try:  # the first submission is not acknowledged before its commit
                    await asyncio.shield(live.committed)
                except JournalError:
                    return self._unwritable(rid)
            return self._resubmitted(known, digest)
        try:
            request = to_policy_request(req, rid, now)
        except InvalidValue as exc:
            return Outcome(422, self._rejected(rid, str(exc)), "invalid_request", str(exc))
        decision, actions = self.r.submit(request, now)
        prio = str(req.priority)
        if isinstance(decision, Reject):
            self.prom.child(self.prom.submissions, "rejected", prio).inc()
            status = REJECT_STATUS.get(decision.code, 503)
            retry = decision.retry_after_s
            if status in (429, 503) and retry is None and decision.code != RC.INCOMPATIBLE:
                retry = 1.0
            return Outcome(
                status, self._rejected(rid, decision.reason), decision.code, decision.reason, retry
            )
        snap = self.r.record(rid)
        placed = isinstance(decision, Placement)
        gpu = decision.gpu_id
        position = 0 if placed else decision.position if isinstance(decision, Enqueue) else 0
        start_at, done_at = self._estimate(snap.duration_s, gpu, position, now, wall)
        answer = {
            "request_id": rid,
            "status": "accepted" if placed else "queued",
            "assigned_gpu": gpu,
            "estimated_start_time": iso(start_at),
            "estimated_completion_time": iso(done_at),
            "queue_position": position,
            "message": f"placed on {gpu}" if placed else f"queued at position {position}",
        }
        rec = JournalRecord(
            request_id=rid,
            user_id=req.user_id,
            model_id=req.model_id,
            priority=req.priority,
            body=body,
            body_hash=digest,
            answer=answer,
            state="processing" if placed else "queued",
            submitted_at=wall,
            gpu_id=gpu if placed else None,
            attempts=1 if placed else 0,
            callback_url=req.callback_url,
            trace_id=(trace_child or "")[3:35] or None,
            body_json=canon,
        )
        live = Live(rec, request, trace_child, committed=self.writer.insert(rec))
        self.live[rid] = live
        self.stats.accepted(req.user_id, req.model_id, snap.memory_mb)
        self._apply(actions)  # its own Dispatch is held until the commit
        try:
            await asyncio.shield(live.committed)  # type: ignore[arg-type]
        except JournalError as exc:
            duplicate = isinstance(exc, DuplicateRequest)
            if not duplicate:
                log(self.logger, logging.ERROR, "journal write failed", request_id=rid, error=exc)
            if self.live.get(rid) is live:  # undo the admission; its job never started
                live.unjournaled = True
                live.held = None
                self._apply(self.r.cancel(rid, self.clock.now(), "not acknowledged"))
            self.stats.withdrawn(req.user_id, req.model_id, snap.memory_mb)
            known = self.journal.get(rid) if duplicate else None
            return self._unwritable(rid) if known is None else self._resubmitted(known, digest)
        self.prom.child(self.prom.submissions, "accepted" if placed else "queued", prio).inc()
        if live.held is not None and self.live.get(rid) is live:
            held, live.held = live.held, None
            self._on_dispatch(held)
        return Outcome(200, answer, gpu_id=gpu)

    def _resubmitted(self, known: JournalRecord, digest: str) -> Outcome:
        """The answer to a request_id seen before: the original answer for the same body,
        409 for another one."""
        if known.body_hash == digest:
            data = dict(known.answer)
            data["message"] = "already accepted: this is the original answer"
            return Outcome(200, data, gpu_id=known.gpu_id)
        rid = known.request_id
        return Outcome(
            409,
            self._rejected(rid, "request_id already used with another body"),
            "conflict",
            f"request_id {rid} was already submitted with a different body",
        )

    def _unwritable(self, rid: str) -> Outcome:
        return Outcome(
            503,
            self._rejected(rid, "the journal cannot be written"),
            "unavailable",
            "the request journal cannot be written; retry later",
            5.0,
        )

    @staticmethod
    def _rejected(rid: str, message: str) -> dict[str, Any]:
        return {
            "request_id": rid,
            "status": "rejected",
            "assigned_gpu": None,
            "estimated_start_time": None,
            "estimated_completion_time": None,
            "queue_position": None,
            "message": message,
        }

    def _estimate(
        self, duration_s: float, gpu: str | None, position: int, now: float, wall: float
    ) -> tuple[float, float]:
        f = self.r.fleet
        speed = float(f.speed[f.index[gpu]]) if gpu is not None else 1.0
        run_s = duration_s / max(speed, 1e-9)
        wait_s = 0.0
        if position:
            wait_s = position * duration_s / max(1, int(f.slots[f.available()].sum()))
        return wall + wait_s, wall + wait_s + run_s

    # ================================================================ cancel / admin

    def cancel(self, rid: str, reason: str) -> str | None:
        """Cancel; returns the state before (None: unknown). Idempotent."""
        live = self.live.get(rid)
        if live is None:
            rec = self.lookup(rid)
            return None if rec is None else rec.state
        before = live.rec.state
        self._apply(self.r.cancel(rid, self.clock.now(), reason))
        return before

    def set_maintenance(self, gpu_id: str, reason: str, minutes: int | None) -> None:
        now = self.clock.now()
        self._apply(self.r.maintenance(gpu_id, now, reason or "maintenance"))
        info = {"reason": reason, "since": self.clock.wall(), "estimated_duration": minutes}
        self.maintenance_info[gpu_id] = info
        self._save_setting(f"maintenance:{gpu_id}", info)
        self.prom.set_gpu_state(gpu_id, "maintenance")

    def restart_gpu(self, gpu_id: str) -> None:
        now = self.clock.now()
        clear = getattr(self.source, "clear", None)
        if clear is not None:  # latched source state (monitoring health) is reset too
            clear(gpu_id)
        self._apply(self.r.restart(gpu_id, now))
        self.down.pop(gpu_id, None)
        self.maintenance_info.pop(gpu_id, None)
        self.gpu_since[gpu_id] = now
        self._save_setting(f"maintenance:{gpu_id}", None)

    def set_quota(self, user_id: str, changes: dict[str, Any]) -> None:
        limits = self.r.quotas.set_limits(user_id, **changes)
        self._save_setting(f"quota:{user_id}", asdict(limits))

    def _save_setting(self, key: str, value: Any) -> None:
        try:
            self.journal.set_setting(key, value)
        except JournalError as exc:
            log(self.logger, logging.ERROR, "could not persist a setting", key=key, error=str(exc))

    def _load_settings(self, now: float) -> None:
        for key, value in self.journal.settings().items():
            kind, _, name = key.partition(":")
            try:
                if kind == "quota" and isinstance(value, dict):
                    self.r.quotas.set_limits(name, **value)
                elif (
                    kind == "maintenance" and isinstance(value, dict) and name in self.r.fleet.index
                ):
                    self.r.maintenance(name, now, value.get("reason") or "maintenance")
                    self.maintenance_info[name] = value
            except InvalidValue as exc:
                log(
                    self.logger,
                    logging.WARNING,
                    "ignored a stored setting",
                    key=key,
                    error=str(exc),
                )

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

    def _remember(self, rec: JournalRecord) -> None:
        self.recent[rec.request_id] = rec
        if len(self.recent) > self.RECENT:
            self.recent.popitem(last=False)

    def _journal(self, rec: JournalRecord, **changes: Any) -> None:
        """Change the record and stage its row for the next group commit (nobody waits)."""
        for name, value in changes.items():
            setattr(rec, name, value)
        self.writer.update(rec)

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

    # ================================================================ loops

    async def _sampler(self) -> None:
        period = max(0.01, float(getattr(self.source, "period_s", 1.0)))
        threshold = self.config.error_handler.error_threshold
        while True:
            await asyncio.sleep(period)
            try:
                states = await self.source.sample()
            except Exception as exc:  # a source that fails must not stop the service
                log(self.logger, logging.WARNING, "GPU sampling failed", error=repr(exc))
                continue
            for i in range(0, len(states), self.OBSERVE_CHUNK):
                if i:  # let requests in between: a large fleet is a few ms of work
                    await asyncio.sleep(0)
                self.observe(states[i : i + self.OBSERVE_CHUNK])
            for sig in self.source.drain_signals():
                log(
                    self.logger,
                    logging.WARNING if sig.hard else logging.INFO,
                    "GPU signal",
                    gpu_id=sig.gpu_id,
                    kind=sig.kind,
                    detail=sig.detail,
                    hard=sig.hard,
                )
                if sig.hard:
                    self.take_out(sig.gpu_id, "signal", f"{sig.kind}: {sig.detail}")
            for s in states:
                if s.error_rate > threshold and s.gpu_id not in self.down:
                    self.take_out(s.gpu_id, "signal", f"error rate {s.error_rate:.3f}")

    def observe(self, states: list[GpuState]) -> None:
        now = self.clock.now()
        index = self.r.fleet.index
        for s in states:
            if s.gpu_id in index:
                self._apply(self.r.observe(s, now))
                p = self.prom
                p.child(p.gpu_util, s.gpu_id).set(s.utilization_pct)
                p.child(p.gpu_mem, s.gpu_id).set(s.memory_used_mb)
                p.child(p.gpu_temp, s.gpu_id).set(s.temperature_c)
                p.set_gpu_state(s.gpu_id, self.gpu_status(s.gpu_id))

    async def _ticker(self) -> None:
        while True:
            now = self.clock.now()
            self._apply(self.r.tick(now))
            self.prom.queue_length.set(self.r.queue_length)
            self.prom.active.set(int(self.r.fleet.running.sum()))
            nxt = self.r.next_wakeup()
            delay = 0.25 if nxt is None else min(0.25, max(0.002, nxt - now))
            await asyncio.sleep(delay)

    async def _health(self) -> None:
        interval = self.config.dispatch.health_probe_interval
        cooldown = self.config.error_handler.gpu_cooldown_period
        while True:
            await asyncio.sleep(interval)
            for gpu_id, (why, since) in list(self.down.items()):
                i = self.r.fleet.index[gpu_id]
                sampled_ok = bool(self.r.fleet.status_ok[i])
                if why == "signal" and self.clock.now() - since < cooldown:
                    continue
                if not (sampled_ok and await self.dispatcher.probe(gpu_id)):
                    continue
                if self.down.pop(gpu_id, None) is not None:
                    now = self.clock.now()
                    self.gpu_since[gpu_id] = now
                    log(self.logger, logging.INFO, "GPU back in service", gpu_id=gpu_id)
                    self._apply(self.r.gpu_up(gpu_id, now))
                    self.prom.set_gpu_state(gpu_id, self.gpu_status(gpu_id))

    def gpu_status(self, gpu_id: str) -> str:
        i = self.r.fleet.index[gpu_id]
        out = self.r.out_reasons[i]
        if "maintenance" in out:
            return "maintenance"
        if out or gpu_id in self.down:
            return "error"
        return str(self.r.fleet.states[i].status.value)

    # ================================================================ restart

    async def _restore(self, now: float) -> None:
        """Resume unfinished requests; never re-run one a worker already finished."""
        wall = self.clock.wall()
        unfinished = self.journal.unfinished()
        if unfinished:
            log(self.logger, logging.INFO, "resuming unfinished requests", count=len(unfinished))
        running: dict[str, dict[str, Any] | None] = {}
        probes = [r for r in unfinished if r.job_id and r.gpu_id in self.r.fleet.index]
        states = await asyncio.gather(
            *(self.dispatcher.job_state(r.gpu_id or "", r.job_id or "") for r in probes)
        )
        for r, st in zip(probes, states, strict=True):
            running[r.request_id] = st
        self._replay_usage(now, wall)  # before the resumed requests take their slots
        for rec in unfinished:
            st = running.get(rec.request_id)
            req = RouteRequest.model_validate(rec.body)
            request = to_policy_request(
                req, rec.request_id, now - max(0.0, wall - rec.submitted_at)
            )
            live = Live(rec, request, None)
            if st is not None and st.get("state") == JOB_COMPLETED:
                self._finish_offline(live, "completed", None, st.get("result"))
                continue
            if st is not None and st.get("state") == JOB_RUNNING:
                live.reattach = (rec.gpu_id or "", rec.job_id or "")
            # acknowledged once: no quota or queue-bound refusal now, but it takes its slots
            decision, actions = self.r.submit(request, now, resumed=True)
            if isinstance(decision, Reject):  # the fleet changed: no GPU can serve it
                self._finish_offline(
                    live, "failed", f"not resumable after restart: {decision.reason}", None
                )
                continue
            self.live[rec.request_id] = live
            self.stats.accepted(rec.user_id, rec.model_id, float(request.memory_mb))
            self._journal(rec, state="queued", gpu_id=None)
            self._apply(actions)

    def _finish_offline(self, live: Live, state: str, error: str | None, result: Any) -> None:
        rec = live.rec
        self._journal(
            rec,
            state=state,
            error=error,
            result=result,
            completion_time=self.clock.wall(),
            callback_state="pending" if rec.callback_url else None,
        )
        if state == "completed":
            self.stats.system.completed += 1
        else:
            self.stats.system.failed += 1
        self._remember(rec)

    def _replay_usage(self, now: float, wall: float) -> None:
        """Quota usage from the journal, before unfinished requests are resumed: rate buckets
        count the requests of the last day (as of now), GPU time counts what ran in the
        current period. Resumed requests take their concurrent slots when resubmitted."""
        q = self.r.quotas
        for rec in self.journal.since(wall - 86_400.0):
            if q.admit(rec.user_id, rec.priority, now) is None:
                q.release(rec.user_id, rec.priority)
            period = q.limits(rec.user_id).gpu_minutes_period_s
            if (
                rec.state == "completed"
                and rec.start_time is not None
                and rec.completion_time is not None
                and rec.completion_time >= wall - period
            ):
                q.charge_gpu_time(rec.user_id, max(0.0, rec.completion_time - rec.start_time), now)

    # ================================================================ callbacks

    def _send_callback(self, rec: JournalRecord) -> None:
        if not rec.callback_url:
            return
        from .views import status_data

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
