"""Restart recovery: resuming the journal's unfinished requests.

On start, :meth:`Recovery.restore` asks the workers about the jobs the journal says were
running: one that completed meanwhile is finished without re-running it, one still
running is re-attached when it is dispatched to the same GPU, the rest are queued
again. Before that, quota usage is rebuilt from the journal (rate buckets from the last
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
from gpu_router.shim.gpu_sources.base import JOB_COMPLETED, JOB_RUNNING
from gpu_router.shim.logs import log

DAY_S = 86_400.0


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

    async def restore(self, now: float) -> int:
        """Resume unfinished requests; never re-run one a worker already finished.
        Returns how many were resumed."""
        wall = self.clock.wall()
        unfinished = self.requests.store.unfinished()
        if unfinished:
            log(self.logger, logging.INFO, "resuming unfinished requests", count=len(unfinished))
        probes = [r for r in unfinished if r.job_id and r.gpu_id and self.router.has_gpu(r.gpu_id)]
        states = await asyncio.gather(
            *(self.jobs.job_state(r.gpu_id or "", r.job_id or "") for r in probes)
        )
        running: dict[str, dict[str, Any] | None] = {
            r.request_id: st for r, st in zip(probes, states, strict=True)
        }
        self.replay_usage(now, wall)  # before the resumed requests take their slots
        resumed = 0
        for rec in unfinished:
            st = running.get(rec.request_id)
            request = to_policy_request(
                rec.body, rec.request_id, now - max(0.0, wall - rec.submitted_at)
            )
            live = Live(rec, request, None)
            if st is not None and st.get("state") == JOB_COMPLETED:
                self._finish_offline(live, "completed", None, st.get("result"))
                continue
            if st is not None and st.get("state") == JOB_RUNNING:
                live.reattach = (rec.gpu_id or "", rec.job_id or "")
            # acknowledged once: no quota or queue-bound refusal now, but it takes its slots
            decision, actions = self.router.submit(request, now, resumed=True)
            if isinstance(decision, Reject):  # the fleet changed: no GPU can serve it
                self._finish_offline(
                    live, "failed", f"not resumable after restart: {decision.reason}", None
                )
                continue
            self.requests.admit(live)
            resumed += 1
            self.stats.accepted(rec.user_id, rec.model_id, float(request.memory_mb))
            self.requests.change(rec, state="queued", gpu_id=None)
            self.execution.apply(actions)
        return resumed

    def _finish_offline(self, live: Live, state: str, error: str | None, result: Any) -> None:
        rec = live.rec
        self.requests.change(
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
