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
pause), or finds another holder, or the database refuses its epoch, it steps down at
once, before any other replica can take the lease (:meth:`Leadership.fence`): from
then on :meth:`Leadership.holds` is False for its epoch, and the service's worker calls
and store writes ask it before each one (``shim.worker.client``, and again at the
socket before each write, ``shim.worker.call_guard``; ``shim.store.pg_writer``), so
nothing is dispatched or written any more; ``holds`` also compares the time itself, so
a leader that wakes from a pause (SIGSTOP) refuses its next call even before the
watchdog thread (which checks the last renewal every 50 ms) has run. Then
``on_step_down`` (the app) takes the service down on the event loop and the process
stands by again, in process (its warm copy seeded with the service's records), and may
take the lease again later, as any standby. What it may still have sent to a worker
before carries its old epoch, which the worker refuses once the new leader has called
it or listed its jobs (``shim.worker.server``), and every write of its store carries the epoch too:
PostgreSQL refuses it once another replica took the lease
(``shim.store.postgres_store``). Without ``on_step_down``, or if the step-down fails,
the process exits (status 70) instead; a supervisor starts it again, as a standby.
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

FENCED_EXIT = 70  # the exit status of a leader that lost its lease and could not step down
WATCHDOG_S = 0.05  # how often the watchdog thread looks at the last renewal

#: ``on_step_down(epoch, why, complete_at)``, from the thread that noticed: the term of
#: ``epoch`` is over; ``complete_at`` (monotonic s) is the moment until which this
#: leader's memory holds every write the database may have (no other replica could
#: take the lease before then)
StepDown = Callable[[int, str, float], None]


class Leadership:
    """This replica's role, and the loops that take and keep the lease."""

    def __init__(
        self,
        lease: LeaderLease,
        logger: logging.Logger,
        *,
        exit_process: Callable[[int], None] = os._exit,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lease = lease
        self.logger = logger
        self.exit_process = exit_process
        self.monotonic = monotonic
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
        #: how the app takes the service down in process (None: the process exits)
        self.on_step_down: StepDown | None = None
        self.step_downs = 0  # how many terms ended by a lost lease
        self._stopped = threading.Event()  # a clean stop (aclose)
        self._term = threading.Event()  # set: the current term is over (or none began)
        self._term.set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

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

    def holds(self, epoch: int | None) -> bool:
        """(any thread) Whether this replica may still act as the leader of ``epoch``:
        its term has not ended and the lease was renewed in time. Asked before every
        worker call and store write; past the deadline it steps down now (so a process
        that wakes from a pause refuses its first call, whatever thread runs first)."""
        if epoch is None or epoch != self.epoch or self._term.is_set():
            return False
        if self.monotonic() - self.renewed_at > self.deadline_s:
            self.fence("not renewed in time", epoch=epoch)
            return False
        return True

    async def lead(self, start: Callable[[int], Awaitable[None]]) -> None:
        """Wait for the lease, ``start(epoch)`` the service, then keep the lease (until
        cancelled, or the term ends when it is lost: :meth:`fence`)."""
        await asyncio.to_thread(self._join_threads)  # (an earlier term's, still ending)
        while True:
            asked = self.monotonic()  # (before the database's now(): the term's start)
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
        term = threading.Event()
        with self._lock:
            self.epoch = epoch
            self.renewed_at = asked
            self._term = term
        self.role = "starting"  # (no longer a standby: nothing is forwarded)
        log(self.logger, logging.WARNING, "took the leader lease", epoch=epoch)
        self._threads = [
            threading.Thread(target=target, args=(term, epoch), name=name, daemon=True)
            for target, name in ((self._renew, "lease-renewal"), (self._watchdog, "lease-watchdog"))
        ]
        for t in self._threads:
            t.start()
        await start(epoch)
        with self._lock:  # (a step-down on another thread sets the role under it too)
            if not term.is_set():
                self.role = "leader"

    def _join_threads(self) -> None:
        for t in self._threads:
            t.join(self.lease.ttl_s + 2.0)  # (a renewal in flight ends within its timeout)

    def _renew(self, term: threading.Event, epoch: int) -> None:
        """(a thread) Renew every third of the TTL, whatever the event loop is doing (a
        long recovery at takeover must not cost the lease); deposed: step down (its own
        term ``epoch`` only: a later term is not this thread's to end)."""
        while not term.wait(self.period_s) and not self._stopped.is_set():
            asked = self.monotonic()  # (the database's expiry is set after this)
            try:
                held = self.lease.renew()
            except JournalError as exc:
                log(self.logger, logging.ERROR, "leader lease not renewed", error=str(exc))
                continue
            if self._stopped.is_set():  # a clean stop released it meanwhile
                return
            if not held:
                self.fence("another replica holds the lease", epoch=epoch)
                return
            with self._lock:
                if not term.is_set() and self.monotonic() - self.renewed_at <= self.deadline_s:
                    self.renewed_at = asked

    def _watchdog(self, term: threading.Event, epoch: int) -> None:
        """(a thread) Step down once the lease was not renewed in time (the database
        unreachable or slow), or when the process wakes up from a pause (SIGSTOP) past
        its deadline."""
        while not term.wait(WATCHDOG_S) and not self._stopped.is_set():
            if self.monotonic() - self.renewed_at > self.deadline_s:
                self.fence("not renewed in time", epoch=epoch)

    def fence(self, why: str, *, epoch: int | None = None) -> None:
        """(any thread) End the current term now (of ``epoch`` only, when given): from
        here on :meth:`holds` is False for it, so nothing more is dispatched or written;
        then ``on_step_down`` takes the service down (or, without one, or if it fails,
        the process exits, status 70)."""
        with self._lock:
            term = self._term
            if term.is_set() or (epoch is not None and epoch != self.epoch):
                return
            term.set()
            ended = self.epoch
            complete_at = min(self.monotonic(), self.renewed_at + self.lease.ttl_s)
            self.role = "standby"
            self.leader_address = None
            self.step_downs += 1
        step_down = self.on_step_down
        if step_down is None or ended is None:
            self.exit_now(why)
            return
        log(self.logger, logging.CRITICAL, "lost the leader lease: stepping down",
            reason=why, epoch=ended)  # fmt: skip
        try:
            step_down(ended, why, complete_at)
        except Exception as exc:  # (whatever it was, the process stops)
            self.exit_now(f"{why}; the step-down failed: {exc!r}")

    def exit_now(self, why: str) -> None:
        """Stop the process now (exit 70), without another write or dispatch."""
        log(self.logger, logging.CRITICAL, "lost the leader lease: stopping now", reason=why)
        logging.shutdown()
        self.exit_process(FENCED_EXIT)

    async def aclose(self) -> None:
        """A clean stop: give the lease up so that a standby takes it at once."""
        self._stopped.set()
        with contextlib.suppress(JournalError):
            await asyncio.to_thread(self.lease.release)
        with self._lock:
            self._term.set()
        self.lease.close()
