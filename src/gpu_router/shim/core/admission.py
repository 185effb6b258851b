"""Admission: a validated submission asked of the Router, journaled, and answered.

:meth:`Admission.submit` takes the body as the edge validated it (a JSON object, every
field present), turns it into a policy ``Request``, asks the Router, stages the journal
row and answers 200 only once that row is durable: in the intake log
(``shim.store.intake_log``) or committed. A re-submission gets the original answer, or
409 for another body; request ids are unique per user (the store key is
``request_key(user_id, request_id)``), so users never see or block each other's. The
estimated start and completion come from the Router's
decision (``wait_s``, ``run_s``). Times: monotonic ``now`` and wall-clock ``wall`` in
seconds; estimates on the wire are wall-clock ISO 8601.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpu_router.policy import (
    InvalidValue,
    Placement,
    Reject,
    RejectCode,
    Request,
    ResourceRequirements,
    Router,
)
from gpu_router.shim import fastjson
from gpu_router.shim.core.clock import Clock, iso
from gpu_router.shim.core.execution import Execution
from gpu_router.shim.core.live import Live, LiveRequests
from gpu_router.shim.core.metrics import JsonStats, PromMetrics
from gpu_router.shim.logs import log
from gpu_router.shim.store import DuplicateRequest, JournalError, JournalRecord, request_key

#: INCOMPATIBLE (no GPU of the fleet could ever serve it): 503 without Retry-After, since a
#: retry cannot help (DESIGN 5.1). NO_CAPACITY (every compatible GPU is down now): 503 with
#: Retry-After.
REJECT_STATUS = {
    RejectCode.INCOMPATIBLE: 503,
    RejectCode.NO_CAPACITY: 503,
    RejectCode.QUEUE_FULL: 429,
    RejectCode.RATE_LIMITED: 429,
    RejectCode.QUOTA_EXCEEDED: 429,
    RejectCode.DUPLICATE: 409,
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


def canonical_body(body: Mapping[str, Any]) -> tuple[str, str]:
    """The body's canonical JSON text (sorted keys, no spaces; the journal stores it) and
    that text's SHA-256 (compared on re-submission)."""
    canon = fastjson.dumps(body, sort_keys=True)
    return canon, hashlib.sha256(canon.encode()).hexdigest()


def to_policy_request(body: Mapping[str, Any], request_id: str, now: float) -> Request:
    """The policy ``Request`` a validated body describes, submitted at ``now`` (s)."""
    rr = body.get("resource_requirements") or {}
    cc = None
    if rr.get("min_compute_capability") is not None:
        major, minor = str(rr["min_compute_capability"]).split(".")
        cc = (int(major), int(minor))
    timeout = body.get("timeout")
    return Request(
        request_id=request_id,
        user_id=body["user_id"],
        model_id=body["model_id"],
        priority=body["priority"],
        type=body.get("type", "inference"),
        resources=ResourceRequirements(
            memory_mb=float(rr.get("memory", 0)),
            compute_units=rr.get("compute_units", 1),
            max_batch_size=rr.get("max_batch_size", 1),
            expected_duration_ms=float(rr.get("expected_duration", 0)),
            min_compute_capability=cc,
        ),
        timeout_s=None if timeout is None else timeout / 1000.0,
        submitted_at=now,
    )


def rejected(rid: str, message: str) -> dict[str, Any]:
    """The ``data`` of a refused submission (design 6.3.1)."""
    return {
        "request_id": rid,
        "status": "rejected",
        "assigned_gpu": None,
        "estimated_start_time": None,
        "estimated_completion_time": None,
        "queue_position": None,
        "message": message,
    }


