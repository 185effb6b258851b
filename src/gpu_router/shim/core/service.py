"""The running service: the policy Router driven by real time, the journal and workers.

All state changes happen on the event loop thread, in plain synchronous methods, so no
locks are needed: HTTP handlers call :meth:`RouterService.submit` and friends; the
dispatcher reports job events; three loops sample the GPUs, tick the router's timers and
probe GPUs that were taken out. The clock is read through ``self.clock`` only.

Every router call returns actions, applied by ``_apply``: ``Dispatch`` starts a job,
``Abort`` stops one, ``Finished`` journals the terminal state and sends the callback.

Journal writes go through the store (``shim.store``, a writer process for SQLite): a
submission awaits the commit of its row before it is answered 200 (and its job is not
started before that); later state changes ride a later batch. A finished request is
dropped from the router (``Router.forget``) and from ``live``; the last ``RECENT`` of them
stay in memory for the status API, older ones are read back from the journal.

:class:`RouterService` holds the lifecycle (``start``, ``stop``) and is composed of one
mixin per concern, over the shared state of ``service_base`` (``Live``):
``service_submit`` (``submit``, ``Outcome``, ``canonical_body``, ``to_policy_request``),
``service_events`` (actions, job events, callbacks), ``service_recovery`` (restart),
``service_loops`` (sampler, ticker, health) and ``service_admin`` (cancel, maintenance,
quotas, settings). Their names are importable from here as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import numpy as np

from gpu_router.policy.router import Router
from gpu_router.shim.config import router_config
from gpu_router.shim.core.admin import AdminMixin
from gpu_router.shim.core.admission import (
    REJECT_STATUS,
    Outcome,
    SubmissionMixin,
    body_hash,
    canonical_body,
    to_policy_request,
)
from gpu_router.shim.core.execution import EventsMixin
from gpu_router.shim.core.live import Live, ServiceBase
from gpu_router.shim.core.loops import LoopsMixin
from gpu_router.shim.core.recovery import RecoveryMixin
from gpu_router.shim.logs import log

__all__ = [
    "REJECT_STATUS",
    "Live",
    "Outcome",
    "RouterService",
    "ServiceBase",
    "body_hash",
    "canonical_body",
    "to_policy_request",
]


class RouterService(SubmissionMixin, EventsMixin, AdminMixin, RecoveryMixin, LoopsMixin):
    """The service; its constructor is :class:`~.service_base.ServiceBase`'s."""

    async def start(self) -> None:
        states = await self.source.sample()
        now = self.clock.now()
        self.router = Router(
            states, router_config(self.config), np.random.default_rng(self.config.seed)
        )
        for s in states:
            self.gpu_since[s.gpu_id] = now
        self._load_settings(now)
        counts = self.store.count_by_state()
        self.stats.system.total = sum(counts.values())
        self.stats.system.completed = counts.get("completed", 0)
        self.stats.system.failed = counts.get("failed", 0)
        await self._restore(now)
        for rec in self.store.pending_callbacks():
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
        self.store.flush()  # (its owner, the app, closes it)
