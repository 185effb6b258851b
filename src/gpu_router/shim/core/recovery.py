"""Restart recovery: resuming the journal's unfinished requests, never running one twice.

On start, :meth:`Recovery.restore` asks every GPU's worker which jobs it holds
(``jobs()``: running, or finished and not yet acknowledged). A job's id is the router's
``{request_id}.{attempt}``, so the journal's unfinished requests are matched with the
jobs started for them even when the router died before it recorded the start. For each:

- a job that completed: the request is completed from the worker's stored result, not
  run again; the job is acknowledged once that is durable;
- a job still running: the request is left on it and followed (polled) until it ends,
  then completed from its result; only a job that failed, was cancelled or was lost
  (its worker stopped answering) makes the request queued again;
- otherwise (no job, or only failed or cancelled ones): the request is queued again,
  its next attempt numbered above every attempt seen.

Where a worker cannot list its jobs, the journal's ``job_id`` on that GPU is asked about
instead. Before that, quota usage is rebuilt from the journal (rate buckets from the last
day, GPU time from the current period). Times: monotonic ``now`` and wall-clock ``wall``
in seconds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gpu_router.policy import Reject, Router
from gpu_router.shim.core.admission import to_policy_request
from gpu_router.shim.core.clock import Clock
from gpu_router.shim.core.dispatcher import Dispatcher
from gpu_router.shim.core.execution import Execution
from gpu_router.shim.core.live import Live, LiveRequests
from gpu_router.shim.core.metrics import JsonStats
from gpu_router.shim.gpu_sources.base import JOB_COMPLETED, JOB_RUNNING, attempt_of
from gpu_router.shim.logs import log
from gpu_router.shim.store import JournalRecord

DAY_S = 86_400.0
FOLLOW_MAX_POLL_S = 1.0  # a followed job is polled at most this far apart
FOLLOW_LOST_AFTER = 3  # unanswered polls in a row before a followed job counts as lost

Held = list[tuple[str, dict[str, Any]]]  # (gpu_id, job status) of one request


class Recovery:
    """Resumption of unfinished requests and of quota usage after a restart."""

    def __init__(
        self,
        router: Router,
        requests: LiveRequests,
        execution: Execution,
        jobs: Dispatcher,
        clock: Clock,
        stats: JsonStats,
        logger: logging.Logger,
    ) -> None:
        self.router = router
        self.requests = requests
        self.execution = execution
        self.jobs = jobs
        self.clock = clock
        self.stats = stats
        self.logger = logger
        self.following: set[str] = set()  # requests left on a job found running

    async def held_jobs(self, unfinished: list[JournalRecord]) -> dict[str, Held]:
        """The jobs the workers hold for the unfinished requests, by request id."""
        wanted = {r.request_id for r in unfinished}
        gpus = list(self.router.gpu_ids)
        listings = await asyncio.gather(*(self.jobs.held_jobs(g) for g in gpus))
        held: dict[str, Held] = {}
        unlisted = set()
        stale: list[tuple[str, str, str]] = []
        for gpu_id, listing in zip(gpus, listings, strict=True):
            if listing is None:
                unlisted.add(gpu_id)
                continue
            for st in listing:
                rid = st.get("request_id", "")
                if rid in wanted:
                    held.setdefault(rid, []).append((gpu_id, dict(st)))
                elif st.get("state") != JOB_RUNNING and attempt_of(rid, st["job_id"]):
                    stale.append((gpu_id, rid, st["job_id"]))
        for gpu_id, rid, job_id in stale[:10_000]:  # recorded before the crash, never acked
            rec = self.requests.store.get(rid)
            if rec is not None and rec.terminal:
                self.jobs.ack(gpu_id, job_id)
        probes = [
            r for r in unfinished if r.job_id and r.gpu_id in unlisted and r.request_id not in held
        ]
        states = await asyncio.gather(
            *(self.jobs.job_state(r.gpu_id or "", r.job_id or "") for r in probes)
        )
        for r, state in zip(probes, states, strict=True):
            if state is not None:
                held[r.request_id] = [(r.gpu_id or "", state)]
        return held

    async def restore(self, now: float) -> int:
        """Resume unfinished requests; never re-run one a worker ran or is running.
        Returns how many were resumed (followed ones included)."""
        wall = self.clock.wall()
        unfinished = self.requests.store.unfinished()
        if unfinished:
            log(self.logger, logging.INFO, "resuming unfinished requests", count=len(unfinished))
        held = await self.held_jobs(unfinished)
        self.replay_usage(now, wall)  # before the resumed requests take their slots
        resumed = 0
        for rec in unfinished:
            jobs = held.get(rec.request_id, [])
            seen = [attempt_of(rec.request_id, st["job_id"]) or 0 for _g, st in jobs]
            rec.attempts = max([rec.attempts, *seen])  # the next attempt is above them all
            done = next(((g, st) for g, st in jobs if st.get("state") == JOB_COMPLETED), None)
            running = next(((g, st) for g, st in jobs if st.get("state") == JOB_RUNNING), None)
            keep = done or running
            for gpu_id, st in jobs:
                if keep is not None and st is keep[1]:
                    continue
                if st.get("state") == JOB_RUNNING:
                    self.jobs.spawn(self.jobs.cancel_job(gpu_id, st["job_id"]))
                else:
                    self.jobs.ack(gpu_id, st["job_id"])
            if done is not None:
                gpu_id, st = done
                self._finish_offline(rec, "completed", None, st.get("result"), gpu_id, st)
                continue
            if running is not None:
                gpu_id, st = running
                self.requests.change(rec, state="processing", gpu_id=gpu_id, job_id=st["job_id"])
                self.following.add(rec.request_id)
                self.jobs.spawn(self._follow(rec, gpu_id, st["job_id"]))
                resumed += 1
                continue
            resumed += self._resume(rec, now, wall)
        return resumed

    def _resume(self, rec: JournalRecord, now: float, wall: float) -> int:
        """Queue the request again (1), or fail it when no GPU can serve it now (0)."""
        request = to_policy_request(
            rec.body, rec.request_id, now - max(0.0, wall - rec.submitted_at)
        )
        live = Live(rec, request, None)
        # acknowledged once: no quota or queue-bound refusal now, but it takes its slots
        decision, actions = self.router.submit(request, now, resumed=True)
        if isinstance(decision, Reject):  # the fleet changed: no GPU can serve it
            reason = f"not resumable after restart: {decision.reason}"
            self._finish_offline(rec, "failed", reason, None)
            return 0
        self.requests.admit(live)
        self.stats.accepted(rec.user_id, rec.model_id, float(request.memory_mb))
        self.requests.change(rec, state="queued", gpu_id=None, job_id=None)
        self.execution.apply(actions)
        return 1

    async def _follow(self, rec: JournalRecord, gpu_id: str, job_id: str) -> None:
        """Poll a job found running at restart until it ends: completed, the request is
        completed from its result; otherwise (or lost) the request is queued again."""
        delay, unanswered = 0.05, 0
        try:
            while True:
                st = await self.jobs.job_state(gpu_id, job_id)
                if st is None:
                    unanswered += 1
                    if unanswered >= FOLLOW_LOST_AFTER:
                        break
                elif st.get("state") == JOB_COMPLETED:
                    self._finish_offline(rec, "completed", None, st.get("result"), gpu_id, st)
                    self.execution.callbacks.send(rec)
                    return
                elif st.get("state") != JOB_RUNNING:
                    self.jobs.ack(gpu_id, job_id)
                    break
                else:
                    unanswered = 0
                await asyncio.sleep(delay)
                delay = min(FOLLOW_MAX_POLL_S, delay * 2)
        finally:
            self.following.discard(rec.request_id)
        log(
            self.logger,
            logging.WARNING,
            "followed job did not complete",
            request_id=rec.request_id,
            gpu_id=gpu_id,
            job_id=job_id,
        )
        self._resume(rec, self.clock.now(), self.clock.wall())

    def _finish_offline(
        self,
        rec: JournalRecord,
        state: str,
        error: str | None,
        result: Any,
        gpu_id: str | None = None,
        job: dict[str, Any] | None = None,
    ) -> None:
        """Record a terminal state reached without the Router; a worker's job that
        produced it is acknowledged once that is durable."""
        changes: dict[str, Any] = {}
        if gpu_id is not None and job is not None:
            changes = {"gpu_id": gpu_id, "job_id": job["job_id"]}
            started = job.get("started_at")
            if rec.start_time is None and isinstance(started, int | float):
                changes["start_time"] = float(started)
        self.requests.change(
            rec,
            state=state,
            error=error,
            result=result,
            completion_time=self.clock.wall(),
            callback_state="pending" if rec.callback_url else None,
            **changes,
        )
        if gpu_id is not None and job is not None:
            self.jobs.ack(gpu_id, job["job_id"])
        if state == "completed":
            self.stats.system.completed += 1
        else:
            self.stats.system.failed += 1
        self.requests.remember(rec)

    def replay_usage(self, now: float, wall: float) -> None:
        """Quota usage from the journal, before unfinished requests are resumed: rate buckets
        count the requests of the last day (as of now), GPU time counts what ran in the
        current period. Resumed requests take their concurrent slots when resubmitted."""
        router = self.router
        for rec in self.requests.store.since(wall - DAY_S):
            period = router.quota_limits(rec.user_id).gpu_minutes_period_s
            gpu_s = 0.0
            if (
                rec.state == "completed"
                and rec.start_time is not None
                and rec.completion_time is not None
                and rec.completion_time >= wall - period
            ):
                gpu_s = max(0.0, rec.completion_time - rec.start_time)
            router.replay_usage(rec.user_id, rec.priority, now, gpu_s)