class Admission:
    """``submit``, and the refusals and estimates it answers with."""

    def __init__(
        self,
        router: Router,
        requests: LiveRequests,
        execution: Execution,
        clock: Clock,
        prom: PromMetrics,
        stats: JsonStats,
        logger: logging.Logger,
    ) -> None:
        self.router = router
        self.requests = requests
        self.execution = execution
        self.clock = clock
        self.prom = prom
        self.stats = stats
        self.logger = logger

    async def submit(self, body: dict[str, Any], trace_child: str | None) -> Outcome:
        """Admit the validated ``body``; a 200 is returned only once its row is durable."""
        now, wall = self.clock.now(), self.clock.wall()
        given = body.get("request_id")
        rid = given or str(uuid.uuid4())  # what the client knows
        key = request_key(body["user_id"], rid)  # what the store, Router and jobs use
        canon, digest = canonical_body(body)
        # A re-submission is found in memory (live or recently finished); one of an older
        # request by the store (``Store.insert``: from its set of taken ids, or the
        # insert failing as a duplicate), below. (No SELECT per submission.)
        if given:
            known = self.requests.known(key)
            if known is not None:
                live = self.requests.get(key)
                if live is not None and live.committed is not None and known.body_hash == digest:
                    try:  # the first submission is not acknowledged before its commit
                        await asyncio.shield(live.committed)
                    except JournalError:
                        return self._unwritable(rid)
                return self._resubmitted(known, digest)
        try:
            request = to_policy_request(body, key, now)
        except InvalidValue as exc:
            return Outcome(422, rejected(rid, str(exc)), "invalid_request", str(exc))
        decision, actions = self.router.submit(request, now)
        prio = str(request.priority)
        if isinstance(decision, Reject):
            self.prom.child(self.prom.submissions, "rejected", prio).inc()
            status = REJECT_STATUS.get(decision.code, 503)
            retry = decision.retry_after_s
            if status in (429, 503) and retry is None and decision.code != RejectCode.INCOMPATIBLE:
                retry = 1.0
            return Outcome(
                status, rejected(rid, decision.reason), decision.code, decision.reason, retry
            )
        placed = isinstance(decision, Placement)
        gpu = decision.gpu_id
        position = 0 if placed else decision.position  # type: ignore[union-attr]
        start_at = wall + decision.wait_s
        answer = {
            "request_id": rid,
            "status": "accepted" if placed else "queued",
            "assigned_gpu": gpu,
            "estimated_start_time": iso(start_at),
            "estimated_completion_time": iso(start_at + decision.run_s),
            "queue_position": position,
            "message": f"placed on {gpu}" if placed else f"queued at position {position}",
        }
        rec = JournalRecord(
            request_id=key,
            user_id=request.user_id,
            model_id=request.model_id,
            priority=request.priority,
            body=body,
            body_hash=digest,
            answer=answer,
            state="processing" if placed else "queued",
            submitted_at=wall,
            gpu_id=gpu if placed else None,
            attempts=1 if placed else 0,
            callback_url=body.get("callback_url"),
            trace_id=(trace_child or "")[3:35] or None,
            body_json=canon,
        )
        live = Live(rec, request, trace_child)
        committed = self.requests.insert(live)
        memory_mb = self.router.record(key).memory_mb
        self.stats.accepted(request.user_id, request.model_id, memory_mb)
        self.execution.apply(actions)  # its own Dispatch is held until the commit
        try:
            await asyncio.shield(committed)
        except JournalError as exc:
            duplicate = isinstance(exc, DuplicateRequest)
            if not duplicate:
                log(self.logger, logging.ERROR, "journal write failed", request_id=key, error=exc)
            if self.requests.get(key) is live:  # undo the admission; its job never started
                live.unjournaled = True
                live.held = None
                self.execution.apply(self.router.cancel(key, self.clock.now(), "not acknowledged"))
            self.stats.withdrawn(request.user_id, request.model_id, memory_mb)
            known = self.requests.store.get(key) if duplicate else None
            return self._unwritable(rid) if known is None else self._resubmitted(known, digest)
        self.prom.child(self.prom.submissions, "accepted" if placed else "queued", prio).inc()
        self.execution.release_held(live)
        return Outcome(200, answer, gpu_id=gpu)

    def _resubmitted(self, known: JournalRecord, digest: str) -> Outcome:
        """The original answer for the same body, 409 for another one."""
        if known.body_hash == digest:
            data = dict(known.answer)
            data["message"] = "already accepted: this is the original answer"
            return Outcome(200, data, gpu_id=known.gpu_id)
        rid = known.client_request_id
        return Outcome(
            409,
            rejected(rid, "request_id already used with another body"),
            "conflict",
            f"request_id {rid} was already submitted with a different body",
        )

    def _unwritable(self, rid: str) -> Outcome:
        return Outcome(
            503,
            rejected(rid, "the journal cannot be written"),
            "unavailable",
            "the request journal cannot be written; retry later",
            5.0,
        )
