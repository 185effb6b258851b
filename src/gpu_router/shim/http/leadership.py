"""Leader or standby: several ``gpu-router serve`` processes on one PostgreSQL store
(``journal.lease_ttl_s`` above 0).

Every replica serves HTTP from the start. A standby has not started its service: it
answers ``/health`` with 503 and the leader's address, and every API call with 503,
``Retry-After`` and the leader's address (``x-leader-url``), so a load balancer that
checks ``/health`` sends clients to the leader only. Meanwhile it tries to take the lease
(``shim.store.pg_lease``) every third of the TTL; once it has, it starts the service
(which loads the queue, running work and quota usage from the store and re-attaches to
the workers' jobs, as after a restart) and leads.

The leader renews the lease every third of the TTL. If it has not renewed it for two
thirds of the TTL (the database unreachable, a pause), or finds another holder, it stops
at once: the process exits (status 70) without another write or dispatch, before any
other replica can take the lease; a supervisor starts it again, as a standby. A watchdog
thread checks the time of the last renewal every 50 ms, so a leader whose event loop is
blocked, or that wakes from a pause (SIGSTOP), stops within 50 ms of noticing; what it
may still send to a worker in that window carries its old epoch, which the worker
refuses once the new leader has called it (``shim.worker.server``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gpu_router.shim.logs import log
from gpu_router.shim.store import JournalError
from gpu_router.shim.store.pg_lease import LeaderLease

FENCED_EXIT = 70  # the exit status of a leader that lost its lease
WATCHDOG_S = 0.05  # how often the watchdog thread looks at the last renewal


class Leadership:
    """This replica's role, and the loops that take and keep the lease."""

    def __init__(
        self,
        lease: LeaderLease,
        logger: logging.Logger,
        *,
        exit_process: Callable[[int], None] = os._exit,
    ) -> None:
        self.lease = lease
        self.logger = logger
        self.exit_process = exit_process
        self.role = "standby"
        self.leader_address: str | None = None
        self.epoch: int | None = None
        self.period_s = lease.ttl_s / 3.0
        #: a leader not renewed for this long stops (others take the lease after ttl_s)
        self.deadline_s = 2.0 * lease.ttl_s / 3.0
        self.renewed_at = 0.0  # (monotonic s) the last renewal
        self._stopped = threading.Event()

    def describe(self) -> dict[str, Any]:
        """What ``/health`` says of the role."""
        return {
            "role": self.role,
            "leader": self.lease.address if self.role == "leader" else self.leader_address,
            "epoch": self.epoch,
        }

    async def lead(self, start: Callable[[int], Awaitable[None]]) -> None:
        """Wait for the lease, ``start(epoch)`` the service, then keep the lease (until
        cancelled, or the process exits when it is lost)."""
        while True:
            try:
                epoch = await asyncio.to_thread(self.lease.acquire)
                if epoch is None:
                    current = await asyncio.to_thread(self.lease.current)
                    self.leader_address = current.address
            except JournalError as exc:
                log(self.logger, logging.WARNING, "leader lease unavailable", error=str(exc))
                epoch = None
            if epoch is not None:
                break
            await asyncio.sleep(self.period_s)
        self.epoch = epoch
        log(self.logger, logging.WARNING, "took the leader lease", epoch=epoch)
        self.renewed_at = time.monotonic()
        threading.Thread(target=self._watchdog, name="lease-watchdog", daemon=True).start()
        keeper = asyncio.ensure_future(self._keep())
        try:
            await start(epoch)
            self.role = "leader"
            await keeper
        finally:
            keeper.cancel()

    def _watchdog(self) -> None:
        """(a thread) Stop once the lease was not renewed in time, even if the event loop
        is blocked or the process was paused (SIGSTOP) and has just woken up."""
        while not self._stopped.wait(WATCHDOG_S):
            if time.monotonic() - self.renewed_at > self.deadline_s:
                self._fence("not renewed in time")

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            asked = time.monotonic()  # (the database's expiry is set after this)
            try:
                held = await asyncio.wait_for(
                    asyncio.to_thread(self.lease.renew), self.lease.ttl_s / 3.0
                )
            except (TimeoutError, JournalError) as exc:
                log(self.logger, logging.ERROR, "leader lease not renewed", error=str(exc))
                held = None
            if held and time.monotonic() - self.renewed_at <= self.deadline_s:
                self.renewed_at = asked
            elif held is False:
                self._fence("another replica holds the lease")

    def _fence(self, why: str) -> None:
        log(self.logger, logging.CRITICAL, "lost the leader lease: stopping now", reason=why)
        logging.shutdown()
        self.exit_process(FENCED_EXIT)

    async def aclose(self) -> None:
        """A clean stop: give the lease up so that a standby takes it at once."""
        self._stopped.set()
        with contextlib.suppress(JournalError):
            await asyncio.to_thread(self.lease.release)
        self.lease.close()
