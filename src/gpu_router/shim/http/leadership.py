"""Leader or standby: several ``gpu-router serve`` processes on one PostgreSQL store
(``journal.lease_ttl_s`` above 0).

Every replica serves HTTP from the start: "starting" (503) until its first look at the
lease, then a standby or the leader. A standby has not started its service: it
answers ``/health`` with 503 and the leader's address, and every API call with 503,
``Retry-After`` and the leader's address (``x-leader-url``), so a load balancer that
checks ``/health`` sends clients to the leader only. Meanwhile it tries to take the lease
(``shim.store.pg_lease``) every third of the TTL; once it has, it starts the service
(which loads the queue, running work and quota usage from the store and re-attaches to
the workers' jobs, as after a restart) and leads.

The leader renews the lease every third of the TTL, from a thread of its own (so that a
long recovery at takeover, which holds the event loop, does not cost the lease). If it
has not renewed it for two thirds of the TTL (the database unreachable or slow, a
pause), or finds another holder, it stops at once: the process exits (status 70) without
another write or dispatch, before any other replica can take the lease; a supervisor
starts it again, as a standby. A watchdog thread checks the time of the last renewal
every 50 ms, so a leader that wakes from a pause (SIGSTOP) stops within 50 ms; what it
may still send to a worker in that window carries its old epoch, which the worker
refuses once the new leader has called it (``shim.worker.server``), and every write
of its store carries the epoch too: PostgreSQL refuses it once another replica took the
lease (``shim.store.postgres_store``), and the leader stops.
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
        #: "starting" until the first look at the lease, then "standby", "starting"
        #: (taking over) or "leader"
        self.role = "starting"
        self.leader_address: str | None = None
        self.epoch: int | None = None
        self.period_s = lease.ttl_s / 3.0
        #: a leader not renewed for this long stops (others take the lease after ttl_s)
        self.deadline_s = 2.0 * lease.ttl_s / 3.0
        self.renewed_at = 0.0  # (monotonic s) the last renewal
        #: what a standby's ``/health`` says of its reads (``Standby.describe``; the app)
        self.standby_reads: Callable[[], dict[str, Any]] | None = None
        self._stopped = threading.Event()

    def describe(self) -> dict[str, Any]:
        """What ``/health`` says of the role."""
        return {
            "role": self.role,
            "leader": self.lease.address if self.role == "leader" else self.leader_address,
            "epoch": self.epoch,
        }

    def stand_by(self) -> None:
        """Not the leader (another holds the lease, or the store cannot be reached: then
        the leader's address is not known)."""
        self.role = "standby"

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
            self.stand_by()
            await asyncio.sleep(self.period_s)
        self.epoch = epoch
        self.role = "starting"  # (no longer a standby: nothing is forwarded)
        log(self.logger, logging.WARNING, "took the leader lease", epoch=epoch)
        self.renewed_at = time.monotonic()
        for target, name in ((self._renew, "lease-renewal"), (self._watchdog, "lease-watchdog")):
            threading.Thread(target=target, name=name, daemon=True).start()
        await start(epoch)
        self.role = "leader"

    def _renew(self) -> None:
        """(a thread) Renew every third of the TTL, whatever the event loop is doing (a
        long recovery at takeover must not cost the lease); deposed: stop."""
        while not self._stopped.wait(self.period_s):
            asked = time.monotonic()  # (the database's expiry is set after this)
            try:
                held = self.lease.renew()
            except JournalError as exc:
                log(self.logger, logging.ERROR, "leader lease not renewed", error=str(exc))
                continue
            if self._stopped.is_set():  # a clean stop released it meanwhile
                return
            if not held:
                self.fence("another replica holds the lease")
            if time.monotonic() - self.renewed_at <= self.deadline_s:
                self.renewed_at = asked

    def _watchdog(self) -> None:
        """(a thread) Stop once the lease was not renewed in time (the database
        unreachable or slow), or when the process wakes up from a pause (SIGSTOP) past
        its deadline, before anything else can act."""
        while not self._stopped.wait(WATCHDOG_S):
            if time.monotonic() - self.renewed_at > self.deadline_s:
                self.fence("not renewed in time")

    def fence(self, why: str) -> None:
        """Stop the process now (exit 70), without another write or dispatch."""
        log(self.logger, logging.CRITICAL, "lost the leader lease: stopping now", reason=why)
        logging.shutdown()
        self.exit_process(FENCED_EXIT)

    async def aclose(self) -> None:
        """A clean stop: give the lease up so that a standby takes it at once."""
        self._stopped.set()
        with contextlib.suppress(JournalError):
            await asyncio.to_thread(self.lease.release)
        self.lease.close()
