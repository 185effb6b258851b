"""Restart recovery: resuming the journal's unfinished requests.

On start, :meth:`RecoveryMixin._restore` asks the workers about the jobs the journal
says were running: one that completed meanwhile is finished without re-running it, one
still running is re-attached when it is dispatched to the same GPU, the rest are queued
again. Before that, :meth:`RecoveryMixin._replay_usage` rebuilds quota usage from the
journal (rate buckets from the last day, GPU time from the current period). Times:
monotonic ``now`` and wall-clock ``wall`` in seconds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gpu_router.policy.decisions import Reject
from gpu_router.shim.core.admission import to_policy_request
from gpu_router.shim.core.live import Live, ServiceBase
from gpu_router.shim.gpu_sources.base import JOB_COMPLETED, JOB_RUNNING
from gpu_router.shim.http.schemas import RouteRequest
from gpu_router.shim.logs import log


class RecoveryMixin(ServiceBase):
    """Resumption of unfinished requests and of quota usage after a restart."""

    async def _restore(self, now: float) -> None:
        """Resume unfinished requests; never re-run one a worker already finished."""
        wall = self.clock.wall()
        unfinished = self.store.unfinished()
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
        for rec in self.store.since(wall - 86_400.0):
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
