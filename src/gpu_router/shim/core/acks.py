"""Acknowledging finished jobs to their workers, once the store has recorded them.

A worker keeps every job's state and result until the router acknowledges it (``ack``
of the job API), so that a router that died before recording a job's end can still read
it after a restart instead of running the job again. :class:`JobAcks` gathers the jobs
whose request's terminal state (or whose failed attempt) has been handed to the store,
and every ``interval_s`` makes the store durable (``Store.flush``: the staged rows are
committed, usually a millisecond) and then acknowledges the gathered jobs, one call per
worker. In-process (virtual) jobs do not survive the router, so they are acknowledged
at once. Failures are ignored: a job never acknowledged is forgotten by its worker after
its retention (``--job-ttl-s``). While the store cannot be made durable (its database
is down) nothing is acknowledged: the jobs wait for the next try.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from gpu_router.shim.core.local_jobs import is_local
from gpu_router.shim.core.workers import WorkerCalls
from gpu_router.shim.gpu_sources.base import SourceError
from gpu_router.shim.store import JournalError, Store

ACK_TIMEOUT_S = 5.0


class JobAcks:
    """Finished jobs waiting to be acknowledged, by GPU."""

    def __init__(
        self,
        store: Store | None,
        workers: WorkerCalls,
        spawn: Callable[[Awaitable[Any]], asyncio.Task[Any]],
        interval_s: float = 0.5,
    ) -> None:
        self.store = store
        self.workers = workers
        self.spawn = spawn
        self.interval_s = interval_s
        self.pending: dict[str, list[str]] = defaultdict(list)
        self._timer: asyncio.TimerHandle | None = None
        self._calls: set[asyncio.Task[Any]] = set()
        self.acked = 0  # jobs acknowledged (calls that answered)

    def add(self, gpu_id: str, job_id: str) -> None:
        """Acknowledge ``job_id`` once what the store was handed so far is durable."""
        runner = self.workers.runner(gpu_id)
        if is_local(runner):  # in process: nothing survives the router anyway
            self._call(gpu_id, [job_id])
            return
        self.pending[gpu_id].append(job_id)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval_s, self.drain)

    def drain(self) -> None:
        """Make the store durable, then acknowledge every gathered job (background)."""
        self._timer = None
        if not self.pending:
            return
        if self.store is not None:
            try:
                self.store.flush()  # the terminal states staged before are durable now
            except JournalError:  # not durable (the database is down): later
                self._timer = asyncio.get_running_loop().call_later(self.interval_s, self.drain)
                return
        pending, self.pending = self.pending, defaultdict(list)
        for gpu_id, ids in pending.items():
            self._call(gpu_id, ids)

    def _call(self, gpu_id: str, job_ids: list[str]) -> None:
        task = self.spawn(self._ack(gpu_id, job_ids))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _ack(self, gpu_id: str, job_ids: list[str]) -> None:
        with contextlib.suppress(SourceError, asyncio.TimeoutError, KeyError):
            await asyncio.wait_for(self.workers.runner(gpu_id).ack(job_ids), ACK_TIMEOUT_S)
            self.acked += len(job_ids)

    def abandon(self) -> list[asyncio.Task[Any]]:
        """Drop what is gathered, unacknowledged (its workers keep the jobs for the next
        leader); the calls in flight, for the caller to cancel."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.pending.clear()
        return list(self._calls)

    async def aclose(self, timeout_s: float = 2.0) -> None:
        """A clean stop: acknowledge what is gathered, waiting at most ``timeout_s``."""
        if self._timer is not None:
            self._timer.cancel()
        self.drain()
        if self._timer is not None:  # the store is not durable: not acknowledged
            self._timer.cancel()
            self._timer = None
        if self._calls:
            await asyncio.wait(set(self._calls), timeout=timeout_s)
