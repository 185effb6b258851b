"""Submission: admitting a request and the answer it gets.

:meth:`SubmissionMixin.submit` turns a validated body into a policy ``Request``, asks the
router, stages the journal row and answers 200 only once that row is durable: in the
intake log (``shim.store.intake_log``) or committed (a re-submission gets the original answer,
or 409 for another body). Also the module-level
helpers the journal and restart recovery share: :func:`canonical_body`,
:func:`body_hash`, :func:`to_policy_request`. Times: monotonic ``now`` and wall-clock
``wall`` in seconds; estimates are wall-clock seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from gpu_router.policy.decisions import Enqueue, Placement, Reject
from gpu_router.policy.decisions import RejectCode as RC
from gpu_router.policy.errors import InvalidValue
from gpu_router.policy.types import Request, ResourceRequirements
from gpu_router.shim import fastjson
from gpu_router.shim.core.live import Live, ServiceBase
from gpu_router.shim.http.envelope import iso
from gpu_router.shim.http.schemas import RouteRequest
from gpu_router.shim.logs import log
from gpu_router.shim.store import DuplicateRequest, JournalError, JournalRecord

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


class SubmissionMixin(ServiceBase):
    """``submit`` and the refusals and estimates it answers with."""

    async def submit(self, req: RouteRequest, trace_child: str | None) -> Outcome:
        """Admit ``req``; a 200 is returned only once its journal row is durable."""
        now, wall = self.clock.now(), self.clock.wall()
        given = req.request_id
        rid = given or str(uuid.uuid4())
        body, canon, digest = canonical_body(req)
        # A re-submission is found in memory (live or recently finished); one of an older
        # request by the store (``Store.insert``; for SQLite, from its set of taken
        # ids, or the insert failing as a duplicate), below. (No SELECT per submission.)
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
        live = Live(rec, request, trace_child, committed=self.store.insert(rec))
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
            known = self.store.get(rid) if duplicate else None
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
